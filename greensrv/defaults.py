"""Every default of greensrv's options, each with the reason for its value, in one place.

The configuration (``config.py``), the connection's limits (``limits.py``), the overload policy,
the PROXY reader, the listeners and the command all take their defaults from here, so a value is
written once and its reason sits next to it. Pure: constants only.
"""

from __future__ import annotations

# -- where to listen --------------------------------------------------------------------------

#: Loopback only: exposing a server to the network is a decision to make explicitly.
DEFAULT_HOST = "127.0.0.1"
#: Port 0 lets the OS pick a free port (``Server.address`` says which), so two servers started
#: without a port never collide.
DEFAULT_PORT = 0
#: Clients waiting to be accepted while the server is at its concurrency limit queue here
#: (the kernel caps it at net.core.somaxconn); large enough for a burst of reconnects.
DEFAULT_BACKLOG = 1024
#: Used in logs and repr (POE's Alias): the library's name until the application names it.
DEFAULT_NAME = "greensrv"

# -- admission --------------------------------------------------------------------------------

#: Unlimited, as POE's Concurrency -1: a limit is a property of the deployment, not a guess.
DEFAULT_CONCURRENCY = -1

#: A callback-style connection keeps a greenlet of its own while it waits for input, as a
#: handler's does: greenlet-local state and ``gevent.getcurrent()`` then stay the same across
#: its callbacks. ``False`` (docs/idle-greenlets.md) trades that for a third of the memory of
#: an idle connection; it is the deployment's choice, made knowingly.
DEFAULT_IDLE_GREENLETS = True

# -- output watermarks and limits (bytes) -----------------------------------------------------

#: Output queued past this pauses reading (backpressure). 512 KiB keeps a fast bulk transfer
#: from stalling on every send yet bounds what one client costs: with low_mark below it, reading
#: resumes only after a real drain, not on every byte.
DEFAULT_HIGH_MARK = 512 * 1024
#: Reading resumes once queued output is back below this.
DEFAULT_LOW_MARK = 128 * 1024
#: A connection whose queued output passes this (e.g. broadcasts to a client that never reads)
#: is shut down with SlowClientError: 16 × high_mark leaves room for bursts, bounds memory.
DEFAULT_OUTPUT_LIMIT = 8 * 1024 * 1024

# -- timeouts (seconds) -----------------------------------------------------------------------

#: Seconds a client may take to finish a record once its first byte has arrived (the slowloris
#: defence, like nginx's client_header_timeout of 60 s): 30 s is ample for any human or machine
#: client on a slow link, and it bounds how long a dripping client holds a slot.
DEFAULT_RECORD_TIMEOUT = 30.0
#: Bytes per second a record must keep arriving at once its grace is spent: mod_reqtimeout's
#: default MinRate. Any real client on any link sends faster (a 2400-baud modem does 300 B/s of
#: payload, a phone on a bad cell link tens of KB/s); a slowloris drips far slower.
DEFAULT_RECORD_MIN_RATE = 500.0
#: Seconds a record gets before its rate counts against it: long enough for a record split over a
#: few packets on a lossy link (several retransmission timeouts), short enough that a dripping
#: client holds its slot for seconds, not for record_timeout's half minute.
DEFAULT_RECORD_GRACE = 5.0
#: Seconds a TLS handshake may take before the client is dropped; a silent client must not hold
#: a pool slot. Generous for slow links, short enough to shed idle scanners.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Seconds ``stop()`` lets live connections finish by themselves: long enough for a request in
#: flight to complete, short enough for a deploy (systemd's own stop timeout is 90 s).
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
#: Seconds ``stop()`` gives connections still running after shutdown_timeout to see EOF, flush
#: their queued output and end, before closing them and killing their greenlets.
DEFAULT_STOP_GRACE = 1.0
#: Seconds a closing connection may take to write its queued output once its handler has ended
#: (outside ``stop()``, which sets its own grace): a peer that reads nothing for this long loses
#: the rest, yet 30 s lets a slow but live link take a large final reply.
DEFAULT_FLUSH_TIMEOUT = 30.0
#: Seconds unread input is read and discarded after FIN, so that closing with unread input does
#: not make the kernel send a reset that destroys data the peer has not yet read; about one
#: round trip on the slowest links, short enough not to hold a slot.
DEFAULT_DRAIN_TIMEOUT = 1.0
#: Most bytes discarded while closing; a peer still sending after this is cut off (it bounds what
#: a peer that keeps sending while its connection closes costs).
DEFAULT_DRAIN_LIMIT = 1 << 20

# -- shedding at capacity ---------------------------------------------------------------------

#: Seconds a connection waiting for input with no unfinished record (one just accepted that has
#: not spoken yet, or one between requests) is spared by shedding: a real client sends its
#: request within a LAN round trip of connecting, or of its previous reply, even on a busy
#: machine (10 ms proved too short there: a starved test client was shed before it spoke);
#: longer would slow the turnover against clients that connect and say nothing
#: (concurrency / shed_min_age a second: 1,000 for 100 slots).
DEFAULT_SHED_MIN_AGE = 0.1
#: Seconds a proven connection (one that has completed a record) may wait idle between records
#: before shedding may take it, and then only when no unproven connection qualifies: Apache's
#: default KeepAliveTimeout. A client that has answered for itself is worth keeping across a
#: pause of a few seconds (a keep-alive client between requests, a person typing); one idle
#: longer holds a slot a waiting client could use.
DEFAULT_SHED_PROVEN_IDLE = 5.0

# -- PROXY protocol ---------------------------------------------------------------------------

#: Seconds a connection may take to deliver its whole PROXY header. A proxy writes the header
#: with its first segment, so anything slower is a broken or hostile peer; 5 s still allows a
#: lost segment to be retransmitted twice (TCP's first retransmission waits 1 s) while a
#: connection that sends nothing holds its pool slot only briefly.
DEFAULT_PROXY_TIMEOUT = 5.0
#: Only proxies on this machine are believed until told otherwise: a header from anyone else
#: would let any client claim any address.
DEFAULT_PROXY_TRUSTED = ("127.0.0.0/8", "::1/128")

# -- processes --------------------------------------------------------------------------------

#: Seconds a worker's hub may stay blocked (a handler that never yields) before the master kills
#: and replaces it: gunicorn's 30 s, long enough for a slow import or a big synchronous job.
DEFAULT_WORKER_TIMEOUT = 30.0

# -- operations (docs/operations.md) ---------------------------------------------------------

#: Seconds of draining (not ready, still serving) before a stop: none unless asked, since only
#: a balancer or an orchestrator that reads readiness gains from it.
DEFAULT_DRAIN_DELAY = 0.0
#: The connection log's format: one line a person reads; "json" for a log pipeline.
DEFAULT_ACCESS_LOG_FORMAT = "text"

# -- the command ------------------------------------------------------------------------------

#: Where a handler function listens when no ``--bind`` is given: loopback only (exposing a
#: server is a decision to make explicitly), on the port gunicorn and uvicorn use.
DEFAULT_BIND = "127.0.0.1:8000"
#: Workers when neither ``--workers`` nor the server sets them: one, still under a master so
#: that HUP reloads and a crash is replaced; docs/deploy.md says when to run more.
DEFAULT_WORKERS = 1
