"""The admin as a control room: deployments with errors and retry chains, readable pages, RQ links, hosts in use."""

import re

from django.urls import reverse

from provisioning import executor, services
from provisioning.models import Deployment, DeploymentStep
from provisioning.runners import DryRunRunner
from slices.models import Slice

from .test_api import linked


def superuser_client(client, staff_user):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    return client


def test_deployments_show_errors_retry_chains_and_readable_pages(client, inventory, user, staff_user, make_slice):
    admin = superuser_client(client, staff_user)
    s = linked(make_slice, user, name="chained")
    failed = Deployment.objects.create(
        slice=s, kind="deploy", status="failed", job_id="deployment-9-abc",
        error="worker2: Start QEMU for vm2 failed (exit 1): no such file\nmore lines", spec={"vms": [{"id": 1}]},
    )  # fmt: skip
    step = {"deployment": failed, "host": "worker1", "command": "true"}
    DeploymentStep.objects.create(**step, seq=1, phase="ports", description="ok", status="ok")
    DeploymentStep.objects.create(**step, seq=2, phase="qemu", description="never")  # left pending
    Slice.objects.filter(pk=s.pk).update(status="failed")
    retry = services.retry_deployment(deployment=failed, user=staff_user)
    assert retry.retry_of_id == failed.pk

    listing = admin.get("/admin/provisioning/deployment/").content.decode()
    assert "worker2: Start QEMU for vm2 failed (exit 1): no such file" in listing and "more lines" not in listing
    assert f'href="/admin/provisioning/deployment/{failed.pk}/change/">#{failed.pk} (Failed)' in listing

    page = admin.get(f"/admin/provisioning/deployment/{failed.pk}/change/").content.decode()
    assert re.search(rf"<title>[^<]*Deploy of chained #{failed.pk}", page)  # titled by the slice's name
    assert f'/admin/provisioning/deployment/{retry.pk}/change/">#{retry.pk}' in page  # retried as
    assert "Not run" in page and ">Pending<" not in page  # the step that never ran
    assert '<pre class="json">{\n  &quot;vms&quot;' in page and "collapse" in page  # indented, collapsed
    queue_index = 1  # django-rq sorts its queues by name: default, provisioning
    job_url = reverse("django_rq:job_detail", kwargs={"queue_index": queue_index, "job_id": "deployment-9-abc"})
    assert job_url in page


def test_rq_list_pages_do_not_call_the_removed_jquery_actions_plugin(client, staff_user):
    admin = superuser_client(client, staff_user)
    for url in ("/admin/rq/queues/0/", "/admin/rq/queues/1/", "/admin/rq/queues/1/failed/", "/admin/rq/workers/1/"):
        r = admin.get(url)
        assert r.status_code == 200, url
        body = r.content.decode()
        assert ".actions()" not in body and "admin/js/actions.js" in body, url


def test_hosts_list_shows_vms_and_capacity_used(client, inventory, user, staff_user, make_slice):
    admin = superuser_client(client, staff_user)
    s = linked(make_slice, user)
    dep = services.deploy_request(slice_obj=s, user=user)
    assert executor.execute(deployment_id=dep.pk, runner=DryRunRunner()).status == "succeeded"
    page = admin.get("/admin/inventory/host/").content.decode()
    used = re.findall(r'<td class="field-vcpus_used">([^<]*)</td>', page)
    assert sorted(used) == ["-", "1 / 4", "1 / 4"]  # netnode, worker1, worker2
    assert re.findall(r'<td class="field-vms_running">(\d+)</td>', page).count("1") == 2


def test_hosts_list_shows_health_and_last_seen_from_the_drift_check(client, inventory, staff_user):
    from django.utils import timezone

    from inventory.models import Host
    from provisioning.models import HostHealth

    admin = superuser_client(client, staff_user)
    seen = timezone.now()
    worker1, worker2 = Host.objects.get(name="worker1"), Host.objects.get(name="worker2")
    HostHealth.objects.create(host=worker1, reachable=True, checked_at=seen, last_seen=seen)
    HostHealth.objects.create(host=worker2, reachable=False, checked_at=seen, error="ssh: connection refused")
    page = admin.get("/admin/inventory/host/").content.decode()
    health = re.findall(r'<td class="field-health_state">([^<]*)</td>', page)
    assert sorted(health) == ["UNREACHABLE: ssh: connection refused", "not checked yet", "reachable"]
    last_seen = re.findall(r'<td class="field-last_seen[^"]*">([^<]*)</td>', page)
    assert sum(value == "-" for value in last_seen) == 2  # worker2 never answered, netnode never checked
