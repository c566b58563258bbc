"""Turning host commands into one shell script per host and stage, and reading its output back.

This is the single place where a command crosses into a shell: every argv
element is quoted with :func:`shlex.quote` here and nowhere else. Pure: no
Django, no I/O.

The script runs under ``bash -s`` (it arrives on stdin). For each step it prints
marker lines carrying a per-run random token, so that nothing a command (or a
guest's console log) prints can fake a marker::

    @@SP <token> B <i> <epoch>           step i begins
    @@SP <token> S <i> <epoch>           step i skipped: its check says it is in place
    ...output tail of step i...
    @@SP <token> E <i> <rc> <epoch>      step i ended with exit code rc
    @@SP <token> DONE                    every step ran

Each command reads /dev/null (the script itself is on stdin) and writes to a
temporary file, whose tail is printed when the command ends: a daemon started
by a step (dnsmasq, QEMU) never holds the SSH channel open. The first failing
step ends the script with its exit code.
"""

from __future__ import annotations

import codecs
import secrets
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .plans import HostCommand

MARK = "@@SP"


def shell_text(argv: Sequence[str]) -> str:
    """One argv as shell text (what the plan API shows and the script contains)."""
    return " ".join(shlex.quote(str(arg)) for arg in argv)


def new_token() -> str:
    return secrets.token_hex(8)


def render_script(commands: Sequence[HostCommand], *, token: str, step_timeout: int) -> str:
    """The bash script that runs ``commands`` in order, with markers, stopping at the first failure."""
    if not token.isalnum():
        raise ValueError("token must be alphanumeric")
    timeout = f"timeout -k 5 {int(step_timeout)}"
    lines = [
        "set -u",
        "export LC_ALL=C",
        'sp_out=$(mktemp) || { echo "cannot create a temporary file" >&2; exit 97; }',
        "trap 'rm -f \"$sp_out\"' EXIT",
    ]
    for i, cmd in enumerate(commands):
        lines.append(f'echo "{MARK} {token} B {i} $EPOCHREALTIME"')
        run = f'{timeout} {shell_text(cmd.argv)} </dev/null >"$sp_out" 2>&1; sp_rc=$?'
        tail = f"tail -c {int(cmd.capture)} \"$sp_out\" | sed -e '$a\\'"
        end = f'echo "{MARK} {token} E {i} $sp_rc $EPOCHREALTIME"; [ "$sp_rc" -eq 0 ] || exit "$sp_rc"'
        if cmd.check:
            lines.append(f"if {timeout} {shell_text(cmd.check)} </dev/null >/dev/null 2>&1; then")
            lines.append(f'  echo "{MARK} {token} S {i} $EPOCHREALTIME"')
            lines.append("else")
            lines += [f"  {run}", f"  {tail}", f"  {end}", "fi"]
        else:
            lines += [run, tail, end]
    lines.append(f'echo "{MARK} {token} DONE"')
    return "\n".join(lines) + "\n"


# --- Reading the stream ----------------------------------------------------------------------


@dataclass(frozen=True)
class StepBegan:
    index: int
    at: float


@dataclass(frozen=True)
class StepEnded:
    """A step's result. ``status``: "ok", "skipped" or "failed"; ``duration`` in seconds (remote clock)."""

    index: int
    status: str
    exit_code: int | None
    output: str
    duration: float


@dataclass(frozen=True)
class ScriptDone:
    pass


def _epoch(text: str) -> float:
    try:
        return float(text.replace(",", "."))
    except ValueError:
        return 0.0


class MarkerParser:
    """Feed it chunks of the script's output as they arrive; it yields step events."""

    def __init__(self, token: str, *, keep: int = 65536):
        self.prefix = f"{MARK} {token} "
        self.keep = keep
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._current: int | None = None
        self._began = 0.0
        self._output: list[str] = []
        self._size = 0
        self.done = False
        self.stray: list[str] = []  # output outside any step (e.g. bash errors)

    def feed(self, data: bytes | str) -> Iterator[StepBegan | StepEnded | ScriptDone]:
        text = self._decoder.decode(data) if isinstance(data, bytes) else data
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            yield from self._line(line)

    def finish(self) -> Iterator[StepBegan | StepEnded | ScriptDone]:
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if rest:
            yield from self._line(rest)

    def current_output(self) -> str:
        """Output seen so far of the step still running (when the stream broke off)."""
        return "\n".join(self._output)

    @property
    def current(self) -> int | None:
        return self._current

    def _line(self, line: str) -> Iterator[StepBegan | StepEnded | ScriptDone]:
        line = line.rstrip("\r")
        if not line.startswith(self.prefix):
            if self._current is not None:
                self._output.append(line)
                self._size += len(line) + 1
                while self._size > self.keep and len(self._output) > 1:
                    self._size -= len(self._output.pop(0)) + 1
            else:
                self.stray.append(line)
                del self.stray[:-50]
            return
        parts = line[len(self.prefix) :].split()
        kind = parts[0] if parts else ""
        if kind == "B" and len(parts) >= 3:
            self._current, self._began = int(parts[1]), _epoch(parts[2])
            self._output, self._size = [], 0
            yield StepBegan(self._current, self._began)
        elif kind == "S" and len(parts) >= 3:
            index = int(parts[1])
            yield StepEnded(index, "skipped", None, "", max(0.0, _epoch(parts[2]) - self._began))
            self._current = None
        elif kind == "E" and len(parts) >= 4:
            index, rc = int(parts[1]), int(parts[2])
            output = "\n".join(self._output)
            duration = max(0.0, _epoch(parts[3]) - self._began)
            yield StepEnded(index, "ok" if rc == 0 else "failed", rc, output, duration)
            self._current, self._output, self._size = None, [], 0
        elif kind == "DONE":
            self.done = True
            yield ScriptDone()
