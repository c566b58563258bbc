"""Runners: send a stage's commands to its hosts and report every step as it happens.

- :class:`FabricRunner` opens **one** SSH connection per host per job (Fabric
  ``Connection`` over paramiko; host keys checked against a known-hosts file,
  unknown keys rejected), or takes one a previous job of the same worker process
  kept (:mod:`provisioning.sshpool`), sends each host's commands of a stage as **one**
  script on stdin of ``bash -s`` (one round trip), hosts in parallel (threads),
  and parses the marker lines of :mod:`provisioning.scripts` live from the
  channel, so each step's start and end are known the moment they happen.
- :class:`DryRunRunner` records the scripts instead of running them.

Both yield events from :meth:`Runner.run_stage` in the caller's thread (the
executor writes them to the database there) and count, per host, connections,
round trips, commands and ``ovs-vsctl`` invocations.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

from .plans import HostCommand
from .scripts import MarkerParser, ScriptDone, StepBegan, StepEnded, new_token, render_script, shell_text
from .sshpool import close_quietly

log = logging.getLogger(__name__)

CANCELLED = "cancelled"  # the error of a host's script stopped by a cancel (not a failure)


@dataclass(frozen=True)
class SshTarget:
    """How to reach a host."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_path: str = ""


@dataclass
class HostStats:
    """Counters per host (benchmarks read them)."""

    connections: int = 0  # opened by this job
    reused: int = 0  # taken from the worker's pool (kept by an earlier job)
    round_trips: int = 0
    commands: int = 0  # commands sent
    executed: int = 0  # commands that ran (not skipped by their check)
    ovs_vsctl: int = 0  # ovs-vsctl invocations (checks and commands that ran)
    seconds: float = 0.0  # wall time of the round trips

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Event:
    """A step began (``kind`` "began") or ended ("ended"), or a host finished its script ("host")."""

    kind: str
    host: str
    index: int = -1
    status: str = ""
    exit_code: int | None = None
    output: str = ""
    duration: float = 0.0
    ok: bool = True
    error: str = ""
    cancelled: bool = False  # a "host" event: the host stopped at a step boundary because the job was cancelled
    at: float = field(default_factory=time.time)
    # False while more events are already waiting: a consumer may write this one together with them.
    burst_end: bool = True


def _uses_ovs_vsctl(argv: Sequence[str] | None) -> bool:
    return bool(argv) and any("ovs-vsctl" in str(a) for a in argv)


class Runner:
    """Base: per-host counters and the parallel fan-out of a stage."""

    def __init__(self) -> None:
        self.stats: dict[str, HostStats] = {}
        # Set (from any thread) when the job is cancelled: each host stops at its next step boundary.
        self.stop = threading.Event()

    def stat(self, host: str) -> HostStats:
        return self.stats.setdefault(host, HostStats())

    def run_stage(self, scripts: Mapping[str, Sequence[HostCommand]]) -> Iterator[Event]:
        """Run each host's commands (in order, one round trip), hosts in parallel; yield events live."""
        events: queue.Queue[Event | None] = queue.Queue()
        hosts = [h for h, cmds in scripts.items() if cmds]
        if not hosts:
            return

        def work(host: str) -> None:
            try:
                self._run_host(host, list(scripts[host]), events.put)
            except Exception as exc:  # a broken host never takes the others down
                log.exception("runner failed on %s", host)
                events.put(Event("host", host, ok=False, error=f"{type(exc).__name__}: {exc}"))
            finally:
                events.put(None)

        with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="sp-runner") as pool:
            for host in hosts:
                pool.submit(work, host)
            remaining = len(hosts)
            ahead: deque[Event | None] = deque()
            while remaining:
                event = ahead.popleft() if ahead else events.get()
                if event is None:
                    remaining -= 1
                    continue
                while True:  # look ahead: what is already queued belongs to this burst
                    try:
                        ahead.append(events.get_nowait())
                    except queue.Empty:
                        break
                self._count(event, scripts)
                yield replace(event, burst_end=not any(e is not None for e in ahead))

    def run_host(self, host: str, commands: Sequence[HostCommand], emit: Callable[[Event], None]) -> None:
        """Run one host's commands as one round trip in the calling thread; ``emit`` gets each event live.

        The executor's lanes call it from a thread per host (one host's trips in order, hosts in parallel).
        """
        commands = list(commands)

        def counted(event: Event) -> None:
            self._count(event, {host: commands})
            emit(event)

        try:
            self._run_host(host, commands, counted)
        except Exception as exc:  # a broken host never takes the others down
            log.exception("runner failed on %s", host)
            emit(Event("host", host, ok=False, error=f"{type(exc).__name__}: {exc}"))

    def _count(self, event: Event, scripts: Mapping[str, Sequence[HostCommand]]) -> None:
        if event.kind != "ended":
            return
        cmd = scripts[event.host][event.index]
        stat = self.stat(event.host)
        if _uses_ovs_vsctl(cmd.check):
            stat.ovs_vsctl += 1
        if event.status != "skipped":
            stat.executed += 1
            if _uses_ovs_vsctl(cmd.argv):
                stat.ovs_vsctl += 1

    def _run_host(self, host: str, commands: list[HostCommand], emit) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close connections (end of the job)."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DryRunRunner(Runner):
    """Records each host's script instead of running it; every step reports "skipped" (not executed)."""

    def __init__(self, *, step_timeout: int = 300) -> None:
        super().__init__()
        self.step_timeout = step_timeout
        self.records: list[dict] = []
        self._lock = threading.Lock()
        self._stage = 0

    def run_stage(self, scripts: Mapping[str, Sequence[HostCommand]]) -> Iterator[Event]:
        self._stage += 1
        yield from super().run_stage(scripts)

    def _run_host(self, host: str, commands: list[HostCommand], emit) -> None:
        token = "DRYRUN"
        stat = self.stat(host)
        with self._lock:
            stat.connections = 1  # a real run opens one connection per host per job
            stat.round_trips += 1
            stat.commands += len(commands)
            self.records.append(
                {
                    "stage": self._stage,
                    "host": host,
                    "script": render_script(commands, token=token, step_timeout=self.step_timeout),
                    "steps": [
                        {
                            **cmd.to_dict(),
                            "shell": shell_text(cmd.argv),
                            "check_shell": shell_text(cmd.check) if cmd.check else None,
                            "undo_shell": shell_text(cmd.undo) if cmd.undo else None,
                        }
                        for cmd in commands
                    ],
                }
            )
        for i, _cmd in enumerate(commands):
            if self.stop.is_set():
                emit(Event("host", host, ok=False, cancelled=True))
                return
            emit(Event("began", host, i))
            emit(Event("ended", host, i, status="skipped", output="dry run: not executed"))
        emit(Event("host", host, ok=True))

    def _count(self, event: Event, scripts) -> None:
        # Count as if the commands ran (no check can run in a dry run).
        if event.kind == "ended":
            cmd = scripts[event.host][event.index]
            stat = self.stat(event.host)
            stat.executed += 1
            stat.ovs_vsctl += int(_uses_ovs_vsctl(cmd.check)) + int(_uses_ovs_vsctl(cmd.argv))


class HostUnreachable(Exception):
    """No SSH session to a host (refused, timed out, unknown or changed host key, auth failure)."""


class FabricRunner(Runner):
    """Runs stages over SSH with Fabric: one connection per host per job, one round trip per stage.

    With a ``pool`` (:mod:`provisioning.sshpool`) a host's connection comes from the pool when an
    earlier job left one there, and goes back to it at :meth:`close`.
    """

    def __init__(
        self,
        targets: Mapping[str, SshTarget],
        *,
        known_hosts: str | Sequence[str],
        connect_timeout: float = 10,
        command_timeout: int = 300,
        pool=None,
    ) -> None:
        super().__init__()
        self.targets = dict(targets)
        self.pool = pool
        self._reused: set[str] = set()  # hosts whose connection came from the pool and has not yet opened a channel
        self.known_hosts = known_hosts_files(known_hosts)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._connections: dict[str, object] = {}
        self._locks: dict[str, threading.Lock] = {h: threading.Lock() for h in self.targets}
        # A step's remote `timeout` ends it after command_timeout; silence beyond that plus this grace
        # means a stuck link or a stopped script.
        self.idle_grace: float = 30

    # -- connections -------------------------------------------------------------------

    def _pool_key(self, host: str) -> tuple:
        """What a kept connection must have been opened for to be reused: the whole target and the trust."""
        return (self.targets[host], tuple(self.known_hosts))

    def _connection(self, host: str):
        """The host's connection, opened on first use (or taken from the pool) and kept for the rest of the job."""
        from fabric import Config, Connection
        from paramiko import RejectPolicy

        conn = self._connections.get(host)
        if conn is not None and conn.is_connected:
            return conn
        target = self.targets.get(host)
        if target is None:
            raise HostUnreachable(f"{host}: no such host in the inventory")
        if self.pool is not None and host not in self._connections:
            conn = self.pool.take(self._pool_key(host))
            if conn is not None:
                self.stat(host).reused += 1
                self._reused.add(host)
                self._connections[host] = conn
                return conn
        key = target.key_path or None
        conn = Connection(
            target.address,
            user=target.user,
            port=target.port,
            connect_timeout=self.connect_timeout,
            # Never read ~/.ssh/config: what the inventory says is what we connect to.
            config=Config(overrides={"load_ssh_configs": False}),
            connect_kwargs={
                "key_filename": key,
                "look_for_keys": key is None,
                "allow_agent": key is None,
                "banner_timeout": self.connect_timeout,
                "auth_timeout": self.connect_timeout,
            },
        )
        # Fabric trusts any new key by default; we only trust the configured known-hosts files.
        conn.client.set_missing_host_key_policy(RejectPolicy())
        load_known_hosts(conn.client, self.known_hosts, host=host)
        self.stat(host).connections += 1
        try:
            conn.open()
        except Exception as exc:
            reason = _describe(exc, known_hosts=self.known_hosts)
            raise HostUnreachable(
                f"{host}: cannot connect to {target.address}:{target.port} as {target.user}: {reason}"
            ) from exc
        self._connections[host] = conn
        return conn

    def connection(self, host: str):
        """The host's open Fabric connection (the consoles' relay opens its SSH channels on it).

        HostUnreachable when the host cannot be reached or its key is not the known one.
        """
        return self._connection(host)

    def close(self) -> None:
        """End of the job: each connection goes back to the pool (closed when there is none).

        A host whose trip is still running (the job was aborted: its timeout struck while its lanes
        ran) gets its connection closed, never kept: that ends the remote script, as the end of a
        forked job's process would, and no later job inherits a busy connection.
        """
        busy = {host for host, lock in self._locks.items() if lock.locked()}
        if busy:
            self.stop.set()  # the other hosts' lanes stop at their next step boundary
        for host, conn in self._connections.items():
            if self.pool is not None and host not in busy:
                self.pool.give(self._pool_key(host), conn)
            else:
                close_quietly([conn])
        self._connections.clear()
        self._reused.clear()

    def _open_channel(self, host: str, conn):
        """(connection, new session channel). A connection kept from an earlier job that died while it
        waited (host rebooted, sshd restarted) is replaced by a fresh one, once: nothing was sent on it yet."""
        try:
            chan = conn.transport.open_session(timeout=self.connect_timeout)
        except Exception:
            if host not in self._reused:
                raise
            log.info("%s: the kept SSH connection is gone; connecting again", host)
            self._reused.discard(host)
            self._connections.pop(host, None)
            close_quietly([conn])
            conn = self._connection(host)
            chan = conn.transport.open_session(timeout=self.connect_timeout)
        self._reused.discard(host)
        return conn, chan

    # -- one round trip ---------------------------------------------------------------

    def _run_host(self, host: str, commands: list[HostCommand], emit) -> None:
        with self._locks.setdefault(host, threading.Lock()):
            try:
                conn = self._connection(host)
            except HostUnreachable as exc:
                emit(Event("host", host, ok=False, error=str(exc)))
                return
            token = new_token()
            script = render_script(commands, token=token, step_timeout=self.command_timeout)
            stat = self.stat(host)
            stat.round_trips += 1
            stat.commands += len(commands)
            started = time.monotonic()
            try:
                ok, error = self._exchange(conn, script, token, host, commands, emit)
            finally:
                stat.seconds += time.monotonic() - started
            if error == CANCELLED:
                emit(Event("host", host, ok=False, cancelled=True))
            else:
                emit(Event("host", host, ok=ok, error=error))

    def _exchange(
        self, conn, script: str, token: str, host: str, commands: Sequence[HostCommand], emit
    ) -> tuple[bool, str]:
        """Send the script, relay its markers live; (ok, error). The error names the step and the cause.

        A cancel closes the session at a step boundary (the script dies at its next marker, before
        the next step's command), or at once during an interruptible (read-only) step.
        """
        from paramiko import SSHException

        try:
            conn, chan = self._open_channel(host, conn)
        except HostUnreachable as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"{host}: cannot open an SSH channel: {_describe(exc)}"
        transport = conn.transport
        parser = MarkerParser(token)
        failed: StepEnded | None = None
        idle_limit = self.command_timeout + self.idle_grace
        try:
            chan.set_combine_stderr(True)
            chan.settimeout(1.0)
            chan.exec_command("bash -s")
            chan.sendall(script.encode())
            chan.shutdown_write()
            last = time.monotonic()
            while True:
                try:
                    data = chan.recv(65536)
                except TimeoutError:
                    if self._cancel_now(parser, commands):
                        return False, CANCELLED
                    if time.monotonic() - last > idle_limit:
                        where = _during(parser.current, commands)
                        return False, f"{host}: {where} timed out: no output for {idle_limit:g} s; connection abandoned"
                    continue
                if not data:
                    break
                last = time.monotonic()
                for ev in parser.feed(data):
                    failed = self._emit(host, ev, emit) or failed
                    if isinstance(ev, StepEnded) and self.stop.is_set():
                        return False, CANCELLED
                if self._cancel_now(parser, commands):
                    return False, CANCELLED
            for ev in parser.finish():
                failed = self._emit(host, ev, emit) or failed
            rc = chan.recv_exit_status()
        except (OSError, EOFError, SSHException) as exc:
            return False, f"{host}: {_during(parser.current, commands)}: connection lost: {_describe(exc)}"
        finally:
            chan.close()
        if failed is not None:
            return False, ""
        if not parser.done:
            where = _during(parser.current, commands)
            output = "\n".join(parser.stray[-10:] or parser.current_output().splitlines()[-10:]).strip()
            error = f"{host}: {where} the script stopped early: {self._stop_cause(rc, transport)}"
            return False, error + (f"; its last output: {output}" if output else "")
        return True, ""

    def _cancel_now(self, parser: MarkerParser, commands: Sequence[HostCommand]) -> bool:
        """Cancelled while a read-only wait runs: no need to wait for its end."""
        step = parser.current
        return self.stop.is_set() and step is not None and 0 <= step < len(commands) and commands[step].interruptible

    def _stop_cause(self, rc: int, transport) -> str:
        """Why a script ended without its DONE marker, from its exit status and the connection's state.

        Without an exit status (paramiko's -1) the session either died with the connection or the
        remote shell was killed by a signal (sshd then sends an exit-signal, which paramiko does not
        keep): a new channel on the same connection tells the two apart.
        """
        if rc >= 0:
            return f"it exited with code {rc}"
        alive = False
        if transport.is_active():
            try:
                transport.open_session(timeout=self.connect_timeout).close()
                alive = True
            except Exception:  # the probe itself failing is the answer
                alive = False
        if alive:
            return "killed by a signal (the session ended without an exit status)"
        return "connection lost (the SSH session to the host closed)"

    @staticmethod
    def _emit(host: str, ev, emit) -> StepEnded | None:
        if isinstance(ev, StepBegan):
            emit(Event("began", host, ev.index))
        elif isinstance(ev, StepEnded):
            emit(
                Event(
                    "ended",
                    host,
                    ev.index,
                    status=ev.status,
                    exit_code=ev.exit_code,
                    output=ev.output,
                    duration=ev.duration,
                )
            )
            return ev if ev.status == "failed" else None
        elif isinstance(ev, ScriptDone):
            pass
        return None


def _during(index: int | None, commands: Sequence[HostCommand]) -> str:
    """Where a script was when it broke off: "during step 3 of 5 'Start dnsmasq …'" (or between steps)."""
    if index is None or not 0 <= index < len(commands):
        return "between steps"
    return f"during step {index + 1} of {len(commands)} '{commands[index].description}'"


def known_hosts_files(setting: str | Sequence[str]) -> list[str]:
    """The known-hosts files of a setting: one path, several joined by ``os.pathsep`` (like PATH), or a list."""
    items = setting.split(os.pathsep) if isinstance(setting, str) else list(setting)
    return [item for item in items if item]


def load_known_hosts(client, files: Sequence[str], *, host: str) -> None:
    """Load every existing file of ``files`` into a paramiko client; HostUnreachable when none can be read.

    A missing file is skipped: the local lab's file (settings.PROVISIONING_KNOWN_HOSTS
    lists it by default) exists only while a lab is up. On a host listed twice the
    first file wins (paramiko takes the first key of a type), so the lab's own file
    goes first and an old copy of its keys elsewhere cannot shadow it.
    """
    loaded = 0
    for path in files:
        try:
            client.load_host_keys(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise HostUnreachable(f"{host}: cannot read known hosts file {path}: {exc}") from exc
        loaded += 1
    if not loaded:
        raise HostUnreachable(f"{host}: no known hosts file: none of {', '.join(files) or '(none given)'} exists")


def _describe(exc: BaseException, *, known_hosts: Sequence[str] = ()) -> str:
    """A short reason for an SSH failure; host key problems name the known-hosts files that were read."""
    from paramiko import BadHostKeyException, SSHException

    files = ", ".join(known_hosts) or "the known hosts file"
    if isinstance(exc, BadHostKeyException):
        return f"host key mismatch ({files} has another key for it)"
    if isinstance(exc, SSHException) and "not found in known_hosts" in str(exc):
        return f"unknown host key (not in {files})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text
