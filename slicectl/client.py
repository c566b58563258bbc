"""The portal's REST API over HTTP, with a token: the only thing slicectl talks to.

Standard library only (``urllib``), so the CLI installs with no dependency but
PyYAML (and ``websockets``, which only ``slicectl console`` imports). Where the URL
and token come from, first found wins: the command-line flags, ``SLICECTL_URL``/``SLICECTL_TOKEN``, the config file
(``$SLICECTL_CONFIG``, else ``$XDG_CONFIG_HOME/slicectl/config.json``, else
``~/.config/slicectl/config.json``, written by ``slicectl login`` with mode 0600).
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = 60.0


class Exit:
    """The exit codes of slicectl (docs/slices-as-code.md#exit-codes)."""

    OK = 0
    FAILED = 1  # a job failed or was cancelled
    USAGE = 2  # a wrong command line (argparse)
    REFUSED = 3  # the portal refused the request (invalid document, slice busy, quota, ...)
    NOT_FOUND = 4  # no such slice or VM
    AUTH = 5  # not logged in, or the token was refused
    UNREACHABLE = 6  # the portal cannot be reached or answered a server error
    UNSUPPORTED = 7  # this portal does not serve that (a console on a portal without WebSockets)
    CLOSED = 8  # the portal ended the console: idle, or the VM stopped
    INTERRUPTED = 130  # Ctrl-C


class CliError(Exception):
    """A failure that ends the command with ``code`` after printing ``message`` (and ``details``)."""

    def __init__(self, message: str, code: int, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or {}


def config_path() -> Path:
    """Where ``slicectl login`` keeps the URL and token."""
    if os.environ.get("SLICECTL_CONFIG"):
        return Path(os.environ["SLICECTL_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "slicectl" / "config.json"


def read_config() -> dict[str, str]:
    """The saved config ({} when there is none)."""
    path = config_path()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"Cannot read {path}: {exc}", Exit.USAGE) from exc


def write_config(data: dict[str, str]) -> Path:
    """Save the config, readable by its owner only (it holds a token)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT: set it
    return path


@dataclass
class Client:
    """An authenticated connection to one portal."""

    url: str
    token: str | None

    @classmethod
    def from_settings(cls, url: str | None = None, token: str | None = None) -> "Client":
        saved = read_config()
        url = url or os.environ.get("SLICECTL_URL") or saved.get("url") or DEFAULT_URL
        token = token or os.environ.get("SLICECTL_TOKEN") or saved.get("token")
        return cls(url=url.rstrip("/"), token=token)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
        auth: bool = True,
    ) -> tuple[int, Any]:
        """Send one request; answer (status, decoded JSON or text). Errors become :class:`CliError`."""
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Accept": accept, "User-Agent": "slicectl"}
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode(), "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        if auth:
            if not self.token:
                raise CliError("Not logged in: run `slicectl login` or set SLICECTL_TOKEN.", Exit.AUTH)
            headers["Authorization"] = f"Token {self.token}"
        req = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310 (http(s) only)
        if not url.startswith(("http://", "https://")):
            raise CliError(f"The portal URL must be http:// or https://, not {self.url!r}.", Exit.USAGE)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310
                return resp.status, _decode(resp.read(), resp.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"Cannot reach the portal at {self.url}: {reason}", Exit.UNREACHABLE) from exc

    def get(self, path: str, **kwargs) -> Any:
        return self.request("GET", path, **kwargs)[1]

    def post(self, path: str, **kwargs) -> Any:
        return self.request("POST", path, **kwargs)[1]

    def slice_by_name(self, name: str) -> dict:
        """The caller's slice of that name (404 -> exit code 4, saying so)."""
        try:
            return self.get(f"/api/slices/by-name/{urllib.parse.quote(name, safe='')}/")
        except CliError as exc:
            if exc.code == Exit.NOT_FOUND:
                raise CliError(f"No slice named {name!r}.", Exit.NOT_FOUND) from exc
            raise


def _decode(raw: bytes, content_type: str) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type:
        return json.loads(text) if text else None
    return text


def _refusal(exc: urllib.error.HTTPError) -> CliError:
    try:
        body = json.loads(exc.read().decode("utf-8", errors="replace"))
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    detail = detail or f"HTTP {exc.code} {exc.reason}"
    if exc.code in (401, 403):
        hint = " (run `slicectl login`)" if exc.code == 401 else ""
        return CliError(f"{detail}{hint}", Exit.AUTH, body)
    if exc.code == 404:
        return CliError(detail, Exit.NOT_FOUND, body)
    if exc.code >= 500:
        return CliError(f"The portal failed: {detail}", Exit.UNREACHABLE, body)
    return CliError(detail, Exit.REFUSED, body)
