"""Bad flags fail at start in one line that names the flag as the operator typed it, and a
number that is not a number (NaN, infinity) is refused wherever seconds or bytes are asked."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from master_support import DEADLINE, greensrv_argv, process_env

import greensrv

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")


def run_to_exit(app_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(greensrv_argv(*args), cwd=app_dir, env=process_env(app_dir),
                          capture_output=True, text=True, timeout=DEADLINE)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("greensrv: error:"), lines[0]
    return lines[0]


@pytest.mark.parametrize("flag", ["--graceful-timeout", "--worker-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_nan_and_infinity_are_refused_naming_the_flag(app_dir, flag, value):
    line = one_error_line(run_to_exit(app_dir, "app:handler", flag, value))
    assert flag in line


@pytest.mark.parametrize("option", ["shutdown_timeout", "record_timeout", "idle_timeout",
                                    "handshake_timeout", "record_grace", "record_min_rate",
                                    "record_start_timeout", "shed_min_age", "proxy_timeout",
                                    "worker_timeout"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_server_refuses_nan_and_infinity_naming_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        greensrv.Server(lambda conn: None, **{option: value})


def test_proxy_allow_from_without_proxy_protocol_is_an_error(app_dir):
    line = one_error_line(run_to_exit(app_dir, "app:handler", "--proxy-allow-from", "10.0.0.0/8"))
    assert "--proxy-allow-from" in line and "--proxy-protocol" in line


def test_an_empty_proxy_allow_from_is_an_error_not_loopback(app_dir):
    line = one_error_line(run_to_exit(app_dir, "app:handler", "--proxy-protocol", "v1",
                                      "--proxy-allow-from", ""))
    assert "--proxy-allow-from" in line


@pytest.mark.parametrize("args, wanted, unwanted", [
    (("--graceful-timeout", "-1"), "--graceful-timeout", "shutdown_timeout"),
    (("--worker-timeout", "0"), "--worker-timeout", "worker_timeout"),
    (("--proxy-protocol", "v1", "--proxy-allow-from", "10.0.0.0/33"), "--proxy-allow-from",
     "proxy_trusted"),
    (("--concurrency", "-5"), "--concurrency", "concurrency must"),
    (("--bind", "127.0.0.1:99999"), "port 99999 is out of range", "cannot parse"),
    (("--bind", "127.0.0.1:99999"), "--bind", "listen:"),
])
def test_errors_name_the_flag_as_typed(app_dir, args, wanted, unwanted):
    line = one_error_line(run_to_exit(app_dir, "app:handler", *args))
    assert wanted in line and unwanted not in line


def test_certfile_naming_a_directory_says_so(app_dir):
    line = one_error_line(run_to_exit(app_dir, "app:handler", "--certfile", str(app_dir)))
    assert "--certfile" in line and str(app_dir) in line and "directory" in line


def test_a_certificate_without_its_key_suggests_keyfile(app_dir):
    from helpers import self_signed_certificate

    cert, _key = self_signed_certificate(app_dir)
    line = one_error_line(run_to_exit(app_dir, "app:handler", "--certfile", str(cert)))
    assert "--keyfile" in line and str(cert) in line
