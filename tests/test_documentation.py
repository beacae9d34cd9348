"""The docs cannot rot: docs/api.md names the whole public API, and every code block in
README.md and docs/*.md that is a complete program or a shell session is run.

A ```python block is a complete program when every name it uses is defined in it (imported,
assigned, a parameter...); the others are fragments of a program the page describes, and are
not run. A block is run as a subprocess from the repository's root:

- a program that calls ``serve_forever`` is a server: its fixed port (``port=N``) is replaced
  by a free one and ``"0.0.0.0"`` by loopback; it must log ``listening on``, then stop with
  exit status 0 on SIGINT, as the README says;
- a program that defines ``test_*`` functions is run by pytest;
- any other program must exit 0.

A shell session (```sh) is run line by line: ``greensrv MODULE:NAME ...`` (or ``python -m
greensrv``) lines are servers as above, stopped with SIGTERM (``myapp`` is a module made for the
test, with a ``handler`` and an unstarted ``server`` on port 0; ``--bind`` gets a free loopback
port).

An HTML comment just above a block says what it needs: ``<!-- docs-test: needs redis-server -->``
starts one on a free port for ``6379``, ``needs examples/rot13.py`` runs that example on a
free port for ``12345``; ``<!-- docs-test: not run: REASON -->`` leaves a block out, and
says why (the test lists the reasons, and refuses one without a reason).
"""

from __future__ import annotations

import ast
import builtins
import inspect
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import need_program
from redis_server import free_port

import greensrv

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Seconds a documented program may take to run, or a documented server to listen.
RUN_TIMEOUT = 60.0

FENCE = re.compile(r"^```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^```", re.M | re.S)
MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<what>.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    body: str
    marker: str  # the docs-test comment just above the fence, or ""

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = MARKER.search(before)
            found.append(Block(page, text.count("\n", 0, match.start()) + 1, match["lang"],
                               match["body"], marker["what"] if marker else ""))
    return found


def undefined_names(source: str) -> set[str]:
    """Names a Python block uses without defining them anywhere in it (empty: complete)."""
    tree = ast.parse(source)
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    used = {node.id for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return used - bound


def runnable(block: Block) -> bool:
    if block.lang == "python":
        return not undefined_names(block.body)
    return block.lang == "sh"


RUNNABLE = [b for b in blocks() if runnable(b)]
LEFT_OUT = [b for b in RUNNABLE if b.marker.startswith("not run")]
RUN = [b for b in RUNNABLE if b not in LEFT_OUT]


# -- docs/api.md ------------------------------------------------------------------------------
def documented(name: str, text: str) -> bool:
    """``name`` appears as a word inside one of the page's code spans."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    return any(word.search(span) for span in re.findall(r"`([^`]+)`", text))


def test_api_md_names_every_public_name_and_option():
    text = (ROOT / "docs" / "api.md").read_text()
    server_options = [name for name, p in inspect.signature(greensrv.Server).parameters.items()
                      if p.kind is not p.VAR_KEYWORD]
    client_options = [name for name, p in inspect.signature(greensrv.Client).parameters.items()
                      if p.kind is not p.VAR_KEYWORD]
    connection = [name for name in dir(greensrv.Connection) if not name.startswith("_")]
    assert len(server_options) > 30 and len(connection) > 20  # the lists are really read
    missing = {what: [name for name in names if not documented(name, text)]
               for what, names in (("greensrv.__all__", greensrv.__all__),
                                   ("Server options", server_options),
                                   ("Connection", connection),
                                   ("Client options", client_options))}
    assert not any(missing.values()), f"docs/api.md does not name: {missing}"


def test_no_page_cites_the_teams_contract():
    """The docs stand alone: they point to docs/api.md, never to a file outside the project."""
    for path in [*PAGES, ROOT / "CHANGELOG.md", *(ROOT / "greensrv").rglob("*.py"),
                 *(ROOT / "tests").rglob("*.py")]:
        text = path.read_text()
        for citation in ("API" + ".md", "API" + " §"):
            assert citation not in text, path


# -- code blocks ------------------------------------------------------------------------------
def test_blocks_left_out_say_why():
    assert len(RUN) >= 15, [b.name for b in RUN]  # the extraction really finds programs
    for block in LEFT_OUT:
        reason = block.marker.partition(":")[2].strip()
        assert len(reason) > 10, f"{block.name}: say why it is not run"


@pytest.mark.parametrize("block", RUN, ids=lambda b: b.name)
def test_documented_code_runs(block, tmp_path):
    needs = [n.strip() for n in block.marker.removeprefix("needs").split(",") if n.strip()]
    with Peers(needs, tmp_path) as peers:
        if block.lang == "python":
            run_python(peers.substitute(block.body), tmp_path)
        else:
            run_shell(peers.substitute(block.body), tmp_path)


def env() -> dict[str, str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")])
    environ.pop("NOTIFY_SOCKET", None)
    return environ


def run_python(source: str, tmp_path: Path) -> None:
    program = tmp_path / "test_documented.py"
    program.write_text(source)
    if "serve_forever" in source:
        port = free_port()
        source = re.sub(r"\bport=\d+", f"port={port}", source).replace('"0.0.0.0"',
                                                                        '"127.0.0.1"')
        program.write_text(source)
        run_server([sys.executable, str(program)], tmp_path, signal.SIGINT)
    elif re.search(r"^def test_", source, re.M):
        finished(subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 str(program)], cwd=tmp_path, env=env(), capture_output=True,
                                text=True, timeout=RUN_TIMEOUT), program)
    else:
        finished(subprocess.run([sys.executable, str(program)], cwd=ROOT, env=env(),
                                capture_output=True, text=True, timeout=RUN_TIMEOUT), program)


def finished(result: subprocess.CompletedProcess, what: object) -> None:
    assert result.returncode == 0, (f"{what} exited with {result.returncode}:\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def run_shell(session: str, tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "import greensrv\n\n"
        "def handler(conn):\n    for line in conn:\n        conn.put(line)\n\n"
        "server = greensrv.Server(handler, port=0)\n")
    for line in session.splitlines():
        command = line.split("  #")[0].strip()
        if not command or command.startswith("#"):
            continue
        words = shlex.split(command)
        if words[:3] == ["python", "-m", "greensrv"]:
            words = words[2:]
        assert words[0] == "greensrv", f"no way to run {command!r} in a test: mark the block"
        port = free_port()
        words = [re.sub(r"^[\d.]+:\d+$", f"127.0.0.1:{port}", w) for w in words]
        run_server([sys.executable, "-m", "greensrv", *words[1:]], tmp_path, signal.SIGTERM)


def run_server(argv: list[str], cwd: Path, stop: signal.Signals) -> None:
    """Start a documented server, wait for it to listen, stop it: it must exit 0."""
    log = cwd / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env(), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while "listening on" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"{argv} exited:\n{log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"{argv} did not listen:\n{log.read_text()}"
            time.sleep(0.05)  # poll interval, not synchronisation
        proc.send_signal(stop)
        assert proc.wait(timeout=RUN_TIMEOUT) == 0, log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Peers:
    """The outside programs a block needs, each on a free loopback port."""

    def __init__(self, needs: list[str], tmp_path: Path) -> None:
        self.needs = needs
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []
        self.ports: dict[str, int] = {}

    def __enter__(self) -> Peers:
        for need in self.needs:
            port = free_port()
            if need == "redis-server":
                binary = need_program("redis-server", "redis-server")
                argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--dir", str(self.tmp_path)]
                self.ports["6379"] = port
            elif need.startswith("examples/"):
                argv = [sys.executable, str(ROOT / need), "--port", str(port)]
                self.ports["12345"] = port
            else:
                raise AssertionError(f"unknown docs-test need {need!r}")
            self.procs.append(subprocess.Popen(argv, cwd=ROOT, env=env(),
                                               stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
            wait_listening(port, self.procs[-1], need)
        return self

    def substitute(self, source: str) -> str:
        for old, new in self.ports.items():
            source = source.replace(old, str(new))
        return source

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
            try:
                proc.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=RUN_TIMEOUT).close()
            return
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"{what} did not listen in time"
            time.sleep(0.05)  # poll interval, not synchronisation
