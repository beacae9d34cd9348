"""The command's application: ``MODULE:NAME`` imported in the master, then again at each HUP.

``MODULE`` is a module name found on ``sys.path`` (``--app-dir`` first, then the current
directory), or a file (``examples/chat.py``), whose directory is then searched first.
``NAME`` is a handler function ``(conn)`` or an unstarted :class:`~greensrv.Server`, whose
options the command's settings override.

A reload forgets the modules that the first import added from the application's own directory
(never installed packages or greensrv itself) and imports them afresh, in the master: the
master forks every worker of a generation from that one import (``greensrv.workers``).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .command_settings import CommandError
from .config import ServerConfig
from .defaults import DEFAULT_BIND, DEFAULT_WORKERS
from .metrics import register_collectors, registered_collectors, unregister_collectors
from .server import Server

__all__ = ["Application", "build_server", "load_target", "option_value"]


def module_of(spec: str) -> str:
    """The module name to import for ``MODULE:NAME``; a file's directory goes first on
    ``sys.path`` (``CommandError`` if the file does not exist)."""
    module = spec.rpartition(":")[0] if ":" in spec else spec
    if not (module.endswith(".py") or "/" in module):
        return module
    path = Path(module)
    if path.suffix != ".py" or not path.is_file():
        raise CommandError(f"{spec!r}: {module} is not a Python file")
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    return path.stem


def load_target(spec: str) -> Any:
    """Import ``MODULE:NAME`` and return the object; CommandError in one line if impossible."""
    module_part, sep, name = spec.rpartition(":")
    if not sep or not module_part or not name:
        raise CommandError(f"{spec!r}: expected MODULE:NAME, e.g. myapp:handler or "
                           "path/to/app.py:server")
    module_name = module_of(spec)
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


def build_server(target: Any, given: dict[str, Any],
                 in_their_words: Callable[[str], str] = str) -> Server:
    """A new Server: the target's configuration (or the handler's, with the defaults) with
    ``given`` replaced; an error is reworded by ``in_their_words`` to name the flags as the
    operator typed them."""
    try:
        if isinstance(target, Server):
            config = target.config.replace(**given)
        else:
            config = ServerConfig.from_options({"handler": target, "listen": [DEFAULT_BIND]})
            config = config.replace(**given)
        if config.workers is None:
            config = config.replace(workers=DEFAULT_WORKERS)
    except (TypeError, ValueError) as exc:
        raise CommandError(in_their_words(str(exc))) from exc
    return Server.from_config(config)


def option_value(server: Server, option: str) -> Any:
    """What ``server`` runs with for ``option`` (its configuration, defaults filled in)."""
    options = server.options
    if option == "listen" and options.get("listen") is None:
        host, port = options.get("host") or "127.0.0.1", options.get("port") or 0
        return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    return options[option]


class Application:
    """``MODULE:NAME`` loaded with the command's options; :meth:`reload` loads it again."""

    def __init__(self, spec: str, given: dict[str, Any],
                 in_their_words: Callable[[str], str] = str) -> None:
        self.spec = spec
        self.given = given
        self._in_their_words = in_their_words
        before = set(sys.modules)
        registered = registered_collectors()
        self.server = build_server(load_target(spec), given, in_their_words)
        self.root = application_root(spec)
        self.modules = [name for name in set(sys.modules) - before
                        if _is_under(sys.modules[name], self.root)]
        #: The application's prometheus_client metrics: a reload's fresh import makes new ones
        #: under the same names, so these leave the default registry first.
        self.collectors = registered_collectors() - registered

    def reload(self) -> Server:
        """The application as it is on disk now (called in the master by a HUP). If it does
        not import, the modules of the code still serving are put back, so nothing that code
        imports later finds a half-imported new version."""
        kept = {name: sys.modules.pop(name) for name in self.modules if name in sys.modules}
        importlib.invalidate_caches()
        before = set(sys.modules)
        unregister_collectors(self.collectors)
        registered = registered_collectors()
        try:
            server = build_server(load_target(self.spec), self.given, self._in_their_words)
        except BaseException:
            for name in set(sys.modules) - before:
                if _is_under(sys.modules[name], self.root):
                    del sys.modules[name]
            sys.modules.update(kept)
            unregister_collectors(registered_collectors() - registered)
            register_collectors(self.collectors)
            raise
        self.collectors = registered_collectors() - registered
        self.modules = list({*kept, *(name for name in set(sys.modules) - before
                                      if _is_under(sys.modules[name], self.root))})
        return server


def application_root(spec: str) -> Path | None:
    """The directory of the application's top-level module (a package's parent)."""
    module = sys.modules.get(module_of(spec).split(".")[0])
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
