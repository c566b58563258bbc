"""The whole REST API against its own OpenAPI schema, with schemathesis (in-process WSGI).

For every operation of ``/api/schema/`` schemathesis sends valid and invalid
requests as a normal user and runs all its checks: no 5xx, every status code,
content type, header and body as the schema declares, invalid data refused,
valid data not refused with a 400. Bounded (a few examples per operation, a
fixed seed, no stateful phase) so the suite stays fast and repeatable; the
dry-run runner and a private RQ queue make sure nothing is ever deployed.
"""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from rest_framework.authtoken.models import Token
from schemathesis.config import SchemathesisConfig

from slices import services
from slices.models import VM

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 8


@pytest.fixture
def wsgi_keeps_connection():
    """Serve in-process like Django's test client: a finished request must not close the test's connection."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_world(wsgi_keeps_connection, user, other_user, make_slice, inventory, tiny, kernel_image, settings, rq_queue):
    """Alice's designed slice and Bob's slice, hosts, a flavor and an image; nothing can really deploy."""
    settings.PROVISIONING_RUNNER = "dry-run"
    # The token endpoint is fuzzed with wrong passwords: the failed-login lockout (its own test:
    # tests/audit/test_lockout.py) would answer them 429 after ten.
    settings.AXES_ENABLED = False
    slice_obj = make_slice(user, name="lab", vms=3, data=2)
    vms = {vm.name: vm for vm in VM.objects.filter(slice=slice_obj)}
    services.link_connect(slice_obj=slice_obj, vm_a=vms["vm1"], vm_b=vms["vm2"], iface_a="eth1", iface_b="eth1")
    make_slice(other_user, name="theirs", vms=1)
    return Token.objects.create(user=user)


# A body can match the schema and still break a rule no schema can state (an id that is not yours, a name
# already taken, a topology's VM count): such a refusal is a 400 with the Error body, so "valid data should
# be accepted" counts 400 as an answer too. Every other check runs as schemathesis ships it.
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409"]}}}
)

# The schema view needs no database: loading it at collection is cheap and keeps the tests parametrized
# by operation (schemathesis' lazy fixture loader does not work with pytest 9).
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application(), config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case, api_world):
    case.call_and_validate(headers={"Authorization": f"Token {api_world.key}"})
