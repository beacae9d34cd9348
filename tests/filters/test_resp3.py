"""Resp speaking RESP3: every type both ways, the RESP2 forms of the same values, switching
version mid-stream, limits on every aggregate, and malformed RESP3 input."""

from __future__ import annotations

import math

import pytest

from greensrv import FilterError
from greensrv.filters import Attributed, Push, Resp, RespError, Verbatim
from greensrv.testing import check_filter

#: (value, RESP3 wire form, RESP2 wire form)
FORMS = [
    (None, b"_\r\n", b"$-1\r\n"),
    (True, b"#t\r\n", b":1\r\n"),
    (False, b"#f\r\n", b":0\r\n"),
    (1.5, b",1.5\r\n", b"$3\r\n1.5\r\n"),
    (math.inf, b",inf\r\n", b"$3\r\ninf\r\n"),
    (-math.inf, b",-inf\r\n", b"$4\r\n-inf\r\n"),
    (2**64, b"(18446744073709551616\r\n", b"$20\r\n18446744073709551616\r\n"),
    (-(2**63), b":-9223372036854775808\r\n", b":-9223372036854775808\r\n"),
    (RespError("ERR a\r\nb"), b"!8\r\nERR a\r\nb\r\n", b"-ERR a  b\r\n"),
    (Verbatim("hi", "mkd"), b"=6\r\nmkd:hi\r\n", b"$2\r\nhi\r\n"),
    ({b"k": 1}, b"%1\r\n$1\r\nk\r\n:1\r\n", b"*2\r\n$1\r\nk\r\n:1\r\n"),
    ({b"a"}, b"~1\r\n$1\r\na\r\n", b"*1\r\n$1\r\na\r\n"),
    (frozenset(), b"~0\r\n", b"*0\r\n"),
    (Push([b"message", b"ch", b"hi"]), b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
     b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
    (Attributed(b"v", {"ttl": 3}), b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", b"$1\r\nv\r\n"),
]


@pytest.mark.parametrize("value, wire3, wire2", FORMS, ids=[repr(f[0]) for f in FORMS])
def test_each_type_encodes_in_both_versions(value, wire3, wire2):
    assert Resp(protocol=3).encode(value) == wire3
    assert Resp().encode(value) == wire2


@pytest.mark.parametrize("value, wire3, wire2", FORMS, ids=[repr(f[0]) for f in FORMS])
def test_each_type_decodes_to_its_python_type(value, wire3, wire2):
    got = Resp().feed(wire3)
    assert got == [value if not isinstance(value, frozenset) else set(value)]
    assert type(got[0]) is type(value) or isinstance(value, frozenset)


def test_nan_round_trips():
    assert Resp(protocol=3).encode(math.nan) == b",nan\r\n"
    assert math.isnan(Resp().feed(b",nan\r\n")[0])


def test_decoded_types_say_what_they_are():
    push, verbatim, attributed, error = Resp().feed(
        b">1\r\n+x\r\n=7\r\ntxt:abc\r\n|1\r\n+a\r\n:1\r\n+v\r\n!3\r\nERR\r\n")
    assert isinstance(push, Push) and isinstance(push, list) and push == ["x"]
    assert verbatim == "abc" and verbatim.fmt == "txt"
    assert attributed.value == "v" and attributed.attributes == {"a": 1}
    assert error == RespError("ERR")


def test_an_attribute_is_not_an_element_of_its_array():
    wire = b"*2\r\n:1\r\n|1\r\n+key-popularity\r\n,0.5\r\n:2\r\n"
    assert Resp().feed(wire) == [[1, Attributed(2, {"key-popularity": 0.5})]]


def test_unhashable_keys_and_members_are_frozen():
    assert Resp().feed(b"%1\r\n*2\r\n:1\r\n:2\r\n+v\r\n") == [{(1, 2): "v"}]
    assert Resp().feed(b"~1\r\n~1\r\n:1\r\n") == [{frozenset({1})}]


def test_three_ways_and_every_split():
    values = [value for value, _, _ in FORMS if not isinstance(value, float)]
    values += [[{b"m": {b"n"}}, Push([None, True])], {}, Push(), 2**100]
    check_filter(Resp(protocol=3), values)


def test_protocol_switches_mid_stream_and_clones_keep_it():
    f = Resp()
    assert f.protocol == 2 and f.encode(None) == b"$-1\r\n"
    f.protocol = 3
    assert f.encode(None) == b"_\r\n" and f.clone().protocol == 3
    assert repr(f) == "Resp(protocol=3)"
    f.protocol = 2
    assert f.encode({b"a": b"b"}) == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"


@pytest.mark.parametrize("bad", [4, 1, "3", None, 3.0])
def test_protocol_must_be_2_or_3(bad):
    with pytest.raises(ValueError, match="protocol must be 2 or 3"):
        Resp(protocol=bad)
    f = Resp()
    with pytest.raises(ValueError, match="protocol must be 2 or 3"):
        f.protocol = bad


@pytest.mark.parametrize("head", [b"%", b"~", b">", b"|"])
def test_every_aggregate_obeys_the_length_limit(head):
    with pytest.raises(FilterError, match="3 elements over max_array_length=2"):
        Resp(max_array_length=2).feed(head + b"3\r\n")


@pytest.mark.parametrize("head", [b"%1\r\n+k\r\n", b"~1\r\n", b">1\r\n", b"|1\r\n+k\r\n"])
def test_every_aggregate_obeys_the_depth_limit(head):
    with pytest.raises(FilterError, match="max_depth=3"):
        Resp(max_depth=3).feed(head * 4)


@pytest.mark.parametrize("head", [b"=", b"!"])
def test_blob_types_obey_the_bulk_limit(head):
    with pytest.raises(FilterError, match="over max_bulk_length=4"):
        Resp(max_bulk_length=4).feed(head + b"5\r\n")


@pytest.mark.parametrize("wire, what", [
    (b"#x\r\n", "bad boolean"),
    (b"_x\r\n", "null with a payload"),
    (b",1_0\r\n", "bad double"),
    (b",\r\n", "bad double"),
    (b",1.5 \r\n", "bad double"),
    (b"(12a\r\n", "bad big number"),
    (b"(\r\n", "bad big number"),
    (b"=3\r\nabc\r\n", "verbatim string without"),
    (b"%-1\r\n", "map length -1"),
    (b"~-1\r\n", "set length -1"),
    (b"!-1\r\n", "bulk length -1"),
    (b"%1\r\n%0\r\n:1\r\n", "cannot be a map key"),
])
def test_malformed_resp3(wire, what):
    with pytest.raises(FilterError, match=what) as info:
        Resp().feed(wire)
    assert str(info.value).startswith("Resp: ")


def test_resp2_output_is_unchanged_by_default():
    assert Resp().encode([b"GET", b"k"]) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert Resp().encode([1, "OK", None]) == b"*3\r\n:1\r\n+OK\r\n$-1\r\n"
