"""The command's settings: one table giving each flag its ``Server`` option, config-file key,
value parser and help.

The command line, ``--config FILE`` (TOML) and ``--check-config`` all read this table, and
``docs/deploy.md``'s table of flags is checked against it, so a setting cannot exist in one place
and be missing from another. A config key is the long flag without its dashes, ``-`` written
``_`` (``--graceful-timeout`` is ``graceful_timeout``). A parser turns what the operator typed
(a string on the command line, a TOML value in the file) into the value, or raises ``ValueError``
with a message that the caller prefixes with the flag or key as typed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .addresses import parse_listen

__all__ = ["FLAGS", "Flag", "by_key", "by_option"]

#: The word that switches a timeout or rate off where the Server documents None as "no limit".
NO_LIMIT = "none"


@dataclass(frozen=True)
class Flag:
    """One setting of the command."""

    flag: str  # the long flag, e.g. "--graceful-timeout"
    option: str | None  # the Server option it sets; None for the command's own settings
    parse: Callable[[Any], Any]  # from a command-line string or a TOML value
    help: str
    metavar: str | None = None  # None: a switch (no value)
    short: str | None = None  # e.g. "-w"
    repeat: bool = False  # may be given several times (the values are a list)
    switch_value: Any = True  # what a switch sets its option to
    group: str = "serving"

    @property
    def key(self) -> str:
        """The config file's key."""
        return self.flag[2:].replace("-", "_")


# -- parsers ------------------------------------------------------------------------------------


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected {what}, not {value!r}") from None
    if not math.isfinite(number):  # NaN would mean forever, infinity too
        raise ValueError(f"expected a finite number of {what}, not {value!r}")
    return number


def number_of(unit: str, positive: bool) -> Callable[[Any], float]:
    """A finite number of ``unit``: more than 0 if ``positive``, else 0 or more."""
    def parse(value: Any) -> float:
        number = _number(value, unit)
        if number < 0 or (positive and number == 0):
            bound = "more than 0" if positive else "0 or more"
            raise ValueError(f"must be {bound} {unit}, not {value!r}")
        return number
    return parse


seconds = number_of("seconds", positive=False)
positive_seconds = number_of("seconds", positive=True)
positive_number = number_of("bytes per second", positive=True)


def or_none(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``parse``, or None for the word ``none`` (where the Server documents None as no limit)."""
    def parse_or_none(value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == NO_LIMIT:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise ValueError(f"{exc} ({NO_LIMIT!r} for no limit)") from None
    parse_or_none.accepts_none = True  # type: ignore[attr-defined]
    return parse_or_none


def integer(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool | float):
            raise ValueError(f"expected a whole number, not {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, not {value!r}") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, not {number}")
        return number
    return parse


def text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, not {value!r}")
    return value


def choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, not {value!r}")
        return str(value)
    return parse


def address(value: Any) -> str:
    entry = text(value)
    try:
        parse_listen(entry)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix("listen: ")) from None
    return entry


def networks(value: Any) -> tuple[str, ...]:
    """``--proxy-allow-from``: comma-separated on the command line, a list in the file."""
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple):
        raise ValueError(f"expected addresses or networks, not {value!r}")
    entries = tuple(str(p).strip() for p in parts if str(p).strip())
    if not entries:
        raise ValueError("no address or network given (loopback is the default: leave the "
                         "setting out for it)")
    return entries


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {value!r}")
    return value


# -- the table ----------------------------------------------------------------------------------

_S = "SECONDS"
FLAGS: tuple[Flag, ...] = (
    Flag("--bind", "listen", address, "listen on HOST:PORT, [V6]:PORT, unix:PATH, fd:N, "
         "systemd or systemd:NAME; repeat for several (default 127.0.0.1:8000, or the "
         "Server's own)", "ADDRESS", short="-b", repeat=True),
    Flag("--workers", "workers", integer(1), "worker processes (default 1, or the Server's own)",
         "N", short="-w"),
    Flag("--reuse-port", "reuse_port", boolean, "each worker binds its own SO_REUSEPORT socket "
         "(docs/deploy.md)"),
    Flag("--concurrency", "concurrency", integer(-1), "most live connections per worker "
         "(-1, the default: unlimited)", "N", short="-c"),
    Flag("--graceful-timeout", "shutdown_timeout", seconds, "how long a stop or reload lets "
         "connections finish (default 10)", _S),
    Flag("--worker-timeout", "worker_timeout", positive_seconds, "kill and replace a worker "
         "whose hub is blocked this long (default 30)", _S),
    Flag("--idle-timeout", "idle_timeout", or_none(positive_seconds), "close a connection "
         "that sends nothing this long (default none)", _S),
    Flag("--record-timeout", "record_timeout", or_none(positive_seconds), "most seconds a "
         "record may take to arrive once begun (default 30; none: off)", _S),
    Flag("--record-min-rate", "record_min_rate", or_none(positive_number), "bytes/s a record "
         "must keep arriving at after --record-grace (default 500; none: off)", "BYTES_PER_S"),
    Flag("--record-grace", "record_grace", seconds, "seconds before --record-min-rate applies "
         "(default 5)", _S),
    Flag("--record-start-timeout", "record_start_timeout", or_none(positive_seconds), "most "
         "seconds before a record's first byte (default none)", _S),
    Flag("--handshake-timeout", "handshake_timeout", seconds, "most seconds for a TLS "
         "handshake (default 10)", _S),
    Flag("--max-connections-per-ip", "max_connections_per_ip", or_none(integer(1)), "live "
         "connections per client IP (default none: unlimited)", "N"),
    Flag("--no-shedding", "shedding", boolean, "at the concurrency limit, never close the "
         "connections making the least progress (docs/overload.md)", switch_value=False),
    Flag("--shed-min-age", "shed_min_age", seconds, "a connection silent for less than this is "
         "never shed (default 0.1)", _S),
    Flag("--shed-proven-idle", "shed_proven_idle", seconds, "a connection that has completed a "
         "record is shed only once idle this long, and only when no other qualifies "
         "(default 5)", _S),
    Flag("--defer-accept", "defer_accept", or_none(positive_seconds), "TCP_DEFER_ACCEPT: a "
         "client reaches a worker only once it has sent data; only for protocols where the "
         "client speaks first (default none; docs/overload.md)", _S),
    Flag("--high-mark", "high_mark", integer(1), "queued output bytes that pause reading "
         "(default 524288)", "BYTES"),
    Flag("--low-mark", "low_mark", integer(0), "queued output bytes below which reading "
         "resumes (default 131072)", "BYTES"),
    Flag("--output-limit", "output_limit", integer(1), "queued output bytes past which a "
         "client is cut off (default 8388608)", "BYTES"),
    Flag("--backlog", "backlog", integer(1), "clients the kernel queues per listening socket "
         "until accepted (default 1024; capped by net.core.somaxconn)", "N"),
    Flag("--no-idle-greenlets", "idle_greenlets", boolean, "a client_input application's "
         "idle connections wait without a greenlet; each event runs in one taken for it "
         "(docs/idle-greenlets.md)", switch_value=False),
    Flag("--no-client-shutdown-on-error", "client_shutdown_on_error", boolean, "keep a "
         "connection open after client_error", switch_value=False),
    Flag("--name", "name", text, "the server's name in logs (default greensrv, or the "
         "Server's own)", "NAME"),
    Flag("--certfile", None, text, "certificate chain (PEM); turns TLS on", "FILE", group="TLS"),
    Flag("--keyfile", None, text, "private key (PEM), if not in --certfile", "FILE", group="TLS"),
    Flag("--ca-certs", None, text, "CA bundle; clients must present a certificate it signed",
         "FILE", group="TLS"),
    Flag("--proxy-protocol", "proxy_protocol", choice("v1", "v2", "any"), "every connection "
         "starts with a PROXY header of this version (v1, v2 or any)", "VERSION", group="PROXY"),
    Flag("--proxy-allow-from", "proxy_trusted", networks, "addresses allowed to send the "
         "header (default loopback); needs --proxy-protocol", "CIDR[,CIDR...]", group="PROXY"),
    Flag("--proxy-timeout", "proxy_timeout", positive_seconds, "most seconds to receive the "
         "whole PROXY header (default 5)", _S, group="PROXY"),
    Flag("--admin-bind", "admin", or_none(text), "serve /metrics (Prometheus), /livez and "
         "/readyz over HTTP here (needs greensrv[metrics]; default none; docs/operations.md)",
         "HOST:PORT", group="operations"),
    Flag("--agent-bind", "agent", or_none(text), "answer HAProxy's agent-check here: "
         "'up N%% ready' (free capacity) or 'drain' (default none)", "HOST:PORT",
         group="operations"),
    Flag("--drain-delay", "drain_delay", seconds, "on TERM/INT, stay not ready but serving "
         "this long before the graceful stop (default 0)", _S, group="operations"),
    Flag("--access-log", None, text, "one line per ended connection to FILE (reopened on "
         "SIGUSR1) or standard output (-)", "FILE|-", group="operations"),
    Flag("--access-log-format", "access_log_format", choice("text", "json"), "the connection "
         "log's format: text (the default) or json", "FORMAT", group="operations"),
    Flag("--max-worker-connections", None, integer(1), "replace a worker gracefully once it "
         "has accepted N connections (for leaks; default never)", "N", group="process"),
    Flag("--max-worker-connections-jitter", None, integer(0), "add a random 0..J to "
         "--max-worker-connections per worker, so they are not all replaced at once", "J",
         group="process"),
    Flag("--user", None, text, "run the workers as this user (the master binds first, as "
         "root)", "USER", group="process"),
    Flag("--group", None, text, "run the workers with this group (default the user's)",
         "GROUP", group="process"),
    Flag("--pid", None, text, "write the master's PID to FILE (refused while it names a "
         "running process)", "FILE", group="process"),
    Flag("--log-file", None, text, "write the log to FILE (default stderr); SIGUSR1 reopens it",
         "FILE", group="process"),
    Flag("--log-level", None, choice("debug", "info", "warning", "error", "critical"),
         "default info; debug also shows tracebacks of errors", "LEVEL", group="process"),
    Flag("--app-dir", None, text, "look for MODULE here first (default the current "
         "directory)", "DIR", group="process"),
    Flag("--reload", None, boolean, "development: reload as HUP does when a .py file under "
         "the application's directory changes", group="process"),
)


def by_key() -> dict[str, Flag]:
    return {f.key: f for f in FLAGS}


def by_option() -> dict[str, Flag]:
    return {f.option: f for f in FLAGS if f.option is not None}
