"""Stream, Block, LengthPrefixed, Netstring and JsonLines: framing, limits and error messages."""

from __future__ import annotations

import json
import struct

import pytest

from greensrv import FilterError
from greensrv.filters import Block, JsonLines, LengthPrefixed, Netstring, Stream
from greensrv.testing import check_filter


class TestStream:
    def test_round_trip(self):
        check_filter(Stream(), [b"abc", b"", b"\x00\xff"])

    def test_records_are_chunks_as_they_arrive(self):
        f = Stream()
        assert f.feed(b"ab") == [b"ab"]
        f.receive(b"c")
        f.receive(b"d")
        assert f.next_record() == b"cd"
        assert f.pending() == b""

    def test_eof_is_never_truncated(self):
        assert Stream().feed_eof() == []

    def test_encode_takes_bytes_only(self):
        with pytest.raises(TypeError):
            Stream().encode("text")


class TestBlock:
    def test_round_trip(self):
        check_filter(Block(3), [b"abc", b"\x00\x01\x02", b"xyz"])

    def test_truncated_block_at_eof(self):
        f = Block(4)
        assert f.feed(b"abcdef") == [b"abcd"]
        with pytest.raises(FilterError, match="Block.*2 bytes"):
            f.feed_eof()

    def test_encode_refuses_another_size(self):
        with pytest.raises(FilterError, match="size=2"):
            Block(2).encode(b"abc")

    def test_size_must_be_positive(self):
        with pytest.raises(ValueError, match="size"):
            Block(0)


class TestLengthPrefixed:
    @pytest.mark.parametrize("header", ["!I", "<H", ">Q", "B", "!i", "=h", "<q"])
    def test_round_trip_with_any_integer_header(self, header):
        check_filter(LengthPrefixed(header, max_length=100), [b"hello", b"", b"\x00" * 100])

    def test_wire_format(self):
        assert LengthPrefixed().encode(b"hi") == b"\x00\x00\x00\x02hi"
        assert LengthPrefixed("<H").encode(b"hi") == b"\x02\x00hi"

    def test_oversized_header_refused_before_the_payload(self):
        f = LengthPrefixed(max_length=10)
        with pytest.raises(FilterError) as info:
            f.feed(struct.pack("!I", 11))
        assert "LengthPrefixed" in str(info.value) and "max_length=10" in str(info.value)
        assert "11" in str(info.value)

    def test_negative_length_refused(self):
        with pytest.raises(FilterError, match="-1"):
            LengthPrefixed("!i").feed(struct.pack("!i", -1))

    def test_header_range_caps_max_length(self):
        assert "max_length=255" in repr(LengthPrefixed("B"))

    def test_encode_refuses_oversized_record(self):
        with pytest.raises(FilterError, match="max_length=3"):
            LengthPrefixed(max_length=3).encode(b"abcd")

    def test_truncated_at_eof(self):
        f = LengthPrefixed()
        f.feed(b"\x00\x00\x00\x05ab")
        with pytest.raises(FilterError, match="incomplete"):
            f.feed_eof()

    @pytest.mark.parametrize("header", ["!f", "!II", "xyz", "!?", "s"])
    def test_non_integer_header_refused(self, header):
        with pytest.raises(ValueError, match="header"):
            LengthPrefixed(header)

    def test_pull_leaves_exact_pending(self):
        f = LengthPrefixed("!H")
        f.receive(b"\x00\x01a\x00\x02bc\x00\x05x")
        assert f.next_record() == b"a"
        assert f.pending() == b"\x00\x02bc\x00\x05x"


class TestNetstring:
    def test_round_trip(self):
        check_filter(Netstring(), [b"hello world!", b"", b"1:,"])

    def test_djb_examples(self):
        assert Netstring().encode(b"hello world!") == b"12:hello world!,"
        assert Netstring().feed(b"0:,") == [b""]

    @pytest.mark.parametrize("wire, what", [
        (b"01:a,", "leading zero"),
        (b"-1:", "bad length"),
        (b" 1:a,", "bad length"),
        (b":,", "empty length"),
        (b"3:abc;", "expected ','"),
        (b"123456789", "digits of max_length"),
    ])
    def test_malformed(self, wire, what):
        with pytest.raises(FilterError, match=what):
            Netstring().feed(wire)

    def test_length_over_limit_refused_before_the_payload(self):
        with pytest.raises(FilterError, match="over max_length=5"):
            Netstring(max_length=5).feed(b"6:")


class TestJsonLines:
    def test_round_trip(self):
        check_filter(JsonLines(), [{"a": [1, 2.5, None, True]}, "line\nbreak", [], 0, "é✓"])

    def test_accepts_crlf_and_skips_blank_lines(self):
        assert JsonLines().feed(b'1\r\n\r\n  \n{"k":"v"}\n') == [1, {"k": "v"}]

    def test_output_is_compact_and_newline_terminated(self):
        assert JsonLines().encode({"a": 1, "b": [1, 2]}) == b'{"a":1,"b":[1,2]}\n'

    def test_bad_json_is_a_filter_error(self):
        with pytest.raises(FilterError, match="JsonLines: bad JSON"):
            JsonLines().feed(b"{nope}\n")

    def test_deep_nesting_is_a_filter_error(self):
        with pytest.raises(FilterError):
            JsonLines().feed(b"[" * 200000 + b"\n")

    def test_max_length(self):
        with pytest.raises(FilterError, match="JsonLines: line longer than max_length=8"):
            JsonLines(max_length=8).feed(b'"0123456789"')

    def test_custom_codec(self):
        f = JsonLines(dumps=lambda v: json.dumps(v, sort_keys=True), loads=json.loads)
        assert f.encode({"b": 1, "a": 2}) == b'{"a": 2, "b": 1}\n'
        assert f.clone().feed(b'{"x": 1}\n') == [{"x": 1}]

    def test_dumps_with_newlines_is_refused(self):
        with pytest.raises(ValueError, match="newline"):
            JsonLines(dumps=lambda v: json.dumps(v, indent=2)).encode({"a": 1})

    def test_unserialisable_value(self):
        with pytest.raises(TypeError):
            JsonLines().encode(object())

    def test_unterminated_last_line_at_eof(self):
        f = JsonLines()
        f.feed(b'[1]\n{"a"')
        with pytest.raises(FilterError):
            f.feed_eof()
        g = JsonLines()
        g.feed(b"[1]\n42")
        assert g.feed_eof() == [42]
