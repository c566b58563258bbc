"""Serializer fields of the API, with their OpenAPI schema."""

from rest_framework import serializers

from slices.naming import NAME_HELP, is_valid_name


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
