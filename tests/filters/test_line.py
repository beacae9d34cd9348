"""Line: POE::Filter::Line's behaviour, plus strict CRLF, bounded limits and exact pending()."""

from __future__ import annotations

import re

import pytest

from greensrv import FilterError
from greensrv.filters import NEED_DATA, Line
from greensrv.testing import check_filter


def drip(f: Line, data: bytes) -> list:
    """Feed ``data`` one byte at a time, as a slow client would send it."""
    out = []
    for b in data:
        out += f.feed(bytes((b,)))
    return out


@pytest.mark.parametrize("make, records", [
    (Line, ["hello", "", "wörld ✓", "a\rb"]),
    (lambda: Line(encoding=None), [b"\xff\xfe", b"", b"x" * 100]),
    (lambda: Line(literal="\n"), ["a", "", "b\r"]),
    (lambda: Line(literal=b"\x00\x00"), ["a", "b\x00c", ""]),
    (lambda: Line(input_literal="END", output_literal="END"), ["one", "two E N D"]),
    (lambda: Line(strict_crlf=True), ["HELO x", "", "DATA"]),
    (lambda: Line(input_regexp=rb"\r?\n"), ["a", "", "b"]),
    (lambda: Line(input_regexp="--|;", output_literal=";"), ["a", "b-c"]),
    (lambda: Line(encoding="latin-1"), ["caf\xe9", "x"]),
    (lambda: Line(encoding="utf-16-le", literal="\n".encode("utf-16-le")), ["hi", "ok"]),
    (lambda: Line(max_length=3), ["abc", "", "xyz"]),
])
def test_line_round_trips_under_any_chunking(make, records):
    check_filter(make(), records)


def test_default_accepts_crlf_and_lf_and_sends_crlf():
    f = Line()
    assert f.feed(b"one\r\ntwo\nthree\r\n") == ["one", "two", "three"]
    assert f.encode("x") == b"x\r\n"
    assert f.encode_many(["a", b"b", "c"]) == b"a\r\nb\r\nc\r\n"


def test_cr_and_lf_in_separate_packets_are_one_terminator_never_an_empty_line():
    f = Line()
    assert f.feed(b"abc\r") == []
    assert f.pending() == b"abc\r"
    assert f.feed(b"\n") == ["abc"]
    assert f.feed(b"\r") == []
    assert f.feed(b"\ndef\r") == [""]  # "\r\n" alone is one empty line
    assert f.feed(b"\n") == ["def"]


def test_lone_cr_inside_a_line_is_data():
    assert Line().feed(b"a\rb\n") == ["a\rb"]


def test_literal_sets_both_directions():
    f = Line(literal="|")
    assert f.feed(b"a|b|c") == ["a", "b"]
    assert f.encode("z") == b"z|"
    assert f.feed_eof() == ["c"]


def test_input_and_output_literal_differ():
    f = Line(input_literal=";", output_literal="\n")
    assert f.feed(b"x;y;") == ["x", "y"]
    assert f.encode("x") == b"x\n"


def test_multibyte_literal_split_across_packets():
    f = Line(literal=b"<EOR>", encoding=None)
    assert drip(f, b"ab<EO") == []
    assert f.feed(b"R><E") == [b"ab"]
    assert f.pending() == b"<E"


def test_self_overlapping_literal_splits_left_to_right():
    f = Line(literal=b"aa", encoding=None)
    assert f.feed(b"xaaaaay") == [b"x", b""]
    assert f.pending() == b"ay"
    g = Line(literal=b"aa", encoding=None)
    assert drip(g, b"xaaaaay") == [b"x", b""]


class TestStrictCrlf:
    def test_accepts_crlf(self):
        assert Line(strict_crlf=True).feed(b"MAIL FROM:<a>\r\n\r\n") == ["MAIL FROM:<a>", ""]

    @pytest.mark.parametrize("wire", [b"a\nb\r\n", b"a\r\nb\n", b"\n", b"a\rb\r\n"])
    def test_refuses_bare_lf_or_cr(self, wire):
        with pytest.raises(FilterError, match=r"strict_crlf.*bare"):
            Line(strict_crlf=True).feed(wire)

    def test_bare_lf_refused_before_a_crlf_arrives(self):
        f = Line(strict_crlf=True)
        with pytest.raises(FilterError, match="bare"):
            f.feed(b"DATA\n.\n")

    def test_good_lines_before_a_bad_one_are_returned_first(self):
        f = Line(strict_crlf=True)
        f.receive(b"ok\r\nbad\nline\r\n")
        assert f.next_record() == "ok"
        with pytest.raises(FilterError):
            f.next_record()

    def test_smuggling_sequence_is_refused(self):
        """SMTP smuggling: "\\n.\\r\\n" must not end DATA for a strict server."""
        f = Line(strict_crlf=True)
        with pytest.raises(FilterError):
            f.feed(b"hello\r\n\n.\r\nMAIL FROM:<evil>\r\n")

    def test_cr_split_from_lf_across_packets(self):
        f = Line(strict_crlf=True)
        assert f.feed(b"x\r") == []
        assert f.feed(b"\n") == ["x"]

    def test_cannot_combine_with_other_terminators(self):
        with pytest.raises(ValueError, match="strict_crlf"):
            Line(literal="\n", strict_crlf=True)
        with pytest.raises(ValueError, match="strict_crlf"):
            Line(input_regexp="x", strict_crlf=True)


class TestInputRegexp:
    def test_splits_on_matches(self):
        f = Line(input_regexp=rb"\s*;\s*")
        assert f.feed(b"a ; b;c  ;") == ["a", "b", "c"]

    def test_accepts_str_and_compiled_patterns(self):
        assert Line(input_regexp="[,;]").feed(b"a,b;") == ["a", "b"]
        assert Line(input_regexp=re.compile("x", re.I)).feed(b"aXbx") == ["a", "b"]

    def test_terminator_split_across_packets(self):
        f = Line(input_regexp=rb"\r\n")
        assert drip(f, b"ab\r\ncd\r\n") == ["ab", "cd"]

    def test_a_match_is_taken_as_soon_as_it_is_found(self):
        """Documented caveat (as in POE): a match that could grow with the next byte does not
        wait for it, so a greedy pattern like ``-+`` depends on packet boundaries."""
        whole = Line(input_regexp="-+")
        assert whole.feed(b"a--b--") == ["a", "b"]
        dripped = Line(input_regexp="-+")
        assert drip(dripped, b"a--b--") == ["a", "", "b", ""]

    def test_empty_matching_pattern_is_refused(self):
        with pytest.raises(ValueError, match="empty string"):
            Line(input_regexp=rb"\n*")

    def test_unterminated_buffer_is_bounded(self):
        f = Line(input_regexp=rb"\n", max_length=10)
        with pytest.raises(FilterError, match="max_length=10"):
            f.feed(b"x" * 200)


class TestMaxLength:
    def test_line_at_the_limit_passes(self):
        assert Line(max_length=4).feed(b"abcd\r\n") == ["abcd"]

    def test_long_line_refused_before_its_terminator(self):
        f = Line(max_length=4)
        assert f.feed(b"abcd") == []
        with pytest.raises(FilterError) as info:
            f.feed(b"e")
        message = str(info.value)
        assert "Line" in message and "max_length=4" in message and "5 bytes" in message

    def test_half_received_crlf_is_allowed_for(self):
        f = Line(max_length=4)
        assert f.feed(b"abcd\r") == []
        assert f.feed(b"\n") == ["abcd"]

    def test_cr_then_more_data_is_too_long(self):
        f = Line(max_length=4)
        f.feed(b"abcd\r")
        with pytest.raises(FilterError):
            f.feed(b"x")

    def test_gigabyte_line_is_refused_as_it_passes_the_limit(self):
        """A client sending an endless line is refused after about max_length bytes."""
        f = Line(max_length=1000)
        chunk = b"y" * 256
        sent = 0
        with pytest.raises(FilterError):
            while sent < 1 << 30:
                f.feed(chunk)
                sent += len(chunk)
        assert sent <= 1000 + 256

    def test_long_line_inside_a_batch(self):
        f = Line(max_length=3)
        f.receive(b"ok\nway too long\nok\n")
        assert f.next_record() == "ok"
        with pytest.raises(FilterError, match="max_length=3"):
            f.next_record()

    def test_multibyte_literal_partial_end_is_allowed_for(self):
        f = Line(literal="<EOR>", max_length=2)
        assert f.feed(b"ab<EO") == []
        assert f.feed(b"R>") == ["ab"]

    def test_invalid_limit(self):
        with pytest.raises(ValueError, match="max_length"):
            Line(max_length=0)


class TestEncoding:
    def test_undecodable_line_names_the_codec(self):
        with pytest.raises(FilterError, match="utf-8"):
            Line().feed(b"\xff\n")

    def test_errors_handler(self):
        assert Line(errors="replace").feed(b"a\xffb\n") == ["a\ufffdb"]
        assert Line(literal="x", errors="backslashreplace").feed(b"\xffxa\xffx") == ["\\xff",
                                                                                      "a\\xff"]
        assert Line(errors="surrogateescape").feed(b"\xff\n") == ["\udcff"]

    def test_bytes_mode(self):
        f = Line(encoding=None)
        assert f.feed(b"\xff\r\n") == [b"\xff"]
        with pytest.raises(TypeError):
            f.encode("str")

    def test_non_ascii_lines_in_a_batch(self):
        f = Line(max_length=4)
        assert f.feed("éé\néé\r\n".encode()) == ["éé", "éé"]
        with pytest.raises(FilterError):
            Line(max_length=4).feed("ééé\nok\n".encode())

    def test_unknown_codec_fails_at_construction(self):
        with pytest.raises(LookupError):
            Line(encoding="no-such-codec")

    def test_encode_refuses_other_types(self):
        with pytest.raises(TypeError):
            Line().encode(5)


class TestPullAndPending:
    def test_next_record_one_at_a_time_leaves_the_rest_pending(self):
        f = Line()
        f.receive(b"a\r\nb\nc\r\nrest")
        assert f.next_record() == "a"
        assert f.pending() == b"b\nc\r\nrest"
        assert f.pending_size() == len(b"b\nc\r\nrest")
        assert f.next_record() == "b"
        assert f.pending() == b"c\r\nrest"
        assert f.next_record() == "c"
        assert f.next_record() is NEED_DATA
        assert f.pending() == b"rest"

    def test_switching_filters_after_any_record_loses_nothing(self):
        wire = b"".join(b"line %d\r\n" % i for i in range(50)) + b"tail"
        for k in range(51):
            f = Line()
            f.receive(wire)
            got = [f.next_record() for _ in range(k)]
            assert got == [f"line {i}" for i in range(k)]
            rest = Line(encoding=None)
            rest.receive(f.pending())
            assert len(rest.feed(b"")) == 50 - k
            assert rest.pending() == b"tail"

    def test_feed_eof_returns_an_unterminated_last_line(self):
        f = Line()
        f.feed(b"a\nlast\r")
        assert f.feed_eof() == ["last"]
        assert f.feed_eof() == []

    def test_dripping_a_long_line_costs_linear_time(self):
        """No rescans: 60 KB one byte at a time finishes fast enough for any CI."""
        f = Line()
        feed = f.feed
        for _ in range(60000):
            feed(b"x")
        assert f._scan >= 60000 - 1  # white-box: the searched prefix is remembered
        assert feed(b"\n") == ["x" * 60000]


def test_clone_keeps_settings_and_drops_buffers():
    f = Line(literal="|", max_length=9, encoding=None)
    f.feed(b"abc")
    g = f.clone()
    assert g.pending() == b""
    assert g.feed(b"x|") == [b"x"]
    assert repr(g) == "Line(literal='|', encoding=None, max_length=9)"


_LINE_STATE_SLOTS = {"_bn", "_braw", "_ready", "_scan"}  # per-instance parsing state


@pytest.mark.parametrize("options", [
    {}, {"literal": "|", "max_length": 9, "encoding": None}, {"strict_crlf": True},
    {"input_regexp": rb"\r?\n"}, {"encoding": "latin-1", "errors": "replace"},
])
def test_clone_copies_every_setting_slot(options):
    f = Line(**options)
    f.feed(b"half a li")
    g = f.clone()
    for name in Line.__slots__:
        if name in _LINE_STATE_SLOTS:
            continue
        assert getattr(g, name) == getattr(f, name), name  # AttributeError if clone missed it
    assert (g._scan, g._bn, g._braw, g._ready, g.pending()) == (0, 0, None, [], b"")
    assert g._ready is not f._ready
