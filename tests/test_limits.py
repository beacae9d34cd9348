"""``greensrv.limits.Limits``: one frozen object with every per-connection bound, checked once."""

from __future__ import annotations

import dataclasses

import pytest

import greensrv
from greensrv.limits import Limits


def test_the_defaults_are_the_servers_defaults_but_the_record_rate():
    server = greensrv.Server(lambda conn: None)
    # A server holds clients to record_min_rate (slowloris); a client-side connection, whose
    # peer is a server it chose, keeps only record_timeout.
    assert server.limits == Limits(record_min_rate=500)
    assert Limits().record_min_rate is None and server.limits.record_min_rate == 500.0
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


def test_the_record_clock_follows_the_record_fields():
    limits = Limits(record_timeout=20, record_min_rate=100, record_grace=2,
                    record_start_timeout=3)
    clock = limits.record_clock
    assert (clock.max_time, clock.min_rate, clock.grace, clock.start_timeout) == (20, 100, 2, 3)
    assert clock.allowed(300) == 5.0  # 2 s of grace + 300 bytes at 100 bytes/s
    assert Limits(record_timeout=None).record_clock.active is False


@pytest.mark.parametrize("name, value, message", [
    ("record_min_rate", 0, "record_min_rate must be positive"),
    ("record_min_rate", "fast", "record_min_rate must be a number of bytes/s"),
    ("record_grace", -1, "record_grace must be non-negative"),
    ("record_start_timeout", 0, "record_start_timeout must be positive"),
])
def test_the_record_fields_are_checked_by_name(name, value, message):
    with pytest.raises((TypeError, ValueError), match=message):
        Limits(**{name: value})


def test_connect_and_client_take_the_record_fields_but_not_the_derived_clock():
    from greensrv.dial import LIMIT_OPTIONS, make_limits

    assert {"record_min_rate", "record_grace", "record_start_timeout"} <= LIMIT_OPTIONS
    assert "record_clock" not in LIMIT_OPTIONS
    assert make_limits({"record_min_rate": 100}).record_clock.min_rate == 100.0
    with pytest.raises(TypeError, match="record_clock"):
        make_limits({"record_clock": None})
