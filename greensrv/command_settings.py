"""The command's settings resolved from the command line and ``--config FILE``.

Precedence, highest first: the command line, the file, the ``Server``'s own options, the
defaults. Each value remembers where it came from (``--graceful-timeout`` as typed, or
``FILE: graceful_timeout``), so an error about it names what the operator wrote, not the Python
option behind it. The file is TOML (``tomllib``; the ``tomli`` backport on Python 3.10).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .flags import FLAGS, Flag, by_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by tox's py310
    import tomli as tomllib

__all__ = ["CommandError", "Settings", "format_value", "resolve"]


class CommandError(Exception):
    """A problem the command reports in one line (bad MODULE:NAME, bad flag or key value)."""


@dataclass
class Settings:
    """What the command was told: ``values`` by config key, ``origins`` by config key."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def origin(self, key: str) -> str:
        """How the operator wrote the setting: the flag, or ``FILE: key``."""
        return self.origins.get(key, by_key()[key].flag)

    def server_options(self) -> dict[str, Any]:
        """The Server options these settings give (only those given)."""
        keys = by_key()
        return {keys[k].option: v for k, v in self.values.items()  # type: ignore[misc]
                if keys[k].option is not None}

    def in_their_words(self, message: str) -> str:
        """``message`` with each Server option named as the operator set it (a Server error
        says ``shutdown_timeout``; the operator typed ``--graceful-timeout``)."""
        for key in self.values:
            option = by_key()[key].option
            if option is not None and option != "name":  # "name" is also an everyday word
                message = re.sub(rf"\b{option}\b", self.origin(key), message)
        return message


def resolve(args: argparse.Namespace) -> Settings:
    """The settings from ``--config`` (if given), then the command line over them."""
    settings = Settings()
    if args.config:
        _read_file(args.config, settings)
    for flag in FLAGS:
        value = getattr(args, flag.key, None)
        if value is None:
            continue
        settings.values[flag.key] = flag.switch_value if flag.metavar is None else value
        settings.origins[flag.key] = flag.flag
    return settings


def _read_file(path: str, settings: Settings) -> None:
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise CommandError(f"--config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CommandError(f"--config {path}: not valid TOML: {exc}") from None
    keys = by_key()
    for key, raw in document.items():
        flag = keys.get(key)
        where = f"{path}: {key}"
        if flag is None:
            close = difflib.get_close_matches(key.replace("-", "_"), keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CommandError(f"{where}: no such setting{hint}; keys are the long options "
                               "with '-' written '_' (greensrv --help lists them)")
        try:
            value = _from_file(flag, raw)
        except ValueError as exc:
            raise CommandError(f"{where}: {exc}") from None
        settings.values[key] = value
        settings.origins[key] = where


def _from_file(flag: Flag, raw: Any) -> Any:
    if flag.metavar is None:  # a switch: true sets it, false says the opposite
        on = flag.parse(raw)
        return flag.switch_value if on else not flag.switch_value
    if flag.repeat:
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise ValueError("expected at least one value")
        return [flag.parse(item) for item in items]
    return flag.parse(raw)


def format_value(value: Any) -> str:
    """A value as ``--check-config`` prints it: TOML, so the output can be a config file
    (``"none"`` for a limit switched off)."""
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Iterable) and not isinstance(value, str):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return json.dumps(str(value))
