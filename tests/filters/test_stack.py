"""Map, Grep and Stack: record filters, layering, drops on output and pending() through layers."""

from __future__ import annotations

import zlib

import pytest

from greensrv import FilterError
from greensrv.filters import (
    NEED_DATA,
    Block,
    Grep,
    JsonLines,
    LengthPrefixed,
    Line,
    Map,
    Netstring,
    Stack,
    Stream,
)
from greensrv.testing import check_filter


class TestMap:
    def test_alone_each_chunk_is_a_record(self):
        f = Map(get=bytes.upper, put=bytes.lower)
        assert f.feed(b"abc") == [b"ABC"]
        assert f.encode(b"XY") == b"xy"

    def test_record_filter_check(self):
        check_filter(Map(get=bytes.upper, put=bytes.lower), [b"ABC", b"D"])

    def test_identity_by_default(self):
        assert Map().feed(b"x") == [b"x"]
        assert Map().encode(b"y") == b"y"

    def test_alone_must_encode_to_bytes(self):
        with pytest.raises(TypeError, match="Stack"):
            Map(put=str).encode(b"x")

    def test_callables_are_checked(self):
        with pytest.raises(TypeError, match="get must be callable"):
            Map(get="upper")  # type: ignore[arg-type]


class TestGrep:
    def test_drops_rejected_input(self):
        f = Grep(get=lambda b: not b.startswith(b"#"))
        assert f.feed(b"#x") == []
        assert f.feed(b"y") == [b"y"]

    def test_alone_a_dropped_record_encodes_to_nothing(self):
        f = Grep(put=lambda b: b != b"secret")
        assert f.encode(b"secret") == b""
        assert f.encode_many([b"a", b"secret", b"b"]) == b"ab"

    def test_in_a_stack_a_dropped_record_never_reaches_the_layer_below(self):
        s = Stack(Line(), Grep(get=lambda line: not line.startswith("#"),
                               put=lambda line: line != "secret"))
        assert s.feed(b"a\r\n# comment\r\nb\r\n") == ["a", "b"]
        assert s.encode("secret") == b""  # not an empty line
        assert s.encode_many(["x", "secret", "y"]) == b"x\r\ny\r\n"


class TestStack:
    def test_line_over_stream(self):
        check_filter(Stack(Stream(), Line()), ["a", "b", ""])

    def test_map_over_line(self):
        check_filter(Stack(Line(), Map(get=str.upper, put=str.lower)), ["ABC", "", "X Y"])

    def test_grep_over_line(self):
        check_filter(Stack(Line(), Grep(get=lambda s: s != "", put=lambda s: s != "")),
                     ["a", "b"])

    def test_json_inside_netstrings(self):
        check_filter(Stack(Netstring(), Line(encoding=None, literal=b"\n"), Map(
            get=bytes.decode, put=str.encode)), ["x", "y z"])

    def test_line_inside_length_prefixed(self):
        check_filter(Stack(LengthPrefixed("!H"), Line()), ["first", "second"])

    def test_nested_stacks(self):
        check_filter(Stack(Stack(Stream(), Line()), Map(get=int, put=str)), [1, 22, -3])

    def test_connection_filter_at_the_bottom_rewrites_raw_bytes(self):
        """mod_perl's lowercase output filter: a byte Map under the protocol filter."""
        s = Stack(Map(get=bytes.upper, put=bytes.lower), Line())
        assert s.feed(b"hello\r\nwor") == ["HELLO"]
        assert s.feed(b"ld\n") == ["WORLD"]
        assert s.encode("MiXeD") == b"mixed\r\n"

    def test_stateful_connection_filter_zlib(self):
        def compressed_lines() -> Stack:
            inflate = zlib.decompressobj()
            deflate = zlib.compressobj()
            return Stack(Map(get=inflate.decompress,
                             put=lambda b: deflate.compress(b) + deflate.flush(zlib.Z_SYNC_FLUSH)),
                         Line())
        server, client = compressed_lines(), compressed_lines()
        wire = client.encode_many(["hello", "world"]) + client.encode("again")
        got = []
        for b in wire:
            got += server.feed(bytes((b,)))
        assert got == ["hello", "world", "again"]

    def test_operations(self):
        line, stream, grep, block = Line(), Stream(), Grep(), Block(2)
        s = Stack(line)
        s.push(grep)
        s.unshift(stream)
        assert s.filters() == [stream, line, grep]
        assert s.pop() is grep
        assert s.shift() is stream
        s.unshift(block, Stream())
        assert [type(f) for f in s.filters()] == [Block, Stream, Line]
        s.shift()
        s.shift()
        with pytest.raises(IndexError, match="at least one"):
            s.pop()
        with pytest.raises(IndexError):
            s.shift()

    def test_pop_switches_framing_mid_stream(self):
        s = Stack(Line(encoding=None), Map(get=bytes.upper))
        assert s.feed(b"a\nb\n") == [b"A", b"B"]
        s.pop()
        assert s.feed(b"c\n") == [b"c"]

    def test_needs_filters(self):
        with pytest.raises(ValueError):
            Stack()
        with pytest.raises(TypeError, match="Filter instances"):
            Stack(Line, Stream())  # type: ignore[arg-type]

    def test_pending_is_wire_bytes_oldest_first(self):
        s = Stack(Stream(), Line())
        s.receive(b"one\r\ntwo\r\nthr")
        assert s.next_record() == "one"
        assert s.pending() == b"two\r\nthr"

    def test_pending_raises_when_bytes_have_no_wire_form(self):
        s = Stack(Netstring(), Line())
        assert s.feed(b"5:half\r,") == []  # Line holds "half\r" from inside the netstring
        with pytest.raises(FilterError, match="no longer have a wire form"):
            s.pending()

    def test_feed_eof_flushes_every_layer(self):
        s = Stack(Stream(), Line())
        assert s.feed(b"a\nlast") == ["a"]
        assert s.feed_eof() == ["last"]

    def test_feed_eof_truncated_in_a_lower_layer(self):
        s = Stack(Netstring(), JsonLines())
        s.feed(b"3:[1]")
        with pytest.raises(FilterError):
            s.feed_eof()

    def test_layer_type_mismatch_is_explained(self):
        s = Stack(Line(), Netstring())  # Line yields str; Netstring reads bytes
        with pytest.raises(TypeError, match="encoding=None"):
            s.feed(b"x\n")

    def test_clone_clones_every_layer(self):
        s = Stack(Stream(), Line())
        s.feed(b"partial")
        c = s.clone()
        assert c.pending() == b""
        assert [type(f) for f in c.filters()] == [Stream, Line]
        assert c.next_record() is NEED_DATA
