"""The ``greensrv`` command: ``greensrv [OPTIONS] MODULE:NAME`` runs a master with workers.

``NAME`` is a handler function ``(conn)`` or an unstarted :class:`~greensrv.Server`; settings
come from the command line, then ``--config FILE``, then the Server's own options, then the
defaults (``greensrv.flags`` lists them all). The command always runs a master
(``docs/deploy.md``), so ``HUP`` reloads even one worker: the master imports the application
again, as it is on disk then, and forks the new workers from it. Errors are one line on stderr
and a non-zero exit, naming the flag or config key as the operator wrote it; ``--log-level
debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import _accelerate
from ._version import __version__
from .access_log import route_access_log
from .application import Application, option_value
from .command_settings import CommandError, Settings, format_value, resolve
from .credentials import Credentials
from .errors import GreensrvError
from .flags import FLAGS, Flag
from .metrics import require_metrics_libraries, setup_multiprocess
from .pidfile import PidFile, PidFileBusy
from .reloader import Reloader
from .server import Server
from .tls import server_context
from .workers import Master

__all__ = ["CommandError", "main", "version_line"]

log = logging.getLogger("greensrv")

LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(message)s"
#: Settings that only mean something with --proxy-protocol.
PROXY_DEPENDENT = ("proxy_allow_from", "proxy_timeout")
_GROUPS = {"TLS": "TLS", "PROXY": "PROXY protocol (behind HAProxy, nginx, a load balancer)",
           "operations": "operations: metrics, health, HAProxy's agent, the connection log "
                         "(docs/operations.md)",
           "process": "the master and its workers"}


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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage error in one line, like every other error of the command."""
        self.exit(2, f"greensrv: error: {message} (greensrv --help lists the options)\n")


def _typed(flag: Flag) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return flag.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = flag.key  # argparse names the type in some messages
    return parse


def parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="greensrv",
        description="Run a greensrv server: a master process that binds the listening sockets "
                    "and supervises forked workers. TERM/INT stop gracefully, HUP reloads "
                    "the application without dropping a connection, TTIN/TTOU add or remove "
                    "a worker, USR1 reopens the log files.",
        epilog="MODULE:NAME names a handler function (conn) or an unstarted greensrv.Server, "
               "in a module or a file (path/to/app.py:server); for a Server, settings not "
               "given here or in --config are its own. Every option is also a --config key, "
               "with '-' written '_'. See docs/deploy.md.")
    ap.add_argument("app", metavar="MODULE:NAME",
                    help="the application, e.g. myapp:handler or examples/chat.py:server")
    ap.add_argument("--config", metavar="FILE",
                    help="TOML file of settings (keys: the long options, '-' written '_'); "
                         "the command line overrides it")
    ap.add_argument("--check-config", action="store_true",
                    help="print the resolved settings as 'key = value' and exit")
    groups: dict[str, Any] = {"serving": ap}
    for flag in FLAGS:
        group = groups.get(flag.group)
        if group is None:
            group = groups[flag.group] = ap.add_argument_group(_GROUPS[flag.group])
        names = [flag.short, flag.flag] if flag.short else [flag.flag]
        if flag.metavar is None:
            group.add_argument(*names, dest=flag.key, action="store_true", default=None,
                               help=flag.help)
        else:
            group.add_argument(*names, dest=flag.key, metavar=flag.metavar, type=_typed(flag),
                               action="append" if flag.repeat else "store", help=flag.help)
    ap.add_argument("--version", action=_PrintVersion, nargs=0,
                    help="print the version and which modules run compiled, then exit")
    return ap


def server_options(settings: Settings) -> dict[str, Any]:
    """The Server options the settings give, checked across flags (PROXY, TLS)."""
    given = settings.server_options()
    if "listen" in given:
        given["listen"] = list(given["listen"])
    if settings.get("access_log") is not None:
        given["access_log"] = True  # to the file or stdout the command routes it to
    certfile = settings.get("certfile")
    if certfile is not None:
        given["ssl_context"] = _tls_context(settings)
    elif settings.get("keyfile") or settings.get("ca_certs"):
        which = settings.origin("keyfile" if settings.get("keyfile") else "ca_certs")
        raise CommandError(f"{which} needs --certfile")
    return given


def _tls_context(settings: Settings) -> Any:
    import ssl

    certfile, keyfile = settings.get("certfile"), settings.get("keyfile")
    where = settings.origin("certfile")
    if os.path.isdir(certfile):
        raise CommandError(f"{where} {certfile}: is a directory; give the certificate file "
                           "(PEM)")
    try:
        return server_context(certfile, keyfile, cafile=settings.get("ca_certs"),
                              require_client_cert=settings.get("ca_certs") is not None)
    except ssl.SSLError as exc:
        hint = ("; if the private key is in its own file, give it with --keyfile"
                if keyfile is None else "")
        raise CommandError(f"{where} {certfile}: {_tls_reason(exc)}{hint}") from None
    except FileNotFoundError as exc:  # tls.py names the option: certfile, keyfile or cafile
        option = str(exc.strerror).partition(":")[0]
        key = {"keyfile": "keyfile", "cafile": "ca_certs"}.get(option, "certfile")
        raise CommandError(f"{settings.origin(key)} {exc.filename}: no such file") from None


def _tls_reason(exc: BaseException) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("certfile ") and ": " in text else text


def load(args: argparse.Namespace) -> tuple[Settings, Application]:
    """The settings and the application built with them (imports the application)."""
    settings = resolve(args)
    for directory in (os.getcwd(), settings.get("app_dir")):
        if directory is not None and directory not in sys.path:
            sys.path.insert(0, directory)  # --app-dir ends up first, then the current directory
    if settings.get("admin_bind") is not None:
        _prepare_metrics(settings.origin("admin_bind"))
    application = Application(args.app, server_options(settings), settings.in_their_words)
    for key in PROXY_DEPENDENT:
        if key in settings.values and application.server.options.get("proxy_protocol") is None:
            raise CommandError(f"{settings.origin(key)} needs --proxy-protocol (without it no "
                               "PROXY header is read, and the setting would do nothing)")
    if (settings.get("max_worker_connections_jitter") is not None
            and settings.get("max_worker_connections") is None):
        raise CommandError(f"{settings.origin('max_worker_connections_jitter')} needs "
                           "--max-worker-connections")
    return settings, application


def check_config(settings: Settings, server: Server) -> str:
    """``--check-config``'s output: every setting as ``key = value``, resolved."""
    lines = []
    proxy = option_value(server, "proxy_protocol") is not None
    for flag in FLAGS:
        if flag.key in PROXY_DEPENDENT and not proxy:
            continue  # meaningless without the protocol, and refused in a file without it
        if flag.option is not None:
            value = option_value(server, flag.option)
            if flag.metavar is None:  # a switch: is it on?
                value = value == flag.switch_value
            elif value is None and not getattr(flag.parse, "accepts_none", False):
                continue  # not set, and no word for that (e.g. no proxy_protocol)
            elif value is not None:  # as the file would give it: 5 seconds is 5.0
                value = _as_in_a_file(flag, value)
        elif flag.key == "log_level":
            value = settings.get("log_level", "info")
        else:
            value = settings.get(flag.key)
            if value is None:
                continue  # a command setting not used
        lines.append(f"{flag.key} = {format_value(value)}")
    return "\n".join(lines)


def _as_in_a_file(flag: Flag, value: Any) -> Any:
    """``value`` as the config file would give it; as it is if the file has no form for it
    (a bound socket object in a Server's ``listen``)."""
    values = list(value) if flag.repeat and not isinstance(value, str) else [value]
    try:
        parsed = [flag.parse(v) for v in values]
    except ValueError:
        return [str(v) for v in values] if flag.repeat else str(value)
    return parsed if flag.repeat else parsed[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = parser().parse_args(argv)
    level = (args.log_level or "info").upper()
    debug = level == "DEBUG"
    try:
        settings, application = load(args)
        level = str(settings.get("log_level", "info")).upper()
        debug = level == "DEBUG"
        user, group = settings.get("user"), settings.get("group")
        credentials = Credentials.look_up(user, group) if user or group else None
        if args.check_config:
            sys.stdout.write(check_config(settings, application.server) + "\n")
            return 0
        _configure_logging(level, settings.get("log_file"))
        if settings.get("access_log") is not None:
            _route_access_log(settings)
        return _run(settings, application, credentials)
    except (CommandError, GreensrvError, OSError, ValueError, PidFileBusy) as exc:
        if debug:
            logging.basicConfig(format=LOG_FORMAT)
            log.exception("greensrv: error")
        sys.stderr.write(f"greensrv: error: {_one_line(exc)}\n")
        return 1
    except KeyboardInterrupt:
        return 1


def _configure_logging(level: str, log_file: str | None) -> None:
    if log_file is not None:
        try:
            handler: logging.Handler = logging.FileHandler(log_file)
        except OSError as exc:
            raise CommandError(f"--log-file {log_file}: {exc.strerror or exc}") from None
    else:
        handler = logging.StreamHandler()
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=[handler])


def _prepare_metrics(origin: str) -> None:
    """Before the application is imported: prometheus_client's multiprocess mode, so that
    its metrics made at import time are summed over the workers (docs/operations.md)."""
    try:
        require_metrics_libraries(origin)
    except ImportError as exc:
        raise CommandError(str(exc)) from exc
    setup_multiprocess()


def _route_access_log(settings: Settings) -> None:
    target = settings.get("access_log")
    try:
        route_access_log(target)
    except OSError as exc:
        raise CommandError(f"{settings.origin('access_log')} {target}: "
                           f"{exc.strerror or exc}") from None


def _run(settings: Settings, application: Application, credentials: Credentials | None) -> int:
    if credentials is not None and settings.get("log_file"):
        credentials.give(settings.get("log_file"))
    if credentials is not None and settings.get("access_log") not in (None, "-"):
        credentials.give(settings.get("access_log"))
    recycle = None
    if settings.get("max_worker_connections") is not None:
        recycle = (settings.get("max_worker_connections"),
                   settings.get("max_worker_connections_jitter") or 0)
    reloader = None
    if settings.get("reload"):
        if application.root is None:
            raise CommandError("--reload: cannot tell which directory the application is in")
        reloader = Reloader(application.root)
    pidfile = PidFile(settings.get("pid")) if settings.get("pid") else None
    if pidfile is not None:
        pidfile.claim()
    try:
        if reloader is not None:
            reloader.start()
        Master(application.server, application.reload, credentials=credentials,
               recycle=recycle).run()
    finally:
        if reloader is not None:
            reloader.stop()
        if pidfile is not None:
            pidfile.release()
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror  # without the "[Errno N]" prefix
        if exc.filename is not None and str(exc.filename) not in text:
            text = f"{exc.filename}: {text}"
    return text or type(exc).__name__
