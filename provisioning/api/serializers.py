"""Serializers of the provisioning API: deployments, their steps, plan and placement previews."""

from rest_framework import serializers

from inventory.api.fields import NamedChoiceField, StrictTypesMixin
from provisioning.models import Deployment, DeploymentStep
from slices.api.serializers import SliceHealthSerializer


class DeployRequestSerializer(StrictTypesMixin, serializers.Serializer):
    """Body of POST deploy/redeploy/destroy: none, or a JSON object."""

    dry_run = serializers.BooleanField(
        default=False, help_text="Record the commands instead of running them; the slice's state does not change."
    )


class PowerRequestSerializer(StrictTypesMixin, serializers.Serializer):
    """Body of POST /api/vms/{id}/power/."""

    action = NamedChoiceField(
        choices=Deployment.Action.choices,
        enum_name="PowerActionEnum",
        help_text="start; shutdown (ACPI, forced off after a timeout); reboot / reset (a hard reset in the same "
        "QEMU process: TAPs, MACs and leases stay); force_off.",
    )
    dry_run = serializers.BooleanField(
        default=False, help_text="Record the commands instead of running them; the VM's state does not change."
    )


class _BlankAsNull(NamedChoiceField):
    """A choice the model keeps blank when it does not apply: null in the API."""

    def to_representation(self, value):
        return super().to_representation(value) if value else None


class DeploymentStepSerializer(serializers.ModelSerializer):
    status = NamedChoiceField(choices=DeploymentStep.Status.choices, enum_name="DeploymentStepStatusEnum")
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = DeploymentStep
        fields = [
            "seq",
            "host",
            "vm",
            "vlan",
            "phase",
            "description",
            "command",
            "status",
            "exit_code",
            "output_tail",
            "started",
            "finished",
            "duration_ms",
            "revision",
        ]
        read_only_fields = fields

    def to_representation(self, instance: DeploymentStep) -> dict:
        """The row's fields as they are, the dates through their own fields (the same answer as DRF's walk).

        A poll serializes the steps changed, a job's first read every step (thousands):
        DRF's field-by-field walk (attribute lookups, None checks, a call per field) costs
        several times this.
        """
        when = self.fields["started"].to_representation
        return {
            "seq": instance.seq,
            "host": instance.host,
            "vm": instance.vm,
            "vlan": instance.vlan,
            "phase": instance.phase,
            "description": instance.description,
            "command": instance.command,
            "status": instance.status,
            "exit_code": instance.exit_code,
            "output_tail": instance.output_tail,
            "started": when(instance.started) if instance.started is not None else None,
            "finished": when(instance.finished) if instance.finished is not None else None,
            "duration_ms": instance.duration_ms,
            "revision": instance.revision,
        }


class DeploymentSerializer(serializers.ModelSerializer):
    kind = NamedChoiceField(choices=Deployment.Kind.choices, enum_name="DeploymentKindEnum", read_only=True)
    status = NamedChoiceField(choices=Deployment.Status.choices, enum_name="DeploymentStatusEnum", read_only=True)
    slice_name = serializers.CharField(source="slice.name", read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True, default=None)
    action = _BlankAsNull(
        choices=Deployment.Action.choices,
        enum_name="DeploymentActionEnum",
        read_only=True,
        allow_null=True,
        help_text="A power job's action (null for the other kinds).",
    )
    vm = serializers.IntegerField(
        source="vm_id", read_only=True, allow_null=True, help_text="The VM a power job acts on (else null)."
    )

    class Meta:
        model = Deployment
        fields = [
            "id",
            "slice",
            "slice_name",
            "kind",
            "action",
            "vm",
            "status",
            "dry_run",
            "progress",
            "error",
            "requested_by",
            "cancel_requested",
            "job_id",
            "created",
            "started",
            "finished",
            "heartbeat",
        ]
        read_only_fields = fields


class DeploymentDetailSerializer(DeploymentSerializer):
    """A deployment with its plan and steps; ``context["omit_plan"]`` sends ``plan: null`` without reading it."""

    steps = DeploymentStepSerializer(
        many=True,
        read_only=True,
        help_text="Every step, or with ?steps_after=R only those changed since revision R.",
    )
    steps_revision = serializers.SerializerMethodField(
        help_text="The highest step revision included: pass it as ?steps_after= in the next poll."
    )
    stats = serializers.DictField(
        child=serializers.DictField(child=serializers.FloatField()),
        read_only=True,
        help_text="Per host: SSH connections, round trips, commands, executed, ovs_vsctl, seconds.",
    )
    plan = serializers.JSONField(read_only=True, allow_null=True, help_text="null with ?plan=false.")

    class Meta(DeploymentSerializer.Meta):
        fields = [*DeploymentSerializer.Meta.fields, "stats", "plan", "steps_revision", "steps"]
        read_only_fields = fields

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.context.get("omit_plan"):
            self.fields.pop("plan")

    def get_steps_revision(self, obj: Deployment) -> int:
        annotated = getattr(obj, "steps_revision", None)  # the detail queryset annotates it
        if annotated is not None:
            return annotated
        return obj.latest_step_revision()

    def to_representation(self, instance: Deployment) -> dict:
        data = super().to_representation(instance)
        if self.context.get("omit_plan"):
            data["plan"] = None
        return data


class PlanStepSerializer(serializers.Serializer):
    description = serializers.CharField()
    argv = serializers.ListField(child=serializers.CharField())
    shell = serializers.CharField()
    check = serializers.ListField(child=serializers.CharField(), allow_null=True)
    check_shell = serializers.CharField(allow_null=True)
    undo = serializers.ListField(child=serializers.CharField(), allow_null=True)
    undo_shell = serializers.CharField(allow_null=True)


class PlanHostSerializer(serializers.Serializer):
    host = serializers.CharField()
    phases = serializers.ListField(child=serializers.CharField())
    script = serializers.CharField(help_text="The exact script sent to the host (one SSH round trip).")
    steps = PlanStepSerializer(many=True)


class PlanStageSerializer(serializers.Serializer):
    name = serializers.CharField()
    hosts = PlanHostSerializer(many=True)


class PlanSerializer(serializers.Serializer):
    slice = serializers.IntegerField()
    kind = serializers.CharField()
    steps = serializers.IntegerField()
    stages = PlanStageSerializer(many=True)
    stats = serializers.DictField(child=serializers.DictField(child=serializers.FloatField()))
    accel_probe_pending = serializers.ListField(child=serializers.CharField())
    notes = serializers.ListField(child=serializers.CharField())


class PlacementVMSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    vcpus = serializers.IntegerField()
    ram_mib = serializers.IntegerField()
    host = serializers.CharField()
    proposed = serializers.BooleanField(help_text="Chosen now (not stored yet); false: already placed or pinned.")


class PlacementWorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    vcpus = serializers.IntegerField()
    ram_mib = serializers.IntegerField()
    used_vcpus = serializers.IntegerField()
    used_ram_mib = serializers.IntegerField()


class PlacementSerializer(serializers.Serializer):
    slice = serializers.IntegerField()
    fits = serializers.BooleanField()
    error = serializers.CharField(allow_null=True)
    vms = PlacementVMSerializer(many=True)
    workers = PlacementWorkerSerializer(many=True, help_text="Capacity and use after this placement.")


class CheckResponseSerializer(serializers.Serializer):
    """The check jobs queued (one per host of the slice) and the slice's health as it was before them."""

    jobs = serializers.ListField(child=serializers.CharField())
    health = SliceHealthSerializer()


class UsagePointSerializer(serializers.Serializer):
    taken_at = serializers.DateTimeField()
    cpu_percent = serializers.FloatField(
        allow_null=True, help_text="% of one CPU since the sample before (null: the first one, or QEMU restarted)."
    )
    mem_mib = serializers.IntegerField(help_text="Resident memory of the VM's QEMU process.")


class VmUsageSerializer(serializers.Serializer):
    """GET /api/vms/{id}/usage/: the VM's CPU and memory as the drift checks sampled them."""

    vm = serializers.IntegerField()
    vcpus = serializers.IntegerField(help_text="The flavor's vCPUs: the CPU share can reach vcpus x 100.")
    ram_mib = serializers.IntegerField(help_text="The flavor's memory: the guest's RSS grows towards it.")
    window_hours = serializers.IntegerField(help_text="How long samples are kept.")
    interval_seconds = serializers.IntegerField(help_text="At most one sample per host this often.")
    samples = UsagePointSerializer(many=True, help_text="Oldest first.")
