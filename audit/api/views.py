"""GET /api/audit/: the audit rows about the caller's own slices and account (staff: all)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError

from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "when",
            "username",
            "action",
            "slice_id",
            "slice_name",
            "host",
            "target",
            "detail",
            "address",
            "via",
        ]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(
        summary="Audit log",
        parameters=[
            OpenApiParameter("slice", int, description="Only the rows of this slice."),
            OpenApiParameter("action", str, description="Only this action."),
        ],
    ),
    retrieve=extend_schema(summary="One audit row"),
)
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Who did what to your slices, when, from where; newest first. Read-only."""

    serializer_class = AuditEventSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        qs = AuditEvent.objects.visible_to(self.request.user)
        slice_id = self.request.query_params.get("slice")
        if slice_id is not None:
            if not slice_id.isdigit():
                raise ValidationError({"slice": ["A slice id (an integer)."]})
            qs = qs.filter(slice_id=int(slice_id))
        action = self.request.query_params.get("action")
        if action:
            qs = qs.filter(action=action)
        return qs
