"""Viewsets of the design API. Each write calls a service; querysets are per user."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from provisioning.models import Flavor, Host, Image
from slices import selectors, services

from .permissions import ReadOnlyOrStaff
from .serializers import (
    FlavorSerializer,
    HostSerializer,
    ImageSerializer,
    InterfaceSerializer,
    LinkSerializer,
    SliceDetailSerializer,
    SliceSerializer,
    VMSerializer,
)


class SliceViewSet(viewsets.ModelViewSet):
    """Slices of the current user (staff: everyone's). Another user's slice is a 404."""

    serializer_class = SliceSerializer

    def get_queryset(self):
        if self.action == "list":
            return selectors.slice_list(user=self.request.user)
        return selectors.slice_detail_queryset(user=self.request.user)

    def get_serializer_class(self):
        return SliceSerializer if self.action in ("list", "create") else SliceDetailSerializer

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.slice_create(
            owner=self.request.user, name=data["name"], description=data.get("description", "")
        )

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        instance = self.get_queryset().get(pk=serializer.instance.pk)
        return Response(SliceDetailSerializer(instance, context=self.get_serializer_context()).data, status=201)

    def perform_update(self, serializer):
        data = serializer.validated_data
        services.slice_update(slice_obj=serializer.instance, name=data.get("name"), description=data.get("description"))

    def update(self, request: Request, *args, **kwargs) -> Response:
        super().update(request, *args, **kwargs)
        instance = self.get_queryset().get(pk=kwargs["pk"])
        return Response(SliceDetailSerializer(instance, context=self.get_serializer_context()).data)

    def perform_destroy(self, instance):
        services.slice_delete(slice_obj=instance)


class VMViewSet(viewsets.ModelViewSet):
    """VMs of the user's slices; ``?slice=ID`` filters one slice."""

    serializer_class = VMSerializer

    def get_queryset(self):
        qs = selectors.vm_list(user=self.request.user)
        if slice_id := self.request.query_params.get("slice"):
            qs = qs.filter(slice_id=slice_id) if slice_id.isdigit() else qs.none()
        return qs

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
        return Response(self.get_serializer(self.get_queryset().get(pk=kwargs["pk"])).data)

    def perform_destroy(self, instance):
        services.vm_delete(vm=instance)


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
        qs = selectors.link_list(user=self.request.user)
        if slice_id := self.request.query_params.get("slice"):
            qs = qs.filter(slice_id=slice_id) if slice_id.isdigit() else qs.none()
        return qs

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


class InterfaceViewSet(viewsets.ReadOnlyModelViewSet):
    """Interfaces of the user's VMs (read-only: they follow the VM and its links)."""

    serializer_class = InterfaceSerializer

    def get_queryset(self):
        qs = selectors.interface_list(user=self.request.user)
        if vm_id := self.request.query_params.get("vm"):
            qs = qs.filter(vm_id=vm_id) if vm_id.isdigit() else qs.none()
        return qs


class HostViewSet(viewsets.ModelViewSet):
    """Cluster hosts: read-only for users, writable by staff."""

    queryset = Host.objects.all()
    serializer_class = HostSerializer
    permission_classes = [ReadOnlyOrStaff]


class ImageViewSet(viewsets.ModelViewSet):
    """Guest images: read-only for users, writable by staff."""

    queryset = Image.objects.all()
    serializer_class = ImageSerializer
    permission_classes = [ReadOnlyOrStaff]


class FlavorViewSet(viewsets.ModelViewSet):
    """VM sizes: read-only for users, writable by staff."""

    queryset = Flavor.objects.all()
    serializer_class = FlavorSerializer
    permission_classes = [ReadOnlyOrStaff]


@extend_schema(
    responses=inline_serializer(
        "Me",
        {
            "id": serializers.IntegerField(),
            "username": serializers.CharField(),
            "is_staff": serializers.BooleanField(),
            "quota": serializers.DictField(child=serializers.IntegerField()),
            "usage": serializers.DictField(child=serializers.IntegerField()),
        },
    )
)
@api_view(["GET"])
def me(request: Request) -> Response:
    """The current user, their quota and what they use of it."""
    user = request.user
    return Response(
        {
            "id": user.pk,
            "username": user.get_username(),
            "is_staff": user.is_staff,
            "quota": services.quota_limits(user=user),
            "usage": services.quota_usage(user=user),
        },
        status=status.HTTP_200_OK,
    )
