"""Apply a topology document to a slice by name: the difference first, then the change, atomically.

``slice_apply`` is what ``POST /api/slices/apply/`` and ``slicectl apply`` do:
the slice named in the document (the caller's own) is created when absent, else
brought to the document — VMs added, removed or changed (flavor, image, data
interfaces, internet, position), links added or removed (a link whose ends
moved is one removed and one added). Untouched VMs and links keep their rows,
interfaces, MACs and VLANs, so a redeploy leaves them running. Applying the same
document twice changes nothing and says ``unchanged``.

Declarative: what the document leaves out takes its default — no flavor or
image: the installation's default; no ``data_interfaces_count``: what the links
need; no ``internet_enabled``: false — except positions (``x``/``y``), which a
document without them leaves where they are.

The whole change is one transaction under the slice's row lock: it all happens
or none of it does. Nothing is deployed here; the answer says whether the slice
is deployed and so needs a redeploy (``redeploy_needed``), which the caller asks
for (``POST /api/slices/{id}/redeploy/``).
"""

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from inventory.models import Flavor, Image

from . import clab, io, services
from .errors import Conflict, InvalidRequest, ServiceError
from .models import VM, Link, Slice
from .naming import iface_name

# Fields of a VM compared with the document; x and y only when the document gives them.
DESIGN_FIELDS = ("flavor", "image", "data_interfaces_count", "internet_enabled")
LAYOUT_FIELDS = ("x", "y")


@dataclass
class Topology:
    """A document read for apply or import, with what reading it reported (containerlab)."""

    document: io.SliceDocument
    source: str = "slice"  # or "containerlab"
    warnings: list[dict[str, str]] = field(default_factory=list)
    interfaces: list[dict[str, str]] = field(default_factory=list)


def read_topology(loaded: Any, *, name: str | None = None) -> Topology:
    """Validate a loaded document, ours or a containerlab topology, into a :class:`Topology`."""
    if not clab.is_clab(loaded):
        return Topology(document=io.parse_document(loaded, name=name))
    converted = clab.convert(
        loaded,
        image_map=dict(getattr(settings, "SLICE_CLAB_IMAGE_MAP", {}) or {}),
        known_images=set(Image.objects.values_list("name", flat=True)),
    )
    return Topology(
        document=io.parse_document(converted.document, name=name),
        source="containerlab",
        warnings=converted.warnings,
        interfaces=converted.interfaces,
    )


def _link_key(ends: tuple[str, str]) -> tuple[str, str]:
    return tuple(sorted(ends, key=lambda end: (end.partition(":")[0], int(end.rpartition("eth")[2]))))  # type: ignore[return-value]


def _doc_links(document: io.SliceDocument) -> dict[tuple[str, str], io.LinkSpec]:
    return {
        _link_key((f"{link.vm_a}:{iface_name(link.iface_a)}", f"{link.vm_b}:{iface_name(link.iface_b)}")): link
        for link in document.links
    }


def _slice_links(slice_obj: Slice) -> dict[tuple[str, str], Link]:
    links = Link.objects.filter(slice=slice_obj).select_related("a__vm", "b__vm")
    return {_link_key((f"{lk.a.vm.name}:{lk.a.name}", f"{lk.b.vm.name}:{lk.b.name}")): lk for lk in links}


def _wanted(spec: io.VMSpec, default_flavor: str | None, default_image: str | None) -> dict[str, Any]:
    wanted: dict[str, Any] = {
        "flavor": spec.flavor or default_flavor,
        "image": spec.image or default_image,
        "data_interfaces_count": spec.data_interfaces_count,
        "internet_enabled": spec.internet_enabled,
    }
    if spec.x is not None:
        wanted["x"] = spec.x
    if spec.y is not None:
        wanted["y"] = spec.y
    return wanted


def diff(*, slice_obj: Slice | None, document: io.SliceDocument) -> dict[str, Any]:
    """What applying ``document`` to ``slice_obj`` (None: no such slice yet) would change.

    ``{"vms": {"added", "removed", "changed"}, "links": {"added", "removed"},
    "description": [old, new] | None, "redeploy_needed": bool}``; ``changed`` lists
    ``{"name", "changes": {field: [old, new]}}``. Layout-only changes (x, y) and
    the description need no redeploy.
    """
    flavor, image = services.default_flavor(), services.default_image()
    default_flavor, default_image = (flavor.name if flavor else None), (image.name if image else None)
    vms = {} if slice_obj is None else {vm.name: vm for vm in slice_obj.vms.select_related("flavor", "image")}
    added = [
        {k: v for k, v in _wanted(spec, default_flavor, default_image).items() if k in DESIGN_FIELDS}
        | {"name": spec.name}
        for spec in document.vms
        if spec.name not in vms
    ]
    changed = []
    for spec in document.vms:
        vm = vms.get(spec.name)
        if vm is None:
            continue
        now = io.vm_fields(vm)
        changes = {key: [now[key], value] for key, value in _wanted(spec, default_flavor, default_image).items()}
        changes = {key: pair for key, pair in changes.items() if pair[0] != pair[1]}
        if changes:
            changed.append({"name": spec.name, "changes": changes})
    wanted_names = {spec.name for spec in document.vms}
    removed = sorted(name for name in vms if name not in wanted_names)
    now_links = {} if slice_obj is None else _slice_links(slice_obj)
    doc_links = _doc_links(document)
    links_added = sorted(list(key) for key in doc_links if key not in now_links)
    links_removed = sorted(list(key) for key in now_links if key not in doc_links)
    old_description = "" if slice_obj is None else slice_obj.description
    description = None if old_description == document.description else [old_description, document.description]
    design_changed = bool(
        added or removed or links_added or links_removed or any(set(c["changes"]) - set(LAYOUT_FIELDS) for c in changed)
    )
    return {
        "vms": {"added": added, "removed": removed, "changed": changed},
        "links": {"added": links_added, "removed": links_removed},
        "description": description,
        "redeploy_needed": design_changed and slice_obj is not None and slice_obj.status != Slice.Status.DRAFT,
    }


def is_empty(change: dict[str, Any]) -> bool:
    """True when a :func:`diff` changes nothing."""
    vms, links = change["vms"], change["links"]
    return not (
        vms["added"] or vms["removed"] or vms["changed"] or links["added"] or links["removed"] or change["description"]
    )


def diff_lines(change: dict[str, Any]) -> list[str]:
    """The difference as lines a person reads (``+`` added, ``-`` removed, ``~`` changed)."""
    lines = []
    for vm in change["vms"]["added"]:
        nics = vm["data_interfaces_count"]
        net = ", internet" if vm["internet_enabled"] else ""
        lines.append(f"+ vm {vm['name']} ({vm['flavor']}, {vm['image']}, {nics} data NIC{'s' * (nics != 1)}{net})")
    lines.extend(f"- vm {name}" for name in change["vms"]["removed"])
    for vm in change["vms"]["changed"]:
        what = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in vm["changes"].items())
        lines.append(f"~ vm {vm['name']}: {what}")
    lines.extend(f"+ link {a} <-> {b}" for a, b in change["links"]["added"])
    lines.extend(f"- link {a} <-> {b}" for a, b in change["links"]["removed"])
    if change["description"] is not None:
        lines.append(f"~ description {change['description'][0]!r} -> {change['description'][1]!r}")
    return lines


def summary(change: dict[str, Any], *, created: bool) -> str:
    """One line: ``unchanged``, ``created: 10 VMs, 12 links`` or ``changed: 1 VM added, 1 link removed``."""
    if created:
        return f"created: {len(change['vms']['added'])} VMs, {len(change['links']['added'])} links"
    if is_empty(change):
        return "unchanged"
    parts = []
    for what, noun in (("vms", "VM"), ("links", "link")):
        for verb in ("added", "removed", "changed"):
            count = len(change[what].get(verb, []))
            if count:
                parts.append(f"{count} {noun}{'s' * (count != 1)} {verb}")
    if change["description"] is not None:
        parts.append("description changed")
    return "changed: " + ", ".join(parts)


def _at(path: str, exc: ServiceError) -> ServiceError:
    return type(exc)(f"{path}: {exc.message}", field=path, code=exc.code, errors={path: [exc.message]})


def _by_name(model, name: str | None, path: str):
    if name is None:
        return None
    found = model.objects.filter(name=name).first()
    if found is None:
        raise InvalidRequest(f"{path}: no {model._meta.verbose_name} named {name!r} here.", field=path)
    return found


@transaction.atomic
def _change(slice_obj: Slice, document: io.SliceDocument, change: dict[str, Any]) -> None:
    """Bring ``slice_obj`` to ``document`` (``change`` is their diff): removals first, so NICs free up."""
    locked = Slice.objects.select_for_update().get(pk=slice_obj.pk)
    if locked.is_busy:
        raise Conflict(f"Slice {locked.name!r} is {locked.status}: wait for its job.", code="slice_busy")
    now_links = _slice_links(locked)
    for key in change["links"]["removed"]:
        services.link_delete(link=now_links[tuple(key)])
    for vm in VM.objects.filter(slice=locked, name__in=change["vms"]["removed"]):
        services.vm_delete(vm=vm)
    specs = {spec.name: (i, spec) for i, spec in enumerate(document.vms)}
    for item in change["vms"]["changed"]:
        i, _spec = specs[item["name"]]
        updates = {key: new for key, (_old, new) in item["changes"].items()}
        if "flavor" in updates:
            updates["flavor"] = _by_name(Flavor, updates["flavor"], f"vms[{i}].flavor")
        if "image" in updates:
            updates["image"] = _by_name(Image, updates["image"], f"vms[{i}].image")
        try:
            services.vm_update(vm=VM.objects.get(slice=locked, name=item["name"]), **updates)
        except ServiceError as exc:
            raise _at(f"vms[{i}]", exc) from exc
    start = VM.objects.filter(slice=locked).count()
    for k, item in enumerate(change["vms"]["added"]):
        i, spec = specs[item["name"]]
        x, y = io.grid_position(start + k)
        flavor = _by_name(Flavor, spec.flavor, f"vms[{i}].flavor")
        image = _by_name(Image, spec.image, f"vms[{i}].image")
        try:
            services.vm_create(
                slice_obj=locked,
                name=spec.name,
                flavor=flavor,
                image=image,
                data_interfaces_count=spec.data_interfaces_count,
                internet_enabled=spec.internet_enabled,
                x=spec.x if spec.x is not None else x,
                y=spec.y if spec.y is not None else y,
            )
        except ServiceError as exc:
            raise _at(f"vms[{i}]", exc) from exc
    vms = {vm.name: vm for vm in VM.objects.filter(slice=locked)}
    doc_links = _doc_links(document)
    order = {key: i for i, key in enumerate(doc_links)}
    for key in change["links"]["added"]:
        link = doc_links[tuple(key)]
        try:
            services.link_connect(
                slice_obj=locked,
                vm_a=vms[link.vm_a],
                vm_b=vms[link.vm_b],
                iface_a=iface_name(link.iface_a),
                iface_b=iface_name(link.iface_b),
            )
        except ServiceError as exc:
            raise _at(f"links[{order[tuple(key)]}]", exc) from exc
    if change["description"] is not None:
        services.slice_update(slice_obj=locked, description=document.description)


def find_slice(*, owner: AbstractBaseUser, name: str) -> Slice | None:
    """The owner's slice of that name, or None."""
    return Slice.objects.filter(owner=owner, name=name).first()


def slice_apply(*, owner: AbstractBaseUser, document: io.SliceDocument, dry_run: bool = False) -> dict[str, Any]:
    """Create the owner's slice named in ``document`` or bring it to the document; report the difference.

    Returns ``{"slice": {id, name, status} | None, "created", "changed", "dry_run",
    "summary", "diff", "lines"}``. With ``dry_run`` nothing is written.
    """
    existing = find_slice(owner=owner, name=document.name)
    change = diff(slice_obj=existing, document=document)
    created = existing is None
    slice_obj = existing
    if not dry_run:
        if existing is None:
            slice_obj = services.slice_import(owner=owner, document=document)
        elif not is_empty(change):
            _change(existing, document, change)
            slice_obj = Slice.objects.get(pk=existing.pk)
    changed = created or not is_empty(change)
    return {
        "slice": None
        if slice_obj is None
        else {"id": slice_obj.pk, "name": slice_obj.name, "status": slice_obj.status},
        "created": created,
        "changed": changed,
        "dry_run": dry_run,
        "summary": summary(change, created=created),
        "redeploy_needed": change.pop("redeploy_needed"),
        "diff": change,
        "lines": diff_lines(change),
    }
