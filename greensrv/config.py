"""A server's configuration: every option checked once, then frozen.

:class:`ServerConfig.from_options` takes the keyword options of :class:`~greensrv.Server`
exactly as given, checks each (an error names the option as the user wrote it), fills in the
defaults of ``defaults.py`` and returns a frozen object holding what the running parts need:
the per-client callbacks, the filter factories, one :class:`~greensrv.limits.Limits`, the
parsed ``listen`` entries, the PROXY settings, the shedding policy and the process options.
Nothing else in the package checks an option. :meth:`ServerConfig.replace` makes the same
configuration with some options changed (the command line's overrides).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .addresses import ListenSpec, check_defer_accept, parse_listen_entries
from .admin import check_ops_addresses
from .connection_ends import LOG_FORMATS
from .defaults import (
    DEFAULT_ACCESS_LOG_FORMAT,
    DEFAULT_BACKLOG,
    DEFAULT_CONCURRENCY,
    DEFAULT_DRAIN_DELAY,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_HIGH_MARK,
    DEFAULT_HOST,
    DEFAULT_IDLE_GREENLETS,
    DEFAULT_LOW_MARK,
    DEFAULT_NAME,
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_PORT,
    DEFAULT_PROXY_TIMEOUT,
    DEFAULT_PROXY_TRUSTED,
    DEFAULT_RECORD_GRACE,
    DEFAULT_RECORD_MIN_RATE,
    DEFAULT_RECORD_TIMEOUT,
    DEFAULT_SHED_MIN_AGE,
    DEFAULT_SHED_PROVEN_IDLE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_WORKER_TIMEOUT,
)
from .filters import Filter, Line
from .limits import Limits
from .options import check_int, check_seconds, filter_factory
from .overload import ShedPolicy
from .proxy_io import ProxySettings, proxy_settings

__all__ = ["OPTION_DEFAULTS", "Option", "ServerConfig"]

#: Every ``Server`` option and its default (``handler`` included): what ``from_options`` fills
#: in for an option not given, and the names ``replace`` accepts.
OPTION_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "handler": None, "client_input": None, "host": None, "port": None, "listen": None,
    "concurrency": DEFAULT_CONCURRENCY, "filter": None, "input_filter": None,
    "output_filter": None, "client_pre_connect": None, "client_connected": None,
    "client_args": (), "client_disconnected": None, "client_error": None,
    "client_shutdown_on_error": True, "client_flushed": None, "high_mark": DEFAULT_HIGH_MARK,
    "low_mark": DEFAULT_LOW_MARK, "client_high": None, "client_low": None, "started": None,
    "error": None, "shutdown_timeout": DEFAULT_SHUTDOWN_TIMEOUT,
    "output_limit": DEFAULT_OUTPUT_LIMIT, "idle_timeout": None, "ssl_context": None,
    "handshake_timeout": DEFAULT_HANDSHAKE_TIMEOUT, "record_timeout": DEFAULT_RECORD_TIMEOUT,
    "record_min_rate": DEFAULT_RECORD_MIN_RATE, "record_grace": DEFAULT_RECORD_GRACE,
    "record_start_timeout": None, "shedding": True, "shed_min_age": DEFAULT_SHED_MIN_AGE,
    "shed_proven_idle": DEFAULT_SHED_PROVEN_IDLE, "defer_accept": None,
    "max_connections_per_ip": None, "proxy_protocol": None,
    "proxy_trusted": DEFAULT_PROXY_TRUSTED, "proxy_timeout": DEFAULT_PROXY_TIMEOUT,
    "name": DEFAULT_NAME, "workers": None, "reuse_port": False,
    "worker_timeout": DEFAULT_WORKER_TIMEOUT, "backlog": DEFAULT_BACKLOG, "admin": None,
    "agent": None, "drain_delay": DEFAULT_DRAIN_DELAY, "access_log": False,
    "access_log_format": DEFAULT_ACCESS_LOG_FORMAT, "idle_greenlets": DEFAULT_IDLE_GREENLETS,
})

#: The callbacks, each checked to be callable (``handler`` and ``client_input`` are too).
_CALLBACKS = ("client_input", "client_pre_connect", "client_connected", "client_disconnected",
              "client_error", "client_flushed", "client_high", "client_low", "started", "error")


@dataclass(frozen=True)
class ServerConfig:
    """What a server was told, checked; see the module. Build it with :meth:`from_options`."""

    #: The options as given (defaults filled in): ``Server.options`` and :meth:`replace`.
    options: Mapping[str, Any]
    handler: Callable[..., Any] | None
    client_input: Callable[..., Any] | None
    client_pre_connect: Callable[..., Any] | None
    client_connected: Callable[..., Any] | None
    client_args: tuple[Any, ...]
    client_disconnected: Callable[..., Any] | None
    #: The application's client_error, or None (the server then logs).
    client_error: Callable[..., Any] | None
    client_shutdown_on_error: bool
    #: False: a callback-style connection waits for input without a greenlet (event_life.py).
    idle_greenlets: bool
    #: client_flushed / client_high / client_low by ConnectionHooks key, only those given.
    output_callbacks: Mapping[str, Callable[..., Any]]
    started: Callable[..., Any] | None
    error: Callable[..., Any] | None
    #: A new input filter per connection, and a new output filter (None: the same one).
    make_in: Callable[[], Filter]
    make_out: Callable[[], Filter] | None
    concurrency: int
    limits: Limits
    shutdown_timeout: float
    max_connections_per_ip: int | None
    ssl_context: Any
    proxy: ProxySettings | None
    #: The shedding policy, or None under ``shedding=False``.
    shed_policy: ShedPolicy | None
    name: str
    listen: tuple[ListenSpec, ...]
    #: Seconds of TCP_DEFER_ACCEPT on the listening sockets, or None (off).
    defer_accept: float | None
    workers: int | None
    reuse_port: bool
    worker_timeout: float
    #: Operations (docs/operations.md): the admin endpoint's and the agent port's "HOST:PORT".
    admin: str | None
    agent: str | None
    drain_delay: float
    #: The connection log's format, or None when it is off.
    access_log_format: str | None
    backlog: int

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ServerConfig:
        """Check every option of ``options`` (``Server``'s keywords; missing ones default)."""
        unknown = sorted(set(options) - set(OPTION_DEFAULTS))
        if unknown:
            raise TypeError(f"Server got an unexpected keyword argument {unknown[0]!r}")
        given = {**OPTION_DEFAULTS, **options}
        o = dict(given)
        handler, client_input = o["handler"], o["client_input"]
        if (handler is None) == (client_input is None):
            raise TypeError("Server needs exactly one of handler and client_input "
                            f"(got {'both' if handler is not None else 'neither'})")
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        for key in _CALLBACKS:
            if o[key] is not None and not callable(o[key]):
                raise TypeError(f"{key} must be callable, not {type(o[key]).__name__}")
        idle_greenlets = _idle_greenlets(o["idle_greenlets"], handler)
        make_in, make_out = _filters(o["filter"], o["input_filter"], o["output_filter"])
        check_int("concurrency", o["concurrency"], minimum=-1)
        limits = Limits(high_mark=o["high_mark"], low_mark=o["low_mark"],
                        output_limit=o["output_limit"], idle_timeout=o["idle_timeout"],
                        record_timeout=o["record_timeout"],
                        record_min_rate=o["record_min_rate"], record_grace=o["record_grace"],
                        record_start_timeout=o["record_start_timeout"],
                        handshake_timeout=o["handshake_timeout"])
        check_seconds("shutdown_timeout", o["shutdown_timeout"])
        if o["max_connections_per_ip"] is not None:
            check_int("max_connections_per_ip", o["max_connections_per_ip"], minimum=1)
        ssl_context = o["ssl_context"]
        if ssl_context is not None and not hasattr(ssl_context, "wrap_socket"):
            raise TypeError(f"ssl_context must be an ssl.SSLContext, "
                            f"not {type(ssl_context).__name__}")
        proxy = proxy_settings(o["proxy_protocol"], o["proxy_trusted"], o["proxy_timeout"])
        listen = _listen(o["listen"], o["host"], o["port"])
        defer_accept = check_defer_accept(o["defer_accept"], listen)
        shed_policy = _shed_policy(o["shedding"], o["shed_min_age"], o["shed_proven_idle"],
                                   limits.record_min_rate, deferred=defer_accept is not None)
        if o["workers"] is not None:
            check_int("workers", o["workers"], minimum=1)
        check_seconds("worker_timeout", o["worker_timeout"], positive=True)
        admin, agent = check_ops_addresses(o["admin"], o["agent"])
        check_seconds("drain_delay", o["drain_delay"])
        if o["access_log_format"] not in LOG_FORMATS:
            raise ValueError(f"access_log_format must be one of {', '.join(LOG_FORMATS)}, "
                             f"not {o['access_log_format']!r}")
        check_int("backlog", o["backlog"], minimum=1)
        return cls(
            options=MappingProxyType(given), handler=handler, client_input=client_input,
            client_pre_connect=o["client_pre_connect"],
            client_connected=o["client_connected"], client_args=tuple(o["client_args"]),
            client_disconnected=o["client_disconnected"], client_error=o["client_error"],
            client_shutdown_on_error=bool(o["client_shutdown_on_error"]),
            idle_greenlets=idle_greenlets,
            output_callbacks=MappingProxyType({
                key: o[f"client_{key}"] for key in ("flushed", "high", "low")
                if o[f"client_{key}"] is not None}),
            started=o["started"], error=o["error"], make_in=make_in, make_out=make_out,
            concurrency=o["concurrency"], limits=limits,
            shutdown_timeout=float(o["shutdown_timeout"]),
            max_connections_per_ip=o["max_connections_per_ip"], ssl_context=ssl_context,
            proxy=proxy, shed_policy=shed_policy, name=o["name"],
            listen=listen, defer_accept=defer_accept, workers=o["workers"],
            reuse_port=bool(o["reuse_port"]), worker_timeout=float(o["worker_timeout"]),
            backlog=o["backlog"], admin=admin, agent=agent,
            drain_delay=float(o["drain_delay"]),
            access_log_format=o["access_log_format"] if o["access_log"] else None)

    def replace(self, **changes: Any) -> ServerConfig:
        """The same options with ``changes`` applied, all checked again.

        A ``listen`` change drops ``host`` and ``port`` (and the reverse), since only one of the
        two forms may be given.
        """
        options = dict(self.options)
        if changes.get("listen") is not None:
            options.update(host=None, port=None)
        elif changes.get("host") is not None or changes.get("port") is not None:
            options["listen"] = None
        options.update(changes)
        return ServerConfig.from_options(options)


def _filters(filter: Any, input_filter: Any,
             output_filter: Any) -> tuple[Callable[[], Filter], Callable[[], Filter] | None]:
    if filter is not None and (input_filter is not None or output_filter is not None):
        raise TypeError("give filter, or input_filter and output_filter, not both")
    if (input_filter is None) != (output_filter is None):
        raise TypeError("input_filter and output_filter go together: give both or neither")
    if input_filter is not None:
        return (filter_factory(input_filter, "input_filter"),
                filter_factory(output_filter, "output_filter"))
    return filter_factory(filter if filter is not None else Line(), "filter"), None


def _idle_greenlets(idle_greenlets: Any, handler: Any) -> bool:
    if not isinstance(idle_greenlets, bool):
        raise TypeError(f"idle_greenlets must be True or False, "
                        f"not {type(idle_greenlets).__name__}")
    if not idle_greenlets and handler is not None:
        raise TypeError("idle_greenlets is for the callback style (client_input) only, not "
                        "a handler: a handler owns its greenlet for the whole connection")
    return idle_greenlets


def _shed_policy(shedding: Any, shed_min_age: Any, shed_proven_idle: Any,
                 record_min_rate: float | None, deferred: bool) -> ShedPolicy | None:
    """The shedding policy. ``deferred``: the listening sockets have ``defer_accept``, so a
    connection that reaches the server without a byte has been silent for the whole deferral
    already, and ``shed_min_age`` does not spare it again."""
    if not isinstance(shedding, bool):
        raise TypeError(f"shedding must be True or False, not {type(shedding).__name__}")
    check_seconds("shed_min_age", shed_min_age)
    check_seconds("shed_proven_idle", shed_proven_idle)
    if not shedding:
        return None
    return ShedPolicy(0.0 if deferred else float(shed_min_age),
                      record_min_rate or DEFAULT_RECORD_MIN_RATE, float(shed_proven_idle))


def _listen(listen: Any, host: Any, port: Any) -> tuple[ListenSpec, ...]:
    if listen is not None:
        if host is not None or port is not None:
            raise TypeError("give listen, or host and port, not both")
        return parse_listen_entries(listen)
    if port is not None:
        check_int("port", port, minimum=0)
        if port > 65535:
            raise ValueError(f"port must be at most 65535, not {port}")
    return (ListenSpec("tcp", (host if host is not None else DEFAULT_HOST,
                               port if port is not None else DEFAULT_PORT)),)


class Option:
    """An attribute of an object with a ``config`` that reads one of its checked options
    (``server.name``, or a dotted path: ``Option("limits.high_mark")``); read-only."""

    def __init__(self, path: str = "") -> None:
        self.path = path

    def __set_name__(self, owner: type, name: str) -> None:
        self.path = self.path or name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.config
        for part in self.path.split("."):
            value = getattr(value, part)
        return value
