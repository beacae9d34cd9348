"""``greensrv.output_queue.OutputQueue`` on its own: no socket, no gevent, every byte counted.

The queue is driven the way a connection drives it (queue records, then ``send_queued()`` with a
``send`` that takes some bytes) and each crossing it returns is checked against the watermarks.
"""

from __future__ import annotations

import pytest

from greensrv.filters import Block, JsonLines, Line, Stream
from greensrv.limits import Limits
from greensrv.output_queue import (
    EMPTIED,
    FELL_TO_LOW,
    INLINE_SEND_THRESHOLD,
    OVER_LIMIT,
    ROSE_ABOVE_HIGH,
    OutputQueue,
)

SMALL = Limits(high_mark=100, low_mark=40, output_limit=300)


def send(queue: OutputQueue, n: int) -> int:
    """What a connection does when the kernel takes ``n`` bytes; returns the crossings."""
    return queue.send_queued(lambda buf: min(n, len(buf)))


def test_buffered_counts_lazy_text_and_encoded_records_exactly():
    queue = OutputQueue(Line(), Limits())
    assert queue.buffered == 0
    queue.queue_text("abc")  # lazy: not encoded yet, but counted with its terminator
    assert queue.buffered == 5
    queue.queue_records("é", ())  # not ASCII: encoded at once, after the text before it
    assert queue.buffered == 5 + 4
    queue.queue_records(b"xy", ("z",))
    assert queue.buffered == 9 + 4 + 3
    assert bytes(queue.outgoing()) == b"abc\r\n\xc3\xa9\r\nxy\r\nz\r\n"
    assert queue.buffered == 16  # encoding the text changes nothing in the count


def test_sent_removes_exactly_what_the_kernel_took():
    queue = OutputQueue(Line(), Limits())
    for word in ("one", "two", "three"):
        queue.queue_text(word)
    assert send(queue, 7) == 0
    assert queue.buffered == len(b"one\r\ntwo\r\nthree\r\n") - 7
    assert bytes(queue.outgoing()) == b"o\r\nthree\r\n"


def test_rising_past_high_mark_is_reported_once_on_the_put_that_crosses_it():
    queue = OutputQueue(Stream(), SMALL)
    before = queue.queue_records(b"x" * 90, ())
    assert queue.crossed_after_put(before) == 0
    before = queue.queue_records(b"x" * 20, ())  # 110 > 100
    assert queue.crossed_after_put(before) == ROSE_ABOVE_HIGH
    before = queue.queue_records(b"x" * 20, ())  # still above: no new crossing
    assert queue.crossed_after_put(before) == 0


def test_passing_output_limit_is_reported_with_the_high_mark_when_one_put_does_both():
    queue = OutputQueue(Stream(), SMALL)
    before = queue.queue_records(b"x" * 301, ())
    assert queue.crossed_after_put(before) == ROSE_ABOVE_HIGH | OVER_LIMIT


def test_lazy_text_reports_crossings_when_the_busy_mark_is_reached():
    queue = OutputQueue(Line(), SMALL)
    crossed = [queue.queue_text("x" * 8) for _ in range(12)]  # 10 bytes each on the wire
    assert crossed[:10] == [0] * 10  # at 100, not above the high mark
    assert crossed[10] == ROSE_ABOVE_HIGH and crossed[11] == 0
    assert queue.buffered == 120


def test_draining_reports_falling_to_low_mark_then_emptied():
    queue = OutputQueue(Stream(), SMALL)
    queue.queue_records(b"x" * 150, ())
    assert send(queue, 100) == 0  # 50 left: still above low_mark (40)
    assert send(queue, 10) == FELL_TO_LOW  # 40: at low_mark
    assert send(queue, 0) == 0
    assert send(queue, 40) == EMPTIED
    assert send(queue, 0) == 0  # nothing held, nothing sent: no crossing


def test_one_send_of_everything_reports_both_crossings():
    queue = OutputQueue(Stream(), SMALL)
    queue.queue_records(b"x" * 150, ())
    assert send(queue, 150) == FELL_TO_LOW | EMPTIED


def test_the_busy_mark_is_the_high_mark_or_the_inline_send_threshold():
    assert OutputQueue(Line(), SMALL).busy_mark == 101
    assert OutputQueue(Line(), Limits()).busy_mark == INLINE_SEND_THRESHOLD


def test_switching_the_output_filter_mid_burst_keeps_earlier_records_in_the_old_encoding():
    queue = OutputQueue(Line(), Limits())
    queue.queue_text("old")
    queue.switch_output_filter(Line(literal="|"), more_to_come=True)
    queue.queue_text("new")
    queue.switch_output_filter(JsonLines(), more_to_come=True)  # no lazy path
    assert queue.lazy is None
    queue.queue_records({"k": 1}, ())
    queue.switch_output_filter(Block(2), more_to_come=True)
    queue.queue_records(b"zz", ())
    wire = b'old\r\nnew|{"k":1}\nzz'
    assert queue.buffered == len(wire)
    assert bytes(queue.outgoing()) == wire


def test_a_bad_record_queues_nothing_and_keeps_the_count():
    queue = OutputQueue(Block(2), Limits())
    queue.queue_records(b"ok", ())
    with pytest.raises((TypeError, ValueError)):
        queue.queue_records(b"too long", ())
    assert queue.buffered == 2 and bytes(queue.outgoing()) == b"ok"


def test_ending_the_output_keeps_what_is_queued_and_turns_the_lazy_path_off():
    queue = OutputQueue(Line(), Limits())
    queue.queue_text("last")
    queue.end_output()
    assert queue.lazy is None and queue.buffered == 6
    queue.switch_output_filter(Line(), more_to_come=False)  # closing: stays off
    assert queue.lazy is None
    assert bytes(queue.outgoing()) == b"last\r\n"


def test_a_failing_send_leaves_every_byte_queued():
    queue = OutputQueue(Line(), Limits())
    queue.queue_text("kept")

    def broken(buf):
        raise ConnectionResetError("peer gone")

    with pytest.raises(ConnectionResetError):
        queue.send_queued(broken)
    assert queue.buffered == 6 and bytes(queue.outgoing()) == b"kept\r\n"


def test_discarding_drops_everything_queued():
    queue = OutputQueue(Line(), Limits())
    queue.queue_text("a")
    queue.queue_records("é", ())
    queue.discard()
    assert queue.buffered == 0 and bytes(queue.outgoing()) == b"" and queue.lazy is None


def test_limits_past_sys_maxsize_behave_as_unbounded():
    """The compiled queue keeps the watermarks in C integers: a huge limit is clamped, never an
    OverflowError nor a wrapped-around negative mark (which would make every put "busy")."""
    huge = Limits(high_mark=10**30, low_mark=10**25, output_limit=10**40)
    queue = OutputQueue(Line(), huge)
    assert queue.busy_mark == INLINE_SEND_THRESHOLD
    assert queue.queue_text("abc") == 0 and queue.buffered == 5
    before = queue.queue_records("x" * 100, ())
    assert queue.crossed_after_put(before) == 0
