"""Viewsets of the inventory API: read-only for users, writable by staff."""

from rest_framework import viewsets

from ..models import Flavor, Host, Image
from .permissions import ReadOnlyOrStaff
from .serializers import FlavorSerializer, HostSerializer, ImageSerializer


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
