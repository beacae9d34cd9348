"""Helpers of the release check: the Pythons to build for, timed steps, offline pip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
VERSIONS = ("3.10", "3.11", "3.12", "3.13")
#: Seconds any one build or install may take before the check fails (a 2-core VM under load
#: compiles the 13 modules in about a minute).
STEP_TIMEOUT = 600
#: Parallel compilations: one per core of the CI machine.
JOBS = 2

#: (what, seconds), in the order measured: printed at the end and kept in dist/.
TIMES: list[tuple[str, float]] = []


def pythons() -> dict[str, str]:
    """``{"3.12": "/path/python3.12", ...}``: the CPythons to build wheels for.

    ``GREENSRV_RELEASE_PYTHONS`` chooses: unset, the Python running the check (CI's budget);
    ``all``, every one of VERSIONS that runs here; ``3.12,3.13``, those.
    """
    wanted = os.environ.get("GREENSRV_RELEASE_PYTHONS", "").strip()
    if not wanted:
        return {f"{sys.version_info[0]}.{sys.version_info[1]}": sys.executable}
    versions = VERSIONS if wanted == "all" else [v.strip() for v in wanted.split(",")]
    found = {}
    for version in versions:
        path = shutil.which(f"python{version}")  # not a peer: the Pythons asked for, if any
        if path and subprocess.run([path, "-c", ""], capture_output=True).returncode == 0:
            found[version] = path
    return found


def run(args: list[str], what: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a step, failing with its output if it fails; record its time."""
    started = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=STEP_TIMEOUT)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({' '.join(map(str, args))}):\n{done.stdout}\n{done.stderr}",
                    pytrace=False)
    TIMES.append((what, elapsed))
    return done


def offline_env(wheelhouse: Path, **extra: str) -> dict[str, str]:
    """pip without any index: only the wheels in ``wheelhouse`` (setuptools), nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse), PIP_CONFIG_FILE=os.devnull,
               PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env
