"""Forms of the browser designer.

The login form is posted to Django's auth view. The other forms are rendered by
Django (labels, widgets, choices, help texts, limits) but submitted by the
designer's JavaScript to the REST API, which validates again and answers with
field errors that the page shows under the same fields.
"""

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from inventory.models import Flavor, Image
from slices.naming import MAX_DATA_INTERFACES, NAME_HELP, NAME_MAX_LENGTH, NAME_PATTERN

# Topologies the core can generate (``slices.topologies`` / ``/api/templates/``); the page
# reads each one's VM limits from the API.
TOPOLOGY_CHOICES = [
    ("", "Empty slice"),
    ("linear", "Linear (a chain)"),
    ("ring", "Ring"),
    ("star", "Star (a hub and spokes)"),
    ("mesh", "Full mesh"),
    ("tree", "Tree"),
]
TOPOLOGY_MAX_VMS = 64
# The browser's ``pattern`` attribute matches the whole value without anchors.
HTML_NAME_PATTERN = NAME_PATTERN.removeprefix("^").removesuffix("$")


def _name_field(label: str, placeholder: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=NAME_MAX_LENGTH,
        help_text=NAME_HELP,
        widget=forms.TextInput(
            attrs={
                "placeholder": placeholder,
                "pattern": HTML_NAME_PATTERN,
                "autocomplete": "off",
                "spellcheck": "false",
                "autocapitalize": "off",
            }
        ),
    )


class LoginForm(AuthenticationForm):
    """Django's login form with the attributes password managers and keyboards expect."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class SliceCreateForm(forms.Form):
    """A new slice: empty, or generated from a topology template with ``count`` VMs."""

    name = _name_field("Name", "e.g. lab1")
    description = forms.CharField(
        label="Description", required=False, max_length=2000, widget=forms.TextInput(attrs={"placeholder": "optional"})
    )
    topology = forms.ChoiceField(label="Topology", choices=TOPOLOGY_CHOICES, required=False)
    count = forms.IntegerField(label="VMs", min_value=1, max_value=TOPOLOGY_MAX_VMS, initial=3)


class SliceImportForm(forms.Form):
    """A slice file exported before (YAML or JSON); ``name`` overrides the file's."""

    file = forms.FileField(
        label="File", widget=forms.ClearableFileInput(attrs={"accept": ".yaml,.yml,.json,application/json"})
    )
    name = forms.CharField(
        label="Name",
        required=False,
        max_length=NAME_MAX_LENGTH,
        help_text="Leave empty to keep the name in the file.",
        widget=forms.TextInput(attrs={"pattern": HTML_NAME_PATTERN, "autocomplete": "off", "spellcheck": "false"}),
    )


def image_label(image: Image) -> str:
    """The image picker's label: a cloud-init image says so, with the user it creates."""
    return f"{image.name} (cloud-init, user {image.default_user})" if image.cloud_init else image.name


class VMForm(forms.Form):
    """A VM of the slice being designed (POST /api/vms/ or PATCH /api/vms/{id}/)."""

    name = _name_field("Name", "e.g. vm1")
    flavor = forms.ModelChoiceField(label="Flavor", queryset=Flavor.objects.none(), empty_label=None)
    image = forms.ModelChoiceField(label="Image", queryset=Image.objects.none(), empty_label=None)
    data_interfaces_count = forms.IntegerField(
        label="Data interfaces",
        min_value=0,
        max_value=MAX_DATA_INTERFACES,
        initial=2,
        help_text=f"eth1 and up, for links (0-{MAX_DATA_INTERFACES}). eth0 is management.",
    )
    internet_enabled = forms.BooleanField(
        label="Internet access", required=False, help_text="eth0 on VLAN 400, NAT through the network node."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        flavors = Flavor.objects.all()
        images = Image.objects.all()
        self.fields["flavor"].queryset = flavors
        self.fields["image"].queryset = images
        self.fields["image"].label_from_instance = image_label
        self.fields["flavor"].initial = next((f.pk for f in flavors if f.is_default), None)
        self.fields["image"].initial = next((i.pk for i in images if i.is_default), None)
