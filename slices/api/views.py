"""Viewsets of the design API. Each write calls a service; querysets are per user."""

from dataclasses import asdict

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from slices import apply, io, lifetime, quotas, selectors, services, topologies
from slices.errors import Conflict, InvalidRequest, PayloadTooLarge
from slices.links import LinkRequest
from slices.models import VM, Interface, Link, Slice

from .params import filter_by_id, id_parameter
from .renderers import DOCUMENT_PARSERS, JSONDocumentRenderer, RawDocument, YAMLDocumentRenderer
from .serializers import (
    ApplyResultSerializer,
    BulkLinksResultSerializer,
    BulkLinksSerializer,
    ExtendSerializer,
    FromTemplateSerializer,
    ImportUploadSerializer,
    InterfaceSerializer,
    LinkSerializer,
    SliceDetailSerializer,
    SliceDocumentSerializer,
    SliceImportResultSerializer,
    SliceSerializer,
    SliceStatusSerializer,
    TopologyKindSerializer,
    VMSerializer,
)

# Room for the multipart envelope around an uploaded document.
MULTIPART_OVERHEAD = 64 * 1024


def _schema_only(view) -> bool:
    """True while drf-spectacular builds the schema (no real user to filter by)."""
    return getattr(view, "swagger_fake_view", False)


def _id_filter(param: str, what: str):
    """Schema of an ``?param=ID`` list filter."""
    return extend_schema(parameters=[id_parameter(param, f"Only {what}.")])


def _read_document(request: Request) -> tuple[object, str | None]:
    """The loaded document of an import or apply request (the body, or a file field ``file``) and ``?name=``."""
    limit = io.max_bytes()
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(f"The document is {length} bytes; the limit is {limit} bytes.", field="file")
    name = request.query_params.get("name")
    data = request.data
    if isinstance(data, RawDocument):
        loaded = io.load_text(data.data, fmt=data.fmt)
    else:
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidRequest(
                "Send the document as the request body (JSON or YAML) or as a file field named 'file'.",
                field="file",
            )
        if upload.size > limit:
            raise PayloadTooLarge(f"The document is {upload.size} bytes; the limit is {limit} bytes.", field="file")
        suffix = (upload.name or "").rsplit(".", 1)[-1].lower()
        fmt = {"json": "json", "yaml": "yaml", "yml": "yaml"}.get(suffix)
        loaded = io.load_text(upload.read(limit + 1), fmt=fmt)
        name = name or data.get("name") or None
    return loaded, name or None


# A topology document (ours or containerlab's): a JSON or YAML body, or an uploaded file.
DOCUMENT_REQUEST = {
    "application/json": SliceDocumentSerializer,
    "application/yaml": OpenApiTypes.STR,
    "text/plain": OpenApiTypes.STR,
    "multipart/form-data": ImportUploadSerializer,
}


def _report(topology: apply.Topology) -> dict:
    """What reading the document reported: its source, the interfaces renamed, what was not represented."""
    return {"source": topology.source, "interfaces": topology.interfaces, "warnings": topology.warnings}


def _flag(request: Request, param: str) -> bool:
    raw = request.query_params.get(param, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"?{param}= is true or false.", field=param)
    return raw in ("true", "1")


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("name", str, description="Only the slice of exactly this name (case-sensitive).")]
    )
)
class SliceViewSet(viewsets.ModelViewSet):
    """Slices of the current user (staff: everyone's). Another user's slice is a 404."""

    serializer_class = SliceSerializer

    def get_queryset(self):
        if _schema_only(self):
            return Slice.objects.none()
        if self.action == "list":
            qs = selectors.slice_list(user=self.request.user)
            name = self.request.query_params.get("name")
            return qs if name is None else qs.filter(name=name)
        if self.action in ("export", "compact_status", "links_bulk"):
            return selectors.slice_list(user=self.request.user)
        return selectors.slice_detail_queryset(user=self.request.user)

    def get_serializer_class(self):
        if self.action in ("list", "create"):
            return SliceSerializer
        return SliceDetailSerializer

    def _detail(self, slice_obj: Slice, status_code: int = status.HTTP_200_OK) -> Response:
        instance = selectors.slice_detail_queryset(user=self.request.user).get(pk=slice_obj.pk)
        return Response(SliceDetailSerializer(instance, context=self.get_serializer_context()).data, status=status_code)

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.slice_create(
            owner=self.request.user, name=data["name"], description=data.get("description", "")
        )

    @extend_schema(responses={201: SliceDetailSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        return self._detail(serializer.instance, status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        data = serializer.validated_data
        services.slice_update(slice_obj=serializer.instance, name=data.get("name"), description=data.get("description"))

    def update(self, request: Request, *args, **kwargs) -> Response:
        super().update(request, *args, **kwargs)
        return self._detail(self.get_object())

    def perform_destroy(self, instance):
        services.slice_delete(slice_obj=instance)

    def perform_content_negotiation(self, request: Request, force: bool = False):
        fmt = request.query_params.get("format")
        if self.action == "export" and fmt is not None and fmt not in io.FORMATS:
            # DRF ignores an empty ?format= and answers an unknown one with a bare 404.
            raise InvalidRequest(f"Unknown export format {fmt!r}: use yaml or json.", field="format")
        try:
            return super().perform_content_negotiation(request, force)
        except Http404 as exc:  # DRF answers an unknown ?format= with a bare 404
            if self.action != "export":
                raise
            fmt = request.query_params.get("format")
            raise InvalidRequest(f"Unknown export format {fmt!r}: use yaml or json.", field="format") from exc

    def finalize_response(self, request: Request, response: Response, *args, **kwargs) -> Response:
        # An export that fails (401, 404, 400) answers the API's JSON error body, whatever format was asked:
        # the document renderers render documents, and YAML could not render an error at all.
        if self.action == "export" and response.status_code >= 400 and isinstance(response, Response):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        request=ExtendSerializer, responses={200: SliceDetailSerializer}, summary="Extend a slice's lifetime"
    )
    @action(detail=True, methods=["post"])
    def extend(self, request: Request, pk=None) -> Response:
        """Set a deployed slice to expire ``hours`` from now (at most your maximum); then it is destroyed."""
        slice_obj = self.get_object()
        body = ExtendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._detail(lifetime.slice_extend(slice_obj=slice_obj, hours=body.validated_data["hours"]))

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=list(io.FORMATS), description="yaml or json (default json).")],
        responses={200: SliceDocumentSerializer},
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONDocumentRenderer, YAMLDocumentRenderer])
    def export(self, request: Request, pk=None) -> Response:
        """Download the slice's design as YAML or JSON (``?format=yaml|json``), to import elsewhere."""
        slice_obj = self.get_object()
        fmt = request.accepted_renderer.format
        response = Response(io.export_document(slice_obj))
        response["Content-Disposition"] = f'attachment; filename="{slice_obj.name}.{fmt}"'
        return response

    @extend_schema(
        request=DOCUMENT_REQUEST,
        parameters=[OpenApiParameter("name", str, description="Import under this name instead of the document's.")],
        responses={
            201: SliceImportResultSerializer,
            400: OpenApiResponse(description="The document is invalid; `errors` lists every problem by field path."),
            413: OpenApiResponse(description="The document is larger than the limit."),
        },
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        parser_classes=[*DOCUMENT_PARSERS, MultiPartParser],
    )
    def import_document(self, request: Request) -> Response:
        """Create a slice from a YAML or JSON document (ours or containerlab's): the body, or a file field ``file``.

        The whole slice is created or nothing is. Errors name the field path
        (``vms[2].name``); ``?name=`` imports a copy under another name.
        """
        loaded, name = _read_document(request)
        topology = apply.read_topology(loaded, name=name)
        slice_obj = services.slice_import(owner=request.user, document=topology.document)
        response = self._detail(slice_obj, status.HTTP_201_CREATED)
        response.data = {**response.data, **_report(topology)}
        return response

    @extend_schema(
        request=DOCUMENT_REQUEST,
        parameters=[
            OpenApiParameter("dry_run", OpenApiTypes.BOOL, description="true: only say what would change."),
            OpenApiParameter("name", str, description="Apply to this slice name instead of the document's."),
        ],
        responses={
            200: ApplyResultSerializer,
            201: ApplyResultSerializer,
            400: OpenApiResponse(description="The document is invalid; `errors` lists every problem by field path."),
            409: OpenApiResponse(description="A job runs on the slice: wait for it."),
            413: OpenApiResponse(description="The document is larger than the limit."),
        },
    )
    @action(detail=False, methods=["post"], url_path="apply", parser_classes=[*DOCUMENT_PARSERS, MultiPartParser])
    def apply_document(self, request: Request) -> Response:
        """Create your slice named in a document (ours or containerlab's), or bring it to the document.

        Answers the difference (``diff``, ``lines``, ``summary``: ``unchanged`` when
        there is none); with ``?dry_run=true`` nothing changes. The change is atomic.
        A deployed slice is not redeployed here: ``redeploy_needed`` says to call
        ``/api/slices/{id}/redeploy/``.
        """
        dry_run = _flag(request, "dry_run")
        loaded, name = _read_document(request)
        topology = apply.read_topology(loaded, name=name)
        result = apply.slice_apply(owner=request.user, document=topology.document, dry_run=dry_run)
        code = status.HTTP_201_CREATED if result["created"] and not dry_run else status.HTTP_200_OK
        return Response({**result, **_report(topology)}, status=code)

    @extend_schema(
        parameters=[OpenApiParameter("slice_name", str, OpenApiParameter.PATH, description="The slice's name.")],
        responses={200: SliceDetailSerializer},
    )
    @action(detail=False, methods=["get"], url_path=r"by-name/(?P<slice_name>[^/]+)")
    def by_name(self, request: Request, slice_name: str) -> Response:
        """Your slice of exactly this name (another user's slice of the same name is not found)."""
        slice_obj = apply.find_slice(owner=request.user, name=slice_name)
        if slice_obj is None:
            raise Http404
        return self._detail(slice_obj)

    @extend_schema(responses={200: SliceStatusSerializer})
    @action(detail=True, methods=["get"], url_path="status")
    def compact_status(self, request: Request, pk=None) -> Response:
        """The compact status to poll: per VM its host, status and addressed interfaces."""
        return Response(selectors.slice_status(slice_obj=self.get_object()))

    @extend_schema(request=FromTemplateSerializer, responses={201: SliceDetailSerializer})
    @action(detail=False, methods=["post"], url_path="from-template", serializer_class=FromTemplateSerializer)
    def from_template(self, request: Request) -> Response:
        """Create a slice of N VMs wired as a topology (see ``/api/templates/``)."""
        serializer = FromTemplateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        slice_obj = services.slice_from_template(
            owner=request.user,
            name=data["name"],
            description=data.get("description", ""),
            topology=data["topology"],
            count=data["count"],
            flavor=data.get("flavor"),
            image=data.get("image"),
            internet_enabled=data["internet_enabled"],
        )
        return self._detail(slice_obj, status.HTTP_201_CREATED)

    @extend_schema(
        request=BulkLinksSerializer,
        responses={201: BulkLinksResultSerializer},
        description=(
            "Create a whole set of links in the slice in one request (automation, import): every link "
            "is checked by the rules of `POST /api/links/`, in order, and either all are created or none "
            "is (a refusal names `links[i]`; 409 `vlan_pool_exhausted` when the VLANs run out)."
        ),
    )
    @action(detail=True, methods=["post"], url_path="links/bulk", serializer_class=BulkLinksSerializer)
    def links_bulk(self, request: Request, pk=None) -> Response:
        """Create many links at once, all or nothing."""
        slice_obj = self.get_object()
        serializer = BulkLinksSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        requests = [
            LinkRequest(p["vm_a"], p["vm_b"], p.get("iface_a") or None, p.get("iface_b") or None)
            for p in serializer.validated_data["links"]
        ]
        created = services.links_connect(slice_obj=slice_obj, requests=requests)
        order = {link.pk: i for i, link in enumerate(created)}
        links = sorted(selectors.link_list(user=request.user).filter(pk__in=order), key=lambda x: order[x.pk])
        data = LinkSerializer(links, many=True, context=self.get_serializer_context()).data
        return Response({"links": data}, status=status.HTTP_201_CREATED)


@extend_schema_view(list=_id_filter("slice", "this slice's VMs"))
class VMViewSet(viewsets.ModelViewSet):
    """VMs of the user's slices; ``?slice=ID`` filters one slice."""

    serializer_class = VMSerializer

    def get_queryset(self):
        if _schema_only(self):
            return VM.objects.none()
        return filter_by_id(selectors.vm_list(user=self.request.user), self.request, "slice", "slice_id")

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        slice_obj = data.pop("slice")
        serializer.instance = services.vm_create(slice_obj=slice_obj, **data)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        data.pop("slice", None)
        serializer.instance = services.vm_update(vm=serializer.instance, **data)

    def create(self, request: Request, *args, **kwargs) -> Response:
        response = super().create(request, *args, **kwargs)
        vm = self.get_queryset().get(pk=response.data["id"])
        response.data = self.get_serializer(vm).data
        return response

    def update(self, request: Request, *args, **kwargs) -> Response:
        super().update(request, *args, **kwargs)
        return Response(self.get_serializer(self.get_object()).data)

    def perform_destroy(self, instance):
        services.vm_delete(vm=instance)

    @extend_schema(
        responses={
            200: inline_serializer(
                "ConsolePassword", {"user": serializers.CharField(), "password": serializers.CharField()}
            ),
            403: OpenApiResponse(description="Only the slice's owner sees the password (not staff)."),
            409: OpenApiResponse(description="Not a cloud-init VM, or not deployed yet (no password made)."),
        }
    )
    @action(detail=True, methods=["get"], url_path="console-password")
    def console_password(self, request: Request, pk=None) -> Response:
        """The serial console password of a cloud-init VM's default user: its owner only, on request, never cached."""
        vm = self.get_object()
        if vm.slice.owner_id != request.user.pk:
            raise PermissionDenied("Only the slice's owner sees its VMs' console passwords.")
        if not vm.image.cloud_init or not vm.console_password:
            raise Conflict(f"VM {vm.name!r} has no console password (not a cloud-init VM, or not deployed yet).")
        response = Response({"user": vm.image.default_user, "password": vm.console_password})
        response["Cache-Control"] = "no-store"
        return response


@extend_schema_view(list=_id_filter("slice", "this slice's links"))
class LinkViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    """Links of the user's slices; ``?slice=ID`` filters one slice. Links are created or deleted, not edited."""

    serializer_class = LinkSerializer

    def get_queryset(self):
        if _schema_only(self):
            return Link.objects.none()
        return filter_by_id(selectors.link_list(user=self.request.user), self.request, "slice", "slice_id")

    def perform_create(self, serializer):
        data = serializer.validated_data
        link = services.link_connect(
            slice_obj=data["slice"],
            vm_a=data["vm_a"],
            vm_b=data["vm_b"],
            iface_a=data.get("iface_a") or None,
            iface_b=data.get("iface_b") or None,
        )
        serializer.instance = self.get_queryset().get(pk=link.pk)

    def perform_destroy(self, instance):
        services.link_delete(link=instance)


@extend_schema_view(list=_id_filter("vm", "this VM's interfaces"))
class InterfaceViewSet(viewsets.ReadOnlyModelViewSet):
    """Interfaces of the user's VMs (read-only: they follow the VM and its links); ``?vm=ID`` filters."""

    serializer_class = InterfaceSerializer

    def get_queryset(self):
        if _schema_only(self):
            return Interface.objects.none()
        return filter_by_id(selectors.interface_list(user=self.request.user), self.request, "vm", "vm_id")


class TemplateListView(APIView):
    """The topology templates a slice can be created from, with their VM count limits."""

    @extend_schema(responses=TopologyKindSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response([asdict(kind) for kind in topologies.KINDS.values()])


_quota = inline_serializer(
    "Quota",
    {
        "vms": serializers.IntegerField(),
        "vcpus": serializers.IntegerField(),
        "ram_mib": serializers.IntegerField(),
    },
)


@extend_schema(
    responses=inline_serializer(
        "Me",
        {
            "id": serializers.IntegerField(),
            "username": serializers.CharField(),
            "is_staff": serializers.BooleanField(),
            "quota": _quota,
            "usage": _quota,
        },
    )
)
@api_view(["GET"])
def me(request: Request) -> Response:
    """The current user, their quota (limits) and what they use of it."""
    user = request.user
    return Response(
        {
            "id": user.pk,
            "username": user.get_username(),
            "is_staff": user.is_staff,
            "quota": quotas.quota_limits(user=user),
            "usage": quotas.quota_usage(user=user),
        },
        status=status.HTTP_200_OK,
    )
