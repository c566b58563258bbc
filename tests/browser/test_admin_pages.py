"""Every admin page of the project's models, and the RQ dashboard, in Chromium: no console error, no response >= 400.

Lists, a detail page of each model (with a row in it), the deployment page with its
collapsed spec and plan, and django-rq's pages (whose list pages used to raise
``TypeError: $(...).actions is not a function``).
"""

from datetime import timedelta

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django_rq.settings import get_queues_map

from audit.models import AuditEvent
from provisioning import executor, services
from provisioning.models import UsageSample
from provisioning.runners import DryRunRunner
from slices import services as slice_services
from slices import tokens
from slices.models import VM, UserQuota

from .conftest import PASSWORD, shot

pytestmark = pytest.mark.browser
PROJECT_APPS = ("audit", "inventory", "slices", "provisioning")


def admin_urls() -> list[str]:
    """The list page and one detail page (when it has a row) of every registered model of the project."""
    urls = []
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        if meta.app_label not in PROJECT_APPS:
            continue
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        first = model_admin.get_queryset(_request()).first()
        if first is not None:
            urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk]))
    return urls


def _request():
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = get_user_model().objects.get(username="root")
    return request


def rq_urls() -> list[str]:
    index = get_queues_map()["provisioning"]
    pages = ["", "failed/", "finished/", "started/", "deferred/", "scheduled/"]
    return [
        reverse("django_rq:home"),
        *(f"/admin/rq/queues/{index}/{page}" for page in pages),
        f"/admin/rq/queues/{get_queues_map()['default']}/",
        f"/admin/rq/workers/{index}/",
    ]


@pytest.fixture
def cluster_data(inventory, django_user_model):
    """A row in every model: a deployed slice with a link, its deployments and steps, audit rows, a token."""
    root = django_user_model.objects.create_superuser("root", "root@example.org", PASSWORD)
    user = django_user_model.objects.create_user("grace", password=PASSWORD)
    UserQuota.objects.create(user=user, max_vms=8, max_lifetime_hours=48)
    s = slice_services.slice_create(owner=user, name="admintour")
    vm1 = slice_services.vm_create(slice_obj=s, name="vm1", internet_enabled=True)
    vm2 = slice_services.vm_create(slice_obj=s, name="vm2")
    slice_services.link_connect(slice_obj=s, vm_a=vm1, vm_b=vm2)
    dep = services.deploy_request(slice_obj=s, user=user)
    executor.execute(deployment_id=dep.pk, runner=DryRunRunner())
    tokens.token_create(user=user, name="laptop")
    AuditEvent.objects.create(action="login", user=root, username="root", address="127.0.0.1", via="web")
    assert VM.objects.filter(slice=s, host__isnull=False).count() == 2
    vm1.refresh_from_db()
    for taken_at, cpu in ((timezone.now() - timedelta(minutes=1), None), (timezone.now(), 20.0)):  # usage charts
        UsageSample.objects.create(host=vm1.host, taken_at=taken_at, uptime=9.0, cpu_ticks=5, mem_mib=900, load1=0.4)
        UsageSample.objects.create(
            host=vm1.host, vm=vm1, taken_at=taken_at, uptime=9.0, pid=7, cpu_ticks=5, cpu_percent=cpu, mem_mib=60
        )
    root.deployment_job = dep.job_id  # its RQ job, still in the queue (the test ran it directly)
    return root


def test_every_admin_and_rq_page_loads_without_errors(page, cluster_data):
    bad: list[str] = []
    page.on("response", lambda r: r.status >= 400 and bad.append(f"{r.status} {r.url}"))
    page.goto("/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/")
    job_id = cluster_data.deployment_job
    urls = [*admin_urls(), *rq_urls(), f"/admin/rq/queues/{get_queues_map()['provisioning']}/{job_id}/"]
    assert len(urls) > 20
    errors_at: dict[str, list[str]] = {}
    for url in urls:
        seen = len(page.console.errors)
        response = page.goto(url)
        page.wait_for_load_state("load")
        assert response is not None and response.status < 400, url
        if len(page.console.errors) > seen:
            errors_at[url] = page.console.errors[seen:]
    assert errors_at == {}
    # The deployment page's collapsed sections open (Django's collapse script ran without error).
    page.goto(reverse("admin:provisioning_deployment_changelist"))
    page.locator("td.field-slice a, th.field-id a").first.click()
    page.get_by_text("Plan (the host commands)").click()
    shot(page, "admin-deployment")
    assert bad == [], bad
    assert page.console.unexpected() == []
