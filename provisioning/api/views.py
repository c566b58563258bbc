"""Provisioning API: deploy/redeploy/destroy a slice, power actions on a VM and its usage, preview a slice's
plan and placement, follow deployments."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404  # a malformed id is a 404, not a ValueError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from provisioning import drift, selectors, services, usage
from provisioning.models import Deployment
from slices import selectors as slice_selectors
from slices.api.params import filter_by_id, id_parameter, whole_number
from slices.api.serializers import slice_health

from .serializers import (
    CheckResponseSerializer,
    DeploymentDetailSerializer,
    DeploymentSerializer,
    DeployRequestSerializer,
    PlacementSerializer,
    PlanSerializer,
    PowerRequestSerializer,
    VmUsageSerializer,
)

MAX_STEP_REVISION = 9_999_999_999  # ten digits: far above any deployment's step count

# The schema class gives these answers the API's Error body.
ERROR = OpenApiResponse(description="Refused: the body says why (`detail`, `code`).")


def _own_slice(request: Request, pk: int):
    """The slice if the user may see it (staff: any); another user's slice is a 404."""
    return get_object_or_404(slice_selectors.slice_list(user=request.user), pk=pk)


class _SliceActionView(APIView):
    kind = ""
    request_fn = None

    def post(self, request: Request, pk: int) -> Response:
        slice_obj = _own_slice(request, pk)
        # No body reads as {} (DRF's empty data); any body must be a JSON object ([] is a 400, not {}).
        body = DeployRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        deployment = type(self).request_fn(
            slice_obj=slice_obj, user=request.user, dry_run=body.validated_data["dry_run"]
        )
        return Response(DeploymentDetailSerializer(deployment).data, status=202)


def _action_schema(summary: str):
    return extend_schema(
        summary=summary,
        request=DeployRequestSerializer,
        responses={202: DeploymentDetailSerializer, 404: ERROR, 409: ERROR},
        tags=["provisioning"],
    )


class SliceDeployView(_SliceActionView):
    """Deploy the slice as designed (draft, active or failed): 202 with the queued deployment."""

    request_fn = staticmethod(services.deploy_request)

    @_action_schema("Deploy a slice")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


class SliceRedeployView(_SliceActionView):
    """Apply the slice's changed design (active or failed); untouched VMs keep running."""

    request_fn = staticmethod(services.redeploy_request)

    @_action_schema("Redeploy a slice")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


class SliceDestroyView(_SliceActionView):
    """Remove the slice from the hosts (active or failed); it returns to draft."""

    request_fn = staticmethod(services.destroy_request)

    @_action_schema("Destroy a slice")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


class SliceCheckView(APIView):
    """Check the slice's hosts for drift now: one check job per host; the health changes when they end."""

    @extend_schema(
        summary="Check a slice for drift",
        request=None,
        responses={202: CheckResponseSerializer, 404: ERROR, 409: ERROR},
        tags=["provisioning"],
    )
    def post(self, request: Request, pk: int) -> Response:
        slice_obj = _own_slice(request, pk)
        jobs = drift.check_request(slice_obj=slice_obj)
        return Response({"jobs": jobs, "health": slice_health(slice_obj)}, status=202)


class SliceRepairView(APIView):
    """Repair a drifted slice: its deployed footprint applied again (only what differs is made; VMs
    that did not drift keep running). 202 with the queued repair job."""

    @extend_schema(
        summary="Repair a slice",
        request=None,
        responses={202: DeploymentDetailSerializer, 404: ERROR, 409: ERROR},
        tags=["provisioning"],
    )
    def post(self, request: Request, pk: int) -> Response:
        slice_obj = _own_slice(request, pk)
        deployment = drift.repair_request(slice_obj=slice_obj, user=request.user)
        return Response(DeploymentDetailSerializer(deployment).data, status=202)


class VmPowerView(APIView):
    """Start, shut down, reboot, reset or force off a deployed VM: 202 with the queued power job.

    The job has step rows like a deploy (follow it at /api/deployments/{id}/); when it ends,
    the VM's status is what its worker reported (running or stopped). 409 while the slice
    has a job running, is not deployed, or the VM was added after the last deploy.
    """

    @extend_schema(
        summary="Power action on a VM",
        request=PowerRequestSerializer,
        responses={202: DeploymentDetailSerializer, 400: ERROR, 404: ERROR, 409: ERROR},
        tags=["provisioning"],
    )
    def post(self, request: Request, pk: int) -> Response:
        vm = get_object_or_404(slice_selectors.vm_list(user=request.user), pk=pk)
        body = PowerRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        deployment = services.power_request(
            vm=vm, action=body.validated_data["action"], user=request.user, dry_run=body.validated_data["dry_run"]
        )
        return Response(DeploymentDetailSerializer(deployment).data, status=202)


class VmUsageView(APIView):
    """A VM's CPU and memory use over the kept window, as the drift checks sampled them (no extra SSH).

    Empty until the VM has run through a check; 404 for another user's VM.
    """

    @extend_schema(
        summary="A VM's CPU and memory use", responses={200: VmUsageSerializer, 404: ERROR}, tags=["provisioning"]
    )
    def get(self, request: Request, pk: int) -> Response:
        vm = get_object_or_404(slice_selectors.vm_list(user=request.user), pk=pk)
        body = {
            "vm": vm.pk,
            "vcpus": vm.flavor.vcpus,
            "ram_mib": vm.flavor.ram_mib,
            "window_hours": settings.USAGE_WINDOW_HOURS,
            "interval_seconds": usage.interval_seconds(),
            "samples": usage.vm_series(vm),
        }
        return Response(VmUsageSerializer(body).data)


class SlicePlanView(APIView):
    """The exact commands a job would run now, per stage and host (nothing runs, nothing is saved)."""

    @extend_schema(
        summary="Preview a slice's plan",
        parameters=[
            OpenApiParameter(
                "kind",
                OpenApiTypes.STR,
                enum=list(selectors.PLAN_KINDS),
                description="deploy, redeploy or destroy (default: deploy for a draft, else redeploy).",
            )
        ],
        responses={200: PlanSerializer, 404: ERROR, 409: ERROR},
        tags=["provisioning"],
    )
    def get(self, request: Request, pk: int) -> Response:
        slice_obj = _own_slice(request, pk)
        kind = request.query_params.get("kind") or None
        if kind is not None and kind not in selectors.PLAN_KINDS:
            raise serializers.ValidationError({"kind": [f"One of {', '.join(selectors.PLAN_KINDS)}."]})
        return Response(selectors.plan_preview(slice_obj=slice_obj, kind=kind))


class SlicePlacementView(APIView):
    """Where each VM would run if the slice were deployed now (computed, not saved)."""

    @extend_schema(
        summary="Preview a slice's placement", responses={200: PlacementSerializer, 404: ERROR}, tags=["provisioning"]
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(selectors.placement_preview(slice_obj=_own_slice(request, pk)))


@extend_schema(tags=["provisioning"])
class DeploymentViewSet(viewsets.ReadOnlyModelViewSet):
    """Deployments of your slices (staff: all), newest first; ``?slice=ID`` filters one slice.

    Reading never writes: abandoned jobs (worker killed) are failed by the scheduled reaper.
    """

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Deployment.objects.none()
        if self.action == "retrieve":
            qs = selectors.deployment_detail_queryset(
                user=self.request.user, steps_after=self._steps_after(), with_plan=not self._omit_plan()
            )
        else:
            qs = selectors.deployment_list(user=self.request.user)
        return filter_by_id(qs, self.request, "slice", "slice_id")

    def get_serializer_class(self):
        return DeploymentDetailSerializer if self.action == "retrieve" else DeploymentSerializer

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "omit_plan": self.action == "retrieve" and self._omit_plan()}

    def _steps_after(self) -> int:
        help_text = f"A step revision: a whole number from 0 to {MAX_STEP_REVISION}."
        value = whole_number(self.request, "steps_after", help_text=help_text)
        if value is not None and value > MAX_STEP_REVISION:
            raise serializers.ValidationError({"steps_after": [help_text]})
        return value or 0

    def _omit_plan(self) -> bool:
        raw = self.request.query_params.get("plan", "true").lower()
        if raw not in ("true", "false", "1", "0"):
            raise serializers.ValidationError({"plan": ["true or false."]})
        return raw in ("false", "0")

    @extend_schema(parameters=[id_parameter("slice", "Only this slice's deployments.")])
    def list(self, request: Request, *args, **kwargs) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "steps_after",
                {"type": "integer", "minimum": 0, "maximum": MAX_STEP_REVISION},
                description="Only the steps changed after this revision (the previous answer's steps_revision): "
                "what a poller needs.",
            ),
            OpenApiParameter("plan", OpenApiTypes.BOOL, description="false: plan is null (it never changes)."),
        ]
    )
    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        summary="Cancel a queued or running job",
        request=None,
        responses={202: DeploymentSerializer, 404: ERROR, 409: ERROR},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Stop the job at its next step boundary; 409 when it has already ended.

        The deployment ends ``cancelled`` and says at which step; the slice is left
        failed, which deploy, redeploy or destroy repair.
        """
        deployment = get_object_or_404(selectors.deployment_list(user=request.user), pk=pk)
        deployment = services.cancel_request(deployment=deployment, user=request.user)
        return Response(DeploymentSerializer(deployment).data, status=202)
