"""Readiness and HAProxy's agent answer, as pure functions of the serving state.

The process that owns the listeners (the master, or a single server) is in one of four
phases: ``starting`` (not every worker accepts yet), ``serving``, ``draining`` (a stop was asked
with ``drain_delay``: still serving exactly as before, but telling balancers and orchestrators
to send no one new) and ``stopping`` (the graceful stop of ``stop()`` runs).
"""

from __future__ import annotations

__all__ = ["PHASES", "agent_line", "not_ready_reason"]

PHASES = ("starting", "serving", "draining", "stopping")

#: The least weight the agent reports while serving: 0 % would mean "drain" to HAProxy.
MIN_WEIGHT_PERCENT = 1


def not_ready_reason(phase: str, drain_left: float | None = None) -> str | None:
    """``/readyz``'s answer: None when ready, else a one-line reason."""
    if phase == "serving":
        return None
    if phase == "draining" and drain_left is not None:
        return f"draining ({drain_left:.1f} s before the graceful stop)"
    return phase


def agent_line(phase: str, live: int, capacity: int | None) -> str:
    """One line of HAProxy's agent grammar.

    ``capacity`` is workers × concurrency, or None when concurrency is unlimited: then the
    weight stays at 100 %. With a capacity the weight is its free share (at least 1 %) and
    ``maxconn:N`` tells HAProxy the capacity itself. ``drain`` while not serving.

    ``ready`` comes with ``up``: HAProxy keeps a server that its agent once put in DRAIN
    drained until the agent says ``ready``, so without it a node restarted after a drain (a
    rolling deploy) would never get a new client again.
    """
    if phase != "serving":
        return "drain"
    if capacity is None:
        return "up ready 100%"
    if capacity <= 0:
        return f"up ready {MIN_WEIGHT_PERCENT}%"
    free = max(capacity - live, 0) * 100 // capacity
    return f"up ready {max(free, MIN_WEIGHT_PERCENT)}% maxconn:{capacity}"
