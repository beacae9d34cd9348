"""The master's generations: which loaded application each worker is forked from.

The master holds one loaded application per generation (the server it was given, then what
``factory`` builds in the master at each HUP) and forks every worker of a generation from it,
so a crash replacement, a TTIN worker or a hung worker's replacement runs the code of its
generation, never an unreloaded edit on disk; a generation imports once, not once per worker.

A reload (HUP) loads the next generation and forks its workers; only once as many of them
accept as the master runs are the old ones told to stop, so clients are never refused. If the
new code fails to load or a new worker fails to boot, the reload is abandoned and the old
workers serve on. Recycling (``--max-worker-connections``) replaces one worker at a time the
same way: its replacement first, its graceful stop once that accepts.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from . import systemd
from .servable import Servable
from .worker_process import Worker

__all__ = ["Generations"]

log = logging.getLogger("greensrv")


class Generations:
    """The current generation, the one a reload is loading (``loading``), and the worker being
    recycled, over the master's ``workers`` (shared, not copied).

    ``spawn(generation)`` forks one worker and gives its PID; ``reloaded()`` is the master's
    turn once a reload is done (its backoff, systemd, the metrics), before a HUP that came
    during the reload starts the next one.
    """

    def __init__(self, name: str, app: Servable, factory: Callable[[], Servable] | None,
                 recycle: tuple[int, int] | None, workers: dict[int, Worker],
                 spawn: Callable[[int], int], reloaded: Callable[[], None]) -> None:
        self.name = name
        self.factory = factory
        self.recycle = recycle
        self.workers = workers
        self._spawn = spawn
        self._reloaded = reloaded
        self.current = 1
        self.loading: int | None = None
        self._loaded: dict[int, Servable] = {1: app}
        self._again = False  # a HUP during a reload: another reload follows it
        #: (the worker being recycled, its replacement's PID) while one is.
        self._recycling: tuple[Worker, int] | None = None

    def live(self) -> list[int]:
        """The generations that should have workers: the current one and the one loading."""
        return [self.current] if self.loading is None else [self.current, self.loading]

    def serving(self, generation: int | None = None) -> list[Worker]:
        """The workers of ``generation`` (the current one by default) not told to stop."""
        generation = self.current if generation is None else generation
        return [w for w in self.workers.values()
                if w.generation == generation and not w.stop_sent]

    def app(self, generation: int) -> Servable:
        """What the workers of ``generation`` are forked from."""
        return self._loaded[generation]

    def accept_limit(self) -> int | None:
        """A new worker's connection limit when recycling, drawn per worker (in the worker, so
        each draws its own jitter); None: no limit."""
        if self.recycle is None:
            return None
        connections, jitter = self.recycle
        return connections + random.randint(0, jitter)

    # -- reload --------------------------------------------------------------------------------
    def begin_reload(self, target: int) -> None:
        if self.loading is not None:
            self._again = True
            log.info("%s: SIGHUP during a reload: another reload follows this one", self.name)
            return
        new = self.current + 1
        log.info("%s: SIGHUP: reloading: loading generation %d", self.name, new)
        systemd.notify(*systemd.reloading_lines(),
                       f"STATUS={self.name}: reloading (generation {new})")
        app = self._loaded[self.current]
        if self.factory is not None:
            try:
                app = self.factory()
            except Exception as exc:
                log.debug("%s: generation %d failed to load", self.name, new, exc_info=True)
                self.loading = new
                self.abandon_reload(" ".join(f"{type(exc).__name__}: {exc}".split()))
                return
        self._loaded[new] = app
        self.loading = new
        log.info("%s: forking %d worker(s) of generation %d", self.name, target, new)

    def advance_reload(self, target: int) -> None:
        """Once ``target`` workers of the new generation accept: stop the old ones."""
        new = self.loading
        if new is None:
            return
        ready = [w for w in self.serving(new) if w.ready]
        if len(ready) < target:
            return
        old = [w for w in self.workers.values() if w.generation < new and not w.stop_sent]
        for worker in old:
            worker.stop()
        self._loaded = {new: self._loaded[new]}  # the old code is no longer forked from
        self._recycling = None  # the reload replaced it too
        self.current, self.loading = new, None
        log.info("%s: reload done: generation %d accepting (workers %s); stopping %s",
                 self.name, new, sorted(w.pid for w in ready), sorted(w.pid for w in old))
        self._reloaded()
        if self._again:
            self._again = False
            self.begin_reload(target)

    def abandon_reload(self, error: str) -> None:
        """The new generation could not load or boot: stop its workers; the old ones serve on."""
        new = self.loading
        log.error("%s: reload abandoned, generation %d keeps serving: %s", self.name,
                  self.current, error)
        for worker in self.serving(new):
            worker.stop()
        self._loaded.pop(new, None)  # type: ignore[arg-type]
        self.loading = None
        self._again = False
        systemd.notify("READY=1", f"STATUS={self.name}: reload failed ({error}); "
                       f"generation {self.current} still serving")

    # -- recycling -----------------------------------------------------------------------------
    def advance_recycle(self, may_spawn: bool) -> None:
        """One worker at a time: fork its replacement (when ``may_spawn``: the master's
        backoff); once that accepts, stop the old one gracefully (a reload's guarantees, for
        one worker)."""
        if self.loading is not None:
            return
        if self._recycling is not None:
            old, new_pid = self._recycling
            new = self.workers.get(new_pid)
            if new is None:  # the replacement died: try again after the backoff
                self._recycling = None
            elif new.ready:
                self._recycling = None
                if old.pid in self.workers and not old.stop_sent:
                    log.info("%s: worker %d replaced by %d", self.name, old.pid, new_pid)
                    old.stop()
            return
        waiting = [w for w in self.serving() if w.recycle]
        if waiting and may_spawn:
            old = min(waiting, key=lambda w: w.started)
            self._recycling = (old, self._spawn(self.current))
