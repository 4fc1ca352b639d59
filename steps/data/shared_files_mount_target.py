"""The shared file system's mount targets: one in each app subnet, so that every instance mounts
it in its own zone (NFS across zones would bill data transfer and fail with the other zone)."""
from provisioner.engine.context import Resource
from provisioner.engine.errors import DriftConflict
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import IN_SERVICE, Step, register
from provisioner.engine.retries import lookup

GONE_STATES = ("deleting", "deleted")


@register
class SharedFilesMountTarget(Step):
    """Mount targets take no tags: each is found through its file system and its subnet. Its
    network interface holds the subnet and the files group for a while after it is deleted,
    which the subnet's and the group's own deletes wait out."""

    kind = "efs_mount_target"
    # The instances mount the file system at boot: its mount targets must be available by then.
    serves_app = True
    app_needs = IN_SERVICE
    aws_type = "AWS::EFS::MountTarget"
    tagged = False
    found_through = "efs_file_system"
    gone_codes = frozenset({"MountTargetNotFound"})
    create_timeout = 600
    delete_timeout = 600
    iam = Iam(create=(actions("elasticfilesystem:CreateMountTarget",
                              on="arn:{partition}:elasticfilesystem:{region}:{account}:file-system/*"),
                      # The mount target's interface is made in the caller's name.
                      actions("ec2:CreateNetworkInterface", "ec2:DescribeSubnets", "ec2:DescribeNetworkInterfaces",
                              "ec2:DescribeSecurityGroups")),
              read=(actions("elasticfilesystem:DescribeMountTargets",
                            "elasticfilesystem:DescribeMountTargetSecurityGroups"),),
              change=(actions("elasticfilesystem:ModifyMountTargetSecurityGroups",
                              on="arn:{partition}:elasticfilesystem:{region}:{account}:file-system/*"),
                      actions("ec2:ModifyNetworkInterfaceAttribute")),
              delete=(actions("elasticfilesystem:DeleteMountTarget",
                              on="arn:{partition}:elasticfilesystem:{region}:{account}:file-system/*"),
                      actions("ec2:DeleteNetworkInterface")))

    def __init__(self, index: int):
        self.index = index
        super().__init__(f"shared-files-mount-{index + 1}",
                         depends_on=("shared-files", f"private-subnet-{index + 1}", "files-security-group"))

    @classmethod
    def instances(cls, config):
        return [cls(i) for i in range(2)] if config.shared_files else []

    @property
    def subnet_step(self) -> str:
        return f"private-subnet-{self.index + 1}"

    def find_all(self, ctx, known_id):
        file_system, subnet = ctx.dep("shared-files"), ctx.dep(self.subnet_step)
        if file_system is None or subnet is None:
            return []
        efs = ctx.client("efs")
        found = lookup(lambda: [m for page in efs.get_paginator("describe_mount_targets").paginate(
            FileSystemId=file_system.id) for m in page["MountTargets"]], gone=frozenset({"FileSystemNotFound"})) or []
        return [self._resource(ctx, m) for m in found
                if m["SubnetId"] == subnet.id and m.get("LifeCycleState") != "deleted"]

    @staticmethod
    def _resource(ctx, item, groups=None):
        if groups is None:
            groups = ctx.client("efs").describe_mount_target_security_groups(
                MountTargetId=item["MountTargetId"])["SecurityGroups"]
        item = {k: v for k, v in item.items() if k != "ResponseMetadata"}
        return Resource(id=item["MountTargetId"], attrs={"ip": item.get("IpAddress")},
                        raw={**item, "SecurityGroups": list(groups)})

    def create(self, ctx):
        groups = [ctx.dep("files-security-group").id]
        # A subnet or group made seconds ago can be unknown to EFS for a moment.
        item = ctx.retry("eventual-consistency", ctx.client("efs").create_mount_target,
                         FileSystemId=ctx.dep("shared-files").id, SubnetId=ctx.dep(self.subnet_step).id,
                         SecurityGroups=groups)
        return self._resource(ctx, item, groups)

    def ready(self, ctx, resource):
        if resource.raw.get("LifeCycleState") != "available":
            ctx.wait("efs", "MountTargetAvailable", MountTargetId=resource.id, timeout=self.create_timeout,
                     what="mount target to become available (1-2 minutes on AWS)")
            resource.raw["LifeCycleState"] = "available"

    def update(self, ctx, resource, apply):
        if resource.raw.get("LifeCycleState") in GONE_STATES:
            raise DriftConflict(f"mount target {resource.id} is being deleted",
                                hint="wait a minute for it to go, then run `provision up` again")
        wanted = [ctx.dep("files-security-group").id]
        if sorted(resource.raw.get("SecurityGroups", [])) == sorted(wanted):
            return []
        if apply:
            ctx.client("efs").modify_mount_target_security_groups(MountTargetId=resource.id, SecurityGroups=wanted)
        return [f"security groups {', '.join(resource.raw.get('SecurityGroups', [])) or '(none)'} -> {wanted[0]}"]

    def delete(self, ctx, resource):
        if resource.raw.get("LifeCycleState") not in GONE_STATES:
            ctx.client("efs").delete_mount_target(MountTargetId=resource.id)
        ctx.wait("efs", "MountTargetDeleted", MountTargetId=resource.id, timeout=self.delete_timeout,
                 what="mount target to be deleted")

    def outputs(self, resource):
        return {}

    def describe(self, resource):
        raw = resource.raw
        return f"{raw.get('LifeCycleState', '')}, {raw.get('IpAddress', '')} in {raw.get('SubnetId', '')}"
