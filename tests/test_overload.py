"""greensrv.overload without sockets: the record clock's arithmetic and whom shedding picks."""

from __future__ import annotations

import pytest

from greensrv.overload import (
    IDLE,
    IDLE_PROVEN,
    SLOW_RECORD,
    Progress,
    RecordClock,
    ShedPolicy,
    describe,
)


class TestRecordClock:
    def test_a_record_gets_the_grace_plus_a_second_per_min_rate_bytes(self):
        clock = RecordClock(max_time=None, min_rate=500, grace=5)
        assert clock.deadline(100.0, 0) == 105.0
        assert clock.deadline(100.0, 1000) == 107.0

    def test_a_client_dripping_a_byte_a_second_is_cut_after_about_the_grace(self):
        clock = RecordClock(max_time=30, min_rate=500, grace=5)
        # After t seconds of dripping it has t bytes; it is overdue once t passes 5 + t/500.
        t = next(t for t in (x / 100 for x in range(1, 3000))
                 if t > clock.allowed(int(t)))  # type: ignore[operator]
        assert 5.0 < t < 5.1

    def test_a_slow_steady_upload_keeps_earning_time_until_record_timeout(self):
        clock = RecordClock(max_time=30, min_rate=500, grace=5)
        for t in range(1, 30):  # 1,000 bytes a second: twice the minimum rate
            assert t < clock.allowed(1000 * t)  # type: ignore[operator]
        assert clock.allowed(10**9) == 30

    def test_record_timeout_alone_is_the_old_flat_limit(self):
        clock = RecordClock(max_time=2, min_rate=None)
        assert clock.deadline(10.0, 0) == clock.deadline(10.0, 10**6) == 12.0
        assert clock.active

    def test_both_off_means_no_deadline(self):
        clock = RecordClock(max_time=None, min_rate=None)
        assert not clock.active
        assert clock.deadline(0.0, 10) is None

    def test_overdue_reason_names_the_limit_that_was_hit(self):
        flat = RecordClock(max_time=2, min_rate=500, grace=5)
        assert "record_timeout=2 s" in flat.overdue_reason(0.0, 7, 2.0)
        rate = RecordClock(max_time=30, min_rate=500, grace=5)
        text = rate.overdue_reason(0.0, 6, 6.0)
        assert "record_min_rate=500 bytes/s" in text and "6 bytes in 6.0 s" in text


def waiting(accepted: float, since: float, started: float | None = None,
            got: int = 0, proven: bool = False) -> Progress:
    return Progress(accepted=accepted, waiting_since=since, record_started=started,
                    record_bytes=got, proven=proven)


class TestShedPolicy:
    policy = ShedPolicy(min_age=0.01, min_rate=500)

    def test_a_connection_busy_in_its_handler_is_never_chosen(self):
        busy = Progress(accepted=0.0, waiting_since=None)
        assert self.policy.choose([("busy", busy)], now=100.0, n=5) == []

    def test_a_connection_accepted_a_moment_ago_is_spared(self):
        young = waiting(accepted=99.995, since=99.995)
        assert self.policy.choose([("young", young)], now=100.0, n=5) == []
        assert self.policy.next_eligible([young], now=100.0) == pytest.approx(0.005)

    def test_a_connection_between_records_is_spared_until_idle_for_min_age(self):
        rr_client = waiting(accepted=0.0, since=99.995)  # old, but answered 5 ms ago
        assert self.policy.judge(rr_client, now=100.0) is None
        assert self.policy.judge(rr_client, now=100.006) == (IDLE, 99.995)

    def test_a_record_begun_a_moment_ago_is_spared_its_bytes_worth_of_time(self):
        fresh = waiting(accepted=99.999, since=99.999, started=99.999, got=5)  # 10 ms' worth
        assert self.policy.judge(fresh, now=100.005) is None
        assert self.policy.judge(fresh, now=100.010) == (SLOW_RECORD, 99.999)

    def test_a_record_arriving_at_a_good_rate_is_progress(self):
        upload = waiting(accepted=0.0, since=99.0, started=90.0, got=10 * 500 + 1)
        assert self.policy.judge(upload, now=100.0) is None
        assert self.policy.next_eligible([upload], now=100.0) == pytest.approx(0.002)

    def test_idle_and_dripping_connections_qualify_with_their_reasons(self):
        idle = waiting(accepted=0.0, since=50.0)
        drip = waiting(accepted=0.0, since=99.9, started=95.0, got=5)
        assert self.policy.judge(idle, now=100.0) == (IDLE, 50.0)
        assert self.policy.judge(drip, now=100.0) == (SLOW_RECORD, 95.0)

    def test_silent_first_then_slow_records_oldest_first_ties_to_the_first_accepted(self):
        candidates = [
            ("silent since 60", waiting(accepted=10.0, since=60.0)),
            ("dripping since 40", waiting(accepted=30.0, since=99.0, started=40.0, got=3)),
            ("busy", Progress(accepted=0.0, waiting_since=None)),
            ("silent since 60, accepted first", waiting(accepted=5.0, since=60.0)),
            ("silent since 90", waiting(accepted=1.0, since=90.0)),
        ]
        chosen = self.policy.choose(candidates, now=100.0, n=4)
        assert [v.key for v in chosen] == ["silent since 60, accepted first", "silent since 60",
                                           "silent since 90", "dripping since 40"]
        assert [v.reason for v in chosen] == [IDLE, IDLE, IDLE, SLOW_RECORD]

    def test_a_proven_connection_between_records_is_kept_for_proven_idle(self):
        keep_alive = waiting(accepted=0.0, since=99.0, proven=True)  # answered 1 s ago
        assert self.policy.judge(keep_alive, now=100.0) is None
        assert self.policy.next_eligible([keep_alive], now=100.0) == pytest.approx(
            self.policy.proven_idle - 1.0)
        assert self.policy.judge(keep_alive, now=99.0 + self.policy.proven_idle) == (
            IDLE_PROVEN, 99.0)

    def test_a_proven_idle_connection_goes_only_when_no_unproven_one_qualifies(self):
        long_idle = ("proven, idle 60 s", waiting(accepted=0.0, since=40.0, proven=True))
        silent = ("silent 1 s", waiting(accepted=99.0, since=99.0))
        assert [v.key for v in self.policy.choose([long_idle, silent], 100.0, 2)] == [
            "silent 1 s"]
        assert [v.key for v in self.policy.choose([long_idle], 100.0, 2)] == [
            "proven, idle 60 s"]

    def test_proven_slow_records_rank_after_every_unproven_one(self):
        proven_drip = ("proven drip", waiting(0.0, 99.0, started=10.0, got=1, proven=True))
        new_drip = ("new drip", waiting(98.0, 99.0, started=99.0, got=1))
        silent = ("silent", waiting(99.0, 99.5))
        chosen = self.policy.choose([proven_drip, new_drip, silent], 100.0, 3)
        assert [v.key for v in chosen] == ["silent", "new drip", "proven drip"]

    def test_never_more_than_asked(self):
        many = [(i, waiting(accepted=0.0, since=float(i))) for i in range(50)]
        assert [v.key for v in self.policy.choose(many, now=100.0, n=4)] == [0, 1, 2, 3]
        assert self.policy.choose(many, now=100.0, n=0) == []

    def test_the_message_is_the_same_for_every_connection_shed_for_a_reason(self):
        a, b = self.policy.choose([("a", waiting(0.0, 1.0)), ("b", waiting(0.0, 2.0))], 100.0, 2)
        assert describe(a, self.policy) == describe(b, self.policy)
        assert describe(a, self.policy).startswith("shed at capacity")
        drip = self.policy.choose([("d", waiting(0.0, 99.0, started=90.0, got=1))], 100.0, 1)[0]
        assert "500 bytes/s" in describe(drip, self.policy)
        kept = self.policy.choose([("k", waiting(0.0, 1.0, proven=True))], 100.0, 1)[0]
        assert "idle between records" in describe(kept, self.policy)
