"""What a release ships: an sdist that builds offline without Cython, wheels that install and run
compiled without a C compiler, and a pure-Python wheel for everything else.

Each install goes into a fresh virtualenv and is checked by ``check_install.py``, run by that
virtualenv's Python from outside the source tree: ``greensrv.compiled`` lists every module
``setup.py`` compiles, and ``examples/rot13.py`` answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from check_install import compiled_sources
from helpers import need_program
from release_support import ROOT, offline_env, pythons, run

pytestmark = pytest.mark.release

CHECK = Path(__file__).resolve().parent / "check_install.py"
#: Git-tracked paths the sdist leaves out on purpose: CI, the test suite (it needs the
#: benchmarks and outside programs), the benchmarks, tox's configuration.
NOT_SHIPPED = (".ci/", "tests/", "benchmarks/", "tox.ini", ".gitignore")
#: What the build adds to the sdist: setuptools' metadata and the C Cython generated.
GENERATED = ("PKG-INFO", "setup.cfg", "greensrv.egg-info/", "generated-c/")
COMPILERS = ("cc", "gcc", "clang")


def venv(python: str, where: Path) -> Path:
    """A fresh virtualenv made by ``python``; returns its bin directory."""
    run([python, "-m", "venv", str(where)], f"venv {where.name}")
    return where / "bin"


def check(bin_dir: Path, *flags: str) -> dict:
    """check_install.py with the venv's Python, on a PATH holding only the venv."""
    done = subprocess.run([str(bin_dir / "python"), str(CHECK), "--project", str(ROOT), *flags],
                          capture_output=True, text=True, cwd=bin_dir, timeout=120,
                          env={**os.environ, "PATH": str(bin_dir)})
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert Path(report["greensrv"]).is_relative_to(bin_dir.parent)
    return report


def sdist_members(sdist: Path) -> dict[str, bytes]:
    """``{path inside the project: content}`` of every file in the sdist."""
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        return {m.name.removeprefix(f"{top}/"): tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def test_the_sdist_holds_the_tracked_sources_and_generated_c_and_no_build_outputs(release):
    """check-manifest's rule, applied to the sdist as shipped, plus the generated C."""
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (git ls-files)")
    need_program("git", "git")
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split())
    members = sdist_members(release.sdist)
    shipped = set(members)
    wanted = {path for path in tracked if not path.startswith(NOT_SHIPPED)}
    assert wanted - shipped == set(), "tracked files missing from the sdist"
    extra = {path for path in shipped - tracked if not path.startswith(GENERATED)}
    assert extra == set(), "files in the sdist that git does not track (build outputs?)"
    index = json.loads(members["generated-c/index.json"])
    assert {f"generated-c/{module}.c" for module in index} == {
        path for path in shipped if path.startswith("generated-c/") and path.endswith(".c")}
    assert sorted(entry["source"] for entry in index.values()) == sorted(
        compiled_sources(ROOT / "setup.py"))


def test_twine_check_passes_on_the_sdist_and_every_wheel(release):
    artifacts = [release.sdist, release.pure_wheel, *release.wheels.values()]
    done = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, artifacts)],
               "twine check")
    assert done.stdout.count("PASSED") == len(artifacts), done.stdout


def test_each_wheel_is_manylinux_and_the_fallback_is_pure(release):
    for version, wheel in release.wheels.items():
        tag = version.replace(".", "")
        assert f"-cp{tag}-cp{tag}-manylinux" in wheel.name, wheel.name
    assert release.pure_wheel.name.endswith("-py3-none-any.whl")


@pytest.mark.parametrize("version", sorted(pythons()))
def test_the_wheel_installs_and_runs_compiled_without_a_c_compiler(release, version, tmp_path):
    bin_dir = venv(pythons()[version], tmp_path / f"wheel-{version}")
    no_compiler = [shutil.which(cc, path=str(bin_dir)) for cc in COMPILERS]  # not a peer: absent
    assert no_compiler == [None] * len(COMPILERS)
    run([str(bin_dir / "pip"), "install", str(release.wheels[version])],
        f"pip install the {version} wheel (and gevent), fresh venv, no compiler",
        env={**os.environ, "PATH": str(bin_dir)})
    assert check(bin_dir)["compiled"] > 0


def test_the_pure_wheel_installs_and_runs_pure(release, tmp_path):
    bin_dir = venv(sys.executable, tmp_path / "pure")
    run([str(bin_dir / "pip"), "install", str(release.pure_wheel)],
        "pip install the py3-none-any wheel (and gevent), fresh venv",
        env={**os.environ, "PATH": str(bin_dir)})
    assert check(bin_dir, "--pure")["compiled"] == 0


@pytest.fixture(scope="module")
def no_cython_venv(tmp_path_factory):
    """A fresh venv with the sdist's build and run requirements but no Cython."""
    bin_dir = venv(sys.executable, tmp_path_factory.mktemp("no-cython") / "sdist")
    run([str(bin_dir / "pip"), "install", "--upgrade", "setuptools>=70.1", "gevent"],
        "requirements of the offline sdist install (online)")
    absent = subprocess.run([str(bin_dir / "python"), "-c", "import Cython"],
                            capture_output=True)
    assert absent.returncode != 0, "Cython is in the venv"
    return bin_dir


def test_the_sdist_installs_offline_and_compiled_without_cython(release, no_cython_venv,
                                                                 tmp_path):
    bin_dir = no_cython_venv
    env = offline_env(tmp_path / "no-wheels", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    run([str(bin_dir / "pip"), "install", "--no-build-isolation", str(release.sdist)],
        "pip install the sdist, offline, --no-build-isolation, no Cython (compiles)", env=env)
    assert check(bin_dir)["compiled"] > 0


def unpack(sdist: Path, into: Path) -> Path:
    into.mkdir()
    with tarfile.open(sdist) as tar:
        tar.extractall(into, filter="data")
    (tree,) = into.iterdir()
    return tree


def build_requirements(bin_dir: Path, tree: Path) -> str:
    """What the build backend asks pip for (its last line of output: setup.py prints too)."""
    code = "import build_backend; print(build_backend.get_requires_for_build_wheel())"
    done = subprocess.run([str(bin_dir / "python"), "-c", code], cwd=tree, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_an_edited_source_is_never_compiled_from_its_old_generated_c(release, no_cython_venv,
                                                                     tmp_path):
    """The stale-source rule holds in the sdist too: the C of an edited .py is not used."""
    tree = unpack(release.sdist, tmp_path / "unpacked")
    assert "Cython" not in build_requirements(no_cython_venv, tree)
    with open(tree / "greensrv/filters/line.py", "a") as source:
        source.write("\n# edited after the sdist was made\n")
    assert "Cython" in build_requirements(no_cython_venv, tree)
    # Built without Cython: line's C is not compiled (CC=false makes every other module fail
    # fast too; what counts is which one the build refused to compile from its shipped C).
    done = subprocess.run([str(no_cython_venv / "python"), "setup.py", "build_ext", "--inplace"],
                          cwd=tree, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CC": "false"})
    assert done.returncode == 0, done.stderr
    (warning,) = [line for line in done.stderr.splitlines()
                  if line.startswith("WARNING: greensrv")]
    assert warning.startswith("WARNING: greensrv installs the pure-Python modules instead of the "
                              "compiled ones (slower): _c_line: no generated C current with the "
                              "source, and no Cython; "), done.stderr
    assert "did not compile" in warning  # the others: CC=false
    output = done.stdout + done.stderr
    assert "greensrv.filters._c_base.c" in output  # current C: handed to the (failing) compiler
    assert "greensrv.filters._c_line.c" not in output
