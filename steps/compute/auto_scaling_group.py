from provisioner.shape.config import BASTION_INSTANCE_TYPE
from provisioner.engine.context import TAG_EXPIRES_AT, TAG_OWNER, TAG_STACK, Resource
from provisioner.engine.errors import ConfigError, DriftConflict
from provisioner.engine.kinds import FREE, TAG_KEY_FILTER, Iam, Listing, Quota, actions
from provisioner.account.quotas import REGION_SCOPE, RUNNING_STATES, is_standard
from provisioner.engine.registry import Step, in_service, register

from steps.compute.launch_template import INSTANCES, PASS_INSTANCE_ROLE, VOLUMES

# Propagated to the instances at launch, so that any instance of the stack is found by its stack
# tag even if launched from another template. Name, provision:step and created-at stay the
# group's own: on AWS a group's propagated tag overrides the launch template's, and an instance
# keeps the template's Name=<stack>-instance and provision:step=instance. The expiry changes
# with `up --ttl`, so it comes from the group (the template's tags would need a new version).
PROPAGATED_TAGS = (TAG_STACK, TAG_OWNER, TAG_EXPIRES_AT)
DELETING = "Delete in progress"
# An instance refresh in one of these states is still running; starting another is refused.
REFRESH_RUNNING = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")


def _tag(item, key):
    return next((t["Value"] for t in item.get("Tags", []) if t["Key"] == key), None)


GROUP_ARN = "arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{stack}-*"
# The first group of an account makes Auto Scaling's service-linked role.
AUTOSCALING_SERVICE_ROLE = actions(
    "iam:CreateServiceLinkedRole", on="arn:{partition}:iam::{account}:role/aws-service-role/autoscaling.amazonaws.com/*",
    condition={"StringEquals": {"iam:AWSServiceName": "autoscaling.amazonaws.com"}})


def standard_vcpus_in_use(reads):
    from collections import Counter

    instances = reads.pages("ec2", "describe_instances", "Reservations[].Instances[]",
                            Filters=[{"Name": "instance-state-name", "Values": list(RUNNING_STATES)}])
    counted = Counter(i.get("InstanceType") for i in instances
                      if i.get("State", {}).get("Name") in RUNNING_STATES and is_standard(i.get("InstanceType", "")))
    vcpus = reads.vcpus(counted)
    unknown = sorted(t for t in counted if t not in vcpus)
    if unknown:
        reads.warnings.append(f"EC2 does not describe instance type(s) {', '.join(unknown)} in {reads.ctx.region}: "
                              f"the vCPUs of {sum(counted[t] for t in unknown)} running instance(s) are not counted")
    return {REGION_SCOPE: sum(vcpus[t] * n for t, n in counted.items() if t in vcpus)}


def standard_vcpus_needed(reads):
    config = reads.config
    types = [config.instance_type] + ([BASTION_INSTANCE_TYPE] if config.bastion else [])
    vcpus = reads.vcpus(types)
    if config.instance_type not in vcpus:
        raise ConfigError(f"instance type {config.instance_type!r} does not exist in {reads.ctx.region}",
                          hint="pick one from `aws ec2 describe-instance-types`, e.g. t3.micro or t3.small")
    need = config.desired_capacity * vcpus[config.instance_type] if is_standard(config.instance_type) else 0
    if config.bastion and is_standard(BASTION_INSTANCE_TYPE):
        need += vcpus.get(BASTION_INSTANCE_TYPE, 0)
    return {REGION_SCOPE: need}


def standard_vcpus_still_needed(reads, held, need):
    """A group that exists has its instances counted as they run; a stack without one still
    needs them all (and the bastion's, if it has none yet)."""
    config = reads.config
    missing = []
    if not held.get("auto_scaling_group"):
        missing += [config.instance_type] * config.desired_capacity
    if config.bastion and not held.get("step:bastion"):
        missing.append(BASTION_INSTANCE_TYPE)
    if not missing:
        return {}
    vcpus = reads.vcpus(missing)
    owed = sum(vcpus.get(t, 0) for t in missing if is_standard(t))
    return {REGION_SCOPE: owed} if owed else {}


STANDARD_VCPUS = Quota("standard_vcpus", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", "ec2",
                       "L-1216C47A", standard_vcpus_in_use, standard_vcpus_needed, standard_vcpus_still_needed,
                       unit="vCPUs")


@register
class AutoScalingGroup(Step):
    """The app instances in both private subnets, registered in both target groups."""

    kind = "auto_scaling_group"
    # Auto Scaling answers a missing group with a plain ValidationError, as it answers a bad
    # request; discovery has just found the group, so any error here means it may remain.
    gone_codes = frozenset()
    # Terminating the group's instances (shutdown, deregistration delay) takes minutes.
    delete_timeout = 900
    aws_type = "AWS::AutoScaling::AutoScalingGroup"
    # An Auto Scaling Group "Delete in progress" is kept: its instances still run.
    listing = Listing("auto_scaling_group", "autoscaling", "describe_auto_scaling_groups", "AutoScalingGroups",
                      "AutoScalingGroupName", label="Auto Scaling Groups", params={"Filters": list(TAG_KEY_FILTER)},
                      created_field="CreatedTime", price=FREE)
    also_makes = (INSTANCES, VOLUMES)
    # The bastion's vCPUs count here too (standard_vcpus_needed).
    quotas = (STANDARD_VCPUS,)
    iam = Iam(create=(actions("autoscaling:CreateAutoScalingGroup", "autoscaling:CreateOrUpdateTags", on=GROUP_ARN),
                      actions("ec2:RunInstances", "ec2:CreateTags", "ec2:DescribeLaunchTemplateVersions"),
                      PASS_INSTANCE_ROLE, AUTOSCALING_SERVICE_ROLE),
              read=(actions("autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeInstanceRefreshes",
                            "autoscaling:DescribeScalingActivities", "ec2:DescribeInstances"),),
              change=(actions("autoscaling:UpdateAutoScalingGroup", "autoscaling:CreateOrUpdateTags",
                              "autoscaling:StartInstanceRefresh", "autoscaling:AttachLoadBalancerTargetGroups",
                              "autoscaling:DetachLoadBalancerTargetGroups", on=GROUP_ARN), PASS_INSTANCE_ROLE),
              delete=(actions("autoscaling:UpdateAutoScalingGroup", "autoscaling:DeleteAutoScalingGroup", on=GROUP_ARN),
                      actions("ec2:TerminateInstances", "ec2:DescribeInstances")))

    def __init__(self):
        # The group holds its subnets, template and target groups. The subnets' routes through the
        # NAT gateway are needed in service when it launches (the first boot downloads the app),
        # but it holds nothing of them: `down` removes the routes and the NAT gateway while the
        # instances terminate, not after.
        super().__init__("auto-scaling-group", depends_on=(
            "launch-template", "private-subnet-1", "private-subnet-2", "frontend-target-group", "backend-target-group",
            in_service("private-subnet-1-association"), in_service("private-subnet-2-association")))

    @staticmethod
    def group_name(ctx):
        return f"{ctx.stack}-web"

    @staticmethod
    def _client(ctx):
        return ctx.client("autoscaling")

    # -- find ------------------------------------------------------------------------------------
    def _describe(self, ctx, name):
        return self._client(ctx).describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]

    def find_all(self, ctx, known_id):
        # The name is the identity (unique per account and region, derived from the stack), so
        # one call finds it with or without state; the tags say whether it is this stack's.
        names = [known_id] if known_id else []
        if self.group_name(ctx) not in names:
            names.append(self.group_name(ctx))
        groups = self._client(ctx).describe_auto_scaling_groups(AutoScalingGroupNames=names)["AutoScalingGroups"]
        for group in groups:
            if group["AutoScalingGroupName"] == known_id:
                ctx.claim(self.name, known_id, group.get("Tags", []), "Auto Scaling Group")
        return [self._resource(g) for g in groups if ctx.owns(g.get("Tags", []), self.name)]

    @staticmethod
    def _resource(group):
        return Resource(id=group["AutoScalingGroupName"],
                        attrs={"name": group["AutoScalingGroupName"], "arn": group.get("AutoScalingGroupARN")},
                        raw=group)

    # -- what it should be -----------------------------------------------------------------------
    def _subnets(self, ctx):
        return [ctx.dep(f"private-subnet-{i}").id for i in (1, 2)]

    def _target_groups(self, ctx):
        return [ctx.dep(f"{role}-target-group").id for role in ("frontend", "backend")]

    def _tags(self, ctx, tags=None):
        name = self.group_name(ctx)
        return [{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": t["Key"], "Value": t["Value"],
                 "PropagateAtLaunch": t["Key"] in PROPAGATED_TAGS} for t in tags or ctx.tags(self.name)]

    def _converge_tags(self, ctx, resource, apply):
        def put(missing):
            self._client(ctx).create_or_update_tags(Tags=self._tags(ctx, missing))

        return ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, put) + \
            self._converge_instance_expiry(ctx, resource, apply)

    def _converge_instance_expiry(self, ctx, resource, apply):
        """The group propagates its tags only to instances it launches from then on, and never
        to their volumes (those take the launch template's, which hold no expiry so that a new
        one needs no new version): stamp the expiry on the running instances and their volumes."""
        expires_at = ctx.config.expires_at
        ids = sorted(i["InstanceId"] for i in resource.raw.get("Instances", []))
        if not expires_at or not ids:
            return []
        stale = []
        for page in ctx.ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": ids}]):
            stale += [i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]
                      if _tag(i, TAG_EXPIRES_AT) != expires_at and i["State"]["Name"] != "terminated"]
        for page in ctx.ec2.get_paginator("describe_volumes").paginate(
                Filters=[{"Name": "attachment.instance-id", "Values": ids}]):
            stale += [v["VolumeId"] for v in page["Volumes"] if _tag(v, TAG_EXPIRES_AT) != expires_at]
        if not stale:
            return []
        if apply:
            ctx.retry("eventual-consistency", ctx.ec2.create_tags, Resources=stale,
                      Tags=[{"Key": TAG_EXPIRES_AT, "Value": expires_at}])
        return [f"set tag {TAG_EXPIRES_AT} on {len(stale)} instance(s) and volume(s)"]

    # -- create ----------------------------------------------------------------------------------
    def create(self, ctx):
        config = ctx.config
        name = self.group_name(ctx)
        # Auto Scaling refuses a launch template whose instance profile is seconds old
        # ("Invalid IAM Instance Profile name", a ValidationError) until IAM has propagated it.
        ctx.retry("instance-profile", self._client(ctx).create_auto_scaling_group,
                  AutoScalingGroupName=name,
                  LaunchTemplate=self._template(ctx),
                  MinSize=config.min_size, MaxSize=config.max_size, DesiredCapacity=config.desired_capacity,
                  VPCZoneIdentifier=",".join(self._subnets(ctx)), TargetGroupARNs=self._target_groups(ctx),
                  HealthCheckType="ELB", HealthCheckGracePeriod=config.grace_seconds,
                  NewInstancesProtectedFromScaleIn=False, Tags=self._tags(ctx))
        # Instances boot for minutes; the CLI waits for healthy targets after `up`, with a display.
        groups = self._describe(ctx, name)
        return self._resource(groups[0]) if groups else Resource(id=name, attrs={"name": name, "arn": None})

    # -- update ----------------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        group, config = resource.raw, ctx.config
        if group.get("Status") == DELETING:
            raise DriftConflict(f"Auto Scaling Group {resource.id} is being deleted",
                                hint="wait until its instances are terminated, then run `provision up` again")
        missing = [d for d in self.depends_on if ctx.dep(d) is None]
        if missing:  # `plan` only: what it points at is to be created first
            return [f"point at the new {', '.join(missing)}"]
        changes, settings = [], {}

        def converge(key, want, label):
            if group.get(key) != want:
                changes.append(f"{label} {group.get(key)} -> {want}")
                settings[key] = want

        converge("MinSize", config.min_size, "min size")
        converge("MaxSize", config.max_size, "max size")
        converge("DesiredCapacity", config.desired_capacity, "desired capacity")
        converge("HealthCheckGracePeriod", config.grace_seconds, "health check grace period")
        converge("HealthCheckType", "ELB", "health check type")
        subnets = self._subnets(ctx)
        if sorted(filter(None, group.get("VPCZoneIdentifier", "").split(","))) != sorted(subnets):
            changes.append(f"subnets {group.get('VPCZoneIdentifier')} -> {','.join(subnets)}")
            settings["VPCZoneIdentifier"] = ",".join(subnets)
        template = self._template(ctx)
        have_template = group.get("LaunchTemplate") or {}
        if {k: have_template.get(k) for k in template} != template:
            changes.append(f"launch template {have_template.get('LaunchTemplateId')} version "
                           f"{have_template.get('Version')} -> {template['LaunchTemplateId']} version "
                           f"{template['Version']}")
            settings["LaunchTemplate"] = template
        if apply and settings:
            if {"MinSize", "MaxSize", "DesiredCapacity"} & set(settings):
                # Auto Scaling checks min <= desired <= max on the values it would end with, so
                # the three go together.
                settings.update(MinSize=config.min_size, MaxSize=config.max_size,
                                DesiredCapacity=config.desired_capacity)
            self._client(ctx).update_auto_scaling_group(AutoScalingGroupName=resource.id, **settings)

        wanted_groups, have_groups = set(self._target_groups(ctx)), set(group.get("TargetGroupARNs", []))
        attach, detach = sorted(wanted_groups - have_groups), sorted(have_groups - wanted_groups)
        changes += [f"attach target group {arn}" for arn in attach]
        changes += [f"detach target group {arn}" for arn in detach]
        if apply and attach:
            self._client(ctx).attach_load_balancer_target_groups(AutoScalingGroupName=resource.id,
                                                                 TargetGroupARNs=attach)
        if apply and detach:
            self._client(ctx).detach_load_balancer_target_groups(AutoScalingGroupName=resource.id,
                                                                 TargetGroupARNs=detach)
        changes += self._refresh(ctx, resource, apply)
        return changes + self._converge_tags(ctx, resource, apply)

    @staticmethod
    def _template(ctx):
        """The launch template by its version number, never "$Latest": AWS then reports each
        instance's version as that number (with "$Latest" it reports "$Latest", and which
        instances run an older version cannot be told), and a new version reaches the group
        only when `up` has made it, not the moment someone adds one by hand."""
        template = ctx.dep("launch-template")
        version = template.attrs.get("version")
        return {"LaunchTemplateId": template.id, "Version": str(version) if version else "$Latest"}

    def _refresh(self, ctx, resource, apply):
        """Roll out a new launch template version: the group launches it only for new
        instances, so the running ones are replaced by an instance refresh."""
        latest = ctx.dep("launch-template").attrs.get("version")
        outdated = {}
        for instance in resource.raw.get("Instances", []):
            version = str((instance.get("LaunchTemplate") or {}).get("Version", ""))
            if instance.get("LifecycleState") == "InService" and version.isdigit() and latest and int(version) < latest:
                outdated[instance["InstanceId"]] = int(version)
        if not outdated:
            return []
        refreshes = self._client(ctx).describe_instance_refreshes(
            AutoScalingGroupName=resource.id, MaxRecords=5)["InstanceRefreshes"]
        if any(r["Status"] in REFRESH_RUNNING for r in refreshes):
            return []  # already rolling out; that refresh launches the latest version too
        which = ", ".join(f"{instance_id} on version {version}" for instance_id, version in sorted(outdated.items()))
        if not apply:
            return [f"start an instance refresh to version {latest}: {which}"]
        self._client(ctx).start_instance_refresh(
            AutoScalingGroupName=resource.id,
            Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": ctx.config.grace_seconds})
        return [f"instance refresh started to version {latest}: {which}"]

    # -- delete ----------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        client, name = self._client(ctx), resource.id
        instances = {i["InstanceId"] for i in resource.raw.get("Instances", [])}
        if resource.raw.get("Status") != DELETING:
            # Scale in first: the instances deregister from the target groups (deregistration
            # delay) and terminate while the group still exists to account for them.
            if resource.raw.get("MinSize") or resource.raw.get("DesiredCapacity"):
                client.update_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, DesiredCapacity=0)
            # Whatever was launched since discovery is terminated too.
            instances |= {i["InstanceId"] for g in self._describe(ctx, name) for i in g.get("Instances", [])}
            ctx.retry("dependency", client.delete_auto_scaling_group, AutoScalingGroupName=name, ForceDelete=True)
        if instances:
            # The subnets and the web security group are refused while an instance shuts down.
            ctx.wait("ec2", "InstancesTerminated", timeout=self.delete_timeout,
                     Filters=[{"Name": "instance-id", "Values": sorted(instances)}],
                     what=f"{len(instances)} instance(s) to terminate")
        ctx.wait("autoscaling", "AutoScalingGroupDeleted", AutoScalingGroupNames=[name], timeout=self.delete_timeout,
                 what=f"Auto Scaling Group {name} to be deleted")

    # -- what others see -------------------------------------------------------------------------
    def outputs(self, resource):
        return {"asg_name": resource.id}

    def describe(self, resource):
        group = resource.raw
        instances = group.get("Instances", [])
        in_service = sum(i.get("LifecycleState") == "InService" for i in instances)
        status = f", {group['Status']}" if group.get("Status") else ""
        return (f"{in_service}/{len(instances)} instances InService (desired {group.get('DesiredCapacity')}, "
                f"min {group.get('MinSize')}, max {group.get('MaxSize')}){status}")
