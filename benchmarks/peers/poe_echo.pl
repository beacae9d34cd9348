#!/usr/bin/perl
# Peer: POE::Component::Server::TCP, written as the echo example in its documentation's synopsis.
#
# Usage: perl poe_echo.pl PORT [--bulk]
#
# Two additions to the documented example: Address => "127.0.0.1" (the benchmark never listens
# beyond loopback) and, only with --bulk, ClientFilter => "POE::Filter::Stream" so raw bytes are
# echoed as they arrive. The default filter, POE::Filter::Line, reads "\r\n" lines and writes them
# back with "\r\n", so the line echo is byte-exact.
use warnings;
use strict;

my $port = shift @ARGV or die "usage: $0 PORT [--bulk]\n";
my @bulk = (@ARGV && $ARGV[0] eq "--bulk") ? (ClientFilter => "POE::Filter::Stream") : ();

use POE qw(Component::Server::TCP);
POE::Component::Server::TCP->new(
  Address     => "127.0.0.1",
  Port        => $port,
  ClientInput => sub { $_[HEAP]{client}->put($_[ARG0]) },
  @bulk,
);
POE::Kernel->run();
