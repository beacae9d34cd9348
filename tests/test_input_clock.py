"""The input clock without a socket: the connection's idle and record deadlines, and the
progress the shedder reads, driven with made-up monotonic times."""

from __future__ import annotations

from greensrv.input_clock import IDLE, RECORD, InputClock
from greensrv.limits import Limits
from greensrv.overload import Progress

T0 = 1000.0  # a monotonic time


def test_no_limit_means_the_connection_may_wait_forever():
    clock, limits = InputClock(T0), Limits(idle_timeout=None, record_timeout=None)
    assert clock.limit(limits, T0 + 5, 0) is None
    assert clock.limit(limits, T0 + 5, 10) is None  # no record clock either
    assert clock.expired(limits, T0 + 1e6, 10) == 0


def test_idle_time_counts_only_waits_and_restarts_when_bytes_arrive():
    clock, limits = InputClock(T0), Limits(idle_timeout=10, record_timeout=None)
    assert clock.limit(limits, T0, 0) == 10
    clock.waited(T0, T0 + 4)
    assert clock.limit(limits, T0 + 100, 0) == 6  # time not spent waiting is not idle
    assert clock.expired(limits, T0 + 100, 0) == 0
    clock.waited(T0 + 100, T0 + 106)
    assert clock.expired(limits, T0 + 106, 0) == IDLE
    clock.received(5, T0 + 107)
    assert (clock.idle_spent, clock.bytes_in, clock.limit(limits, T0 + 107, 0)) == (0.0, 5, 10)


def test_an_unfinished_record_is_timed_from_the_read_that_began_it():
    clock, limits = InputClock(T0), Limits(idle_timeout=60, record_timeout=5)
    clock.received(3, T0 + 1)  # three bytes of a record that has not ended
    assert clock.limit(limits, T0 + 2, 3) == 4  # due at T0 + 1 + 5, nearer than idle_timeout
    assert clock.partial_since == T0 + 1
    assert clock.expired(limits, T0 + 5, 3) == 0
    assert clock.expired(limits, T0 + 6, 3) == RECORD
    assert clock.overdue_reason(limits, 3, T0 + 6).startswith(
        "took more than record_timeout=5 s")
    assert clock.limit(limits, T0 + 7, 0) == 60 and clock.partial_since is None  # it ended


def test_a_pause_by_backpressure_restarts_the_unfinished_records_clock():
    clock, limits = InputClock(T0), Limits(record_timeout=5)
    clock.received(3, T0)
    clock.limit(limits, T0, 3)
    clock.drained(T0 + 30)  # the client could not send while we did not read
    assert clock.limit(limits, T0 + 31, 3) == 4


def test_record_start_timeout_bounds_the_silence_before_the_first_byte():
    clock, limits = InputClock(T0), Limits(record_start_timeout=2)
    assert clock.limit(limits, T0 + 0.5, 0) == 1.5
    assert clock.expired(limits, T0 + 2, 0) == RECORD
    assert clock.overdue_reason(limits, 0, T0 + 2) == (
        "sent nothing within record_start_timeout=2 s of connecting")
    clock.received(1, T0 + 3)
    assert clock.limit(limits, T0 + 3, 0) is None  # only before the first byte


def test_progress_is_what_the_shedder_reads():
    clock, limits = InputClock(T0), Limits()
    clock.waiting_since = T0 + 1
    assert clock.progress(True, 0) == Progress(T0, T0 + 1, None, 0, False)
    assert clock.progress(False, 0).waiting_since is None  # input has ended: not waiting
    clock.received(10, T0 + 2)
    clock.limit(limits, T0 + 2, 4)  # 4 of the 10 bytes are an unfinished record: 6 were records
    assert clock.progress(True, 4) == Progress(T0, T0 + 1, T0 + 2, 4, True)
