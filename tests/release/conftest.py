"""The release check runs only when asked for: ``tox -e release`` (``pytest -m release
tests/release``). A plain ``pytest`` collects these tests but skips them: building the artifacts
takes minutes.

The artifacts are built once per run, into ``dist/`` (emptied first): the sdist (with the
generated C), wheels built from that sdist offline and repaired by ``auditwheel`` into manylinux
wheels, and the pure-Python ``py3-none-any`` wheel. The wheels are for the Python running the
check, or with ``GREENSRV_RELEASE_PYTHONS=all`` for every CPython 3.10-3.13 on ``PATH`` (a
release; CI's time budget takes one), or for a list (``3.12,3.13``). The install times measured are
printed at the end of the run and written to ``dist/install-times.txt``.
"""

from __future__ import annotations

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import need_program, run_only_when_selected
from release_support import DIST, JOBS, ROOT, TIMES, VERSIONS, offline_env, pythons, run


@dataclass
class Release:
    sdist: Path
    wheelhouse: Path  # setuptools' wheel: all an offline build from the sdist may use
    wheels: dict[str, Path] = field(default_factory=dict)  # "3.12" -> its manylinux wheel
    pure_wheel: Path | None = None


def build_wheel(python: str, version: str, release: Release, scratch: Path) -> None:
    """A wheel from the sdist with ``python``, offline (so without Cython), then repaired."""
    out = scratch / f"wheel-{version}"
    run([python, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(release.sdist)],
        f"wheel for {version}, built offline from the sdist", env=offline_env(release.wheelhouse))
    (built,) = out.glob("*.whl")
    run([sys.executable, "-m", "auditwheel", "repair", "-w", str(DIST), str(built)],
        f"auditwheel repair ({version})")
    (repaired,) = DIST.glob(f"greensrv-*-cp{version.replace('.', '')}-*manylinux*.whl")
    release.wheels[version] = repaired


@pytest.fixture(scope="session")
def release(tmp_path_factory) -> Release:
    need_program("cc", "gcc")  # the wheels are compiled here
    need_program("patchelf", "patchelf")  # auditwheel repair
    found = pythons()
    if not found:
        pytest.fail(f"none of python{', python'.join(VERSIONS)} runs here "
                    "(GREENSRV_RELEASE_PYTHONS)", pytrace=False)
    shutil.rmtree(DIST, ignore_errors=True)
    DIST.mkdir()
    scratch = tmp_path_factory.mktemp("release")
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(DIST), str(ROOT)],
        "sdist (python -m build --sdist: generates the C)")
    (sdist,) = DIST.glob("greensrv-*.tar.gz")
    wheelhouse = scratch / "wheelhouse"
    run([sys.executable, "-m", "pip", "download", "--only-binary", ":all:", "-d",
         str(wheelhouse), "setuptools>=64"], "download setuptools for the offline builds")
    made = Release(sdist=sdist, wheelhouse=wheelhouse)
    with ThreadPoolExecutor(JOBS) as pool:
        for job in [pool.submit(build_wheel, python, version, made, scratch)
                    for version, python in found.items()]:
            job.result()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(DIST), str(sdist)],
        "pure-Python wheel (GREENSRV_PURE_PYTHON=1)",
        env=offline_env(wheelhouse, GREENSRV_PURE_PYTHON="1"))
    (made.pure_wheel,) = DIST.glob("greensrv-*-py3-none-any.whl")
    return made


def pytest_collection_modifyitems(config, items):
    run_only_when_selected(config, items, "release",
                           "release check: run it with `tox -e release` "
                           "(pytest -m release tests/release)")


def pytest_terminal_summary(terminalreporter):
    if not TIMES:
        return
    terminalreporter.section("release check: measured times (wall clock, this machine)")
    width = max(len(what) for what, _ in TIMES)
    lines = [f"{what:<{width}}  {seconds:6.1f} s" for what, seconds in TIMES]
    for line in lines:
        terminalreporter.write_line(line)
    if DIST.is_dir():
        sizes = [f"{p.name}  {p.stat().st_size / 1024:.0f} KiB" for p in sorted(DIST.iterdir())
                 if p.suffix in (".whl", ".gz")]
        for line in sizes:
            terminalreporter.write_line(line)
        (DIST / "install-times.txt").write_text("\n".join(lines + sizes) + "\n")
