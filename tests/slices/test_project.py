"""Project-level promises of the core: OpenAPI schema, offline API docs, deploy checks, migrations."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.settings import patched_settings

ROOT = Path(__file__).resolve().parents[2]

# What portal/settings.py sets: docs assets from drf-spectacular-sidecar (served by us), not a CDN.
SIDECAR_SETTINGS = {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}


def _manage(*args, env=None):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        # The browser tests' Playwright needs DJANGO_ALLOW_ASYNC_UNSAFE in this process; a deployment never has it.
        env={**{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_openapi_schema_generates_without_warnings_or_errors(tmp_path):
    out = _manage("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Warning" not in out.stderr and "Error" not in out.stderr, out.stderr
    text = (tmp_path / "schema.yml").read_text()
    for path in ("/api/slices/import/", "/api/slices/{id}/export/", "/api/slices/from-template/", "/api/templates/"):
        assert path + ":" in text


def test_schema_endpoint(api):
    r = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert r.status_code == 200
    schema = r.json()
    assert "SliceStatusEnum" in schema["components"]["schemas"]
    assert "VMStatusEnum" in schema["components"]["schemas"]


def _external_assets(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["'](https?:)?//[^"']+""", html) + re.findall(
        r"""["'](https?://[^"']*(?:cdn|jsdelivr|unpkg)[^"']*)["']""", html
    )


@pytest.mark.usefixtures("db")
def test_docs_page_with_sidecar_loads_nothing_from_a_cdn(client, settings):
    if "drf_spectacular_sidecar" not in settings.INSTALLED_APPS:
        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "drf_spectacular_sidecar"]
    with patched_settings(SIDECAR_SETTINGS):
        r = client.get("/api/docs/")
    assert r.status_code == 200
    html = r.content.decode()
    assert not _external_assets(html), _external_assets(html)
    assets = re.findall(r"""["']/static/(drf_spectacular_sidecar/[^"']+)["']""", html)
    assert assets, html
    for asset in assets:
        assert finders.find(asset), f"{asset} is not a static file we serve"


@pytest.mark.usefixtures("db")
def test_docs_page_loads_nothing_from_a_cdn(client):
    r = client.get("/api/docs/")
    assert r.status_code == 200
    html = r.content.decode()
    assert not _external_assets(html)
    for asset in re.findall(r"""["']/static/(drf_spectacular_sidecar/[^"']+)["']""", html):
        assert finders.find(asset), f"{asset}: add 'drf_spectacular_sidecar' to INSTALLED_APPS"


def test_check_deploy_reports_nothing_with_debug_off():
    env = {
        "DEBUG": "0",
        "SECURE": "1",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "portal.example.com",
    }
    out = _manage("check", "--deploy", "--fail-level", "DEBUG", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues (0 silenced)." in out.stdout


def test_migrations_are_up_to_date():
    out = _manage("makemigrations", "--check", "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr


def test_favicon_is_served_for_pages_without_our_icon_link(client):
    """The admin and the API docs have no <link rel="icon">: /favicon.ico must not be a 404 in their console."""
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("/static/img/logo.svg")
    assert finders.find("img/logo.svg")
