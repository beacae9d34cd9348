"""The master and its workers as real processes: signals, crashes, reloads under load, stops.

Each test starts ``python -m greensrv`` (or a script calling ``serve_forever`` with ``workers``)
in a temporary directory holding the application, drives it over loopback and reads the master's
log and the kernel's list of its children. Every wait has a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from master_support import (
    APP,
    DEADLINE,
    READ_TIMEOUT,
    LoadClients,
    alive,
    ask,
    greensrv_argv,
    pids_serving,
    process_env,
    read_line,
)

import greensrv

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")


# -- the option on Server ---------------------------------------------------------------------


def test_workers_must_be_a_positive_int_naming_the_option():
    with pytest.raises(ValueError, match="workers"):
        greensrv.Server(lambda conn: None, workers=0)
    with pytest.raises(TypeError, match="workers"):
        greensrv.Server(lambda conn: None, workers="2")
    with pytest.raises(ValueError, match="worker_timeout"):
        greensrv.Server(lambda conn: None, worker_timeout=0)


def test_start_with_workers_is_a_type_error():
    server = greensrv.Server(lambda conn: None, workers=2)
    with pytest.raises(TypeError, match="serve_forever"):
        server.start()
    assert not server.started


def test_a_master_runs_only_in_the_main_thread():
    errors = []

    def run():
        try:
            greensrv.Server(lambda conn: None, workers=1).serve_forever()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=DEADLINE)
    assert errors and "main thread" in str(errors[0])


def script(reply: str) -> str:
    """A program serving ``server``, two workers, whose handler puts ``reply`` for each line."""
    return ("import logging, os\n"
            "import greensrv\n"
            "logging.basicConfig(level=logging.INFO)\n"
            "def handler(conn):\n"
            "    for line in conn:\n"
            f"        conn.put({reply})\n"
            "server = greensrv.Server(handler, port=0, workers=2)\n"
            "server.serve_forever()\n"
            "print('returned', flush=True)\n")


def test_serve_forever_with_workers_runs_a_master_of_forked_workers(start, app_dir):
    (app_dir / "script.py").write_text(script("f'script {os.getpid()} {line}'"))
    master = start(argv=[sys.executable, "script.py"])
    address = master.wait_ready()
    pids = pids_serving(address, 2)
    assert len(pids) == 2 and master.pid not in pids
    assert pids == master.workers()
    assert master.stop() == 0


#: A Servable that is not a greensrv Server: the master needs only its protocol. Each worker
#: answers one line per connection with its PID, from a plain gevent accept loop.
STUB_MASTER = """\
import logging, os, sys
import gevent, gevent.socket
from gevent.event import Event
from greensrv.addresses import ListenSpec
from greensrv.workers import Master

logging.basicConfig(level=logging.INFO)


class StubWorker:
    def __init__(self, sockets, max_accept):
        self.listeners = [gevent.socket.socket(fileno=s.detach()) for s in sockets]
        self.max_accept = max_accept
        self.stopped = Event()

    def start(self):
        self.loops = [gevent.spawn(self.accept, listener) for listener in self.listeners]

    def accept(self, listener):
        while True:
            sock, _ = listener.accept()
            gevent.spawn(self.answer, sock)

    def answer(self, sock):
        with sock:
            data = b""
            while not data.endswith(b"\\n"):
                chunk = sock.recv(100)
                if not chunk:
                    return
                data += chunk
            line = data.decode().strip()
            sock.sendall(f"stub {os.getpid()} {line} {self.max_accept}\\r\\n".encode())

    def stop(self):
        gevent.killall(self.loops)
        for listener in self.listeners:
            listener.close()
        self.stopped.set()

    def wait_stopped(self, timeout=None):
        return self.stopped.wait(timeout)

    def metrics_report(self):
        return None


class StubApp:
    name = "stub"
    workers = 2
    listen_specs = (ListenSpec("tcp", ("127.0.0.1", 0)),)
    reuse_port = False
    worker_timeout = 30.0
    backlog = 1024
    concurrency = -1
    admin = agent = None
    drain_delay = 0.0
    shutdown_timeout = 1.0
    stop_grace = 1.0

    def for_worker(self, sockets, max_accept=None, accept_limit=None, at_limit=None):
        return StubWorker(sockets, max_accept)


Master(StubApp()).run()
print("returned", flush=True)
"""


def test_the_master_runs_any_servable_not_only_a_server(start, app_dir):
    """workers.Master needs only its Servable protocol: over a stub that is no Server, it binds
    once, forks two workers that answer on the shared socket (one client per wake-up each),
    and stops them gracefully on TERM."""
    (app_dir / "stub_master.py").write_text(STUB_MASTER)
    master = start(argv=[sys.executable, "stub_master.py"])
    address = master.wait_ready()
    seen = set()
    for _ in range(200):
        word, pid, line, max_accept = ask(address, "hello").split()
        assert (word, line, max_accept) == ("stub", "hello", "1")
        seen.add(int(pid))
        if len(seen) == 2:
            break
    assert seen == master.workers() and master.pid not in seen
    assert master.stop() == 0
    assert "Traceback" not in master.log()


def test_the_users_server_is_not_changed_by_running_it_with_workers(start, app_dir):
    """The worker serves the very object the application made (so a handler may use it), with
    its options as given: workers=2 and its own address, though it serves the master's socket."""
    (app_dir / "script.py").write_text(
        script("f'{conn.server is server} {server.workers} {server.options[\"port\"]}'"))
    master = start(argv=[sys.executable, "script.py"])
    address = master.wait_ready()
    assert ask(address, "who") == "True 2 0"
    assert master.stop() == 0


# -- supervision ------------------------------------------------------------------------------


def test_two_workers_serve_from_two_pids(start):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2")
    address = master.wait_ready()
    assert pids_serving(address, 2) == master.wait_workers(2)
    assert master.stop() == 0


def test_a_killed_worker_is_logged_and_replaced(start):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2")
    address = master.wait_ready()
    victim, survivor = sorted(master.wait_workers(2))
    mark = master.mark()
    os.kill(victim, signal.SIGKILL)
    master.wait_log(rf"worker {victim} was killed by SIGKILL; replacing it", after=mark)
    now = master.wait_workers(2, exclude={victim})
    assert survivor in now
    assert ask(address, "still there").endswith(" still there")
    assert master.stop() == 0


def test_ttin_and_ttou_change_the_count_never_below_one(start):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "1")
    master.wait_ready()
    master.wait_workers(1)
    master.signal(signal.SIGTTIN)
    master.wait_workers(2)
    master.signal(signal.SIGTTIN)
    three = master.wait_workers(3)
    master.signal(signal.SIGTTOU)
    two = master.wait_workers(2)
    assert two < three
    master.signal(signal.SIGTTOU)
    master.wait_workers(1)
    mark = master.mark()
    master.signal(signal.SIGTTOU)  # already one: the count stays at one
    master.wait_log(r"SIGTTOU: now 1 worker", after=mark)
    assert len(master.wait_workers(1)) == 1
    assert master.stop() == 0


def test_a_worker_that_fails_to_boot_makes_the_master_exit_nonzero(app_dir):
    (app_dir / "bootfail.py").write_text(
        "import greensrv\n"
        "def explode(server):\n"
        "    raise RuntimeError('the database is not there')\n"
        "server = greensrv.Server(client_input=lambda c, r: None, port=0, started=explode)\n")
    began = time.monotonic()
    result = subprocess.run(greensrv_argv("bootfail:server", "-w", "2"), cwd=app_dir,
                            env=process_env(app_dir), capture_output=True, text=True,
                            timeout=DEADLINE)
    assert result.returncode != 0
    assert time.monotonic() - began < DEADLINE
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("greensrv: error:") and "the database is not there" in last
    assert "Traceback" not in result.stderr


def test_serve_forever_raises_worker_boot_error_when_a_worker_cannot_boot(app_dir):
    (app_dir / "script.py").write_text(
        "import greensrv\n"
        "def explode(server):\n"
        "    raise RuntimeError('no database')\n"
        "server = greensrv.Server(lambda conn: None, port=0, workers=2, started=explode)\n"
        "try:\n"
        "    server.serve_forever()\n"
        "except greensrv.WorkerBootError as exc:\n"
        "    raise SystemExit(f'boot failed: {exc}')\n")
    result = subprocess.run([sys.executable, "script.py"], cwd=app_dir, env=process_env(app_dir),
                            capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "boot failed: worker failed to boot: RuntimeError: no database")


def test_a_blocked_worker_is_killed_after_worker_timeout_and_replaced(start):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2", "--worker-timeout", "1")
    address = master.wait_ready()
    with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
        sock.sendall(b"who\r\n")
        blocked = int(read_line(sock).split()[1])
        sock.sendall(b"block\r\n")
        match = master.wait_log(rf"worker {blocked} blocked for (\d+\.\d) s "
                                r"\(worker_timeout 1\.0 s\)")
        assert 1.0 <= float(match.group(1)) < 1.0 + DEADLINE
        master.wait_log(rf"worker {blocked} was killed by SIGKILL after being blocked")
    assert blocked not in master.wait_workers(2, exclude={blocked})
    assert ask(address, "after").endswith(" after")
    assert master.stop() == 0


def test_workers_start_with_fresh_random_state_and_none_of_the_masters_greenlets(start, app_dir):
    (app_dir / "fresh.py").write_text(
        "import os, random\n"
        "import gevent\n"
        "random.seed(42)  # the master's state, which no worker may share\n"
        "def spawned_in_the_master():\n"
        "    with open('greenlet-ran', 'a') as f:\n"
        "        f.write(f'{os.getpid()}\\n')\n"
        "gevent.spawn(spawned_in_the_master)\n"
        "def handler(conn):\n"
        "    for line in conn:\n"
        "        conn.put(f'{os.getpid()} {random.random()!r}')\n")
    master = start("fresh:handler", "-b", "127.0.0.1:0", "-w", "2")
    address = master.wait_ready()
    first_draw: dict[int, str] = {}
    for _ in range(1000):
        pid, value = ask(address, "draw").split()
        first_draw.setdefault(int(pid), value)
        if len(first_draw) == 2:
            break
    assert len(first_draw) == 2
    a, b = first_draw.values()
    assert a != b
    assert not (app_dir / "greenlet-ran").exists()
    assert master.stop() == 0


def test_reuse_port_workers_each_bind_their_own_socket(start):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2", "--reuse-port")
    address = master.wait_ready()
    workers = master.wait_workers(2)
    assert pids_serving(address, 2) == workers
    for pid in workers:  # each worker holds a listening socket of its own
        listening = _listening_inodes(pid)
        assert listening, f"worker {pid} has no listening socket"
    assert master.stop() == 0


def _listening_inodes(pid: int) -> set[str]:
    """Socket inodes of ``pid`` that are in TCP LISTEN state (from /proc)."""
    mine = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    listening = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A":  # TCP_LISTEN
            listening.add(fields[9])
    return mine & listening


# -- reload and stop under load ---------------------------------------------------------------


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else float("nan")


def test_reload_under_load_answers_every_request_and_switches_code(start, app_dir):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2")
    address = master.wait_ready()
    load = LoadClients(address)
    windows: list[tuple[float, float]] = []
    try:
        load.wait_for_more(1500)
        for version in ("v2", "v3", "v4"):
            old = master.workers()
            (app_dir / "app.py").write_text(APP.replace('"v1"', f'"{version}"'))
            mark = master.mark()
            began = time.monotonic()
            master.signal(signal.SIGHUP)
            master.wait_log(r"reload done", after=mark)
            master.wait_workers(2, exclude=old)
            windows.append((began, time.monotonic()))
            assert not any(alive(pid) for pid in old)
            load.wait_for_more(1500)
    finally:
        load.finish()
    assert load.errors == [], load.errors[:10]
    after_last = [r for r in load.replies if r[0] > windows[-1][1]]
    assert after_last and {r[2] for r in after_last} == {"v4"}
    assert {r[3] for r in after_last} <= master.workers()
    for (_, end), version in zip(windows, ("v2", "v3", "v4"), strict=True):
        later = [r for r in load.replies if r[0] > end]
        assert later and all(r[2] >= version for r in later)
    during = [r[1] for r in load.replies if any(b <= r[0] <= e for b, e in windows)]
    outside = [r[1] for r in load.replies if not any(b <= r[0] <= e for b, e in windows)]
    print(f"\nreload under load: {len(load.replies)} requests, 0 errors; p99 latency "
          f"{p99(during) * 1000:.1f} ms during reloads ({len(during)} requests) vs "
          f"{p99(outside) * 1000:.1f} ms outside ({len(outside)} requests)")
    assert master.stop() == 0


RECORDING_APP = '''\
import os


def handler(conn):
    for line in conn:
        with open("reads.log", "a") as f:
            f.write(line + "\\n")
        conn.put(f"ok {os.getpid()} {line}")
'''


def test_graceful_term_under_load_loses_no_line_the_server_read(start, app_dir):
    (app_dir / "recording.py").write_text(RECORDING_APP)
    master = start("recording:handler", "-b", "127.0.0.1:0", "-w", "2",
                   "--graceful-timeout", "0.5")
    address = master.wait_ready()
    answered: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    going = threading.Barrier(7)

    def client(index: int) -> None:
        with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
            buffer = bytearray()
            going.wait(timeout=DEADLINE)
            n = 0
            try:
                while True:  # two lines in flight at a time, until the server ends the input
                    sock.sendall(f"c{index}-{n}\r\nc{index}-{n + 1}\r\n".encode())
                    n += 2
                    for _ in range(2):
                        reply = read_line(sock, buffer)
                        with lock:
                            answered.append(reply.split()[2])
            except EOFError:
                pass
            except OSError as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(6)]
    for thread in threads:
        thread.start()
    going.wait(timeout=DEADLINE)
    deadline = time.monotonic() + DEADLINE
    while len(answered) < 600:
        assert time.monotonic() < deadline, errors
        time.sleep(0.01)  # poll interval, not synchronisation
    assert master.stop() == 0
    for thread in threads:
        thread.join(timeout=READ_TIMEOUT + 5)
    read = (app_dir / "reads.log").read_text().split()
    assert errors == []
    assert sorted(read) == sorted(answered)
    assert len(answered) >= 600


def test_a_reload_whose_code_fails_to_import_keeps_the_old_workers(start, app_dir):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2")
    address = master.wait_ready()
    old = master.wait_workers(2)
    (app_dir / "app.py").write_text(APP + "\nraise RuntimeError('half-deployed')\n")
    mark = master.mark()
    master.signal(signal.SIGHUP)
    master.wait_log(r"reload abandoned, generation 1 keeps serving: .*half-deployed", after=mark)
    assert master.wait_workers(2) == old
    assert ask(address, "still v1").startswith("v1 ")
    (app_dir / "app.py").write_text(APP.replace('"v1"', '"v2"'))  # fixed: the next HUP works
    master.signal(signal.SIGHUP)
    master.wait_log(r"reload done", after=mark)
    master.wait_workers(2, exclude=old)
    assert ask(address, "now v2").startswith("v2 ")
    assert master.stop() == 0


def test_a_worker_whose_application_stops_its_server_is_replaced(start, app_dir):
    (app_dir / "quitter.py").write_text(
        "import os\n"
        "def handler(conn):\n"
        "    for line in conn:\n"
        "        if line == 'quit':\n"
        "            conn.server.stop()\n"
        "        conn.put(f'{os.getpid()} {line}')\n")
    master = start("quitter:handler", "-b", "127.0.0.1:0", "-w", "1")
    address = master.wait_ready()
    first = int(ask(address, "who").split()[0])
    ask(address, "quit")
    master.wait_log(rf"worker {first} exited with status 0; replacing it")
    assert first not in master.wait_workers(1, exclude={first})
    assert ask(address, "again").endswith(" again")
    assert master.stop() == 0


def test_workers_ignore_signals_that_do_not_come_from_the_master(start):
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2")
    address = master.wait_ready()
    workers = master.wait_workers(2)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        for pid in workers:
            os.kill(pid, signum)
    assert pids_serving(address, 2) == workers  # the same two, still serving
    assert master.workers() == workers
    assert master.stop() == 0


def test_term_to_every_process_at_once_is_as_graceful_as_to_the_master(start):
    """systemd's stop: TERM to the whole control group, workers included."""
    master = start("app:handler", "-b", "127.0.0.1:0", "-w", "2", "--graceful-timeout", "5")
    address = master.wait_ready()
    workers = master.wait_workers(2)
    with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
        sock.sendall(b"before\r\n")
        buffer = bytearray()
        assert read_line(sock, buffer).endswith(" before")
        for pid in (*workers, master.pid):
            os.kill(pid, signal.SIGTERM)
        master.wait_log(r"master got SIGTERM")
        sock.sendall(b"during\r\n")  # the connection lives on through the graceful stop
        assert read_line(sock, buffer).endswith(" during")
    assert master.wait_exit() == 0
    for pid in workers:
        master.wait_log(rf"worker {pid} exited with status 0 after its graceful stop")


def test_reuse_port_lets_single_process_servers_share_a_port(make_server):
    first = make_server(lambda conn: None, reuse_port=True)
    second = make_server(lambda conn: None, port=first.address[1], reuse_port=True)
    assert second.address == first.address
    with pytest.raises(OSError):  # without it the port is taken
        make_server(lambda conn: None, port=first.address[1])


def test_respawn_delay_doubles_from_the_second_young_death_up_to_the_cap():
    from greensrv.workers import RESPAWN_BACKOFF_MAX, respawn_delay

    assert [respawn_delay(n) for n in range(1, 6)] == [0.0, 0.1, 0.2, 0.4, 0.8]
    assert respawn_delay(100) == RESPAWN_BACKOFF_MAX == 30.0


def test_a_worker_that_keeps_dying_is_replaced_with_a_growing_delay(start, app_dir):
    (app_dir / "dying.py").write_text(
        "import os\n"
        "import gevent\n"
        "import greensrv\n"
        "def die_soon(server):\n"
        "    gevent.spawn_later(0.05, os._exit, 7)\n"
        "server = greensrv.Server(client_input=lambda c, r: None, port=0, started=die_soon)\n")
    master = start("dying:server", "-w", "1")
    master.wait_log(r"exited with status 7; replacing it")
    master.wait_log(r"3 workers in a row died young: next one in 0\.2 s")
    master.wait_log(r"5 workers in a row died young: next one in 0\.8 s")
    forks = sum("forked worker" in line for line in master.lines)
    assert forks <= 7, master.log()  # a tight loop would have forked hundreds by now
    assert master.proc.poll() is None  # they served, so the master keeps trying
    assert master.stop() == 0
