"""Strict rules for the Auto Scaling Group, its instances and the launch template: see strict.py.

A mixin of StrictAws: `strict_setup_compute` sets up its bookkeeping, `strict_rules_compute` returns
{"service.Operation": rule(body) -> refusal or None}, `strict_after_compute` returns
{"service.Operation": hook(parsed)}. Rules run under the StrictAws lock.

What AWS does and moto does not:
- a new instance profile (or one whose role was just added) is unknown to Auto Scaling for some
  seconds: CreateAutoScalingGroup answers ValidationError "Invalid IAM Instance Profile name";
- a terminated instance is `shutting-down` for a while (moto: `terminated` at once), and holds its
  subnet and security groups until it is gone;
- a group deleted with ForceDelete reads "Delete in progress" until its instances are terminated;
- DeleteAutoScalingGroup without ForceDelete is refused while the group has instances.
DeleteLaunchTemplate is NOT refused while a group uses it: AWS deletes it, and the group fails
its next launch ("The launch template associated with this Auto Scaling group cannot be found").
"""

from __future__ import annotations

import threading
import time

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import LINGERING, ORDER, refuse


class ComputeRules:
    def strict_setup_compute(self):
        # instance profile name -> when it was created or last had a role added (monotonic)
        self.profile_changed: dict[str, float] = {}
        # instance id -> (terminated at, subnet id, security group ids)
        self.instances_terminated: dict[str, tuple] = {}
        # group name -> (deleted at, what DescribeAutoScalingGroups showed for it then)
        self.groups_deleting: dict[str, tuple] = {}
        # The group names each thread's DescribeAutoScalingGroups asked for (the after-call hook
        # does not see the request).
        self._asg_request = threading.local()
        # hold_profile_new(): the profile stays "new" until the tool met the refusal once.
        self._profile_held = False

    def hold_profile_new(self):
        """Make the profile-too-new refusal certain however fast or slow the machine: the profile
        counts as new until CreateAutoScalingGroup has been refused once (then, as on AWS after
        some seconds, the retry succeeds)."""
        self._profile_held = True

    def strict_rules_compute(self):
        return {
            "iam.CreateInstanceProfile": self._profile_changed,
            "iam.AddRoleToInstanceProfile": self._profile_changed,
            "autoscaling.CreateAutoScalingGroup": self._create_group_with_new_profile,
            "autoscaling.DeleteAutoScalingGroup": self._delete_group,
            "autoscaling.DescribeAutoScalingGroups": self._remember_group_names,
            "ec2.DeleteSubnet": self._delete_subnet_with_instances,
            "ec2.DeleteSecurityGroup": self._delete_group_with_instances,
        }

    def strict_after_compute(self):
        # Every call that can terminate instances notes which ones it did, and when.
        hooks = {op: self._note_terminations for op in (
            "autoscaling.DeleteAutoScalingGroup", "autoscaling.UpdateAutoScalingGroup",
            "autoscaling.SetDesiredCapacity", "autoscaling.TerminateInstanceInAutoScalingGroup",
            "autoscaling.StartInstanceRefresh", "ec2.TerminateInstances")}
        hooks["ec2.DescribeInstances"] = self._after_describe_instances
        hooks["autoscaling.DescribeAutoScalingGroups"] = self._after_describe_groups
        return hooks

    # -- moto's backends -------------------------------------------------------------------------
    @property
    def autoscaling_backend(self):
        from moto.autoscaling.models import autoscaling_backends

        return autoscaling_backends[DEFAULT_ACCOUNT_ID][self.region]

    @property
    def iam_backend(self):
        from moto.iam.models import iam_backends

        return iam_backends[DEFAULT_ACCOUNT_ID]["global"]

    def _instances(self):
        # Snapshots: other threads (a cleanup's or a fleet's stacks, in parallel) add and remove
        # reservations and interfaces in moto's dicts while a rule looks.
        for reservation in list(self.backend.reservations.values()):
            yield from list(reservation.instances)

    # -- a new instance profile ------------------------------------------------------------------
    def _profile_changed(self, body):
        name = body.get("InstanceProfileName")
        self.later(lambda: self.profile_changed.__setitem__(name, time.monotonic()))
        return None

    def _template_profile(self, template_id, template_name, version):
        template = None
        if template_id:
            template = self.backend.launch_templates.get(template_id)
        elif template_name:
            template = next((t for t in list(self.backend.launch_templates.values()) if t.name == template_name), None)
        if template is None:
            return None
        try:
            data = template.get_version(version or "$Default").data
        except Exception:  # an unknown version: moto's own error answers that
            return None
        profile = data.get("IamInstanceProfile") or {}
        return profile.get("Name") or (profile.get("Arn") or "").rsplit("/", 1)[-1] or None

    def _create_group_with_new_profile(self, body):
        profile = self._template_profile(body.get("LaunchTemplate.LaunchTemplateId"),
                                         body.get("LaunchTemplate.LaunchTemplateName"),
                                         body.get("LaunchTemplate.Version"))
        changed = self.profile_changed.get(profile)
        held, self._profile_held = self._profile_held and changed is not None, False
        if held or changed is not None and time.monotonic() < changed + self.delays.profile_propagation:
            return refuse("ValidationError",
                          "You must use a valid fully-formed launch template. Value "
                          f"({profile}) for parameter iamInstanceProfile.name is invalid. "
                          "Invalid IAM Instance Profile name", LINGERING)
        return None

    # -- the group's deletion --------------------------------------------------------------------
    def _delete_group(self, body):
        name = body.get("AutoScalingGroupName")
        group = self.autoscaling_backend.autoscaling_groups.get(name)
        if group is None:
            return None
        if group.instance_states and str(body.get("ForceDelete", "false")).lower() != "true":
            return refuse("ResourceInUse", "You cannot delete an AutoScalingGroup while there are instances "
                                           "or pending Spot instance requests")
        shown = {
            "AutoScalingGroupName": name, "AutoScalingGroupARN": group.arn,
            "LaunchTemplate": group.launch_template, "MinSize": 0, "MaxSize": 0, "DesiredCapacity": 0,
            "DefaultCooldown": group.default_cooldown, "AvailabilityZones": list(group.availability_zones),
            "HealthCheckType": group.health_check_type, "CreatedTime": group.created_time,
            "VPCZoneIdentifier": group.vpc_zone_identifier or "",
            "TargetGroupARNs": list(group.target_group_arns),
            "Instances": [{"InstanceId": s.instance.id, "LifecycleState": "Terminating", "HealthStatus": "Healthy",
                           "AvailabilityZone": s.availability_zone, "ProtectedFromScaleIn": False}
                          for s in group.instance_states],
            "Tags": [{k: t[k] for k in ("ResourceId", "ResourceType", "Key", "Value", "PropagateAtLaunch")
                      if k in t} for t in group.tags],
            "Status": "Delete in progress",
        }
        self.later(lambda: self.groups_deleting.__setitem__(name, (time.monotonic(), shown)))
        return None

    def _remember_group_names(self, body):
        self._asg_request.names = [v for k, v in body.items() if k.startswith("AutoScalingGroupNames.member.")]
        return None

    def _after_describe_groups(self, parsed):
        """A group deleted with ForceDelete is listed as "Delete in progress" until its instances
        are terminated (moto drops it at once)."""
        asked = getattr(self._asg_request, "names", [])
        listed = {g["AutoScalingGroupName"] for g in parsed.get("AutoScalingGroups", [])}
        now = time.monotonic()
        for name, (deleted_at, shown) in list(self.groups_deleting.items()):
            if name in listed or now >= deleted_at + self.delays.instance_terminate:
                continue
            if not asked or name in asked:
                parsed.setdefault("AutoScalingGroups", []).append(dict(shown))

    # -- instances take time to terminate --------------------------------------------------------
    def _note_terminations(self, parsed=None):
        now = time.monotonic()
        for instance in self._instances():
            if instance.state == "terminated" and instance.id not in self.instances_terminated:
                self.instances_terminated[instance.id] = (now, instance.subnet_id, _groups(instance))

    def _shutting_down(self):
        now = time.monotonic()
        return {i: (subnet, groups) for i, (at, subnet, groups) in list(self.instances_terminated.items())
                if now < at + self.delays.instance_terminate}

    def _after_describe_instances(self, parsed):
        self._note_terminations()
        shutting_down = self._shutting_down()
        for reservation in parsed.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                if instance["InstanceId"] in shutting_down:
                    instance["State"] = {"Code": 32, "Name": "shutting-down"}

    def _holders(self, match):
        """(instance id, kind) of each instance that holds a subnet or group: ORDER while it runs
        (its group should have been deleted first), LINGERING while it is shutting down."""
        self._note_terminations()
        for instance in self._instances():
            if instance.state != "terminated":
                if match(instance.subnet_id, _groups(instance)):
                    yield instance.id, ORDER
        for instance_id, (subnet, groups) in self._shutting_down().items():
            if match(subnet, groups):
                yield instance_id, LINGERING

    def _delete_subnet_with_instances(self, body):
        subnet_id = body.get("SubnetId")
        for instance_id, kind in self._holders(lambda subnet, _: subnet == subnet_id):
            return refuse("DependencyViolation", f"The subnet '{subnet_id}' has dependencies ({instance_id})", kind)
        return None

    def _delete_group_with_instances(self, body):
        group_id = body.get("GroupId")
        for instance_id, kind in self._holders(lambda _, groups: group_id in groups):
            return refuse("DependencyViolation", f"resource {group_id} has a dependent object ({instance_id})", kind)
        return None


def _groups(instance):
    """An instance's security groups: those given for the instance (a launch template's) and
    those of its interfaces (RunInstances with NetworkInterfaces: the bastion), which moto does
    not list on the instance."""
    groups = {getattr(g, "id", g) for g in instance.security_groups or []}
    for nic in list(getattr(instance, "nics", {}).values()):
        groups |= {getattr(g, "id", g) for g in list(getattr(nic, "_group_set", []))}
    return groups
