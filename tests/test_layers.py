"""Dependencies run one way (docs/architecture.md), checked by walking each module's ``ast``.

A module may import only from its own layer or a lower one; the import graph, imports made
inside functions included, has no circle; and a module may not use another module's class's
``_private`` names: what one layer offers the next is public and documented. Imports under
``if TYPE_CHECKING:`` are annotations only (``Connection.server`` names the ``Server`` type) and
are not dependencies. ``from . import name`` is an import of the module ``name`` when the package
has one, else of the package's ``__init__``; a name that is neither fails the walk.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import greensrv

PACKAGE = Path(greensrv.__file__).parent

#: Lowest first. Each module's layer; every module of the package must be listed.
LAYERS: dict[str, int] = {
    # 0: pure: no socket, ssl, select or gevent (test_the_pure_layer_imports_no_io below)
    "errors": 0, "filters": 0, "defaults": 0, "options": 0, "limits": 0, "output_queue": 0,
    "proxy": 0, "proxy_tlv": 0, "proxy_address": 0, "proxy_encode": 0, "connection_state": 0,
    "connection_hooks": 0, "statistics": 0, "backoff": 0, "overload": 0, "input_clock": 0,
    "_version": 0,
    # 0: operations' pure parts: how connections ended, readiness and the agent's line, the
    # metrics' sums, where the command sends the connection log
    "connection_ends": 0, "health": 0, "metrics": 0, "access_log": 0,
    # 0: the process's small parts: log files reopened on USR1, the PID file, the workers' user
    "logfiles": 0, "pidfile": 0, "credentials": 0,
    # 0: swaps a compiled twin into a module at its import (docs/compiled.md)
    "_accelerate": 0,
    # 1: OS sockets and TLS: byte transports, systemd, opening addresses, reading a PROXY
    # header; the configuration, which parses listen entries and PROXY settings with them
    "transport": 1, "tls": 1, "systemd": 1, "addresses": 1, "proxy_io": 1, "config": 1,
    # 1: the admin endpoint and agent port (their own sockets, no hub)
    "admin": 1,
    # 1: the default error log, which PROXY refusals use too (a gevent timer writes each
    # minute's summary)
    "error_log": 1,
    # 2: the connection: a socket joined to filters, needing no server (its parts first)
    "connection": 2,
    # 3: shedding, admission, the per-client life, the stop's phases, the listeners, running a
    # process; a single server's operations, driven by its hub; the server's start, drain and
    # stop, and what the process and a worker drive (lifecycle); the client side's life before
    # its connection exists (dial)
    "shedding": 3, "admission": 3, "client_life": 3, "event_life": 3, "shutdown": 3, "listeners": 3,
    "process": 3, "operations": 3, "lifecycle": 3, "dial": 3,
    # 4: the master and its workers, over a protocol of their own (they never import the server):
    # its sockets, operations, signal inbox and generations (reloads, recycling)
    "servable": 4, "worker_process": 4, "master_sockets": 4, "workers": 4, "master_ops": 4,
    "master_signals": 4, "generations": 4,
    # 5: the server (it hands the process to the master), and beside it the reconnecting client
    "server": 5, "client": 5,
    # 6: the command line: its settings (flags, the config file), the application it loads,
    # the --reload watcher
    "cli": 6, "__main__": 6, "flags": 6, "command_settings": 6, "application": 6, "reloader": 6,
    # 7: the package's public face; test helpers start servers and clients as a user would
    "__init__": 7, "testing": 7,
}

#: The pure layer, derived from the table: these may import no I/O module at all.
PURE = sorted(name for name, layer in LAYERS.items() if layer == 0)
IO_MODULES = {"socket", "ssl", "select", "selectors", "asyncio", "gevent", "greenlet"}

#: Private names of other code that a module may use, with the reason.
ALLOWED_PRIVATE = {
    # (reached through getattr, so the walk does not flag it; listed so it is not forgotten)
    ("proxy_io", "_sock"): "gevent's OS socket, for one non-blocking MSG_PEEK of an arrived PROXY "
                           "header without timeout juggling; guarded by type and timeout checks, "
                           "falling back to the public path",
    ("workers", "_exit"): "os._exit: a forked worker must end without running the master's "
                          "atexit handlers or flushing its inherited buffers twice",
    ("worker_process", "_exit"): "os._exit, as for workers",
    ("listeners", "_sock"): "gevent's OS socket of the listening gevent socket a Listener makes "
                            "over its descriptor: accepting on it directly, as "
                            "gevent's own StreamServer.do_read does, costs one frame less per "
                            "accepted client",
    ("listeners", "_accept"): "the OS socket's accept returning (fd, address), what "
                              "socket.accept and gevent's StreamServer use; the accepted socket "
                              "is wrapped as StreamServer wraps it",
    ("metrics", "_collector_to_names"): "prometheus_client's registry lists its collectors "
                                        "nowhere else; a reload must unregister the "
                                        "application's before it imports it afresh",
    ("transport", "_sslobj"): "the SSL object of a handshaken socket: the only way to read and "
                              "write TLS without blocking or waiting inside ssl",
}


def module_key(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _exists(parts: list[str]) -> bool:
    """Whether ``greensrv/<parts>`` is a module or a package."""
    path = PACKAGE.joinpath(*parts) if parts else PACKAGE
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _key(parts: list[str], name: str | None = None) -> str:
    """The LAYERS key of ``greensrv.<parts>`` (a module, or a package's ``__init__``), with
    ``name`` imported from it; ValueError when no such module is there."""
    if name is not None and _exists([*parts, name]):
        parts = [*parts, name]
    if not _exists(parts):
        raise ValueError(f"greensrv.{'.'.join(parts)} is no module of the package")
    if not parts:
        if name is not None and name not in _init_names():
            raise ValueError(f"greensrv has no module or name {name!r}")
        return "__init__"
    return parts[0]


def _init_names() -> set[str]:
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    return own_names(tree) | {alias.asname or alias.name for node in ast.walk(tree)
                              if isinstance(node, ast.ImportFrom) for alias in node.names}


def runtime_imports(tree: ast.Module, path: Path) -> set[str]:
    """The package modules ``path`` imports at run time (at its top or inside a function), as
    LAYERS keys; ValueError for an import of something the package does not have."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for child in ast.walk(node))
    package_parts = list(path.relative_to(PACKAGE).parts[:-1])  # [] or ["filters"]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package_parts[: len(package_parts) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
            found.update(_key(target, None if node.module else alias.name)
                         for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "greensrv":
            target = node.module.split(".")[1:]  # type: ignore[union-attr]
            found.update(_key(target, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "greensrv":
                    found.add(_key(parts[1:]))
    return found


def import_graph() -> dict[str, set[str]]:
    """Each LAYERS key and the other keys it imports at run time."""
    graph: dict[str, set[str]] = {}
    for path in modules():
        key = module_key(path)
        imports = runtime_imports(ast.parse(path.read_text(), filename=str(path)), path)
        graph.setdefault(key, set()).update(imports - {key})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports as a path that comes back to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


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
    assert {module_key(path) for path in modules()} == set(LAYERS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_from_its_layer_or_below(path):
    key = module_key(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    higher = {name: LAYERS[name] for name in runtime_imports(tree, path)
              if LAYERS[name] > LAYERS[key]}
    assert not higher, f"{key} (layer {LAYERS[key]}) imports from higher layers: {higher}"


def test_the_import_graph_has_no_circle():
    assert find_cycle(import_graph()) is None


def test_the_master_and_its_workers_never_import_the_server():
    graph = import_graph()
    reachable, todo = set(), ["workers"]
    while todo:
        for name in graph[todo.pop()] - reachable:
            reachable.add(name)
            todo.append(name)
    assert not reachable & {"server", "lifecycle", "client_life", "cli", "__init__", "testing"}


@pytest.mark.parametrize("name", PURE)
def test_the_pure_layer_imports_no_io(name):
    paths = [p for p in modules() if module_key(p) == name]
    assert paths
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        roots = {alias.name.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for alias in node.names}
        roots |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and not node.level and node.module}
        assert not roots & IO_MODULES, f"{path.name} imports {sorted(roots & IO_MODULES)}"


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
    inside = ast.parse("def f():\n    from .workers import Master\n")
    assert runtime_imports(inside, PACKAGE / "connection.py") == {"workers"}


def test_from_dot_import_reads_modules_and_the_package_init_and_fails_on_unknown_names():
    assert runtime_imports(ast.parse("from . import systemd, __version__\n"),
                           PACKAGE / "cli.py") == {"systemd", "__init__"}
    assert runtime_imports(ast.parse("from . import line\n"),
                           PACKAGE / "filters" / "base.py") == {"filters"}
    assert runtime_imports(ast.parse("import greensrv\nfrom greensrv.proxy import X\n"),
                           PACKAGE / "cli.py") == {"__init__", "proxy"}
    for source in ("from . import no_such_name\n", "from .no_such_module import x\n",
                   "from greensrv.no_such_module import x\n"):
        with pytest.raises(ValueError, match="no_such"):
            runtime_imports(ast.parse(source), PACKAGE / "cli.py")


def test_a_circle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
