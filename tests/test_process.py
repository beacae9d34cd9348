"""What a new user meets in the first hour: the log, the signals, the errors, the help text.

Programs run as real processes (``sys.executable``, the package from this tree) whose stderr
goes to a file; each wait polls that file or a socket against a deadline.
"""

from __future__ import annotations

import errno
import inspect
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
import pytest

import greensrv
import greensrv.tls
from greensrv.filters import Line

#: The directory holding the greensrv the tests import (an installed copy under tox), so the
#: programs run the same code.
PACKAGE_ROOT = Path(greensrv.__file__).resolve().parent.parent
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Bound for anything that takes a fraction of a second on an idle machine.
DEADLINE = 20.0


class Program:
    """A Python program run as a process; stdout and stderr go to one file."""

    def __init__(self, tmp_path: Path, argv: list[str]) -> None:
        self.log_path = tmp_path / "output.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, *argv], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, env=env)

    @classmethod
    def script(cls, tmp_path: Path, source: str, *args: str) -> Program:
        path = tmp_path / "program.py"
        path.write_text(textwrap.dedent(source))
        return cls(tmp_path, [str(path), *args])

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, count: int = 1) -> str:
        """Poll the output until ``text`` appears ``count`` times; fail at the deadline."""
        deadline = time.monotonic() + DEADLINE
        while self.output().count(text) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in the output within {DEADLINE} s:\n{self.output()}")
            if self.proc.poll() is not None and self.output().count(text) < count:
                pytest.fail(f"exited with {self.proc.returncode} before printing {text!r}:\n"
                            f"{self.output()}")
            time.sleep(0.02)  # poll interval for a file another process writes
        return self.output()

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {DEADLINE} s:\n{self.output()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def program(tmp_path):
    started: list[Program] = []

    def make(source: str, *args: str) -> Program:
        prog = Program.script(tmp_path, source, *args)
        started.append(prog)
        return prog

    yield make
    for prog in started:
        prog.kill()


@pytest.fixture
def busy_port():
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def port_from(output: str) -> int:
    """The port of the first 'listening on 127.0.0.1:PORT' line."""
    for line in output.splitlines():
        if "listening on 127.0.0.1:" in line:
            return int(line.rsplit(":", 1)[1])
    raise AssertionError(f"no 'listening on' line in:\n{output}")


ECHO = """
    import greensrv

    def echo(conn):
        for line in conn:
            conn.put(line)

    greensrv.serve_forever(echo, port=int(__import__("sys").argv[1]), shutdown_timeout=30)
"""


# -- the log on first run ----------------------------------------------------------------------

def test_serve_forever_logs_to_stderr_when_logging_is_not_configured(program):
    """No logging set up: the listening address, the signal and how to force, then the stop."""
    prog = program(ECHO, "0")
    out = prog.wait_for_output("listening on 127.0.0.1:")
    assert "INFO [greensrv]" in out
    prog.proc.send_signal(signal.SIGINT)
    assert prog.wait() == 0, prog.output()
    out = prog.output()
    assert "SIGINT received: stopping gracefully; Ctrl-C again forces it" in out
    assert "stopped in" in out
    assert "Traceback" not in out


def test_serve_forever_leaves_configured_logging_alone(program):
    """An application that configured logging gets its own format, and each line once."""
    prog = program("""
        import logging
        import greensrv
        logging.basicConfig(level=logging.INFO, format="APP %(name)s %(message)s")
        greensrv.serve_forever(lambda conn: None, port=0,
                               started=lambda server: logging.getLogger("app").info("up"))
    """)
    prog.wait_for_output("APP app up")
    prog.proc.send_signal(signal.SIGTERM)
    assert prog.wait() == 0, prog.output()
    lines = prog.output().splitlines()
    listening = [line for line in lines if "listening on" in line]
    assert len(listening) == 1 and listening[0].startswith("APP greensrv "), lines
    assert not [line for line in lines if "INFO [greensrv]" in line], lines


def test_application_loggers_are_heard_without_configuring_logging(program):
    """The fallback log is on the root logger, so the application's own INFO lines show too."""
    prog = program("""
        import logging
        import greensrv
        greensrv.serve_forever(lambda conn: None, port=0,
                               started=lambda server: logging.getLogger("app").info("ready"))
    """)
    prog.wait_for_output("INFO [app] ready")
    prog.proc.send_signal(signal.SIGTERM)
    assert prog.wait() == 0, prog.output()
    assert "SIGTERM received: stopping gracefully; SIGINT (Ctrl-C) forces it" in prog.output()


def stopping_with_a_client(program, signum: int) -> tuple[Program, socket.socket]:
    """The echo server with one client that got a reply, sent ``signum`` once: stopping now."""
    prog = program(ECHO, "0")
    address = ("127.0.0.1", port_from(prog.wait_for_output("listening on")))
    client = socket.create_connection(address, timeout=DEADLINE)
    client.sendall(b"one\n")
    assert client.recv(100) == b"one\r\n"
    prog.proc.send_signal(signum)
    prog.wait_for_output("stopping: 1 connection(s) have 30.0 s to finish")
    return prog, client


def test_a_second_sigterm_is_logged_and_keeps_the_stop_graceful(program):
    """Supervisors may repeat TERM: the stop stays graceful, and the log says INT forces it."""
    prog, client = stopping_with_a_client(program, signal.SIGTERM)
    with client:
        prog.proc.send_signal(signal.SIGTERM)
        prog.wait_for_output("SIGTERM again: already stopping gracefully; SIGINT (Ctrl-C) forces")
        assert prog.proc.poll() is None, "a second TERM must not end the graceful stop"
        client.sendall(b"two\n")  # the connection still works: nothing was forced
        assert client.recv(100) == b"two\r\n"
    assert prog.wait() == 0, prog.output()  # the client left, so the stop completes


def test_a_second_sigint_forces_the_stop_and_the_log_counts_what_it_closed(program):
    prog, client = stopping_with_a_client(program, signal.SIGINT)
    with client:
        prog.proc.send_signal(signal.SIGINT)
        assert prog.wait() == 0, prog.output()  # long before the 30 s
    out = prog.output()
    assert "second SIGINT: forcing shutdown, closing 1 connection(s) now" in out
    assert "1 forced closed" in out, out


# -- start-up errors ---------------------------------------------------------------------------

def test_start_names_the_address_in_use(busy_port):
    server = greensrv.Server(lambda conn: None, port=busy_port)
    with pytest.raises(greensrv.StartupError) as info:
        server.start()
    assert isinstance(info.value, OSError) and info.value.errno == errno.EADDRINUSE
    assert f"cannot listen on 127.0.0.1:{busy_port}: address already in use" in str(info.value)
    assert info.value.address == ("127.0.0.1", busy_port)


def test_start_names_the_unix_path_it_cannot_bind(tmp_path):
    path = tmp_path / "no-such-dir" / "app.sock"
    server = greensrv.Server(lambda conn: None, listen=f"unix:{path}")
    with pytest.raises(greensrv.StartupError, match=f"cannot listen on unix:{path}"):
        server.start()


def test_serve_forever_reports_a_port_in_use_in_one_line(program, busy_port):
    """No traceback: one line on stderr that names the address, and exit status 1."""
    prog = program(ECHO, str(busy_port))
    assert prog.wait() == 1
    out = prog.output()
    assert "Traceback" not in out, out
    assert out.strip().splitlines()[-1] == (
        f"greensrv: cannot listen on 127.0.0.1:{busy_port}: address already in use "
        "(another process is listening there; `ss -ltnp` shows which)"), out


def test_serve_forever_raises_the_startup_error_for_programs_that_catch_it(busy_port):
    with pytest.raises(OSError) as info:
        greensrv.serve_forever(lambda conn: None, port=busy_port)
    assert isinstance(info.value, greensrv.StartupError)
    assert info.value.errno == errno.EADDRINUSE
    assert f"127.0.0.1:{busy_port}" in str(info.value)


def test_a_caught_startup_error_prints_nothing_and_other_errors_keep_their_traceback(
        program, busy_port):
    prog = program("""
        import sys
        import greensrv
        try:
            greensrv.serve_forever(lambda conn: None, port=int(sys.argv[1]))
        except OSError as exc:
            print("caught errno", exc.errno, flush=True)
        raise RuntimeError("an application bug")
    """, str(busy_port))
    assert prog.wait() == 1
    out = prog.output()
    assert f"caught errno {errno.EADDRINUSE}" in out
    assert "greensrv: cannot listen" not in out  # caught: not printed
    assert "Traceback" in out and "RuntimeError: an application bug" in out


def test_server_context_names_a_missing_certificate_file(tmp_path):
    missing = tmp_path / "cert.pem"
    with pytest.raises(FileNotFoundError, match="certfile: certificate file not found") as info:
        greensrv.tls.server_context(str(missing))
    assert info.value.filename == str(missing)


def test_server_context_names_an_unusable_certificate_file(tmp_path):
    junk = tmp_path / "cert.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ssl.SSLError, match=f"certfile '{junk}': not a PEM certificate"):
        greensrv.tls.server_context(str(junk))


def test_tls_example_names_the_missing_certificate_without_a_traceback(tmp_path):
    missing = tmp_path / "cert.pem"
    prog = Program(tmp_path, [str(EXAMPLES / "tls_echo.py"), "--port", "0", "--cert",
                              str(missing), "--key", str(tmp_path / "key.pem")])
    try:
        assert prog.wait() == 2
    finally:
        prog.kill()
    out = prog.output()
    assert "Traceback" not in out, out
    assert f"certfile: certificate file not found: '{missing}'" in out


def test_line_with_an_empty_literal_names_literal():
    with pytest.raises(ValueError, match="Line: literal must not be empty"):
        Line(literal="")


# -- with Server(...) as server ----------------------------------------------------------------

def test_server_as_context_manager_starts_and_stops(no_leaks, connect):
    def echo(conn):
        for line in conn:
            conn.put(line)

    with greensrv.Server(echo) as server:
        assert server.started
        client = connect(server.address)  # a gevent client: the server runs while it waits
        client.send(b"hi\n")
        assert client.readline() == b"hi\r\n"
        client.close()
    assert server.closed
    with pytest.raises(ConnectionRefusedError):
        connect(server.address)


def test_context_manager_stops_the_server_when_the_block_raises(no_leaks):
    server = greensrv.Server(lambda conn: None)
    with pytest.raises(RuntimeError, match="boom"), server:
        raise RuntimeError("boom")
    assert server.closed


# -- help() is enough --------------------------------------------------------------------------

def test_server_docstring_lists_every_option():
    doc = greensrv.Server.__doc__ or ""
    options = [name for name in inspect.signature(greensrv.Server).parameters]
    undocumented = [name for name in options if name not in doc]
    assert not undocumented, f"Server's docstring does not mention {undocumented}"


def test_connection_docstring_describes_every_public_attribute():
    doc = greensrv.Connection.__doc__ or ""
    public = ["data", "id", "server", "remote_address", "remote_ip", "remote_port",
              "local_address", "socket", "input_filter", "output_filter", "buffered",
              "closing", "closed"]
    undocumented = [name for name in public if f" {name}" not in doc]
    assert not undocumented, f"Connection's docstring does not describe {undocumented}"


# -- serve_forever, signals, module-level serve_forever -----------------------------------


SERVE_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import greensrv

    calls = []

    def previous_term(signum, frame):
        calls.append(signum)

    signal.signal(signal.SIGTERM, previous_term)
    previous_int = signal.getsignal(signal.SIGINT)

    def handler(conn):
        for line in conn:
            if line == "big":
                conn.put("ack", "z" * 1_000_000)
            else:
                conn.put(line)

    def started(server):
        print("ADDRESS", server.address[1], flush=True)

    if sys.argv[1] == "module":
        greensrv.serve_forever(handler, shutdown_timeout=0.2, started=started)
        server = None
    else:
        server = greensrv.Server(handler, shutdown_timeout=0.2, started=started)
        server.serve_forever()
    # The previous handlers are back, in Python and in the OS: SIGTERM reaches previous_term
    # (not the server, not SIG_DFL, which would kill us), SIGINT raises KeyboardInterrupt.
    os.kill(os.getpid(), signal.SIGTERM)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    print("RETURNED", signal.getsignal(signal.SIGTERM) is previous_term,
          signal.getsignal(signal.SIGINT) is previous_int, calls == [signal.SIGTERM],
          interrupted, server is None or server.closed, flush=True)
""")


@pytest.mark.parametrize("style, signum", [("method", signal.SIGTERM),
                                           ("method", signal.SIGINT),
                                           ("module", signal.SIGTERM)])
def test_serve_forever_stops_gracefully_on_signal_and_restores_handlers(
        tmp_path, connect, style, signum):
    script = tmp_path / "serve.py"
    script.write_text(SERVE_SCRIPT)
    proc = gevent.subprocess.Popen([sys.executable, str(script), style],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(20):
            first = proc.stdout.readline()
        assert first.startswith("ADDRESS "), first + proc.stderr.read()
        client = connect(("127.0.0.1", int(first.split()[1])))
        client.send(b"hi\n")
        assert client.readline() == b"hi\r\n"
        client.send(b"big\n")
        assert client.readline() == b"ack\r\n"  # the 1 MB reply is queued, unread
        proc.send_signal(signum)
        assert client.read_all() == b"z" * 1_000_000 + b"\r\n"  # flushed, then closed
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "RETURNED True True True True True", err


FORCE_SCRIPT = textwrap.dedent("""
    import logging
    import gevent
    import greensrv

    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def stubborn(conn):
        conn.put("hello")
        gevent.sleep(60)  # blocked outside get(): only a forced stop ends it

    def started(server):
        print("ADDRESS", server.address[1], flush=True)

    greensrv.serve_forever(stubborn, shutdown_timeout=60, started=started)
    print("RETURNED", flush=True)
""")


def test_a_second_sigint_forces_the_shutdown(tmp_path, connect):
    """The first SIGINT starts a graceful stop (60 s here); a second one closes everything now,
    and the log counts the connections it closed (it once said "0 forced closed")."""
    script = tmp_path / "force.py"
    script.write_text(FORCE_SCRIPT)
    proc = gevent.subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(20):
            first = proc.stdout.readline()
        assert first.startswith("ADDRESS "), first + proc.stderr.read()
        address = ("127.0.0.1", int(first.split()[1]))
        client, other = connect(address), connect(address)
        assert client.readline() == b"hello\r\n"
        assert other.readline() == b"hello\r\n"
        proc.send_signal(signal.SIGINT)
        # The graceful stop has begun once the log says so (the listener is closed by then).
        with gevent.Timeout(10, AssertionError("the first SIGINT did not start a stop")):
            while "stopping:" not in (line := proc.stderr.readline()):
                assert line, "the server ended before the second SIGINT"
        assert "stopping: 2 connection(s)" in line, line
        assert proc.poll() is None, "one SIGINT must not force the stop"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert client.read_all() == b""  # closed by the forced stop, well before 60 s
        assert other.read_all() == b""
        out, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "RETURNED", err
    assert elapsed < 5
    assert "2 connection(s) ended by the shutdown, 2 forced closed" in err, err
