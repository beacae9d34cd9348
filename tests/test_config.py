"""The configuration: every option checked once, frozen, its defaults from one module."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import greensrv
from greensrv import defaults
from greensrv.addresses import ListenSpec
from greensrv.config import OPTION_DEFAULTS, ServerConfig


def handler(conn):
    conn.get()


def test_the_server_signature_and_the_configuration_agree_on_every_option_and_default():
    parameters = inspect.signature(greensrv.Server).parameters
    assert list(parameters) == list(OPTION_DEFAULTS)
    for name, parameter in parameters.items():
        assert parameter.default == OPTION_DEFAULTS[name], name


def test_every_default_is_defined_once_with_a_reason():
    source = inspect.getsource(defaults).splitlines()
    names = [n for n in vars(defaults) if n.startswith("DEFAULT_")]
    assert len(names) >= 20
    for name in names:
        line = next(i for i, text in enumerate(source) if text.startswith(f"{name} ="))
        assert source[line - 1].startswith("#:"), f"{name} has no '#:' reason above it"


def test_a_configuration_is_frozen_and_holds_the_checked_values():
    config = greensrv.Server(handler, port=0, shutdown_timeout=3, concurrency=5).config
    assert config.shutdown_timeout == 3.0 and isinstance(config.shutdown_timeout, float)
    assert config.concurrency == 5 and config.listen == (ListenSpec("tcp", ("127.0.0.1", 0)),)
    assert config.limits.record_min_rate == defaults.DEFAULT_RECORD_MIN_RATE
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.concurrency = 6  # type: ignore[misc]


def test_replace_checks_the_changed_options_again_and_names_a_bad_one():
    config = ServerConfig.from_options({"handler": handler, "host": "127.0.0.1", "port": 0})
    changed = config.replace(listen=["unix:/tmp/x.sock", "[::1]:7000"], workers=2)
    assert changed.listen == (ListenSpec("unix", "/tmp/x.sock"), ListenSpec("tcp", ("::1", 7000)))
    assert changed.workers == 2 and config.workers is None  # the original is untouched
    assert changed.replace(port=9).listen == (ListenSpec("tcp", ("127.0.0.1", 9)),)
    with pytest.raises(ValueError, match="workers"):
        config.replace(workers=0)
    with pytest.raises(TypeError, match="'no_such_option'"):
        config.replace(no_such_option=1)


def test_the_server_is_made_again_from_a_replaced_configuration_without_changing_the_first():
    server = greensrv.Server(handler, port=0, name="first")
    other = greensrv.Server.from_config(server.config.replace(name="second", concurrency=2))
    assert (server.name, server.concurrency) == ("first", -1)
    assert (other.name, other.concurrency) == ("second", 2)
    assert other.options["handler"] is handler
