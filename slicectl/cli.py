"""slicectl: slices as code, from a terminal or a script, through the portal's REST API only.

Every command has ``--help``; exit codes are :class:`slicectl.client.Exit`
(docs/slices-as-code.md#exit-codes). Machine-readable output: ``-o json`` (or
``yaml``) where a command prints data.
"""

import argparse
import getpass
import json
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__, completion, output
from .client import Client, CliError, Exit, write_config

OUTPUT_FORMATS = ("table", "json", "yaml")


def _fmt(args: argparse.Namespace) -> str:
    return getattr(args, "output", "table") or "table"


def _print(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _note(text: str) -> None:
    """Progress and explanations go to stderr, so ``-o json`` output stays parseable."""
    sys.stderr.write(text + "\n")


# --- commands -------------------------------------------------------------------------------


def cmd_login(client: Client, args: argparse.Namespace) -> int:
    """Exchange a username and password for a new named API token; save URL and token (mode 0600).

    The token is named after this machine (``--token-name`` to choose): see and revoke
    your tokens at /api/auth/tokens/.
    """
    username = args.username or input("Username: ")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    name = args.token_name or f"slicectl on {socket.gethostname()}"[:64]
    body = client.post(
        "/api/auth/token/", json_body={"username": username, "password": password, "name": name}, auth=False
    )
    path = write_config({"url": client.url, "token": body["token"]})
    _note(f"Logged in to {client.url} as {username}; token saved in {path}.")
    return Exit.OK


def _all_slices(client: Client) -> list[dict]:
    items, offset = [], 0
    while True:
        page = client.get("/api/slices/", params={"limit": 1000, "offset": offset})
        items.extend(page["results"])
        if not page.get("next"):
            return items
        offset += 1000


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    """List your slices."""
    slices = _all_slices(client)
    fmt = _fmt(args)
    if fmt == "name":
        for item in slices:
            _print(item["name"])
    elif fmt != "table":
        output.dump(slices, fmt)
    else:
        rows = [(s["name"], s["status"], s["vm_count"], s["link_count"], s["updated"][:19]) for s in slices]
        output.table(rows, ("NAME", "STATUS", "VMS", "LINKS", "UPDATED"))
    return Exit.OK


def cmd_inspect(client: Client, args: argparse.Namespace) -> int:
    """A slice per VM: host, status, NICs with VLAN, reserved address and DHCP lease."""
    detail = client.slice_by_name(args.name)
    if _fmt(args) != "table":
        output.dump(detail, _fmt(args))
        return Exit.OK
    _print(f"slice {detail['name']}: {detail['status']}, {detail['vm_count']} VMs, {detail['link_count']} links")
    rows = []
    for vm in detail["vms"]:
        linked = [i for i in vm["interfaces"] if i["vlan"]] or [None]
        for iface in linked:
            rows.append(
                (
                    vm["name"],
                    vm["host_name"],
                    vm["status"],
                    iface and iface["name"],
                    iface and iface["vlan"],
                    iface and iface["ip_address"],
                    iface and iface["lease_address"],
                )
            )
    output.table(rows, ("VM", "HOST", "STATUS", "NIC", "VLAN", "ADDRESS", "LEASE"))
    return Exit.OK


def cmd_export(client: Client, args: argparse.Namespace) -> int:
    """Print (or write with ``-f``) the slice's document, to apply or import elsewhere."""
    detail = client.slice_by_name(args.name)
    accept = "application/yaml" if args.format == "yaml" else "application/json"
    text = client.get(f"/api/slices/{detail['id']}/export/", params={"format": args.format}, accept=accept)
    text = text if isinstance(text, str) else json.dumps(text, indent=2) + "\n"
    if args.file:
        Path(args.file).write_text(text)
        _note(f"Wrote {args.file}.")
    else:
        sys.stdout.write(text)
    return Exit.OK


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    """Delete a slice that is not deployed (destroy it first)."""
    detail = client.slice_by_name(args.name)
    client.request("DELETE", f"/api/slices/{detail['id']}/")
    _note(f"Deleted slice {args.name}.")
    return Exit.OK


def cmd_extend(client: Client, args: argparse.Namespace) -> int:
    """Set a deployed slice to expire HOURS from now (at most your maximum lifetime)."""
    detail = client.slice_by_name(args.name)
    body = client.post(f"/api/slices/{detail['id']}/extend/", json_body={"hours": args.hours})
    _note(f"Slice {args.name} now expires at {body['expires_at']}.")
    return Exit.OK


def cmd_plan(client: Client, args: argparse.Namespace) -> int:
    """The exact host commands a deploy/redeploy/destroy would run now."""
    detail = client.slice_by_name(args.name)
    plan = client.get(f"/api/slices/{detail['id']}/plan/", params={"kind": args.kind})
    if _fmt(args) != "table":
        output.dump(plan, _fmt(args))
        return Exit.OK
    _print(f"# {plan['kind']} of {args.name}: {plan['steps']} steps")
    for note in plan.get("notes", []):
        _print(f"# note: {note}")
    for stage in plan["stages"]:
        for host in stage["hosts"]:
            _print(f"\n## stage {stage['name']}, host {host['host']}")
            for step in host["steps"]:
                _print(f"# {step['description']}")
                _print(step["shell"])
    return Exit.OK


def _fetcher(client: Client) -> Callable[[int, int], dict]:
    def fetch(dep_id: int, after: int) -> dict:
        return client.get(f"/api/deployments/{dep_id}/", params={"plan": "false", "steps_after": after})

    return fetch


def _start_job(client: Client, slice_id: int, kind: str, *, dry_run: bool, wait: bool, fmt: str) -> int:
    """POST the action; with ``wait`` follow it live; the exit code says how it ended."""
    deployment = client.post(f"/api/slices/{slice_id}/{kind}/", json_body={"dry_run": dry_run})
    _note(f"{kind} of {deployment['slice_name']} queued (deployment {deployment['id']}).")
    if not wait:
        if fmt != "table":
            output.dump({k: v for k, v in deployment.items() if k not in ("plan", "steps")}, fmt)
        return Exit.OK
    final, steps = output.follow(_fetcher(client), deployment, sys.stderr)
    if fmt != "table":
        output.dump({**final, "steps": [steps[s] for s in sorted(steps)]}, fmt)
    if final["status"] != "succeeded":
        _note(output.failure_report(final, steps))
        return Exit.FAILED
    _note(f"{kind} of {final['slice_name']} succeeded.")
    return Exit.OK


def cmd_job(client: Client, args: argparse.Namespace) -> int:
    """deploy, redeploy or destroy a slice; ``--wait`` follows it to its end."""
    detail = client.slice_by_name(args.name)
    return _start_job(client, detail["id"], args.command, dry_run=args.dry_run, wait=args.wait, fmt=_fmt(args))


def cmd_apply(client: Client, args: argparse.Namespace) -> int:
    """Create the slice of a file (ours or a .clab.yml) or bring it to the file, then deploy it.

    The difference is printed first. A draft slice is then deployed, a deployed one
    whose design changed is redeployed, a failed one deployed again; an active
    slice the file does not change is left alone ("unchanged"). ``--no-deploy``
    changes the design only; ``--dry-run`` shows the difference and changes nothing.
    """
    path = Path(args.file)
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else path.read_bytes()
    except OSError as exc:
        raise CliError(f"Cannot read {args.file}: {exc.strerror}", Exit.USAGE) from exc
    content_type = "application/json" if path.suffix == ".json" else "application/yaml"
    result = client.post(
        "/api/slices/apply/",
        params={"dry_run": "true" if args.dry_run else None, "name": args.name},
        body=data,
        content_type=content_type,
    )
    fmt = _fmt(args)
    for warning in result["warnings"]:
        _note(f"warning: {warning['node']}: {warning['message']}")
    for item in result["interfaces"]:
        _note(f"interface: {item['node']}:{item['interface']} -> {item['mapped']} ({item['rule']})")
    colour = output.use_colour(sys.stderr)
    for line in result["lines"]:
        _note(output.paint(line, {"+": "green", "-": "red", "~": "yellow"}.get(line[:1]), colour))
    verb = "would be" if args.dry_run else "is"
    name = result["slice"]["name"] if result["slice"] else args.name or "the slice"
    _note(f"slice {name} {verb} {result['summary']}")
    if fmt != "table":
        output.dump(result, fmt)
    if args.dry_run or args.no_deploy:
        return Exit.OK
    status = result["slice"]["status"]
    kind = None
    if status == "draft":
        kind = "deploy"
    elif status == "failed":
        kind = "redeploy" if result["changed"] else "deploy"
    elif result["redeploy_needed"]:
        kind = "redeploy"
    if kind is None:
        return Exit.OK
    return _start_job(client, result["slice"]["id"], kind, dry_run=args.dry_run_job, wait=args.wait, fmt="table")


def cmd_console(client: Client, args: argparse.Namespace) -> int:
    """Attach the terminal to a running VM's serial console (the portal's WebSocket, your token).

    On a terminal, keys go to the guest as typed (Ctrl-C too); Ctrl-] detaches.
    Piped stdin is sent once the console is live, then the output is printed
    until the portal closes the console or ``--timeout`` seconds pass (exit 0).
    The scrollback (the console's recent output) is printed first.
    """
    from . import console

    detail = client.slice_by_name(args.name)
    vm = next((vm for vm in detail["vms"] if vm["name"] == args.vm), None)
    if vm is None:
        raise CliError(f"Slice {args.name!r} has no VM named {args.vm!r}.", Exit.NOT_FOUND)
    if vm["status"] != "running":
        # The portal would say the same (close code 4409); no need to connect to hear it.
        raise CliError(f"VM {args.vm} is {vm['status']}, not running: no console.", Exit.REFUSED)
    if not vm.get("console_url"):
        raise CliError("This portal does not serve VM consoles (no console_url).", Exit.UNSUPPORTED)
    if not client.token:
        raise CliError("Not logged in: run `slicectl login` or set SLICECTL_TOKEN.", Exit.AUTH)
    url = console.websocket_url(client.url, vm["console_url"])
    return console.attach(url, client.token, label=f"{args.vm} (slice {args.name})", timeout=args.timeout)


def cmd_completion(client: Client, args: argparse.Namespace) -> int:
    """Print a shell completion script: ``source <(slicectl completion bash)``."""
    sys.stdout.write(completion.script(args.shell, build_parser()))
    return Exit.OK


# --- the parser -----------------------------------------------------------------------------


def _seconds(text: str) -> float:
    """A positive number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def _output_option(parser: argparse.ArgumentParser, choices: Sequence[str] = OUTPUT_FORMATS) -> None:
    parser.add_argument("-o", "--output", choices=choices, default="table", help="output format (default: table)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (also read by the completion script generator)."""
    parser = argparse.ArgumentParser(
        prog="slicectl",
        description="Slices as code: apply topology files, deploy, inspect and destroy slices "
        "through the Slice Portal's REST API.",
        epilog="Exit codes: 0 ok, 1 job failed, 2 usage, 3 refused by the portal, 4 not found, "
        "5 not logged in, 6 portal unreachable, 7 not served by this portal, 8 console closed by the portal, "
        "130 interrupted. "
        "URL and token: --url/--token, SLICECTL_URL/SLICECTL_TOKEN, or `slicectl login`.",
    )
    parser.add_argument("--version", action="version", version=f"slicectl {__version__}")
    parser.add_argument("--url", help="the portal (default: saved by login, else http://127.0.0.1:8000)")
    parser.add_argument("--token", help="an API token (default: SLICECTL_TOKEN, else saved by login)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("login", help="get an API token and save it", description=cmd_login.__doc__)
    p.add_argument("-u", "--username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--token-name", help='name of the new token (default "slicectl on HOSTNAME")')
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("extend", help="extend a deployed slice's lifetime", description=cmd_extend.__doc__)
    p.add_argument("name")
    p.add_argument("--hours", type=int, required=True, help="expire this many hours from now")
    p.set_defaults(func=cmd_extend)

    p = sub.add_parser("apply", help="create or update a slice from a file", description=cmd_apply.__doc__)
    p.add_argument("-f", "--file", required=True, help="a slice document (YAML/JSON) or a .clab.yml; - for stdin")
    p.add_argument("--name", help="apply to this slice name instead of the file's")
    p.add_argument("--dry-run", action="store_true", help="show the difference only")
    p.add_argument("--no-deploy", action="store_true", help="change the design, do not (re)deploy")
    p.add_argument("--dry-run-job", action="store_true", help="(re)deploy with the dry-run runner (records commands)")
    p.add_argument("--wait", action="store_true", help="follow the (re)deploy to its end")
    _output_option(p)
    p.set_defaults(func=cmd_apply)

    for kind, text in (
        ("deploy", "deploy a slice as designed"),
        ("redeploy", "apply a deployed slice's changed design"),
        ("destroy", "remove a slice from the hosts"),
    ):
        p = sub.add_parser(kind, help=text, description=f"{text[0].upper()}{text[1:]}. {cmd_job.__doc__}")
        p.add_argument("name", metavar="NAME")
        p.add_argument("--wait", action="store_true", help="follow the job live; exit 1 if it fails")
        p.add_argument("--dry-run", action="store_true", help="record the commands instead of running them")
        _output_option(p)
        p.set_defaults(func=cmd_job)

    p = sub.add_parser("get", help="list your slices", description=cmd_get.__doc__)
    _output_option(p, (*OUTPUT_FORMATS, "name"))
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("inspect", help="a slice's VMs, hosts, NICs and addresses", description=cmd_inspect.__doc__)
    p.add_argument("name", metavar="NAME")
    _output_option(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("export", help="print a slice's document", description=cmd_export.__doc__)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument("-f", "--file", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("delete", help="delete a slice (not deployed)", description=cmd_delete.__doc__)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("plan", help="the host commands a job would run", description=cmd_plan.__doc__)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--kind", choices=("deploy", "redeploy", "destroy"))
    _output_option(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("console", help="attach to a VM's serial console", description=cmd_console.__doc__)
    p.add_argument("name", metavar="NAME")
    p.add_argument("vm", metavar="VM")
    p.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="detach after SECONDS from connecting, exit 0 (for scripts)"
    )
    p.set_defaults(func=cmd_console)

    p = sub.add_parser("completion", help="print a shell completion script", description=cmd_completion.__doc__)
    p.add_argument("shell", choices=completion.SHELLS)
    p.set_defaults(func=cmd_completion)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; answer its exit code."""
    args = build_parser().parse_args(argv)
    try:
        client = Client.from_settings(url=args.url, token=args.token)
        return args.func(client, args)
    except CliError as exc:
        _note(f"slicectl: {exc.message}")
        errors: Any = exc.details.get("errors")
        if isinstance(errors, dict):
            for path, messages in errors.items():
                for message in messages if isinstance(messages, list) else [messages]:
                    _note(f"  {path}: {message}")
        return exc.code
    except KeyboardInterrupt:
        _note("slicectl: interrupted (a job already queued goes on; `slicectl inspect` shows it).")
        return Exit.INTERRUPTED


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())
