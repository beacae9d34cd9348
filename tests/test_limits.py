"""``greensrv.limits.Limits``: one frozen object with every per-connection bound, checked once."""

from __future__ import annotations

import dataclasses

import pytest

import greensrv
from greensrv.limits import Limits


def test_the_defaults_are_the_servers_defaults():
    server = greensrv.Server(lambda conn: None)
    assert server.limits == Limits()
    assert Limits().flush_timeout == 30.0 and Limits().drain_timeout == 1.0
    assert Limits().drain_limit == 1 << 20


def test_limits_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits().high_mark = 1  # type: ignore[misc]


def test_seconds_are_stored_as_floats():
    limits = Limits(idle_timeout=5, flush_timeout=2, record_timeout=None)
    assert (limits.idle_timeout, limits.flush_timeout, limits.record_timeout) == (5.0, 2.0, None)
    assert type(limits.idle_timeout) is float


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"high_mark": 0}, ValueError, "high_mark must be at least 1"),
    ({"high_mark": "big"}, TypeError, "high_mark must be an int"),
    ({"low_mark": -1}, ValueError, "low_mark must be at least 0"),
    ({"low_mark": 10, "high_mark": 10}, ValueError, "low_mark (10) must be below high_mark (10)"),
    ({"output_limit": 100, "high_mark": 200, "low_mark": 1}, ValueError,
     "output_limit (100) must be at least high_mark (200)"),
    ({"idle_timeout": 0}, ValueError, "idle_timeout must be positive"),
    ({"record_timeout": -1}, ValueError, "record_timeout must be positive"),
    ({"handshake_timeout": "soon"}, TypeError, "handshake_timeout must be a number of seconds"),
    ({"flush_timeout": -1}, ValueError, "flush_timeout must be non-negative"),
    ({"drain_timeout": True}, TypeError, "drain_timeout must be a number of seconds"),
    ({"drain_limit": -5}, ValueError, "drain_limit must be at least 0"),
])
def test_a_bad_field_is_refused_with_a_message_naming_it(options, error, message):
    with pytest.raises(error) as info:
        Limits(**options)
    assert message in str(info.value)


def test_the_server_refuses_bad_limits_at_construction_naming_the_option():
    with pytest.raises(ValueError, match="low_mark"):
        greensrv.Server(lambda conn: None, high_mark=10, low_mark=10)
