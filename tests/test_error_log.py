"""The default error log's limiter: a few lines per kind of client misbehaviour, then a summary.

The kind, not the message text, is limited: every client of an attack has its own address in
its message. Tested on a real logger; the period's end is awaited by polling with a deadline.
"""

from __future__ import annotations

import logging

import gevent
import pytest
from helpers import WAIT

from greensrv.error_log import MALFORMED, PER_IP_REFUSAL, ErrorLogLimiter, error_kind
from greensrv.errors import ConnectionShedError, FilterError, ProxyProtocolError, TLSError


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def limited():
    logger = logging.getLogger("greensrv.test_error_log")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    lines = Lines()
    logger.addHandler(lines)
    limiter = ErrorLogLimiter(logger)
    yield limiter, lines.lines
    limiter.flush()
    logger.removeHandler(lines)


def tls_failure(i: int) -> TLSError:
    return TLSError(f"TLS handshake with ('10.0.{i // 250}.{i % 250}', {40000 + i}) failed: "
                    "the peer does not speak TLS")


def test_kinds_are_greensrvs_errors_by_class_and_none_for_an_application_bug():
    assert error_kind(tls_failure(1)) == "TLS handshake failure"
    assert error_kind(ProxyProtocolError("bad header")) == "PROXY refusal"
    assert error_kind(FilterError("invalid UTF-8 at byte 7")) == MALFORMED
    assert error_kind(ConnectionShedError("shed", "idle", 1.0)) == "shed"
    assert error_kind(ValueError("a bug")) is None


def test_a_thousand_messages_of_one_kind_cost_a_few_lines_and_one_summary(limited):
    limiter, lines = limited
    for i in range(1000):  # every message differs: it names its peer
        limiter.log("srv: error on conn: %s", tls_failure(i), with_traceback=False,
                    peer=f"10.0.{i // 250}.{i % 250}")
    assert len(lines) == limiter.burst + 1
    assert all("TLS handshake with" in line for line in lines[:limiter.burst])
    assert "TLS handshake failure: more than 3" in lines[-1]
    limiter.flush()
    assert len(lines) == limiter.burst + 2
    summary = lines[-1]
    assert summary.startswith("TLS handshake failure: 1000 in the last")
    assert "from 1000 distinct address(es)" in summary and "997 not logged" in summary


def test_kinds_do_not_hide_each_other(limited):
    limiter, lines = limited
    for i in range(20):
        limiter.log("%s", tls_failure(i), with_traceback=False, peer="10.0.0.1")
        limiter.log("%s", FilterError(f"invalid UTF-8 at byte {i}"), with_traceback=False,
                    peer="10.0.0.2")
        limiter.event(PER_IP_REFUSAL, "10.0.0.3", logging.INFO, "refused %s", i)
    limiter.flush()
    for kind in ("TLS handshake failure", MALFORMED, PER_IP_REFUSAL):
        ours = [line for line in lines if line.startswith(f"{kind}: 20 in the last")]
        assert len(ours) == 1 and "from 1 distinct address(es)" in ours[0], lines
    assert len(lines) == 3 * (limiter.burst + 2)


def test_distinct_application_errors_are_each_logged(limited):
    limiter, lines = limited
    for i in range(10):
        try:
            raise ValueError(f"bug number {i}")
        except ValueError as exc:
            limiter.log("app: %s", exc, peer="10.0.0.1")
    assert len(lines) == 10


def test_the_summary_is_written_when_the_period_ends(limited):
    limiter, lines = limited
    limiter.period = 0.2
    for i in range(10):
        limiter.log("%s", tls_failure(i), with_traceback=False, peer="10.0.0.1")
    with gevent.Timeout(WAIT, AssertionError(f"no summary at the period's end: {lines}")):
        while not lines[-1].startswith("TLS handshake failure: 10 in the last"):
            gevent.sleep(0.01)  # poll interval
    limiter.log("%s", tls_failure(99), with_traceback=False, peer="10.0.0.1")
    assert "TLS handshake with" in lines[-1]  # a new period: examples again
