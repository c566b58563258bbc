"""API building blocks shared by every app's API (the lowest app holds them, so all may import them)."""

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent, build_choice_field
from rest_framework import serializers


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
