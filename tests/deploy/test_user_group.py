"""``--user``/``--group``: a root master binds a port below 1024, its workers serve as an
unprivileged user, and a name that does not exist is a one-line error at start."""

from __future__ import annotations

import ast
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from master_support import DEADLINE, ask, greensrv_argv, process_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX users")

WHOAMI = '''\
import os


def handler(conn):
    for line in conn:
        conn.put(f"{os.getuid()} {os.geteuid()} {os.getgid()} {os.getegid()} "
                 f"{sorted(os.getgroups())}")
'''


def uids_of(pid: int) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return [int(n) for n in line.split()[1:]]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_workers_run_as_the_user_after_a_root_master_binds_a_low_port(start, app_dir):
    import grp

    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup").gr_gid
    (app_dir / "whoami.py").write_text(WHOAMI)
    master = start("whoami:handler", "-b", "127.0.0.1:700", "-w", "2", "--user", "nobody",
                   "--group", "nogroup")
    address = master.wait_ready()
    assert address == ("127.0.0.1", 700)
    uid, euid, gid, egid, groups = ask(address, "who").split(" ", 4)
    assert int(uid) == int(euid) == nobody.pw_uid
    assert int(gid) == int(egid) == nogroup
    assert 0 not in ast.literal_eval(groups)  # none of root's supplementary groups is left
    assert uids_of(master.pid) == [0, 0, 0, 0]  # the master stays root
    for worker in master.workers():
        assert set(uids_of(worker)) == {nobody.pw_uid}
    assert master.stop() == 0


@pytest.mark.parametrize("args, named", [
    (("--user", "no-such-user-here"), "--user no-such-user-here"),
    (("--group", "no-such-group-here"), "--group no-such-group-here"),
])
def test_a_user_or_group_that_does_not_exist_is_one_line(app_dir, args, named):
    for check in ((), ("--check-config",)):  # --check-config finds it too
        result = subprocess.run(greensrv_argv("app:handler", "-b", "127.0.0.1:0", *args, *check),
                                cwd=app_dir, env=process_env(app_dir), capture_output=True,
                                text=True, timeout=DEADLINE)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], result.stderr
