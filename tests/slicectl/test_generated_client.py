"""A Python client generated from /api/schema/ by openapi-python-client imports whole and drives a slice.

The schema is fetched over HTTP from the live server, the client generated into
a temporary folder, every one of its modules imported, and then it creates a
slice, adds VMs, links them, deploys (dry run, on a real RQ worker), polls the
deployment and exports the design: the path a team generating its own client
would take.
"""

import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import needs_postgres

# serialized_rollback: like every transactional test here, so its flush does not re-create the content
# types that the next serialized test restores (a duplicate key at its setup).
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), needs_postgres]

GENERATOR = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent)) or shutil.which(
    "openapi-python-client"
)
PASSWORD = "pw-generated-1"


@pytest.fixture
def generated(live_server, tmp_path):
    """The client package ``portal_client``, generated from the live schema, on sys.path."""
    if GENERATOR is None:
        pytest.skip("openapi-python-client is not installed (requirements-dev.txt)")
    with urllib.request.urlopen(f"{live_server.url}/api/schema/?format=json") as resp:
        schema = json.load(resp)
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [GENERATOR, "generate", "--path", "schema.json", "--meta", "none", "--output-path", "portal_client"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Only the YAML/text alternatives of the document bodies are skipped (JSON and multipart are generated).
    warnings = [line for line in result.stdout.splitlines() if line.startswith("Unsupported content type")]
    assert set(warnings) <= {"Unsupported content type application/yaml", "Unsupported content type text/plain"}
    sys.path.insert(0, str(tmp_path))
    yield importlib.import_module("portal_client")
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == "portal_client" or m.startswith("portal_client.")]:
        del sys.modules[name]


def test_every_module_imports_and_the_client_drives_a_slice(generated, worker, django_user_model, live_server):
    modules = [m.name for m in pkgutil.walk_packages(generated.__path__, "portal_client.")]
    failed = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # every failure listed, not only the first
            failed[name] = repr(exc)
    assert not failed, failed
    assert len(modules) > 100

    from portal_client import AuthenticatedClient, Client
    from portal_client.api.auth import auth_token_create
    from portal_client.api.links import links_create
    from portal_client.api.provisioning import deployments_retrieve, slices_deploy_create
    from portal_client.api.slices import (
        slices_by_name_retrieve,
        slices_create,
        slices_export_retrieve,
        slices_status_retrieve,
    )
    from portal_client.api.vms import vms_create
    from portal_client.models import DeployRequestRequest, LinkRequest, SliceRequest, TokenRequestRequest, VMRequest

    django_user_model.objects.create_user(username="gen", password=PASSWORD)
    token = auth_token_create.sync(
        client=Client(base_url=live_server.url), body=TokenRequestRequest(username="gen", password=PASSWORD)
    )
    api = AuthenticatedClient(base_url=live_server.url, token=token.token, prefix="Token")
    created = slices_create.sync(client=api, body=SliceRequest(name="gen"))
    assert created.name == "gen" and created.status.value == "draft"
    vms = [
        vms_create.sync(client=api, body=VMRequest(slice_=created.id, name=f"vm{i}", data_interfaces_count=1))
        for i in (1, 2)
    ]
    assert [vm.name for vm in vms] == ["vm1", "vm2"]
    link = links_create.sync(client=api, body=LinkRequest(slice_=created.id, vm_a=vms[0].id, vm_b=vms[1].id))
    assert link.vlan and link.a.interface == "eth1"
    deployment = slices_deploy_create.sync(created.id, client=api, body=DeployRequestRequest(dry_run=True))
    assert deployment.status.value == "queued"
    deadline = time.monotonic() + 60
    while True:
        polled = deployments_retrieve.sync(deployment.id, client=api, plan=False)
        if polled.status.value not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, "the deployment did not end"
        time.sleep(0.2)
    assert polled.status.value == "succeeded" and polled.steps
    status = slices_status_retrieve.sync(created.id, client=api)
    assert [vm.name for vm in status.vms] == ["vm1", "vm2"]
    assert slices_by_name_retrieve.sync("gen", client=api).id == created.id
    document = slices_export_retrieve.sync(created.id, client=api)
    assert document.name == "gen" and document.links == [["vm1:eth1", "vm2:eth1"]]
