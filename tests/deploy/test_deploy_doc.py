"""docs/deploy.md is checked against the code and the real tools: its table of flags against
the command's own table, its systemd units with ``systemd-analyze verify``, its HAProxy
configuration with ``haproxy -c``, its config file with ``--check-config``. Each is taken from
the page's text, so the page cannot drift from what works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import need_program
from master_support import DEADLINE, greensrv_argv, process_env

from greensrv.flags import FLAGS

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
#: The command's own options, which no config key or Server option stands behind.
COMMAND_ONLY = {"--config", "--check-config", "--version"}


def doc() -> str:
    return DOC.read_text()


def fenced(language: str) -> list[tuple[str, str]]:
    """``(the line before the block, the block)`` for each fenced block in ``language``."""
    return [(m.group(1), m.group(2)) for m in
            re.finditer(rf"([^\n]*)\n\n```{language}\n(.*?)```", doc(), re.S)]


def flag_rows() -> list[list[str]]:
    table = doc().split("| flag | `Server` option | config key | what it does |")[1]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_flag_table_lists_every_flag_with_its_option_and_key():
    documented: dict[str, tuple[str, str]] = {}
    for flag_cell, option_cell, key_cell, _ in flag_rows():
        for flag in re.findall(r"--[a-z-]+", flag_cell):
            documented[flag] = (option_cell, key_cell)
    assert set(documented) == {f.flag for f in FLAGS} | COMMAND_ONLY
    for flag in FLAGS:
        option_cell, key_cell = documented[flag.flag]
        assert f"`{flag.key}`" in key_cell, flag.flag
        if flag.flag in ("--certfile", "--keyfile", "--ca-certs"):
            assert option_cell == "`ssl_context`"
        elif flag.option is None:
            assert option_cell == "—", flag.flag
        else:
            assert f"`{flag.option}`" in option_cell, flag.flag


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path):
    analyze = need_program("systemd-analyze", "systemd")
    units = {re.search(r"/etc/systemd/system/([\w.]+)", before).group(1): text
             for before, text in fenced("ini") if "/etc/systemd/system/" in before}
    assert set(units) == {"echo.socket", "echo.service"}
    service = units["echo.service"]
    assert re.search(r"^Type=notify$", service, re.M)  # what Debian 12's systemd 252 accepts
    # The only change: ExecStart's program is the greensrv installed here, not /srv/echo's.
    here = Path(sys.executable).parent / "greensrv"
    if not here.exists():
        pytest.skip("the greensrv console script is not installed (pip install -e .)")
    units["echo.service"] = re.sub(r"^ExecStart=\S+", f"ExecStart={here}", service, flags=re.M)
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run([analyze, "verify", *(str(tmp_path / n) for n in units)],
                            capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_haproxy_configuration_passes_haproxy_check_without_warnings(tmp_path):
    haproxy = need_program("haproxy", "haproxy")
    ((_, config),) = fenced("haproxy")
    for timeout in ("connect", "client", "server"):
        assert f"timeout {timeout} " in config
    (tmp_path / "haproxy.cfg").write_text(config)
    result = subprocess.run([haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")],
                            capture_output=True, text=True, timeout=DEADLINE)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "WARNING" not in output and "ALERT" not in output, output


def test_the_config_file_example_is_read_as_written(app_dir):
    ((_, config),) = fenced("toml")
    (app_dir / "greensrv.toml").write_text(config)
    result = subprocess.run(greensrv_argv("app:handler", "--config", "greensrv.toml",
                                          "--check-config"),
                            cwd=app_dir, env=process_env(app_dir), capture_output=True,
                            text=True, timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    for line in config.strip().splitlines():
        key, value = line.split(" = ")
        normal = {"10": "10.0", "300": "300.0"}.get(value, value)  # seconds print as floats
        assert f"{key} = {normal}" in printed, (line, printed)
