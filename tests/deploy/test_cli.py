"""The ``greensrv`` command (and ``python -m greensrv``) run as real processes on loopback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from master_support import (
    DEADLINE,
    ask,
    greensrv_argv,
    process_env,
    read_line,
)

import greensrv
from greensrv.cli import version_line

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")


def run_to_exit(app_dir: Path, *args: str,
                env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(greensrv_argv(*args), cwd=app_dir,
                          env=process_env(app_dir, **(env_extra or {})),
                          capture_output=True, text=True, timeout=DEADLINE)


def test_serves_a_handler_function_and_stops_on_term(start):
    master = start("app:handler", "--bind", "127.0.0.1:0")
    address = master.wait_ready()
    reply = ask(address, "hello")
    version, pid, line = reply.split()
    assert (version, line) == ("v1", "hello")
    assert int(pid) in master.workers()  # served by a worker, not by the master
    assert master.stop() == 0
    assert "Traceback" not in master.log()


def test_serves_an_unstarted_server_with_its_own_options(start, app_dir):
    (app_dir / "served.py").write_text(
        "import greensrv\n"
        "server = greensrv.Server(port=0, client_input=lambda c, r: c.put(r.upper()),\n"
        "                         name='shouter')\n")
    master = start("served:server")
    address = master.wait_ready()
    assert ask(address, "quiet") == "QUIET"
    assert "shouter: master" in master.log()  # the Server's name is its own
    assert master.stop() == 0


def test_python_dash_m_and_the_console_script_are_one_command(app_dir):
    script = Path(sys.executable).parent / "greensrv"  # installed by pip; absent from a checkout
    outputs = [run_to_exit(app_dir, "--version")]
    if script.exists():
        outputs.append(subprocess.run([script, "--version"], capture_output=True, text=True,
                                      env=process_env(app_dir), timeout=DEADLINE))
    for result in outputs:
        assert result.returncode == 0
        assert result.stdout.strip() == version_line()


def test_version_names_the_modules_running_compiled(app_dir):
    """--version says which build runs: the compiled modules, or that everything is pure."""
    line = version_line()
    assert line.startswith(f"greensrv {greensrv.__version__} (")
    if greensrv.compiled:
        assert "greensrv.filters.line" in line and "pure" not in line
    else:
        assert line.endswith("(pure Python, nothing compiled)")
    pure = run_to_exit(app_dir, "--version", env_extra={"GREENSRV_PURE_PYTHON": "1"})
    assert pure.returncode == 0
    assert pure.stdout.strip() == f"greensrv {greensrv.__version__} (pure Python, nothing compiled)"


def test_help_lists_every_option_a_person_needs(app_dir):
    result = run_to_exit(app_dir, "--help")
    assert result.returncode == 0
    for option in ("--bind", "--workers", "--reuse-port", "--concurrency", "--graceful-timeout",
                   "--worker-timeout", "--certfile", "--keyfile", "--ca-certs",
                   "--proxy-protocol", "--proxy-allow-from", "--log-level", "--pid",
                   "--version", "MODULE:NAME", "HUP"):
        assert option in result.stdout


@pytest.mark.parametrize("spec, named", [
    ("nosuchmodule:handler", "nosuchmodule"),
    ("app:nosuchname", "nosuchname"),
    ("app:VERSION", "app:VERSION"),
    ("app", "MODULE:NAME"),
    ("broken:handler", "broken"),
])
def test_a_bad_module_name_is_one_line_and_a_nonzero_exit(app_dir, spec, named):
    (app_dir / "broken.py").write_text("import nosuchdependency\n")
    result = run_to_exit(app_dir, spec)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0] and lines[0].startswith("greensrv: error:")


def test_debug_log_level_shows_the_traceback_of_a_bad_import(app_dir):
    (app_dir / "broken.py").write_text("import nosuchdependency\n")
    result = run_to_exit(app_dir, "broken:handler", "--log-level", "debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "nosuchdependency" in result.stderr


@pytest.mark.parametrize("args, named", [
    (("app:handler", "--workers", "0"), "workers"),
    (("app:handler", "--workers", "two"), "--workers"),
    (("app:handler", "--proxy-protocol", "v3"), "--proxy-protocol"),
    ((), "MODULE:NAME"),
    (("app:handler", "--admin-bind", "nonsense"), "--admin-bind='nonsense'"),
    (("app:handler", "--agent-bind", "127.0.0.1:http"), "--agent-bind"),
    (("app:handler", "--drain-delay", "-1"), "--drain-delay"),
    (("app:handler", "--access-log-format", "xml"), "--access-log-format"),
    (("app:handler", "--access-log", "/nonexistent/dir/access.log"),
     "--access-log /nonexistent/dir/access.log: No such file or directory"),
])
def test_bad_option_values_are_one_line_naming_the_option(app_dir, args, named):
    result = run_to_exit(app_dir, *args)
    assert result.returncode != 0
    assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_admin_bind_without_the_metrics_extra_says_how_to_get_it(app_dir):
    # h11 made unimportable, as on an installation without greensrv[metrics]
    code = ("import sys; sys.modules['h11'] = None; from greensrv.cli import main; "
            "sys.exit(main(['--admin-bind', '127.0.0.1:0', 'app:handler']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=app_dir, env=process_env(app_dir),
                            capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 1
    assert result.stderr.strip() == ("greensrv: error: --admin-bind needs h11: "
                                     "pip install 'greensrv[metrics]'")


def test_an_address_in_use_is_one_line_naming_it(app_dir, start):
    master = start("app:handler", "--bind", "127.0.0.1:0")
    host, port = master.wait_ready()
    result = run_to_exit(app_dir, "app:handler", "--bind", f"{host}:{port}")
    assert result.returncode != 0
    assert f"{host}:{port}" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bind_twice_serves_tcp_and_unix_and_removes_the_socket_file(start, app_dir):
    path = app_dir / "srv.sock"
    master = start("app:handler", "-b", "127.0.0.1:0", "-b", f"unix:{path}",
                   "--pid", str(app_dir / "master.pid"))
    address = master.wait_ready()
    assert ask(address, "over tcp").endswith(" over tcp")
    assert ask(str(path), "over unix").endswith(" over unix")
    assert (app_dir / "master.pid").read_text().strip() == str(master.pid)
    assert master.stop() == 0
    assert not path.exists()
    assert not (app_dir / "master.pid").exists()


def test_a_second_int_forces_the_stop(start):
    master = start("app:handler", "--bind", "127.0.0.1:0", "--graceful-timeout", "60")
    address = master.wait_ready()
    held = socket.create_connection(address)  # keeps the graceful stop waiting
    try:
        held.sendall(b"hold\r\n")
        held.recv(100)
        master.signal(signal.SIGINT)
        master.wait_log("stopping 1 worker")
        master.signal(signal.SIGINT)
        assert master.wait_exit(timeout=DEADLINE) == 0
        assert "second SIGINT" in master.log()
    finally:
        held.close()


def test_tls_options_serve_tls(start, app_dir):
    import ssl

    from helpers import self_signed_certificate

    cert, key = self_signed_certificate(app_dir)
    master = start("app:handler", "-b", "127.0.0.1:0", "--certfile", str(cert),
                   "--keyfile", str(key))
    address = master.wait_ready()
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(address, timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"secret\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = tls.recv(100)
            assert chunk, "EOF before the reply"
            data += chunk
        assert data.endswith(b" secret\r\n")
    assert master.stop() == 0


def closed_without_reply(sock: socket.socket) -> bool:
    """True when the server closed the connection without sending a byte (FIN, or a reset
    because our unread bytes were still in its buffer)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_proxy_options_reach_the_server(app_dir, start):
    """--proxy-protocol and --proxy-allow-from: a trusted peer's header names the client; a
    peer outside --proxy-allow-from is closed without a reply."""
    (app_dir / "whois.py").write_text(
        "def handler(conn):\n"
        "    for line in conn:\n"
        "        conn.put(f'{conn.remote_ip}:{conn.remote_port} {line}')\n")
    master = start("whois:handler", "--bind", "127.0.0.1:0", "--proxy-protocol", "v1",
                   "--proxy-allow-from", "127.0.0.1/32,::1")
    address = master.wait_ready()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nhello\r\n")
        assert read_line(sock) == "203.0.113.7:5555 hello"
    with socket.create_connection(address, timeout=10) as sock:  # no header: refused
        sock.sendall(b"hello\r\n")
        assert closed_without_reply(sock)
    assert master.stop() == 0

    untrusting = start("whois:handler", "--bind", "127.0.0.1:0", "--proxy-protocol", "any",
                       "--proxy-allow-from", "127.0.0.2")
    address = untrusting.wait_ready()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nhello\r\n")
        assert closed_without_reply(sock)
    untrusting.wait_log("not in proxy_trusted")  # the test's log reader may not have it yet
    assert untrusting.stop() == 0


def test_binds_ipv6_loopback(start):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    master = start("app:handler", "--bind", "[::1]:0")
    port = int(master.wait_log(r"serving \[::1\]:(\d+)").group(1))
    master.wait_log(r"master \d+ ready")
    with socket.create_connection(("::1", port), timeout=10) as sock:
        sock.sendall(b"six\r\n")
        assert read_line(sock).endswith(" six")
    assert master.stop() == 0


def test_binds_an_inherited_descriptor(start):
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        fd = listening.fileno()
        master = start("app:handler", "--bind", f"fd:{fd}", "-w", "2", pass_fds=(fd,))
        address = master.wait_ready()
        assert address == listening.getsockname()
    assert ask(address, "inherited").endswith(" inherited")  # our copy is closed: theirs serve
    assert master.stop() == 0
