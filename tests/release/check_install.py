"""Check an installed greensrv: the compiled modules it should have, and the ROT13 example.

Run by the Python of the environment under test, outside the source tree, so that ``greensrv``
is the installed one (``tox -e release`` runs it in each fresh virtualenv; cibuildwheel's
``test-command`` runs it against each wheel it builds)::

    python tests/release/check_install.py --project . [--pure]

``--project`` is the source tree: its ``setup.py`` says which modules are compiled (read, never
run) and its ``examples/rot13.py`` is served and asked one line. It needs nothing but the
standard library and the installed greensrv. Prints one JSON line; exits non-zero, naming what
differs, on any failure.
"""

from __future__ import annotations

import argparse
import ast
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

#: Seconds the example gets to listen and to answer: far above an idle machine's fraction of a
#: second, for a loaded CI machine.
DEADLINE = 30.0


def compiled_sources(setup_py: Path) -> list[str]:
    """setup.py's ``ACCELERATED + CYTHON_ONLY``: every source it compiles (read, not run)."""
    lists: dict[str, list[str]] = {}
    for node in ast.parse(setup_py.read_text()).body:
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(target, ast.Name) and target.id in ("ACCELERATED", "CYTHON_ONLY"):
            lists[target.id] = ast.literal_eval(node.value)  # type: ignore[attr-defined]
    return lists["ACCELERATED"] + lists["CYTHON_ONLY"]


def expected_compiled(setup_py: Path) -> set[str]:
    """The names ``greensrv.compiled`` lists for a full build."""
    names = set()
    for source in compiled_sources(setup_py):
        # greensrv/filters/line.py -> greensrv.filters.line (the .py swaps its twin in);
        # greensrv/filters/_c_linesplit.pyx -> greensrv.filters._c_linesplit (loaded itself).
        names.add(".".join(Path(source).with_suffix("").parts))
    return names


def ask_rot13(project: Path) -> str:
    """Serve examples/rot13.py with this Python and return its reply to ``hello``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(project / "examples" / "rot13.py"),
                               "--port", str(port)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            if server.poll() is not None:
                raise SystemExit(f"rot13.py exited with {server.returncode}: "
                                 f"{server.stdout.read().decode(errors='replace')}")  # type: ignore[union-attr]
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"rot13.py did not listen within {DEADLINE} s") from None
                time.sleep(0.05)  # poll interval, not synchronisation
        with client, client.makefile("rwb") as stream:
            banner = stream.readline()
            if banner != b"Smile from the server!\r\n":
                raise SystemExit(f"rot13.py greeted with {banner!r}")
            stream.write(b"hello\r\n")
            stream.flush()
            return stream.readline().decode().rstrip("\r\n")
    finally:
        server.terminate()
        server.wait(timeout=DEADLINE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="the source tree")
    parser.add_argument("--pure", action="store_true",
                        help="expect the pure-Python build (the py3-none-any wheel)")
    args = parser.parse_args(argv)
    project = args.project.resolve()

    import greensrv

    where = Path(greensrv.__file__).resolve()
    if project in where.parents:
        raise SystemExit(f"imported greensrv from the source tree ({where}), not the install")
    expected = set() if args.pure else expected_compiled(project / "setup.py")
    if set(greensrv.compiled) != expected:
        raise SystemExit(f"greensrv.compiled: missing {sorted(expected - set(greensrv.compiled))}"
                         f", unexpected {sorted(set(greensrv.compiled) - expected)}")
    reply = ask_rot13(project)
    if reply != "uryyb":
        raise SystemExit(f"rot13.py answered {reply!r} to 'hello'")
    print(json.dumps({"greensrv": str(where), "compiled": len(greensrv.compiled),
                      "rot13": reply}))


if __name__ == "__main__":
    main()
