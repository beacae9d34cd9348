"""``--user``/``--group``: workers run unprivileged after a root master has bound the sockets.

Looked up once, in the master at start (a name that does not exist is an error before anything
binds); applied in each worker after the fork and before its server starts: supplementary
groups from the user's entry, then the group, then the user, in that order (once the user is
switched, the process may no longer change its groups). The master keeps its own identity: it
must be able to bind again and to signal every worker.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

__all__ = ["Credentials"]


@dataclass(frozen=True)
class Credentials:
    """The identity a worker takes: uid, gid and supplementary groups."""

    user: str | None
    uid: int
    gid: int
    groups: tuple[int, ...]

    @classmethod
    def look_up(cls, user: str | None, group: str | None) -> Credentials:
        """From names (or numeric IDs); ``ValueError`` naming the flag and the name at fault."""
        entry = None
        if user is not None:
            try:
                entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
            except KeyError:
                raise ValueError(f"--user {user}: no such user on this system") from None
        if group is not None:
            try:
                gid = (grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)).gr_gid
            except KeyError:
                raise ValueError(f"--group {group}: no such group on this system") from None
        else:
            gid = entry.pw_gid if entry is not None else os.getegid()
        uid = entry.pw_uid if entry is not None else os.geteuid()
        groups = tuple(os.getgrouplist(entry.pw_name, gid)) if entry is not None else (gid,)
        credentials = cls(entry.pw_name if entry is not None else None, uid, gid, groups)
        if os.geteuid() != 0 and (uid, gid) != (os.geteuid(), os.getegid()):
            raise ValueError("--user/--group: the master must run as root to switch its "
                             f"workers to another identity (it runs as uid {os.geteuid()})")
        return credentials

    def apply(self) -> None:
        """In a worker: become this identity (groups first, the user last)."""
        if os.geteuid() == 0:
            os.setgroups(list(self.groups))
        os.setgid(self.gid)
        os.setuid(self.uid)
        if self.user is not None:
            home = pwd.getpwuid(self.uid).pw_dir
            os.environ.update(USER=self.user, LOGNAME=self.user, HOME=home)

    def give(self, path: str) -> None:
        """Let the workers reopen ``path`` (a log file the root master created)."""
        try:
            os.chown(path, self.uid, self.gid)
        except OSError:
            pass
