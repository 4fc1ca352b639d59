"""The shared file system's access point: every mount through it acts as the backend's user and
lands in /stylesphere, which EFS creates owned by that user on first use."""
from provisioner.engine.context import Resource
from provisioner.engine.errors import DriftConflict
from provisioner.engine.kinds import FREE, Iam, Listing, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import lookup

# The backend container runs as uid 10001, gid 10001 (app/backend/Dockerfile).
APP_UID = APP_GID = 10001
POSIX_USER = {"Uid": APP_UID, "Gid": APP_GID}
ROOT_DIRECTORY = {"Path": "/stylesphere",
                  "CreationInfo": {"OwnerUid": APP_UID, "OwnerGid": APP_GID, "Permissions": "0750"}}
ACCESS_POINT_ARN = "arn:{partition}:elasticfilesystem:{region}:{account}:access-point/*"


@register
class SharedFilesAccessPoint(Step):
    """Free. Its user and root directory cannot be changed in place: a new one replaces it."""

    kind = "efs_access_point"
    aws_type = "AWS::EFS::AccessPoint"
    gone_codes = frozenset({"AccessPointNotFound"})
    listing = Listing("efs_access_point", "efs", "describe_access_points", "AccessPoints", "AccessPointId",
                      label="EFS access points", gone=lambda i: i.get("LifeCycleState") in ("deleting", "deleted"),
                      price=FREE)
    iam = Iam(create=(actions("elasticfilesystem:CreateAccessPoint", "elasticfilesystem:TagResource",
                              on=("arn:{partition}:elasticfilesystem:{region}:{account}:file-system/*",
                                  ACCESS_POINT_ARN)),),
              read=(actions("elasticfilesystem:DescribeAccessPoints"),),
              change=(actions("elasticfilesystem:TagResource", on=ACCESS_POINT_ARN),),
              delete=(actions("elasticfilesystem:DeleteAccessPoint", on=ACCESS_POINT_ARN),))

    def __init__(self):
        super().__init__("shared-files-access-point", depends_on=("shared-files",))

    @classmethod
    def instances(cls, config):
        return [cls()] if config.shared_files else []

    def _describe(self, ctx, **params):
        efs = ctx.client("efs")
        items = [a for page in efs.get_paginator("describe_access_points").paginate(**params)
                 for a in page["AccessPoints"]]
        return [a for a in items if a.get("LifeCycleState") not in ("deleting", "deleted")]

    def find_all(self, ctx, known_id):
        if known_id:
            found = lookup(self._describe, ctx, AccessPointId=known_id, gone=self.gone_codes) or []
            for item in found:
                ctx.claim(self.name, known_id, item.get("Tags", []), "EFS access point")
            if found:
                return [self._resource(i) for i in found]
        # Found by its tags alone (it is looked for before its file system is): every access
        # point of the account and region, as EFS has no tag filter.
        return [self._resource(i) for i in self._describe(ctx) if ctx.owns(i.get("Tags", []), self.name)]

    @staticmethod
    def _resource(item):
        item = {k: v for k, v in item.items() if k != "ResponseMetadata"}
        return Resource(id=item["AccessPointId"], attrs={"arn": item["AccessPointArn"],
                                                         "file_system_id": item["FileSystemId"]}, raw=item)

    def create(self, ctx):
        file_system = ctx.dep("shared-files")
        # The client token makes a retried create answer the same access point, never a second.
        item = ctx.client("efs").create_access_point(
            ClientToken=ctx.client_token(self.name), FileSystemId=file_system.id, PosixUser=POSIX_USER,
            RootDirectory=ROOT_DIRECTORY, Tags=ctx.tags(self.name))
        return self._resource(item)

    def update(self, ctx, resource, apply):
        item = resource.raw
        file_system = ctx.dep("shared-files")
        if file_system is not None and item.get("FileSystemId") != file_system.id:
            raise DriftConflict(f"access point {resource.id} is on file system {item.get('FileSystemId')}, "
                                f"not the stack's {file_system.id}", hint="delete it and run `provision up` again")
        root = item.get("RootDirectory", {}).get("Path")
        if item.get("PosixUser", {}) != POSIX_USER or root != ROOT_DIRECTORY["Path"]:
            raise DriftConflict(f"access point {resource.id} has another user or root directory, which cannot be "
                                "changed in place", hint="delete it and run `provision up` again")
        efs = ctx.client("efs")
        return ctx.converge_tags(item.get("Tags", []), self.name, apply, lambda missing: efs.tag_resource(
            ResourceId=resource.id, Tags=missing))

    def delete(self, ctx, resource):
        ctx.client("efs").delete_access_point(AccessPointId=resource.id)

    def outputs(self, resource):
        return {"shared_files_access_point_id": resource.id}

    def describe(self, resource):
        return f"{ROOT_DIRECTORY['Path']} as {APP_UID}:{APP_GID}"
