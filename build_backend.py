"""The build backend: setuptools', asking for Cython only when the generated C is not current.

A source distribution carries the C that Cython generated from each compiled module (as gevent's
does), under :data:`GENERATED`, with :data:`INDEX` recording what each file was generated from.
Building from it then needs a C compiler but not Cython, so an offline build works. A checkout has
no generated C, and an edited source makes its C stale: then Cython is a build requirement, as
before. ``setup.py`` uses the same test to pick, per module, the shipped C or a fresh Cython run,
so an edited ``.py`` is never compiled from C generated from its old text.

``pyproject.toml`` names this module (``backend-path``); everything but the requirements is
setuptools' own ``build_meta``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403 (the backend's other hooks, unchanged)

HERE = Path(__file__).resolve().parent

#: Where a source distribution keeps the generated C, one ``<module>.c`` per extension.
GENERATED = HERE / "generated-c"
#: ``{"greensrv.filters._c_line": {"source": "greensrv/filters/line.py", "inputs": "<sha256>"},
#: ...}``: what each C file was generated from (:func:`inputs_hash`), written with the C.
INDEX = GENERATED / "index.json"
#: The Cython version the C needs at least (also the requirement when regenerating it).
CYTHON = "Cython>=3.0"


def inputs_hash(source: str) -> str:
    """The SHA-256 of what Cython reads for ``source``: itself and every ``.pxd`` of the package.

    Any ``.pxd`` counts, not only the module's own: a changed field layout in one ``.pxd``
    changes the C of every module that ``cimport``s it.
    """
    digest = hashlib.sha256()
    pxds = sorted(str(p.relative_to(HERE)) for p in (HERE / "greensrv").rglob("*.pxd"))
    for name in (source, *pxds):
        digest.update(f"{name}\0".encode())
        digest.update((HERE / name).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def shipped_c(module: str, source: str) -> Path | None:
    """The shipped C of extension ``module`` if it was generated from ``source`` as it is now."""
    path = GENERATED / f"{module}.c"
    entry = _index().get(module)
    if entry is None or entry["source"] != source or not path.is_file():
        return None
    try:
        current = inputs_hash(source)
    except OSError:  # the source (or a .pxd) is gone: nothing to be current with
        return None
    return path if entry["inputs"] == current else None


def all_shipped_c_current() -> bool:
    """Is there generated C, and is every file of it current with its source?"""
    index = _index()
    return bool(index) and all(shipped_c(module, entry["source"]) is not None
                               for module, entry in index.items())


def _index() -> dict[str, dict[str, str]]:
    try:
        return dict(json.loads(INDEX.read_text()))
    except (OSError, ValueError):
        return {}


def write_index(directory: Path, sources: dict[str, str]) -> None:
    """Record, in a release tree's generated C, what each module's C was generated from."""
    entries = {module: {"source": source, "inputs": inputs_hash(source)}
               for module, source in sorted(sources.items())}
    (directory / INDEX.relative_to(HERE)).write_text(json.dumps(entries, indent=1) + "\n")


def _needs_cython() -> bool:
    if os.environ.get("GREENSRV_PURE_PYTHON", "") not in ("", "0"):
        return False  # setup.py builds no extension at all
    return sys.implementation.name == "cpython" and not all_shipped_c_current()


def get_requires_for_build_wheel(config_settings=None):
    extra = [CYTHON] if _needs_cython() else []
    return [*build_meta.get_requires_for_build_wheel(config_settings), *extra]


def get_requires_for_build_editable(config_settings=None):
    extra = [CYTHON] if _needs_cython() else []
    return [*build_meta.get_requires_for_build_editable(config_settings), *extra]


def get_requires_for_build_sdist(config_settings=None):
    """The sdist generates the C it carries: Cython, always."""
    return [*build_meta.get_requires_for_build_sdist(config_settings), CYTHON]
