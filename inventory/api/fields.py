"""API building blocks shared by every app's API (the lowest app holds them, so all may import them)."""

from collections.abc import Mapping

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


# JSON types each kind of field accepts. DRF itself is lenient (the string "5" for an integer, 5 for a string,
# "yes" or 0 for a boolean); the API's schema promises JSON types, so anything else is refused.
_JSON_TYPES: list[tuple[type, tuple[type, ...], str]] = [
    (serializers.BooleanField, (bool,), "a boolean (true or false)"),
    (serializers.IntegerField, (int,), "a whole number"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.PrimaryKeyRelatedField, (int,), "an id (a whole number)"),
    (serializers.CharField, (str,), "a string"),
    (serializers.ChoiceField, (str,), "a string"),
]


def _expected_json_type(field: serializers.Field) -> tuple[tuple[type, ...], str] | None:
    for field_class, types, label in _JSON_TYPES:
        if isinstance(field, field_class):
            return types, label
    return None


class StrictTypesMixin:
    """Serializer mixin: refuse a body that is not an object, and values of the wrong JSON type (400)."""

    def to_internal_value(self, data):
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": [f"Expected a JSON object, got {type(data).__name__}."]}, code="invalid"
            )
        errors = {}
        for field in self._writable_fields:
            if field.field_name not in data or data[field.field_name] is None:
                continue  # missing and null: the field's own rules (required, allow_null) answer
            expected = _expected_json_type(field)
            value = data[field.field_name]
            if expected and (
                not isinstance(value, expected[0]) or (isinstance(value, bool) and bool not in expected[0])
            ):
                errors[field.field_name] = [f"Must be {expected[1]}."]
        if errors:
            raise serializers.ValidationError(errors, code="invalid")
        return super().to_internal_value(data)
