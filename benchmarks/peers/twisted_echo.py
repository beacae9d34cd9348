"""Peer: Twisted ``LineOnlyReceiver`` line echo on the default (epoll) reactor.

``python twisted_echo.py PORT [--bulk]``; ``--bulk`` uses a plain ``Protocol`` that writes back
each chunk.
"""

import sys

from twisted.internet import protocol, reactor
from twisted.protocols.basic import LineOnlyReceiver


class LineEcho(LineOnlyReceiver):
    delimiter = b"\r\n"

    def lineReceived(self, line):
        self.sendLine(line)


class ByteEcho(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


def main():
    port = int(sys.argv[1])
    factory = protocol.Factory.forProtocol(ByteEcho if "--bulk" in sys.argv else LineEcho)
    factory.noisy = False
    reactor.listenTCP(port, factory, backlog=1024, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
