"""The command's settings: ``--config FILE`` and its precedence (command line, then the file,
then the Server's own options, then defaults), read back through ``--check-config``; a
``MODULE:NAME`` naming a file; ``--app-dir``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import need_program
from master_support import DEADLINE, ask, greensrv_argv, process_env

from greensrv.flags import FLAGS

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

SERVED = '''\
import greensrv
from app import handler

server = greensrv.Server(handler, port=0, idle_timeout=5, record_grace=3,
                         handshake_timeout=4, name="served")
'''


def run_to_exit(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(greensrv_argv(*args), cwd=cwd, env=process_env(cwd),
                          capture_output=True, text=True, timeout=DEADLINE)


def resolved(result: subprocess.CompletedProcess) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    pairs = [line.split(" = ", 1) for line in result.stdout.splitlines()]
    return {key: value for key, value in pairs}


def test_precedence_command_line_then_file_then_server_then_defaults(app_dir):
    (app_dir / "served.py").write_text(SERVED)
    (app_dir / "greensrv.toml").write_text(
        'idle_timeout = 6\nrecord_grace = 7\nbind = ["127.0.0.1:7123"]\nworkers = 3\n')
    settings = resolved(run_to_exit(app_dir, "served:server", "--config", "greensrv.toml",
                                    "--idle-timeout", "8", "--check-config"))
    assert settings["idle_timeout"] == "8.0"  # the command line
    assert settings["record_grace"] == "7.0"  # the file
    assert settings["bind"] == '["127.0.0.1:7123"]'
    assert settings["workers"] == "3"
    assert settings["handshake_timeout"] == "4.0"  # the Server's own
    assert settings["name"] == '"served"'
    assert settings["output_limit"] == "8388608"  # the default
    assert settings["record_start_timeout"] == '"none"'


def test_check_config_prints_every_server_setting_with_the_files_keys(app_dir):
    settings = resolved(run_to_exit(app_dir, "app:handler", "--check-config"))
    for flag in FLAGS:
        if flag.option is not None and not flag.option.startswith("proxy_"):
            assert flag.key in settings, flag.key
    assert "proxy_allow_from" not in settings  # meaningless without --proxy-protocol
    with_proxy = resolved(run_to_exit(app_dir, "app:handler", "--proxy-protocol", "v2",
                                      "--check-config"))
    assert with_proxy["proxy_allow_from"] == '["127.0.0.0/8", "::1/128"]'
    assert with_proxy["proxy_protocol"] == '"v2"'
    assert settings["bind"] == '["127.0.0.1:8000"]'
    assert settings["log_level"] == '"info"'


def test_check_configs_output_is_itself_a_config_file(app_dir):
    (app_dir / "served.py").write_text(SERVED)
    first = run_to_exit(app_dir, "served:server", "--idle-timeout", "none", "--check-config")
    (app_dir / "again.toml").write_text(first.stdout)
    again = run_to_exit(app_dir, "app:handler", "--config", "again.toml", "--check-config")
    assert resolved(again) == resolved(first)


@pytest.mark.parametrize("toml, named", [
    ("graceful_timeout = nan\n", "greensrv.toml: graceful_timeout"),
    ("graceful_timeout = -1\n", "greensrv.toml: graceful_timeout"),
    ("workers = 0\n", "greensrv.toml: workers"),
    ("worker = 2\n", "'workers'"),
    ("low_mark = 600000\n", "greensrv.toml: low_mark"),
    ("proxy_allow_from = ['10.0.0.0/8']\n", "--proxy-protocol"),
    ("workers = [\n", "not valid TOML"),
])
def test_a_bad_config_file_is_one_line_naming_the_key(app_dir, toml, named):
    (app_dir / "greensrv.toml").write_text(toml)
    for args in (("--check-config",), ("-b", "127.0.0.1:0")):
        result = run_to_exit(app_dir, "app:handler", "--config", "greensrv.toml", *args)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], result.stderr


def test_a_missing_config_file_is_one_line(app_dir):
    result = run_to_exit(app_dir, "app:handler", "--config", "nowhere.toml", "--check-config")
    assert result.returncode == 1
    assert result.stderr.strip() == ("greensrv: error: --config nowhere.toml: No such file or "
                                     "directory")


def test_module_name_may_be_a_file_path(start, app_dir):
    (app_dir / "elsewhere").mkdir()
    (app_dir / "elsewhere" / "shout.py").write_text(
        "import greensrv\n"
        "server = greensrv.Server(port=0, client_input=lambda c, r: c.put(r.upper()))\n")
    master = start("elsewhere/shout.py:server")
    address = master.wait_ready()
    assert ask(address, "from a file") == "FROM A FILE"
    assert master.stop() == 0
    missing = run_to_exit(app_dir, "elsewhere/nothere.py:server")
    assert missing.returncode == 1 and "elsewhere/nothere.py" in missing.stderr


def test_app_dir_is_searched_first(start, app_dir):
    (app_dir / "other").mkdir()
    (app_dir / "other" / "app.py").write_text(
        "def handler(conn):\n"
        "    for line in conn:\n"
        "        conn.put('from other ' + line)\n")
    master = start("app:handler", "-b", "127.0.0.1:0", "--app-dir", str(app_dir / "other"))
    address = master.wait_ready()
    assert ask(address, "x") == "from other x"
    assert master.stop() == 0


#: Server options no flag can carry: code (callbacks, filters, the handler) and the forms that
#: --bind, --certfile/--keyfile/--ca-certs and --access-log PATH stand for.
NOT_FLAGS = {"handler", "client_input", "host", "port", "filter", "input_filter", "output_filter",
             "client_pre_connect", "client_connected", "client_args", "client_disconnected",
             "client_error", "client_flushed", "client_high", "client_low", "started", "error",
             "ssl_context", "access_log"}


def test_every_server_option_has_a_flag():
    from greensrv.config import OPTION_DEFAULTS

    flagged = {flag.option for flag in FLAGS if flag.option is not None}
    missing = set(OPTION_DEFAULTS) - NOT_FLAGS - flagged
    assert not missing, (f"Server options without a flag: {sorted(missing)}; add each to "
                         "greensrv/flags.py and to docs/deploy.md's table")


def listen_backlogs(port: int) -> list[int]:
    """The backlog of each listening socket on ``port`` (``ss`` shows it as Send-Q)."""
    ss = need_program("ss", "iproute2")
    out = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=DEADLINE, check=True).stdout
    return [int(line.split()[2]) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("extra", [(), ("--reuse-port",)])
def test_backlog_sets_each_listening_sockets_queue(start, extra):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2", "--backlog", "7", *extra)
    _, port = master.wait_ready()
    backlogs = listen_backlogs(port)
    assert backlogs and set(backlogs) == {7}, backlogs  # one shared, or one per worker
    assert len(backlogs) == (2 if extra else 1)
    assert master.stop() == 0


def test_backlog_is_a_server_option_checked_at_construction():
    import greensrv

    with pytest.raises(ValueError, match="backlog"):
        greensrv.Server(lambda conn: None, backlog=0)
    with greensrv.Server(lambda conn: None, backlog=5) as server:
        assert listen_backlogs(server.address[1]) == [5]
