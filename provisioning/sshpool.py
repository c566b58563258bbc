"""SSH connections kept open between the jobs of one worker process.

A deploy's first steps wait for an SSH handshake per host (key exchange and login: about 0.2 s
each here, most of it the host's sshd). A worker that runs its jobs in its own process
(``settings.RQ["WORKER_CLASS"]``: RQ's ``SimpleWorker``, no fork per job) hands each job's
connections back here when the job ends, and the next job to the same host takes one instead of
connecting again. The drift check visits every host each check interval, so a busy portal keeps
one warm connection per host per worker.

Anywhere else (the web and console processes, tests calling the executor) there is no pool and
each job closes its own connections, as before.

A kept connection is only reused while:

- it was opened for exactly the same target: name, address, port, user, key file and
  known-hosts files (a changed inventory row opens a new one);
- its transport is still active, and it has been idle for less than
  ``settings.PROVISIONING_SSH_KEEP`` seconds (``0`` turns keeping off: one connection per
  host per job, closed at the job's end). A sweeper thread closes a connection as soon as it
  has been idle that long, so an idle worker holds no sshd session past it.

A connection that died while it was kept (host rebooted, sshd restarted) is noticed by the
runner when it cannot open a channel on it: the runner connects afresh once and carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable

log = logging.getLogger(__name__)

# Keepalive on kept connections: a peer that vanished is noticed, and idle state is never cut by a middlebox.
KEEPALIVE_SECONDS = 15


class ConnectionPool:
    """At most one idle connection per target, each closed once idle for ``keep`` seconds."""

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self._idle: dict[Hashable, tuple[object, float]] = {}
        self._lock = threading.Lock()
        self._stop_sweeper = threading.Event()
        self.stats = {"expired": 0}  # connections closed for their idle time (the runner counts reuse)

    def take(self, key: Hashable):
        """The kept connection for ``key`` (removed from the pool), or None."""
        with self._lock:
            expired = self._expire_locked()
            entry = self._idle.pop(key, None)
        close_quietly(expired)
        if entry is None:
            return None
        conn = entry[0]
        if not _active(conn):
            close_quietly([conn])
            return None
        return conn

    def give(self, key: Hashable, conn) -> None:
        """Keep ``conn`` for the next job to the same target (closed instead when it is dead or keeping is off)."""
        if self.keep <= 0 or not _active(conn):
            close_quietly([conn])
            return
        conn.transport.set_keepalive(KEEPALIVE_SECONDS)
        with self._lock:
            expired = self._expire_locked()
            previous = self._idle.pop(key, None)
            self._idle[key] = (conn, time.monotonic())
        close_quietly(expired + ([previous[0]] if previous else []))

    def expire(self) -> int:
        """Close the connections idle for ``keep`` seconds; how many."""
        with self._lock:
            expired = self._expire_locked()
        close_quietly(expired)
        return len(expired)

    def clear(self) -> None:
        """Close every kept connection (and stop the sweeper)."""
        self._stop_sweeper.set()
        with self._lock:
            conns = [conn for conn, _ in self._idle.values()]
            self._idle.clear()
        close_quietly(conns)

    def start_sweeper(self) -> None:
        """Close expired connections from a thread, so an idle worker holds no sshd session past ``keep``."""
        interval = min(max(self.keep / 4, 0.1), 30)

        def sweep() -> None:
            while not self._stop_sweeper.wait(interval):
                try:
                    self.expire()
                except Exception:  # never let the sweeper die of one bad close
                    log.exception("expiring kept SSH connections failed")

        threading.Thread(target=sweep, name="sp-sshpool-sweeper", daemon=True).start()

    def __len__(self) -> int:
        return len(self._idle)

    def _expire_locked(self) -> list:
        now = time.monotonic()
        old = [key for key, (_, since) in self._idle.items() if now - since >= self.keep]
        self.stats["expired"] += len(old)
        return [self._idle.pop(key)[0] for key in old]


def _active(conn) -> bool:
    transport = getattr(conn, "transport", None)
    return transport is not None and transport.is_active()


def close_quietly(conns) -> None:
    """Close each connection; a failure (it is dead already) is only logged at debug level."""
    for conn in conns:
        try:
            conn.close()
        except Exception:  # closing is best effort
            log.debug("close failed", exc_info=True)


_pool: ConnectionPool | None = None
_pool_lock = threading.Lock()


def enable() -> None:
    """Keep connections in this process from now on (the worker calls it as it starts working)."""
    global _pool
    from django.conf import settings

    keep = float(getattr(settings, "PROVISIONING_SSH_KEEP", 0))
    with _pool_lock:
        if _pool is None and keep > 0:
            _pool = ConnectionPool(keep)
            _pool.start_sweeper()


def disable() -> None:
    """Close every kept connection and keep none from now on (the worker stops)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.clear()


def worker_pool() -> ConnectionPool | None:
    """This process's pool: None unless the process is a worker (:class:`provisioning.worker.Worker`)
    and ``settings.PROVISIONING_SSH_KEEP`` is above 0."""
    return _pool
