"""The compiled accelerators: chosen at import, forced off by GREENSRV_PURE_PYTHON, never stale.

Tests that need a compiled build run against a copy of the package made from the current one
(its ``.so`` files and build stamps included), so editing a copied ``.py`` shows what an
editable install does after an edit. Without a compiled build they skip, or fail under
``GREENSRV_EXPECT_COMPILED=1`` (tox's compiled environments set it).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import need_program

import greensrv

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(greensrv.__file__).resolve().parent
ACCELERATED = ("greensrv.filters.base", "greensrv.filters.splitters",
               "greensrv.filters._c_linesplit", "greensrv.filters.line",
               "greensrv.filters.resp_encode", "greensrv.filters.resp_scan",
               "greensrv.filters.resp",
               "greensrv.connection_state", "greensrv.input_clock", "greensrv.output_queue",
               "greensrv.transport", "greensrv.connection", "greensrv.connection_ends",
               "greensrv.event_life", "greensrv.client_life", "greensrv._c_accept")
EXPECT_COMPILED = os.environ.get("GREENSRV_EXPECT_COMPILED") == "1"
PURE = os.environ.get("GREENSRV_PURE_PYTHON", "") not in ("", "0")
#: Bound for a child Python that imports greensrv (or runs Cython over three modules).
CHILD_TIMEOUT = 50


def compiled_name(name: str) -> str:
    """``greensrv.filters.line`` -> ``greensrv.filters._c_line`` (setup.py's naming)."""
    package, _, leaf = name.rpartition(".")
    return name if leaf.startswith("_c_") else f"{package}._c_{leaf}"


def built() -> bool:
    return all(importlib.util.find_spec(compiled_name(name)) is not None for name in ACCELERATED)


def need_compiled_build() -> None:
    if built():
        return
    reason = "no compiled build (python setup.py build_ext --inplace)"
    if EXPECT_COMPILED:
        # Without a C compiler the install was pure Python, as documented: skip (or fail under
        # GREENSRV_REQUIRE_PEERS=1); with one, a missing build is a broken build.
        need_program("cc", "gcc")
        pytest.fail(f"{reason}, but GREENSRV_EXPECT_COMPILED=1", pytrace=False)
    pytest.skip(reason)


def run_python(code: str, path: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "GREENSRV_PURE_PYTHON"}
    environ.update(env)
    if path is not None:
        environ["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-W", "default", "-c", code], env=environ,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT, cwd=path)


REPORT = ("import greensrv, greensrv.filters as f; "
          "print(greensrv.__file__); print(','.join(greensrv.compiled)); "
          "print(type(f.Line()).__module__)")


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "greensrv",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_compiled_names_the_modules_running_compiled():
    assert isinstance(greensrv.compiled, tuple)
    if PURE or not built():
        assert greensrv.compiled == ()
        assert type(greensrv.filters.Line()).__module__ == "greensrv.filters.line"
    else:
        assert set(ACCELERATED) <= set(greensrv.compiled)
        assert type(greensrv.filters.Line()).__module__ == "greensrv.filters._c_line"
    if EXPECT_COMPILED:
        need_compiled_build()  # without a C compiler the install was pure: a skip, not a failure
        assert not PURE and set(ACCELERATED) <= set(greensrv.compiled)


def test_pure_python_env_var_forces_the_pure_modules(tmp_path):
    out = run_python(REPORT, copy_package(tmp_path), GREENSRV_PURE_PYTHON="1")
    assert out.returncode == 0, out.stderr
    _, names, module = out.stdout.splitlines()
    assert (names, module) == ("", "greensrv.filters.line")
    assert "Warning" not in out.stderr


def test_a_current_build_runs_compiled_without_a_warning(tmp_path):
    need_compiled_build()
    out = run_python(REPORT, copy_package(tmp_path))
    assert out.returncode == 0, out.stderr
    where, names, module = out.stdout.splitlines()
    assert where.startswith(str(tmp_path))
    assert names.split(",") == list(ACCELERATED) and module == "greensrv.filters._c_line"
    assert out.stderr == ""


def test_an_edited_source_is_never_shadowed_by_its_stale_compiled_module(tmp_path):
    need_compiled_build()
    root = copy_package(tmp_path)
    with open(root / "greensrv/filters/line.py", "a") as source:
        source.write("\n# edited after the build\n")
    out = run_python(REPORT, root)
    assert out.returncode == 0, out.stderr
    _, names, module = out.stdout.splitlines()
    assert names.split(",") == [n for n in ACCELERATED if n != "greensrv.filters.line"]
    assert module == "greensrv.filters.line"
    warnings = [line for line in out.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(warnings) == 1, out.stderr
    assert "line.py changed since greensrv.filters._c_line was compiled" in warnings[0]
    assert "build_ext --inplace" in warnings[0]


def test_an_edited_pxd_is_never_shadowed_by_its_stale_compiled_module(tmp_path):
    """The build stamp covers the augmenting .pxd too: an edited layout means a rebuild."""
    need_compiled_build()
    root = copy_package(tmp_path)
    with open(root / "greensrv/_c_input_clock.pxd", "a") as layout:
        layout.write("\n# edited after the build\n")
    out = run_python(REPORT, root)
    assert out.returncode == 0, out.stderr
    _, names, _ = out.stdout.splitlines()
    # ... and the connection, compiled against it, stays pure with it (and so does the
    # greenlet-free life, compiled against the connection)
    assert names.split(",") == [n for n in ACCELERATED
                                if n not in ("greensrv.input_clock", "greensrv.connection",
                                             "greensrv.event_life")]
    warnings = [line for line in out.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(warnings) == 1, out.stderr
    assert "input_clock.py changed since greensrv._c_input_clock was compiled" in warnings[0]


def test_a_missing_build_stamp_counts_as_stale(tmp_path):
    need_compiled_build()
    root = copy_package(tmp_path)
    (root / "greensrv/filters/_c_resp.sha256").unlink()
    out = run_python(REPORT, root)
    _, names, _ = out.stdout.splitlines()
    assert names.split(",") == [n for n in ACCELERATED if n != "greensrv.filters.resp"]
    assert out.stderr.count("RuntimeWarning") == 1 and "_c_resp" in out.stderr


def test_filters_built_on_a_pure_base_class_stay_pure(tmp_path):
    """Compiled Line cimports the compiled Filter: with Filter pure, Line must be pure too."""
    need_compiled_build()
    root = copy_package(tmp_path)
    for stale in (root / "greensrv/filters").glob("_c_base.*.so"):
        stale.unlink()
    out = run_python(REPORT + "; print(isinstance(f.Line(), f.Filter))", root)
    assert out.returncode == 0, out.stderr
    _, names, module, is_filter = out.stdout.splitlines()
    # ... and so does the connection chain built on it; the modules that cimport nothing stay
    # compiled.
    assert names.split(",") == ["greensrv.filters.splitters", "greensrv.filters._c_linesplit",
                                "greensrv.filters.resp_encode", "greensrv.filters.resp_scan",
                                "greensrv.connection_state", "greensrv.input_clock",
                                "greensrv.transport", "greensrv.connection_ends",
                                "greensrv.client_life", "greensrv._c_accept"]
    assert (module, is_filter) == ("greensrv.filters.line", "True")


@pytest.mark.parametrize("env, expected", [
    ({"CC": "/bin/false"}, "did not compile"),
    ({"GREENSRV_PURE_PYTHON": "1"}, "GREENSRV_PURE_PYTHON is set"),
])
def test_without_a_compiler_the_build_succeeds_as_pure_python_with_one_warning(
        tmp_path, env, expected):
    need_program("cc", "gcc")  # without a compiler there is nothing to break
    pytest.importorskip("Cython", reason="Cython is not installed (the build is pure anyway)")
    for name in ("setup.py", "build_backend.py", "pyproject.toml", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(PACKAGE, tmp_path / "greensrv",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.sha256", "*.c"))
    environ = {k: v for k, v in os.environ.items() if k != "GREENSRV_PURE_PYTHON"}
    environ.update(env)
    out = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                         cwd=tmp_path, env=environ, capture_output=True, text=True,
                         timeout=CHILD_TIMEOUT)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("WARNING: greensrv")]
    assert len(warnings) == 1 and expected in warnings[0], out.stderr
    assert "pure-Python" in warnings[0]
    assert not list((tmp_path / "greensrv").rglob("*.so"))
