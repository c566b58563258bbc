"""Import and export of a slice design as YAML or JSON.

The document (``version: 1``)::

    name: lab1
    description: two VMs and a link
    vms:
      - {name: vm1, flavor: tiny, image: busybox, data_interfaces_count: 1,
         internet_enabled: false, x: 80, y: 80}
      - {name: vm2, flavor: tiny, image: busybox, data_interfaces_count: 1,
         internet_enabled: true, x: 220, y: 80}
    links:
      - [vm1:eth1, vm2:eth1]

``data_interfaces_count`` may be left out: the VM then gets as many data
interfaces as its highest linked one needs (``eth3`` linked: 3), at least one.
``x``/``y`` may be left out too: a new VM is then laid out on a grid, an
existing one keeps its place (``slices.apply``).

Flavors and images are referred to by name (ids differ between installations);
VLANs, subnets, addresses, MACs and placement are not part of a design: the
importing installation allocates its own. An export is canonical (VMs by name,
each link's ends and the links sorted), so exporting a re-imported slice gives
the same document but for its name.

Reading is defensive: a size limit, ``yaml.safe_load`` only (after a pass that
refuses YAML aliases, whose expansion can blow up, and deep nesting), JSON
without NaN/Infinity, unknown fields refused. Every problem is reported with
the path of the field that has it (``vms[2].name``, ``links[0][1]``).
"""

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from django.conf import settings

from .errors import InvalidRequest, PayloadTooLarge
from .models import Slice
from .naming import MAX_DATA_INTERFACES, NAME_HELP, iface_index, iface_name, is_valid_name

FORMAT_VERSION = 1
FORMATS = ("yaml", "json")
CONTENT_TYPES = {"yaml": "application/yaml", "json": "application/json"}
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_VMS = 256
MAX_LINKS = 2048
MAX_DEPTH = 16
DESCRIPTION_MAX_LENGTH = 2000
COORD_LIMIT = 1_000_000.0
# VMs a document places nowhere are laid out in rows (designer canvas units).
GRID_COLUMNS = 8
GRID_STEP = 140.0
GRID_ORIGIN = 80.0

ENDPOINT_RE = re.compile(r"\A(?P<vm>[^:]+):(?P<iface>[^:]+)\Z")
VM_FIELDS = ("name", "flavor", "image", "data_interfaces_count", "internet_enabled", "x", "y")
TOP_FIELDS = ("version", "name", "description", "vms", "links")

_yaml_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def max_bytes() -> int:
    """The largest document accepted, in bytes (``SLICE_IMPORT_MAX_BYTES``, default 1 MiB)."""
    return int(getattr(settings, "SLICE_IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES))


@dataclass(frozen=True)
class VMSpec:
    """A VM of an imported document; flavor and image by name (None: the defaults)."""

    name: str
    flavor: str | None = None
    image: str | None = None
    data_interfaces_count: int = 1
    internet_enabled: bool = False
    x: float | None = None
    y: float | None = None
    # False when the document left data_interfaces_count out (it was inferred from the links).
    count_given: bool = True


@dataclass(frozen=True)
class LinkSpec:
    """A link of an imported document: two ``(vm name, interface index)`` ends."""

    vm_a: str
    iface_a: int
    vm_b: str
    iface_b: int


@dataclass(frozen=True)
class SliceDocument:
    """A validated slice design, ready for ``services.slice_import``."""

    name: str | None
    description: str = ""
    vms: list[VMSpec] = field(default_factory=list)
    links: list[LinkSpec] = field(default_factory=list)


# --- reading ---------------------------------------------------------------------------


def _too_large(size: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The document is {size} bytes; the limit is {max_bytes()} bytes.", field="file")


def _refuse(message: str, path: str = "file") -> InvalidRequest:
    return InvalidRequest(message, field=path, code="invalid_document", errors={path: [message]})


def _check_yaml_events(text: str) -> None:
    """Refuse aliases (exponential expansion) and deep nesting before composing anything."""
    depth = 0
    for event in yaml.parse(text, Loader=_yaml_loader):
        if isinstance(event, yaml.AliasEvent):
            raise _refuse("YAML aliases (*name) are not accepted; write the values out.")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _refuse(f"The document nests deeper than {MAX_DEPTH} levels.")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_text(data: str | bytes, *, fmt: str | None = None) -> Any:
    """Parse a YAML or JSON text (``fmt`` None: JSON when it starts with ``{``, else YAML)."""
    if isinstance(data, bytes):
        if len(data) > max_bytes():
            raise _too_large(len(data))
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _refuse(f"The document is not UTF-8 text (byte {exc.start}).") from exc
    if len(data.encode("utf-8")) > max_bytes():
        raise _too_large(len(data.encode("utf-8")))
    data = data.removeprefix("\ufeff")
    if fmt is None:
        fmt = "json" if data.lstrip().startswith("{") else "yaml"
    if fmt not in FORMATS:
        raise _refuse(f"Unknown format {fmt!r}: use yaml or json.", "format")
    try:
        if fmt == "json":
            return json.loads(data, parse_constant=_no_constant)
        _check_yaml_events(data)
        return yaml.safe_load(data)
    except InvalidRequest:
        raise
    except json.JSONDecodeError as exc:
        raise _refuse(f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise _refuse(f"Invalid YAML{where}: {problem}.") from exc
    except (RecursionError, ValueError) as exc:
        raise _refuse(f"Unreadable document: {exc}.") from exc


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number this format accepts")


class _Errors:
    """Collects problems by field path."""

    def __init__(self) -> None:
        self.by_path: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.by_path.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if not self.by_path:
            return
        path, messages = next(iter(self.by_path.items()))
        count = sum(len(m) for m in self.by_path.values())
        more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        raise InvalidRequest(
            f"{path}: {messages[0]}{more}", field=path, code="invalid_document", errors=dict(self.by_path)
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) and abs(value) <= COORD_LIMIT


def _unknown_keys(obj: dict, allowed: tuple[str, ...], path: str, errors: _Errors) -> None:
    for key in obj:
        if key not in allowed:
            errors.add(f"{path}{'.' if path else ''}{key}", f"Unknown field; expected one of: {', '.join(allowed)}.")


def _parse_vm(raw: Any, path: str, errors: _Errors) -> VMSpec | None:
    if not isinstance(raw, dict):
        errors.add(path, "A VM must be a mapping with at least a name.")
        return None
    _unknown_keys(raw, VM_FIELDS, path, errors)
    ok = True
    name = raw.get("name")
    if name is None:
        errors.add(f"{path}.name", "This field is required.")
        ok = False
    elif not is_valid_name(name):
        errors.add(f"{path}.name", f"Invalid VM name {name!r}: {NAME_HELP}")
        ok = False
    for key in ("flavor", "image"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value or len(value) > 64):
            errors.add(f"{path}.{key}", f"The {key} is given by its name (a string).")
            ok = False
    count_given = "data_interfaces_count" in raw
    # Not given: inferred from the links afterwards (the links may use any interface up to the maximum).
    count = raw.get("data_interfaces_count", MAX_DATA_INTERFACES)
    if not _is_int(count) or not 0 <= count <= MAX_DATA_INTERFACES:
        errors.add(f"{path}.data_interfaces_count", f"A whole number from 0 to {MAX_DATA_INTERFACES}.")
        ok = False
    internet = raw.get("internet_enabled", False)
    if not isinstance(internet, bool):
        errors.add(f"{path}.internet_enabled", "true or false.")
        ok = False
    for key in ("x", "y"):
        if raw.get(key) is not None and not _is_number(raw[key]):
            errors.add(f"{path}.{key}", f"A number between -{COORD_LIMIT:.0f} and {COORD_LIMIT:.0f}.")
            ok = False
    if not ok:
        return None
    return VMSpec(
        name=name,
        flavor=raw.get("flavor"),
        image=raw.get("image"),
        data_interfaces_count=count,
        internet_enabled=internet,
        x=float(raw["x"]) if raw.get("x") is not None else None,
        y=float(raw["y"]) if raw.get("y") is not None else None,
        count_given=count_given,
    )


def _parse_endpoint(raw: Any, path: str, vms: dict[str, VMSpec], errors: _Errors) -> tuple[str, int] | None:
    match = ENDPOINT_RE.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        errors.add(path, "An endpoint is written 'vm:ethN', e.g. 'vm1:eth1'.")
        return None
    vm_name, name = match["vm"], match["iface"]
    vm = vms.get(vm_name)
    if vm is None:
        errors.add(path, f"No VM named {vm_name!r} in vms.")
        return None
    try:
        index = iface_index(name)
    except ValueError:
        errors.add(path, f"{name!r} is not an interface name (eth1, eth2, ...).")
        return None
    if index == 0:
        errors.add(path, f"{vm_name}:eth0 is the management interface and is never linked; use eth1 or above.")
        return None
    if index > vm.data_interfaces_count:
        if not vm.count_given:
            errors.add(path, f"{name} is beyond the largest interface, eth{MAX_DATA_INTERFACES}.")
        else:
            errors.add(path, f"VM {vm_name!r} has no {name}: its data_interfaces_count is {vm.data_interfaces_count}.")
        return None
    return vm_name, index


def _parse_links(raw: Any, vms: dict[str, VMSpec], errors: _Errors) -> list[LinkSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.add("links", "A list of links, each a pair of endpoints: [vm1:eth1, vm2:eth1].")
        return []
    if len(raw) > MAX_LINKS:
        errors.add("links", f"At most {MAX_LINKS} links.")
        return []
    links: list[LinkSpec] = []
    used: dict[tuple[str, int], str] = {}
    pairs: dict[frozenset[str], str] = {}
    for i, item in enumerate(raw):
        path = f"links[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            errors.add(path, "A link is a pair of endpoints: [vm1:eth1, vm2:eth1].")
            continue
        ends = [_parse_endpoint(item[k], f"{path}[{k}]", vms, errors) for k in (0, 1)]
        if ends[0] is None or ends[1] is None:
            continue
        (vm_a, if_a), (vm_b, if_b) = ends
        if vm_a == vm_b:
            errors.add(path, f"A link joins two distinct VMs; both ends are on {vm_a!r}.")
            continue
        bad = False
        for k, end in enumerate(ends):
            if end in used:
                errors.add(f"{path}[{k}]", f"{end[0]}:{iface_name(end[1])} is already linked by {used[end]}.")
                bad = True
        pair = frozenset((vm_a, vm_b))
        if not bad and pair in pairs:
            errors.add(path, f"{vm_a} and {vm_b} are already linked by {pairs[pair]}: a duplicate link.")
            bad = True
        if bad:
            continue
        used[ends[0]] = used[ends[1]] = path
        pairs[pair] = path
        links.append(LinkSpec(vm_a, if_a, vm_b, if_b))
    return links


def parse_document(data: Any, *, name: str | None = None) -> SliceDocument:
    """Validate a loaded document (dict) into a :class:`SliceDocument`.

    ``name`` (when given) replaces the document's name, to import a copy under
    another name. Raises ``InvalidRequest`` listing every problem by field path.
    """
    errors = _Errors()
    if not isinstance(data, dict):
        raise _refuse("The document must be a mapping with name, vms and links.")
    _unknown_keys(data, TOP_FIELDS, "", errors)
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        errors.add("version", f"Unsupported version {version!r}; this portal reads version {FORMAT_VERSION}.")
    if name is None:
        name = data.get("name")
        if name is None:
            errors.add("name", "This field is required.")
        elif not is_valid_name(name):
            errors.add("name", f"Invalid slice name {name!r}: {NAME_HELP}")
    elif not is_valid_name(name):
        errors.add("name", f"Invalid slice name {name!r}: {NAME_HELP}")
    description = data.get("description") or ""
    if not isinstance(description, str) or len(description) > DESCRIPTION_MAX_LENGTH:
        errors.add("description", f"Text of at most {DESCRIPTION_MAX_LENGTH} characters.")
        description = ""
    raw_vms = data.get("vms")
    vms: dict[str, VMSpec] = {}
    if raw_vms is None:
        raw_vms = []
    if not isinstance(raw_vms, list):
        errors.add("vms", "A list of VMs.")
        raw_vms = []
    elif len(raw_vms) > MAX_VMS:
        errors.add("vms", f"At most {MAX_VMS} VMs.")
        raw_vms = []
    for i, raw in enumerate(raw_vms):
        vm = _parse_vm(raw, f"vms[{i}]", errors)
        if vm is None:
            continue
        if vm.name in vms:
            errors.add(f"vms[{i}].name", f"A second VM named {vm.name!r}: VM names are unique in a slice.")
            continue
        vms[vm.name] = vm
    links = _parse_links(data.get("links"), vms, errors)
    errors.raise_if_any()
    return SliceDocument(name=name, description=description, vms=_infer_counts(list(vms.values()), links), links=links)


def _infer_counts(vms: list[VMSpec], links: list[LinkSpec]) -> list[VMSpec]:
    """Give each VM whose document left ``data_interfaces_count`` out the count its links need (at least 1)."""
    highest: dict[str, int] = {}
    for link in links:
        for vm, index in ((link.vm_a, link.iface_a), (link.vm_b, link.iface_b)):
            highest[vm] = max(highest.get(vm, 0), index)
    return [vm if vm.count_given else replace(vm, data_interfaces_count=max(1, highest.get(vm.name, 0))) for vm in vms]


def grid_position(index: int) -> tuple[float, float]:
    """Canvas position of the ``index``-th VM placed without coordinates: rows of ``GRID_COLUMNS``."""
    row, column = divmod(index, GRID_COLUMNS)
    return GRID_ORIGIN + column * GRID_STEP, GRID_ORIGIN + row * GRID_STEP


# --- writing ---------------------------------------------------------------------------


def _end_key(end: str) -> tuple[str, int]:
    vm, _, iface = end.partition(":")
    return vm, iface_index(iface)


def vm_fields(vm) -> dict[str, Any]:
    """A VM's fields in the document (everything but its name): what export writes and apply compares."""
    return {
        "flavor": vm.flavor.name,
        "image": vm.image.name,
        "data_interfaces_count": vm.data_interfaces_count,
        "internet_enabled": vm.internet_enabled,
        "x": vm.x,
        "y": vm.y,
    }


def export_document(slice_obj: Slice) -> dict[str, Any]:
    """The canonical document of a slice (see the module docstring)."""
    vms = list(slice_obj.vms.select_related("flavor", "image").order_by("name"))
    names = {vm.pk: vm.name for vm in vms}
    links = []
    for link in slice_obj.links.select_related("a", "b").order_by():
        ends = sorted((f"{names[link.a.vm_id]}:{link.a.name}", f"{names[link.b.vm_id]}:{link.b.name}"), key=_end_key)
        links.append(ends)
    links.sort(key=lambda pair: (_end_key(pair[0]), _end_key(pair[1])))
    return {
        "version": FORMAT_VERSION,
        "name": slice_obj.name,
        "description": slice_obj.description,
        "vms": [{"name": vm.name, **vm_fields(vm)} for vm in vms],
        "links": links,
    }


def dumps(document: dict[str, Any], fmt: str) -> str:
    """Serialise a document as ``yaml`` or ``json`` text."""
    if fmt == "json":
        return json.dumps(document, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(document, sort_keys=False, default_flow_style=None, allow_unicode=False)
    raise ValueError(f"unknown format {fmt!r}")
