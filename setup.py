"""Setuptools entry point; the metadata lives in pyproject.toml. This file adds the compiled
accelerators.

Each module in :data:`ACCELERATED` is compiled by Cython, in pure-Python mode, from its
unchanged ``.py`` source into a sibling extension named ``_c_<module>`` (gevent's own build);
the augmenting ``_c_<module>.pxd`` next to it gives the types. The ``.py`` module stays the one
that imports: at its end it swaps in the compiled one when that is present and current
(``greensrv/_accelerate.py``). Next to every extension the build writes ``_c_<module>.sha256``,
the hash of the source it was compiled from and of its ``.pxd``, so an edited ``.py`` or
``.pxd`` is never shadowed by a stale compiled module.

Without Cython or without a working C compiler (or with ``GREENSRV_PURE_PYTHON=1``) the install
still succeeds, as pure Python, with one warning line. Rebuild in place after editing a compiled
module: ``python setup.py build_ext --inplace``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent

#: Modules compiled from their .py with an augmenting .pxd: adding one is one line here, a
#: ``_c_<name>.pxd`` beside it (other modules cimport its types by that compiled name, as gevent
#: does), and ``accelerate(globals(), ...)`` at the end of the .py.
ACCELERATED = [
    "greensrv/filters/base.py",
    "greensrv/filters/splitters.py",
    "greensrv/filters/line.py",
    "greensrv/filters/resp.py",
    "greensrv/output_queue.py",
    "greensrv/input_clock.py",
    "greensrv/connection.py",
    "greensrv/client_life.py",
    "greensrv/transport.py",
    "greensrv/connection_state.py",
]

#: Cython-only modules (``.pyx``), each with a pure-Python fallback the package imports instead
#: when it is missing.
CYTHON_ONLY = [
    "greensrv/filters/_c_linesplit.pyx",
]

#: Cython settings: the .pxd files alone give the C types (Python annotations stay hints for
#: mypy); no bounds checks or negative-index wraparound where the .pxd asks for speed.
DIRECTIVES = {
    "language_level": 3,
    "annotation_typing": False,
    "infer_types": True,
    "embedsignature": False,
}


def accelerator_name(source: str) -> str:
    """``greensrv/filters/line.py`` -> ``greensrv.filters._c_line``."""
    path = Path(source)
    stem = path.stem if path.suffix == ".pyx" else f"_c_{path.stem}"
    return ".".join((*path.parent.parts, stem))


def source_hash(source: str) -> str:
    """What the import-time check compares: the source's and its ``.pxd``'s SHA-256, by
    ``greensrv/_accelerate.py``'s own function (loaded by path: the package imports gevent)."""
    spec = importlib.util.spec_from_file_location("_greensrv_accelerate",
                                                  HERE / "greensrv" / "_accelerate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.source_hash(HERE / source))


def extensions() -> list[Extension]:
    # -g0 / -Wl,-S: no debug info in wheels (CPython's CFLAGS carry -g).
    compile_args = [] if sys.platform == "win32" else ["-O2", "-g0"]
    link_args = ["-Wl,-S"] if sys.platform.startswith("linux") else []
    return [
        # optional: a module that fails to compile stays pure Python (BuildAccelerators).
        Extension(accelerator_name(source), [source], extra_compile_args=compile_args,
                  extra_link_args=link_args, optional=True)
        for source in ACCELERATED + CYTHON_ONLY
    ]


class BuildAccelerators(build_ext):
    """build_ext that cythonizes lazily and falls back to pure Python with one warning line."""

    def run(self) -> None:
        self._failed: list[tuple[str, Exception]] = []
        reason = self._why_pure()
        if reason is None:
            from Cython.Build import cythonize

            # Generated C goes under build/, never beside the sources (nor into a wheel).
            try:
                generated = cythonize(self.extensions, build_dir="build/cython",
                                      compiler_directives=DIRECTIVES, quiet=True,
                                      force=self.force or _layout_changed())
                for ext, done in zip(self.extensions, generated, strict=True):
                    ext.sources = done.sources  # keep setuptools' own Extension objects
                super().run()
            except Exception as exc:  # a Cython error, a compiler that cannot even start ...
                reason = f"building the extensions failed: {_short(exc)}"
        if reason is None and self._failed:
            names = ", ".join(name.rpartition(".")[2] for name, _ in self._failed)
            reason = f"{names} did not compile: {_short(self._failed[0][1])}"
        if reason is not None:
            sys.stderr.write(f"WARNING: greensrv installs the pure-Python modules instead of "
                             f"the compiled ones (slower): {reason}\n")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # CompileError, LinkError: that module stays pure Python
            self._failed.append((ext.name, exc))
            return
        source = self._source_of(ext)
        if source is not None:  # record what it was compiled from, for the import-time check
            Path(self._stamps(ext)[0]).write_text(source_hash(source) + "\n")

    # The stamps travel with the extensions: into the source tree (--inplace, pip install -e),
    # into wheels and installs (build_lib) and into the install record.
    def copy_extensions_to_source(self) -> None:
        super().copy_extensions_to_source()
        for regular, inplace in self._stamp_mapping():
            self.copy_file(regular, inplace, level=self.verbose)

    def _get_output_mapping(self):  # type: ignore[no-untyped-def]
        yield from super()._get_output_mapping()
        if self.inplace:
            yield from self._stamp_mapping()

    def get_outputs(self) -> list[str]:
        outputs = super().get_outputs()
        if self.inplace:
            return outputs
        return [*outputs, *(regular for regular, _ in self._stamp_mapping())]

    def _stamp_mapping(self) -> list[tuple[str, str]]:
        pairs = [self._stamps(ext) for ext in self.extensions if self._source_of(ext)]
        return [(regular, inplace) for regular, inplace in pairs if os.path.exists(regular)]

    def _stamps(self, ext: Extension) -> tuple[str, str]:
        """The stamp's path in build_lib and in the source tree."""
        inplace_file, regular_file = self._get_inplace_equivalent(
            self.get_finalized_command("build_py"), ext)
        stamp = ext.name.rpartition(".")[2] + ".sha256"
        return (os.path.join(os.path.dirname(regular_file), stamp),
                os.path.join(os.path.dirname(inplace_file), stamp))

    @staticmethod
    def _source_of(ext: Extension) -> str | None:
        return next((s for s in ACCELERATED + CYTHON_ONLY if accelerator_name(s) == ext.name),
                    None)

    @staticmethod
    def _why_pure() -> str | None:
        if os.environ.get("GREENSRV_PURE_PYTHON", "") not in ("", "0"):
            return "GREENSRV_PURE_PYTHON is set"
        if sys.implementation.name != "cpython":
            return f"compiled modules are for CPython, not {sys.implementation.name}"
        try:
            import Cython  # noqa: F401
        except ImportError:
            return "Cython is not installed"
        return None


def _layout_changed() -> bool:
    """Has a .pxd changed since the C was last generated? Cython does not regenerate a module
    when a .pxd it cimports by its full name changes, and a stale C layout crashes at run time
    (a vtable slot that moved): then every module is regenerated."""
    generated = list((HERE / "build" / "cython").rglob("*.c"))
    if not generated:
        return False
    oldest = min(path.stat().st_mtime for path in generated)
    return any(path.stat().st_mtime > oldest for path in (HERE / "greensrv").rglob("*.pxd"))


def _short(exc: Exception) -> str:
    """One line about a build failure (a compiler error quotes the whole command line)."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 160 else text[:157] + "..."


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildAccelerators})
