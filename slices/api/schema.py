"""The API's OpenAPI generator: drf-spectacular's, plus the error answers every operation can give."""

from drf_spectacular.openapi import AutoSchema

from .exceptions import ErrorSerializer

ERROR_DESCRIPTIONS = {
    "400": "Refused input: `detail` says why, `errors` lists every problem by field path.",
    "401": "Not logged in (no session, no valid token).",
    "403": "Not allowed: staff only, over your quota, or a missing CSRF token.",
    "404": "No such object, or not yours (the answer is the same for both).",
    "409": "Conflicts with the current state (a busy slice, no capacity, still in use, ...): `code` says which.",
    "413": "The document is larger than the limit.",
    "415": "Unsupported body type: send JSON.",
}


class PortalAutoSchema(AutoSchema):
    """Add the error answers to each operation, all with the one ``Error`` body.

    Which ones follow from the operation: 401 always; 400 when it takes a
    body or query parameters; 404 when the path names an object; 403 and
    409 for writes; 415 when it takes a body. An answer a view declared
    without a body (``OpenApiResponse(description=...)``) gets the Error body.
    """

    def _error_codes(self, operation: dict) -> list[str]:
        params = operation.get("parameters", [])
        writes = self.method not in ("GET", "HEAD", "OPTIONS")
        codes = ["401"]
        if writes or "requestBody" in operation or any(p["in"] == "query" for p in params):
            codes.append("400")
        if writes:
            codes += ["403", "409"]
        if any(p["in"] == "path" for p in params):
            codes.append("404")
        if "requestBody" in operation:
            codes.append("415")
        return codes

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        codes = set(self._error_codes(operation)) | {code for code in responses if code >= "400"}
        for code in sorted(codes):
            declared = responses.get(code, {})
            if "content" in declared:
                continue
            error = self._get_response_for_code(ErrorSerializer, code, media_types=["application/json"])
            error["description"] = declared.get("description") or ERROR_DESCRIPTIONS.get(code, "Refused.")
            responses[code] = error
        return operation
