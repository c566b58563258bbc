"""Serializer fields of the API, with their OpenAPI schema."""

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from slices.naming import NAME_HELP, NAME_MAX_LENGTH, NAME_PATTERN, is_valid_name


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


class NameFieldExtension(OpenApiSerializerFieldExtension):
    """A name's schema says what the validator accepts, so generated clients (and fuzzers) send valid names."""

    target_class = NameField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": NAME_MAX_LENGTH}


class OwnedRelatedField(serializers.PrimaryKeyRelatedField):
    """The id of a slice or VM the requesting user may use (staff: any).

    Another user's object and a missing one get the same 400 ("No such
    slice."), so that the answer never tells which ids other users hold.
    """

    def __init__(self, *, model, owner_path: str, noun: str, **kwargs):
        self.owner_path = owner_path
        kwargs.setdefault(
            "error_messages",
            {"does_not_exist": f"No such {noun}.", "incorrect_type": f"A {noun} id: a whole number."},
        )
        super().__init__(queryset=model.objects.all(), **kwargs)

    def get_queryset(self):
        queryset = super().get_queryset()
        request = self.context.get("request")
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return queryset.none()
        return queryset if user.is_staff else queryset.filter(**{self.owner_path: user})
