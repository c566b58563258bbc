"""Parsers and renderers for slice documents (import / export)."""

from dataclasses import dataclass

from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer

from slices import io
from slices.errors import PayloadTooLarge


class YAMLDocumentRenderer(BaseRenderer):
    """Render a slice document (or an error body) as YAML."""

    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        return io.dumps(data, "yaml").encode("utf-8")


class JSONDocumentRenderer(JSONRenderer):
    """Render a slice document as indented JSON."""

    def get_indent(self, accepted_media_type, renderer_context) -> int:
        return 2


@dataclass(frozen=True)
class RawDocument:
    """The undecoded text of an uploaded document and the format its content type says."""

    data: bytes
    fmt: str | None


class _RawDocumentParser(BaseParser):
    fmt: str | None = None

    def parse(self, stream, media_type=None, parser_context=None) -> RawDocument:
        limit = io.max_bytes()
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise PayloadTooLarge(f"The document is larger than the limit of {limit} bytes.", field="file")
        return RawDocument(data, self.fmt)


class JSONDocumentParser(_RawDocumentParser):
    media_type = "application/json"
    fmt = "json"


class YAMLDocumentParser(_RawDocumentParser):
    media_type = "application/yaml"
    fmt = "yaml"


class XYAMLDocumentParser(_RawDocumentParser):
    media_type = "application/x-yaml"
    fmt = "yaml"


class TextYAMLDocumentParser(_RawDocumentParser):
    media_type = "text/yaml"
    fmt = "yaml"


class PlainTextDocumentParser(_RawDocumentParser):
    """Raw text: JSON when it starts with ``{``, YAML otherwise."""

    media_type = "text/plain"
    fmt = None


DOCUMENT_PARSERS = [
    JSONDocumentParser,
    YAMLDocumentParser,
    XYAMLDocumentParser,
    TextYAMLDocumentParser,
    PlainTextDocumentParser,
]
