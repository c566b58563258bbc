"""Serializer fields of the API, with their OpenAPI schema."""

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent, build_choice_field
from rest_framework import serializers

from slices.naming import NAME_HELP, is_valid_name


class NamedChoiceField(serializers.ChoiceField):
    """A choice field whose OpenAPI enum gets a fixed component name (``SliceStatusEnum``).

    Several models have a ``status`` (or ``kind``) with different choices; left
    to itself, drf-spectacular names those enums by the field name, meets the
    collision and warns. Naming them here keeps ``spectacular --fail-on-warn``
    green without settings (``ENUM_NAME_OVERRIDES``) that other apps must keep up.
    """

    def __init__(self, *, enum_name: str, **kwargs):
        self.enum_name = enum_name
        super().__init__(**kwargs)


class NamedChoiceFieldExtension(OpenApiSerializerFieldExtension):
    """Register the enum as its own component and refer to it."""

    target_class = NamedChoiceField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = build_choice_field(self.target)
        schema.pop("x-spec-enum-id", None)
        component = ResolvedComponent(
            name=self.target.enum_name, type=ResolvedComponent.SCHEMA, object=self.target.enum_name, schema=schema
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref


def validate_name(value: str) -> str:
    """Refuse (never clean) a slice or VM name that is not safe on a host."""
    if not is_valid_name(value):
        raise serializers.ValidationError(f"Invalid name {value!r}: {NAME_HELP}", code="invalid_name")
    return value


class NameField(serializers.CharField):
    """A slice or VM name: strictly validated, whitespace kept so that it is refused, not trimmed."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 256)  # a guard; the pattern allows 32 and says so
        kwargs.setdefault("help_text", NAME_HELP)
        super().__init__(trim_whitespace=False, validators=[validate_name], **kwargs)
