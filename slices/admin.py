"""Django admin of the design domain, for operators.

The admin is a thin interface over ``slices.services``, like the API: a slice
or VM saved here goes through the same service (interfaces, MACs, quota,
VLAN release on delete), and each form first runs that service as a dry run in
a savepoint, so any refusal appears as a form error with the service's own
words instead of a crash. Names are never cleaned: the form keeps whitespace
(``strip=False``) so that ``"vm1 "`` or ``"vm1\\n"`` is refused, not trimmed.

Links and VLAN blocks are made by the allocator, interfaces by their VM: they
are shown read-only (a link can be deleted, which returns its VLAN). The
inventory (Host, Image, Flavor, Deployment) is registered by
``provisioning/admin.py``.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.http import HttpRequest

from . import quotas, selectors, services, vlans
from .errors import ServiceError
from .models import VM, ApiToken, Interface, Link, Slice, SliceVlan, UserQuota

NAME_FIELDS = {"name"}


class _DryRun(Exception):
    """Raised to roll back a service call made only to validate a form."""


class ServiceForm(forms.ModelForm):
    """A model form that validates by running its service in a savepoint, then rolling back."""

    def run_service(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            with transaction.atomic():
                self.run_service()
                raise _DryRun
        except _DryRun:
            pass
        except ServiceError as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, exc.message)
        return cleaned

    def changed(self, *names: str) -> dict[str, Any]:
        """The cleaned values of the given fields that the user changed."""
        return {n: self.cleaned_data[n] for n in names if n in self.changed_data and n in self.cleaned_data}


class StrictNamesMixin:
    """Keep whitespace in name fields so a hostile name is refused instead of trimmed."""

    def formfield_for_dbfield(self, db_field: models.Field, request: HttpRequest, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name in NAME_FIELDS and isinstance(field, forms.CharField):
            field.strip = False
        return field


# --- slices ----------------------------------------------------------------------------


class SliceForm(ServiceForm):
    class Meta:
        model = Slice
        fields = ["owner", "name", "description"]

    def run_service(self) -> Slice:
        data = self.cleaned_data
        if self.instance.pk is None:
            return services.slice_create(owner=data["owner"], name=data["name"], description=data["description"])
        return services.slice_update(
            slice_obj=self.instance, name=data.get("name"), description=data.get("description", "")
        )


class ReadOnlyInline(admin.TabularInline):
    """Rows the admin shows but never adds, edits or deletes here (they follow the design)."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return list(self.fields)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class VMInline(ReadOnlyInline):
    """The slice's VMs (edit one through its own page: interfaces and quota follow)."""

    model = VM
    fields = ["name", "flavor", "image", "data_interfaces_count", "internet_enabled", "host", "status"]
    show_change_link = True


class LinkInline(ReadOnlyInline):
    """The slice's links with their VLAN and subnet (allocated, hence read-only)."""

    model = Link
    fk_name = "slice"
    fields = ["a", "b", "vlan", "subnet"]
    show_change_link = True

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("a__vm", "b__vm")


class DeleteThroughServiceMixin:
    """Deletes go through a service (which refuses while the slice is busy), one row at a time."""

    def service_delete(self, obj: Any) -> None:
        raise NotImplementedError

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.slice.is_busy:
            return False
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.service_delete(obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for obj in queryset:
            try:
                self.service_delete(obj)
            except ServiceError as exc:
                messages.warning(request, f"{obj}: {exc.message}")


@admin.register(Slice)
class SliceAdmin(StrictNamesMixin, admin.ModelAdmin):
    form = SliceForm
    list_display = ["name", "owner", "status", "vm_count", "link_count", "vlan_pool", "updated"]
    list_filter = ["status", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "description", "owner__username", "vms__name"]
    readonly_fields = ["status", "vlan_pool", "created", "updated"]
    list_select_related = ["owner"]
    inlines = [VMInline, LinkInline]
    date_hierarchy = "created"

    def get_queryset(self, request: HttpRequest):
        return selectors.slice_list(user=request.user).prefetch_related("held_vlans")

    @admin.display(description="VMs", ordering="vm_count")
    def vm_count(self, obj: Slice) -> int:
        return obj.vm_count

    @admin.display(description="links", ordering="link_count")
    def link_count(self, obj: Slice) -> int:
        return obj.link_count

    @admin.display(description="VLAN pool")
    def vlan_pool(self, obj: Slice) -> str:
        return ", ".join(vlans.ranges(h.vlan for h in obj.held_vlans.all())) or "-"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A slice keeps its owner (their quota paid for it); export and import to copy it.
        return [*self.readonly_fields, "owner"] if obj is not None else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Slice, form: SliceForm, change: bool) -> None:
        saved = form.run_service()
        obj.pk = saved.pk
        obj.refresh_from_db()

    def has_delete_permission(self, request: HttpRequest, obj: Slice | None = None) -> bool:
        if obj is not None and obj.status != Slice.Status.DRAFT:
            return False  # destroy it on the hosts first
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Slice) -> None:
        services.slice_delete(slice_obj=obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        skipped = 0
        for slice_obj in queryset:
            try:
                services.slice_delete(slice_obj=slice_obj)
            except ServiceError:
                skipped += 1
        if skipped:
            messages.warning(request, f"{skipped} deployed slice(s) kept: destroy them first.")


# --- VMs and interfaces ------------------------------------------------------------------


class VMForm(ServiceForm):
    class Meta:
        model = VM
        fields = ["slice", "name", "flavor", "image", "data_interfaces_count", "internet_enabled", "host", "x", "y"]

    def run_service(self) -> VM:
        data = self.cleaned_data
        if self.instance.pk is None:
            return services.vm_create(
                slice_obj=data["slice"],
                name=data["name"],
                flavor=data["flavor"],
                image=data["image"],
                data_interfaces_count=data["data_interfaces_count"],
                internet_enabled=data["internet_enabled"],
                host=data.get("host"),
                x=data["x"],
                y=data["y"],
            )
        if "slice" in self.changed_data:
            raise ServiceError("A VM cannot move to another slice.", field="slice")
        return services.vm_update(
            vm=self.instance,
            **self.changed("name", "flavor", "image", "data_interfaces_count", "internet_enabled", "host", "x", "y"),
        )


class InterfaceInline(ReadOnlyInline):
    model = Interface
    fields = ["index", "mac", "vlan", "ip_address", "lease_address"]


@admin.register(VM)
class VMAdmin(DeleteThroughServiceMixin, StrictNamesMixin, admin.ModelAdmin):
    form = VMForm
    list_display = [
        "name",
        "slice",
        "owner",
        "flavor",
        "image",
        "data_interfaces_count",
        "internet_enabled",
        "host",
        "status",
    ]
    list_filter = ["status", "internet_enabled", "flavor", "image", "host"]
    search_fields = ["name", "slice__name", "slice__owner__username"]
    list_select_related = ["slice__owner", "flavor", "image", "host"]
    readonly_fields = ["status", "console_tail"]
    autocomplete_fields = ["slice"]
    inlines = [InterfaceInline]

    @admin.display(description="owner", ordering="slice__owner__username")
    def owner(self, obj: VM) -> str:
        return obj.slice.owner.get_username()

    def save_model(self, request: HttpRequest, obj: VM, form: VMForm, change: bool) -> None:
        saved = form.run_service()
        obj.pk = saved.pk
        obj.refresh_from_db()

    def service_delete(self, obj: VM) -> None:
        services.vm_delete(vm=obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the services create and keep consistent: viewable, never hand-edited."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Interface)
class InterfaceAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "vm", "index", "mac", "vlan", "ip_address", "lease_address"]
    list_filter = ["index", ("vlan", admin.EmptyFieldListFilter)]
    search_fields = ["vm__name", "vm__slice__name", "mac", "ip_address", "lease_address"]
    list_select_related = ["vm__slice"]


@admin.register(Link)
class LinkAdmin(DeleteThroughServiceMixin, ReadOnlyAdmin):
    list_display = ["__str__", "slice", "vlan", "subnet", "created"]
    list_filter = [("slice__owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["slice__name", "a__vm__name", "b__vm__name", "subnet", "=vlan"]
    list_select_related = ["slice", "a__vm", "b__vm"]

    def service_delete(self, obj: Link) -> None:
        services.link_delete(link=obj)


@admin.register(SliceVlan)
class SliceVlanAdmin(ReadOnlyAdmin):
    list_display = ["vlan", "slice"]
    search_fields = ["slice__name", "slice__owner__username"]
    list_select_related = ["slice"]


@admin.register(UserQuota)
class UserQuotaAdmin(admin.ModelAdmin):
    """A user's limits beside what their VMs take now (all their slices, deployed or not)."""

    list_display = ["user", "max_vms", "max_vcpus", "max_ram_mib", "max_lifetime_hours", "in_use"]
    readonly_fields = ["in_use"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]

    @admin.display(description="In use (of the limit)")
    def in_use(self, obj: UserQuota) -> str:
        if obj.user_id is None:
            return "-"
        used, limits = quotas.quota_usage(user=obj.user), quotas.quota_limits(user=obj.user)
        units = (("vms", "VMs"), ("vcpus", "vCPUs"), ("ram_mib", "MiB"))
        return ", ".join(f"{used[key]} / {limits[key]} {label}" for key, label in units)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Named API tokens: who, where used, when last; delete one to revoke it (401 at once)."""

    list_display = ["name", "user", "prefix", "created", "last_used"]
    list_filter = ["created", "last_used"]
    search_fields = ["name", "user__username"]
    list_select_related = ["user"]
    fields = ["name", "user", "prefix", "created", "last_used"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False  # made by their owners (API, slicectl login): the key is shown to them only

    def has_change_permission(self, request, obj=None) -> bool:
        return False
