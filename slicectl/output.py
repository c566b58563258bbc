"""How slicectl prints: tables, JSON/YAML, colours (on a terminal only) and the live job progress."""

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml

POLL_SECONDS = 0.5
ACTIVE = ("queued", "running")
STEP_DONE = ("ok", "skipped", "failed", "not_run")
COLOURS = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1"}
STATUS_COLOUR = {
    "succeeded": "green",
    "ok": "green",
    "active": "green",
    "running": "yellow",
    "deploying": "yellow",
    "destroying": "yellow",
    "queued": "yellow",
    "failed": "red",
    "cancelled": "red",
}


def use_colour(stream: TextIO) -> bool:
    """Colours only on a terminal, and never with ``NO_COLOR`` set (no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(text: str, colour: str | None, enabled: bool) -> str:
    if not enabled or colour is None:
        return text
    return f"\033[{COLOURS[colour]}m{text}\033[0m"


def dump(data: Any, fmt: str, stream: TextIO = sys.stdout) -> None:
    """Print data as ``json`` or ``yaml``."""
    if fmt == "yaml":
        stream.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    else:
        stream.write(json.dumps(data, indent=2) + "\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], stream: TextIO = sys.stdout) -> None:
    """Print a plain aligned table (no colour: it is meant to be read and grepped)."""
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        stream.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def progress_line(deployment: dict, steps: dict[int, dict], colour: bool) -> str:
    """``deploy leafspine: running 40% | netnode 12/15 | worker1 30/30``: per host, steps done / total."""
    hosts: dict[str, list[int]] = {}
    failed: set[str] = set()
    for step in steps.values():
        counts = hosts.setdefault(step["host"], [0, 0])
        counts[1] += 1
        if step["status"] in STEP_DONE:
            counts[0] += 1
        if step["status"] == "failed":
            failed.add(step["host"])
    status = deployment["status"]
    head = f"{deployment['kind']} {deployment['slice_name']}: {paint(status, STATUS_COLOUR.get(status), colour)}"
    parts = [f"{head} {deployment['progress']}%"]
    for host in sorted(hosts):
        done, total = hosts[host]
        mark = "red" if host in failed else ("green" if done == total else None)
        parts.append(paint(f"{host} {done}/{total}", mark, colour))
    return " | ".join(parts)


def follow(
    fetch: Callable[[int, int], dict], deployment: dict, stream: TextIO, *, sleep: Callable[[float], None] = time.sleep
) -> tuple[dict, dict[int, dict]]:
    """Poll a deployment until it ends, printing its progress line live; answer the last state and every step.

    On a terminal the line is rewritten in place; otherwise a line is printed each
    time it changes (a log stays readable). ``fetch(id, steps_after)`` is the
    deployment detail without its plan, only the steps changed since that revision.
    """
    colour = use_colour(stream)
    tty = stream.isatty()
    steps: dict[int, dict] = {}
    revision, last = 0, None
    while True:
        body = fetch(deployment["id"], revision)
        for step in body["steps"]:
            steps[step["seq"]] = step
        revision = body["steps_revision"]
        line = progress_line(body, steps, colour)
        if tty:
            stream.write("\r\033[K" + line)
            stream.flush()
        elif line != last:
            stream.write(line + "\n")
            stream.flush()
        last = line
        if body["status"] not in ACTIVE:
            if tty:
                stream.write("\n")
            return body, steps
        sleep(POLL_SECONDS)


def failure_report(deployment: dict, steps: dict[int, dict]) -> str:
    """The deployment's error and every failed step's output: what to read when a job fails."""
    lines = [f"{deployment['kind']} of {deployment['slice_name']} {deployment['status']}: {deployment.get('error')}"]
    for seq in sorted(steps):
        step = steps[seq]
        if step["status"] == "failed":
            lines.append(
                f"step {seq} on {step['host']} failed (exit code {step.get('exit_code')}): {step['description']}"
            )
            lines.append(f"  $ {step.get('command')}")
            lines.extend(f"  | {line}" for line in (step.get("output_tail") or "").splitlines())
    return "\n".join(lines)
