"""Dependencies run one way (docs/architecture.md), checked by walking each module's ``ast``.

A module may import only from its own layer or a lower one, and may not use another module's
class's ``_private`` names: what one layer offers the next is public and documented. Imports
under ``if TYPE_CHECKING:`` are annotations only (``Connection.server`` names the ``Server``
type) and are not dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import greensrv

PACKAGE = Path(greensrv.__file__).parent

#: Lowest first. Each module's layer; every module of the package must be listed.
LAYERS: dict[str, int] = {
    # 0: pure: no socket, ssl or gevent (the purity tests check those imports)
    "errors": 0, "filters": 0, "defaults": 0, "options": 0, "limits": 0, "output_queue": 0,
    "proxy": 0, "proxy_tlv": 0, "proxy_address": 0, "connection_state": 0, "statistics": 0,
    "backoff": 0, "overload": 0, "input_clock": 0, "_version": 0,
    # 0: the process's small parts: log files reopened on USR1, the PID file, the workers' user
    "logfiles": 0, "pidfile": 0, "credentials": 0,
    # 0: swaps a compiled twin into a filter module at its import (docs/compiled.md)
    "_accelerate": 0,
    # 1: OS sockets and TLS: byte transports, systemd, opening addresses, reading a PROXY
    # header; the configuration, which parses listen entries and PROXY settings with them
    "transport": 1, "tls": 1, "systemd": 1, "addresses": 1, "proxy_io": 1, "config": 1,
    # 1: the default error log, which PROXY refusals use too (a gevent timer writes each
    # minute's summary)
    "error_log": 1,
    # 2: the connection: a socket joined to filters, needing no server (its parts first)
    "connection": 2,
    # 3: shedding, admission, the per-client life, the listeners, running a process
    "shedding": 3, "admission": 3, "client_life": 3, "listeners": 3, "process": 3,
    # 3: the client side's life before its connection exists (connect, PROXY header, TLS)
    "dial": 3,
    # 4: the master and its workers, over a protocol of their own (they never import the server)
    "worker_process": 4, "master_sockets": 4, "workers": 4,
    # 5: the server (it hands the process to the master), and beside it the reconnecting client
    "server": 5, "client": 5,
    # 6: the command line: its settings (flags, the config file), the application it loads,
    # the --reload watcher
    "cli": 6, "__main__": 6, "flags": 6, "command_settings": 6, "application": 6, "reloader": 6,
    # 7: the package's public face; test helpers start servers and clients as a user would
    "__init__": 7, "testing": 7,
}

#: Upward imports allowed, with the reason: none.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

#: Private names of other code that a module may use, with the reason.
ALLOWED_PRIVATE = {
    # (reached through getattr, so the walk does not flag it; listed so it is not forgotten)
    ("proxy_io", "_sock"): "gevent's OS socket, for one non-blocking MSG_PEEK of an arrived PROXY "
                           "header without timeout juggling; guarded by type and timeout checks, "
                           "falling back to the public path",
    ("workers", "_exit"): "os._exit: a forked worker must end without running the master's "
                          "atexit handlers or flushing its inherited buffers twice",
    ("worker_process", "_exit"): "os._exit, as for workers",
    ("listeners", "_sock"): "gevent's OS socket of a listening gevent socket (bind_tcp, bind_unix "
                            "and adopt_socket make only those): accepting on it directly, as "
                            "gevent's own StreamServer.do_read does, costs one frame less per "
                            "accepted client",
    ("listeners", "_accept"): "the OS socket's accept returning (fd, address), what "
                              "socket.accept and gevent's StreamServer use; the accepted socket "
                              "is wrapped as StreamServer wraps it",
    ("transport", "_sslobj"): "the SSL object of a handshaken socket: the only way to read and "
                              "write TLS without blocking or waiting inside ssl",
}


def module_key(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def runtime_imports(tree: ast.Module, path: Path) -> set[str]:
    """The package modules ``path`` imports at run time, as LAYERS keys."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for child in ast.walk(node))
    package_parts = path.relative_to(PACKAGE).parts[:-1]  # () or ("filters",)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package_parts)[: len(package_parts) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                found.add(target[0])
            else:  # "from . import x": x is a module of the package
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("greensrv"):
            parts = node.module.split(".")  # type: ignore[union-attr]
            found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "greensrv":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def own_names(tree: ast.Module) -> set[str]:
    """Names a module defines for its own classes: methods, attributes set, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "__slots__":
                    names.update(c.value for c in ast.walk(node.value)
                                 if isinstance(c, ast.Constant) and isinstance(c.value, str))
                elif isinstance(target, ast.Name):
                    names.add(target.id)
    return names


def foreign_private_uses(tree: ast.Module) -> list[str]:
    """``x._name`` where x is not self/cls and no class of this module defines ``_name``."""
    own = own_names(tree)
    bad = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and node.attr not in own):
            bad.append(f"line {node.lineno}: {ast.unparse(node)}")
    return bad


def test_every_module_has_a_layer():
    assert {module_key(path) for path in modules()} <= set(LAYERS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_from_its_layer_or_below(path):
    key = module_key(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    higher = {name: LAYERS[name] for name in runtime_imports(tree, path)
              if name in LAYERS and LAYERS[name] > LAYERS[key]
              and (key, name) not in ALLOWED_UPWARD}
    assert not higher, f"{key} (layer {LAYERS[key]}) imports from higher layers: {higher}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_uses_no_private_name_of_another_modules_class(path):
    key = module_key(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [use for use in foreign_private_uses(tree)
           if (key, use.rsplit(".", 1)[-1]) not in ALLOWED_PRIVATE]
    assert not bad, f"{key} reaches into private names of other code: {bad}"


def test_the_checks_catch_what_they_are_for():
    """The walkers see an upward import and a private reach (else the tests above prove nothing)."""
    source = ("from .server import Server\n"
              "def f(server):\n"
              "    server._count('x')\n")
    tree = ast.parse(source)
    assert runtime_imports(tree, PACKAGE / "connection.py") == {"server"}
    assert foreign_private_uses(tree) == ["line 3: server._count"]
    guarded = ast.parse("from typing import TYPE_CHECKING\n"
                        "if TYPE_CHECKING:\n    from .server import Server\n")
    assert runtime_imports(guarded, PACKAGE / "connection.py") == set()
