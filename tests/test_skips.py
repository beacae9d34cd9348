"""A test whose outside program is missing skips with a reason, and fails instead in CI.

``need_program()`` is exercised in a separate pytest run (a real process, so the variable that
``.ci/run`` sets is read as it would be there); the source scan keeps every test using it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

NEEDS_A_MISSING_PROGRAM = """
    from helpers import need_program

    def test_uses_a_peer():
        need_program("greensrv-no-such-program", "greensrv-peer-package")
"""


def run_pytest(tmp_path: Path, require_peers: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_peer.py").write_text(textwrap.dedent(NEEDS_A_MISSING_PROGRAM))
    env = dict(os.environ)
    env.pop("GREENSRV_REQUIRE_PEERS", None)
    if require_peers:
        env["GREENSRV_REQUIRE_PEERS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", str(tmp_path), str(tmp_path / "test_peer.py")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)


def test_a_missing_program_skips_with_a_reason_naming_the_package(tmp_path):
    result = run_pytest(tmp_path, require_peers=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert ("needs greensrv-no-such-program (install the Debian package "
            "greensrv-peer-package)") in result.stdout


def test_a_missing_program_fails_under_greensrv_require_peers(tmp_path):
    result = run_pytest(tmp_path, require_peers=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout
    assert "GREENSRV_REQUIRE_PEERS=1 forbids skipping" in result.stdout


def test_every_test_finds_its_outside_programs_through_need_program():
    """``shutil.which`` plus ``pytest.skip`` would skip in CI too: use ``need_program``.

    A lookup that is not a peer the test needs (a line marked ``# not a peer: WHY``, such as
    the release check asserting that no compiler is on a venv's PATH) is allowed."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name == "helpers.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bwhich\(", line) and "# not a peer: " not in line:
                offenders.append(f"{path.relative_to(TESTS)}:{number}: {line.strip()}")
    assert not offenders, "find programs with helpers.need_program():\n" + "\n".join(offenders)
