"""Swap a pure-Python module for its compiled twin when that is present and current.

The hot modules (``setup.py``'s ``ACCELERATED``) are compiled by Cython from their unchanged
``.py`` into a sibling extension ``_c_<name>``. The ``.py`` module is always the one that is
imported; its last statement, ``accelerate(globals(), "pkg._c_name")``, replaces its contents with
the compiled module's (gevent's ``import_c_accel``), unless:

- ``GREENSRV_PURE_PYTHON`` is set (to anything but ``0``) in the environment at import time;
- the compiled module is not there (no compiler at install time: the ``.py`` is the fallback);
- a module it is compiled against (its base class, say) runs as pure Python;
- the ``.py``, or its augmenting ``_c_<name>.pxd``, changed since the compiled module was built
  (an editable install after an edit): then one warning says so and how to rebuild, and the
  pure module runs.

Cython-only helpers (``.pyx``, e.g. ``filters/_c_linesplit.pyx``) are loaded with :func:`load`,
under the same rules, and their callers fall back to pure-Python code without them.

:data:`compiled` lists the modules that run compiled, in import order.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["PURE_PYTHON", "accelerate", "compiled", "load", "source_hash"]

#: Read once at import: which build runs is decided for the whole process.
PURE_PYTHON = os.environ.get("GREENSRV_PURE_PYTHON", "") not in ("", "0")

#: Names of the modules now running compiled (``greensrv.filters.line`` ...), in import order.
compiled: list[str] = []

REBUILD_HINT = "rebuild with `python setup.py build_ext --inplace` or `pip install -e .`"


def accelerate(module_globals: dict[str, Any], compiled_name: str,
               requires: tuple[str, ...] = ()) -> bool:
    """Replace the calling module's contents with ``compiled_name``'s; True if it did.

    ``requires``: modules the compiled one was built against (it ``cimport``s them); unless
    every one of them runs compiled, this one stays pure too, so that pure and compiled
    classes never mix in one hierarchy.
    """
    name = module_globals["__name__"]
    if name == compiled_name or PURE_PYTHON:
        return False  # the compiled module running its own copy of this line, or forced pure
    if any(required not in compiled for required in requires):
        return False
    source = module_globals.get("__file__")
    accelerated = load(compiled_name, Path(source) if source else None, name)
    if accelerated is None:
        return False
    module_globals.update(
        (key, value) for key, value in vars(accelerated).items()
        if not (key.startswith("__") and key.endswith("__"))
    )
    return True


_loaded: dict[str, ModuleType | None] = {}


def load(compiled_name: str, source: Path | None, name: str | None = None) -> ModuleType | None:
    """The compiled module ``compiled_name`` if present and built from ``source`` as it is now.

    None when forced pure, not built, or stale (then with one warning). ``name`` is what
    :data:`compiled` records (default: ``compiled_name``). Asked again, gives the same answer.
    """
    if PURE_PYTHON:
        return None
    if compiled_name in _loaded:
        return _loaded[compiled_name]
    try:
        accelerated: ModuleType | None = importlib.import_module(compiled_name)
    except ImportError:
        accelerated = None  # not built: the .py is the fallback
    if accelerated is not None and (source is None or not _is_current(accelerated, source)):
        warnings.warn(
            f"greensrv: {source} changed since {compiled_name} was compiled (or its .pxd "
            f"did, or its build stamp is missing); running the pure-Python module "
            f"({REBUILD_HINT})",
            RuntimeWarning, stacklevel=3,
        )
        accelerated = None
    _loaded[compiled_name] = accelerated
    if accelerated is not None:
        compiled.append(name or compiled_name)
    return accelerated


def source_hash(source: Path) -> str:
    """What a build stamp records: the SHA-256 of the source compiled, then of its augmenting
    ``_c_<name>.pxd`` when it has one (setup.py writes the same)."""
    digest = hashlib.sha256(source.read_bytes())
    pxd = source.with_name(f"_c_{source.stem}.pxd")
    if source.suffix == ".py" and pxd.exists():
        digest.update(pxd.read_bytes())
    return digest.hexdigest()


def _is_current(accelerated: Any, source: Path) -> bool:
    """Does the build stamp next to the compiled module match the source's hash now?"""
    stamp = Path(accelerated.__file__).with_name(accelerated.__name__.rpartition(".")[2]
                                                 + ".sha256")
    try:
        recorded = stamp.read_text().strip()
        current = source_hash(source)
    except OSError:
        return False
    return recorded == current
