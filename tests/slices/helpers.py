"""Small helpers shared by the slice core tests."""

from slices.models import VM

# Names that must never reach a host; each is refused with a 400 / a form error.
HOSTILE_NAMES = [
    "a;rm -rf /",
    "$(id)",
    "`id`",
    "vm 1",
    "vm1 ",
    " vm1",
    "vm1\n",
    "\nvm1",
    "vm1\r",
    "vm\t1",
    "vmé",
    "\u03bdm1",  # Greek nu
    "vm1\u200b",  # zero-width space
    "x" * 33,
    "-x",
    "_x",
    "1vm",
    "../x",
    "a/b",
    "a.b",
    "a|b",
    "a&b",
    "a>b",
    "a'b",
    'a"b',
    "",
]


def vms_of(slice_obj) -> dict[str, VM]:
    """The slice's VMs by name."""
    return {vm.name: vm for vm in VM.objects.filter(slice=slice_obj)}
