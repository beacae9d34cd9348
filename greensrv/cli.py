"""The ``greensrv`` command: ``greensrv [OPTIONS] MODULE:NAME`` runs a master with workers.

``NAME`` is a handler function ``(conn)`` or an unstarted :class:`~greensrv.Server`; options
given here override the server's own. The command always runs a master (``docs/deploy.md``), so
``HUP`` reloads even one worker: each reloaded worker imports the application again, as it is on
disk then. Errors are one line on stderr and a non-zero exit; ``--log-level debug`` adds the
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import _accelerate
from ._version import __version__
from .config import OPTION_DEFAULTS, ServerConfig
from .defaults import DEFAULT_BIND, DEFAULT_WORKERS
from .errors import GreensrvError
from .log_files import route_access_log
from .metrics import registered_collectors, unregister_collectors
from .server import Server
from .tls import server_context
from .workers import Master

__all__ = ["main", "version_line"]

log = logging.getLogger("greensrv")

LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(message)s"


def version_line() -> str:
    """What ``--version`` prints: the version and which modules run compiled (docs/compiled.md),
    since a build without a C compiler runs the same code, only slower."""
    compiled = _accelerate.compiled
    built = f"compiled: {', '.join(compiled)}" if compiled else "pure Python, nothing compiled"
    return f"greensrv {__version__} ({built})"


class _PrintVersion(argparse.Action):
    """``--version``: argparse's own action would wrap the list of compiled modules."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any,
                 option_string: str | None = None) -> None:
        sys.stdout.write(version_line() + "\n")
        parser.exit()


class CommandError(Exception):
    """A problem the command reports in one line (bad MODULE:NAME, bad option value)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage error in one line, like every other error of the command."""
        self.exit(2, f"greensrv: error: {message} (greensrv --help lists the options)\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="greensrv",
        description="Run a greensrv server: a master process that binds the listening sockets "
                    "and supervises forked workers. TERM/INT stop gracefully, HUP reloads "
                    "the application without dropping a connection, TTIN/TTOU add or remove "
                    "a worker.",
        epilog="MODULE:NAME names a handler function (conn) or an unstarted greensrv.Server; "
               "for a Server, options not given here are its own. See docs/deploy.md.")
    ap.add_argument("app", metavar="MODULE:NAME",
                    help="the application, e.g. myapp:handler or myapp.server:server")
    ap.add_argument("-b", "--bind", action="append", metavar="ADDRESS",
                    help="listen on HOST:PORT, [V6]:PORT, unix:PATH, fd:N, systemd or "
                         f"systemd:NAME; repeat for several (default {DEFAULT_BIND}, or the "
                         "Server's own)")
    ap.add_argument("-w", "--workers", type=int, metavar="N",
                    help=f"worker processes (default {DEFAULT_WORKERS}, or the Server's own)")
    ap.add_argument("--reuse-port", action="store_true", default=None,
                    help="each worker binds its own SO_REUSEPORT socket (docs/deploy.md)")
    ap.add_argument("-c", "--concurrency", type=int, metavar="N",
                    help="most live connections per worker (default unlimited)")
    ap.add_argument("--graceful-timeout", type=float, metavar="SECONDS",
                    help="how long a stop or reload lets connections finish (default 10)")
    ap.add_argument("--worker-timeout", type=float, metavar="SECONDS",
                    help="kill and replace a worker whose hub is blocked this long (default 30)")
    tls = ap.add_argument_group("TLS")
    tls.add_argument("--certfile", metavar="FILE", help="certificate chain (PEM); turns TLS on")
    tls.add_argument("--keyfile", metavar="FILE", help="private key (PEM), if not in certfile")
    tls.add_argument("--ca-certs", metavar="FILE",
                     help="CA bundle; clients must present a certificate it signed")
    proxy = ap.add_argument_group("PROXY protocol (behind HAProxy, nginx, a load balancer)")
    proxy.add_argument("--proxy-protocol", choices=("v1", "v2", "any"),
                       help="every connection starts with a PROXY header of this version")
    proxy.add_argument("--proxy-allow-from", metavar="CIDR[,CIDR...]",
                       help="addresses allowed to send the header (default loopback)")
    ops = ap.add_argument_group("operations (docs/operations.md)")
    ops.add_argument("--admin-bind", metavar="HOST:PORT",
                     help="serve /metrics (Prometheus), /livez and /readyz over HTTP here "
                          "(needs greensrv[metrics])")
    ops.add_argument("--agent-bind", metavar="HOST:PORT",
                     help="answer HAProxy's agent-check here: 'up N%%' or 'drain'")
    ops.add_argument("--drain-delay", type=float, metavar="SECONDS",
                     help="on TERM/INT, stay not ready but serving this long before the "
                          "graceful stop (default 0)")
    ops.add_argument("--access-log", metavar="PATH|-",
                     help="one line per ended connection to PATH (reopened on SIGUSR1) or "
                          "standard output (-)")
    ops.add_argument("--access-log-format", choices=("text", "json"),
                     help="the connection log's format (default text)")
    ap.add_argument("--log-level", default="info",
                    choices=("debug", "info", "warning", "error", "critical"),
                    help="default %(default)s; debug also shows tracebacks of errors")
    ap.add_argument("--pid", metavar="FILE", help="write the master's PID to FILE")
    ap.add_argument("--version", action=_PrintVersion, nargs=0,
                    help="print the version and which modules run compiled, then exit")
    return ap


def load_target(spec: str) -> Any:
    """Import ``MODULE:NAME`` and return the object; CommandError in one line if impossible."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise CommandError(f"{spec!r}: expected MODULE:NAME, e.g. myapp:handler")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise CommandError(f"cannot import {module_name!r} (from {spec!r}): "
                           f"{type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in name.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CommandError(f"{spec!r}: module {module_name!r} has no {name!r}") from None
    if isinstance(target, Server):
        if target.started or target.closed:
            raise CommandError(f"{spec!r}: the Server was already started; give an unstarted "
                               "one (the command starts it in each worker)")
        return target
    if inspect.isclass(target) or not callable(target):
        raise CommandError(f"{spec!r} is a {type(target).__name__}: expected a handler "
                           "function (conn) or an unstarted greensrv.Server")
    return target


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The Server options the command line sets (only those given)."""
    given: dict[str, Any] = {}
    if args.bind:
        given.update(listen=list(args.bind), host=None, port=None)
    for option, value in (("workers", args.workers), ("reuse_port", args.reuse_port),
                          ("concurrency", args.concurrency),
                          ("shutdown_timeout", args.graceful_timeout),
                          ("worker_timeout", args.worker_timeout),
                          ("proxy_protocol", args.proxy_protocol),
                          ("admin", args.admin_bind), ("agent", args.agent_bind),
                          ("drain_delay", args.drain_delay),
                          ("access_log_format", args.access_log_format)):
        if value is not None:
            given[option] = value
    if args.proxy_allow_from:
        given["proxy_trusted"] = tuple(p.strip() for p in args.proxy_allow_from.split(",")
                                       if p.strip())
    if args.certfile:
        given["ssl_context"] = server_context(args.certfile, args.keyfile, cafile=args.ca_certs,
                                              require_client_cert=args.ca_certs is not None)
    elif args.keyfile or args.ca_certs:
        raise CommandError("--keyfile and --ca-certs need --certfile")
    if args.access_log:
        given["access_log"] = True
    elif args.access_log_format:
        raise CommandError("--access-log-format needs --access-log")
    return given


def build_server(target: Any, given: dict[str, Any]) -> Server:
    """A new Server: the target's options (or the handler with defaults), then ``given``."""
    unknown = [k for k in given if k not in OPTION_DEFAULTS]
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise CommandError(f"{flags}: this greensrv's Server has no option {unknown[0]!r} yet")
    try:
        if isinstance(target, Server):
            config = target.config.replace(**given)
        else:
            config = ServerConfig.from_options({"handler": target, "listen": [DEFAULT_BIND]})
            config = config.replace(**given)
        if config.workers is None:
            config = config.replace(workers=DEFAULT_WORKERS)
    except (TypeError, ValueError, ImportError) as exc:
        raise CommandError(_flag_names(str(exc))) from exc
    return Server.from_config(config)


class Application:
    """Loads ``MODULE:NAME`` in the master, and again from disk in each reloaded worker.

    A reload forgets the modules that the first import added from the application's own
    directory (never installed packages or greensrv itself) and imports them afresh.
    """

    def __init__(self, spec: str, given: dict[str, Any]) -> None:
        self.spec = spec
        self.given = given
        before = set(sys.modules)
        registered = registered_collectors()
        self.server = build_server(load_target(spec), given)
        self.root = _application_root(spec)
        self.modules = [name for name in set(sys.modules) - before
                        if _is_under(sys.modules[name], self.root)]
        #: The application's prometheus_client metrics: a reload's fresh import makes new ones.
        self.collectors = registered_collectors() - registered

    def reload(self) -> Server:
        for name in self.modules:
            sys.modules.pop(name, None)
        unregister_collectors(self.collectors)
        importlib.invalidate_caches()
        return build_server(load_target(self.spec), self.given)


def _application_root(spec: str) -> Path | None:
    module = sys.modules.get(spec.partition(":")[0].split(".")[0])
    origin = getattr(module, "__file__", None)
    if origin is None:
        return None
    path = Path(origin).resolve().parent
    return path.parent if Path(origin).name == "__init__.py" else path


def _is_under(module: Any, root: Path | None) -> bool:
    origin = getattr(module, "__file__", None)
    if root is None or origin is None or "site-packages" in origin:
        return False
    return Path(origin).resolve().is_relative_to(root)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = parser().parse_args(argv)
    debug = args.log_level == "debug"
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like python -m: the application is found from here
    try:
        given = overrides(args)
        if args.admin_bind is not None:
            _prepare_metrics()
        if args.access_log:
            route_access_log(args.access_log)
        application = Application(args.app, given)
        return _run(application, args.pid)
    except (CommandError, GreensrvError, OSError, ValueError) as exc:
        if debug:
            log.exception("greensrv: error")
        sys.stderr.write(f"greensrv: error: {_one_line(exc)}\n")
        return 1
    except KeyboardInterrupt:
        return 1


def _prepare_metrics() -> None:
    """Before the application is imported: prometheus_client's multiprocess mode, so that
    its metrics made at import time are summed over the workers (docs/operations.md)."""
    from .metrics import require_metrics_libraries, setup_multiprocess

    try:
        require_metrics_libraries("--admin-bind")
    except ImportError as exc:
        raise CommandError(str(exc)) from exc
    setup_multiprocess()


def _run(application: Application, pidfile: str | None) -> int:
    factory: Callable[[], Server] = application.reload
    if pidfile:
        Path(pidfile).write_text(f"{os.getpid()}\n")
    try:
        Master(application.server, factory).run()
    finally:
        if pidfile:
            try:
                os.unlink(pidfile)
            except OSError:
                pass
    return 0


#: Options whose errors name them as Server options; the command names its flag instead.
_FLAGS = {"admin": "--admin-bind", "agent": "--agent-bind", "drain_delay": "--drain-delay",
          "access_log_format": "--access-log-format"}


def _flag_names(message: str) -> str:
    for option, flag in _FLAGS.items():
        if message.startswith((f"{option}=", f"{option} ")):
            return flag + message[len(option):]
    return message


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror  # without the "[Errno N]" prefix
        if exc.filename is not None and str(exc.filename) not in text:
            text = f"{exc.filename}: {text}"
    return text or type(exc).__name__
