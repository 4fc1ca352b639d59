"""The shared file system: an encrypted EFS file system every app instance mounts (the order
receipts), reached through a mount target in each app subnet and the stack's access point."""
from provisioner.account.pricing import HOURS_PER_MONTH, price_of
from provisioner.engine.context import Resource
from provisioner.engine.errors import AwsFailure, DriftConflict
from provisioner.engine.kinds import Iam, Listing, PriceKey, actions
from provisioner.engine.registry import Step, created, register
from provisioner.engine.retries import error_code, lookup

FILE_SYSTEM_ARN = "arn:{partition}:elasticfilesystem:{region}:{account}:file-system/*"
# Elastic throughput bills by the GB read and written, with no baseline tied to the stored size.
# Bursting gives a file system its throughput from its size (50 KiB/s per GiB stored): the few
# megabytes of receipts would run on burst credits, and a busy day would drain them into a
# crawl. Provisioned bills a fixed rate whether used or not. AWS's own default is elastic.
THROUGHPUT_MODE = "elastic"
PERFORMANCE_MODE = "generalPurpose"
# Receipts are read in the days after an order and rarely after: a month in Standard storage,
# then Infrequent Access (a fraction of the price per GB), back to Standard once read again.
LIFECYCLE_POLICIES = [{"TransitionToIA": "AFTER_30_DAYS"}, {"TransitionToPrimaryStorageClass": "AFTER_1_ACCESS"}]
GONE_STATES = ("deleting", "deleted")
# The first file system of an account makes EFS's service-linked role.
EFS_SERVICE_ROLE = actions(
    "iam:CreateServiceLinkedRole",
    on="arn:{partition}:iam::{account}:role/aws-service-role/elasticfilesystem.amazonaws.com/*",
    condition={"StringEquals": {"iam:AWSServiceName": "elasticfilesystem.amazonaws.com"}})


def _storage_products(products, region, instance_types):
    return price_of(products("AmazonEFS", regionCode=region, storageClass="General Purpose"), "TimedStorage-ByteHrs")


EFS_STORAGE_GB_MONTH = PriceKey("efs_storage_gb_month", "EFS Standard storage", "GB-month", _storage_products,
                                # us-east-1's figure until `provision prices --refresh` has one.
                                default=0.30)


def efs_storage_charges(item, prices, region):
    """The stored bytes, as DescribeFileSystems last measured them (EFS bills them by use per
    GB-month, as S3 bills a bucket): no row while it is near empty. Reads and writes bill per GB
    with elastic throughput, and are not counted here."""
    detail = getattr(item, "detail", None) or {}
    size = detail.get("size_gb")
    if detail.get("state") in GONE_STATES or not isinstance(size, (int, float)) or size <= 0:
        return [], []
    rate = prices["efs_storage_gb_month"]
    return [(f"EFS storage (${rate:g}/GB-month)", size, "GB", rate / HOURS_PER_MONTH)], []


def file_system_detail(item):
    size = (item.get("SizeInBytes") or {}).get("Value")
    return {"state": item.get("LifeCycleState"),
            "size_gb": round(size / 1024 ** 3, 3) if isinstance(size, (int, float)) else None}


def _key(ctx) -> dict:
    from steps.security.kms_key import stack_key_arn

    key = stack_key_arn(ctx)
    return {"KmsKeyId": key} if key else {}


@register
class SharedFiles(Step):
    """Encrypted at rest (the account's AWS-managed key); `down` deletes it with its files."""

    kind = "efs_file_system"
    # While mount targets, or their interfaces, are still going.
    in_use_codes = frozenset({"FileSystemInUse"})
    serves_app = True
    aws_type = "AWS::EFS::FileSystem"
    gone_codes = frozenset({"FileSystemNotFound"})
    # Available in seconds on AWS; its deletion waits for the mount targets to go (a minute or two).
    create_timeout = 600
    delete_timeout = 900
    listing = Listing("efs_file_system", "efs", "describe_file_systems", "FileSystems", "FileSystemId",
                      label="EFS file systems", created_field="CreationTime", detail=file_system_detail,
                      gone=lambda i: i.get("LifeCycleState") == "deleted",
                      price=efs_storage_charges, price_keys=(EFS_STORAGE_GB_MONTH,))
    iam = Iam(create=(actions("elasticfilesystem:CreateFileSystem", "elasticfilesystem:TagResource",
                              "elasticfilesystem:PutLifecycleConfiguration", on=FILE_SYSTEM_ARN),
                      EFS_SERVICE_ROLE),
              read=(actions("elasticfilesystem:DescribeFileSystems",
                            "elasticfilesystem:DescribeLifecycleConfiguration"),),
              change=(actions("elasticfilesystem:TagResource", "elasticfilesystem:PutLifecycleConfiguration",
                              on=FILE_SYSTEM_ARN),),
              delete=(actions("elasticfilesystem:DeleteFileSystem", on=FILE_SYSTEM_ARN),))

    def __init__(self, audit: bool = False):
        # --audit: encrypted with the stack's key (its ARN only), else the account's aws/elasticfilesystem.
        super().__init__("shared-files", depends_on=(created("kms-key"),) if audit else ())

    @classmethod
    def instances(cls, config):
        return [cls(config.audit)] if config.shared_files else []

    # -- find --------------------------------------------------------------------------------
    def _describe(self, ctx, **params) -> list[dict]:
        efs = ctx.client("efs")
        items = []
        for page in efs.get_paginator("describe_file_systems").paginate(**params):
            items.extend(page["FileSystems"])
        return [i for i in items if i.get("LifeCycleState") != "deleted"]

    def find_all(self, ctx, known_id):
        if known_id:
            found = lookup(self._describe, ctx, FileSystemId=known_id, gone=self.gone_codes) or []
            for item in found:
                ctx.claim(self.name, known_id, item.get("Tags", []), "EFS file system")
            if found:
                return [self._resource(i) for i in found]
        return [self._resource(i) for i in self._describe(ctx) if ctx.owns(i.get("Tags", []), self.name)]

    @staticmethod
    def _resource(item):
        return Resource(id=item["FileSystemId"], attrs={"arn": item["FileSystemArn"]}, raw=item)

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        from botocore.exceptions import ClientError

        efs = ctx.client("efs")
        for token in ctx.client_tokens(self.name):
            try:
                item = efs.create_file_system(CreationToken=token, PerformanceMode=PERFORMANCE_MODE,
                                              ThroughputMode=THROUGHPUT_MODE, Encrypted=True,
                                              Tags=ctx.tags(self.name), **_key(ctx))
                break
            except ClientError as e:
                # The token made a file system already: this run's own (a retried create), or
                # one deleted since, which holds the token while it goes.
                if error_code(e) != "FileSystemAlreadyExists":
                    raise
                made = [i for i in self._describe(ctx, CreationToken=token)
                        if i.get("LifeCycleState") not in GONE_STATES]
                if made and ctx.owns(made[0].get("Tags", []), self.name):
                    item = made[0]
                    break
        else:
            raise AwsFailure("CreateFileSystem answered every creation token with a former file system",
                             hint="run `provision up` again")
        item = {k: v for k, v in item.items() if k != "ResponseMetadata"}
        efs.put_lifecycle_configuration(FileSystemId=item["FileSystemId"], LifecyclePolicies=LIFECYCLE_POLICIES)
        return self._resource(item)

    def ready(self, ctx, resource):
        if resource.raw.get("LifeCycleState") != "available":
            ctx.wait("efs", "FileSystemAvailable", FileSystemId=resource.id, timeout=self.create_timeout,
                     what="file system to become available")
            resource.raw["LifeCycleState"] = "available"

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        item = resource.raw
        if item.get("LifeCycleState") in GONE_STATES:
            raise DriftConflict(f"file system {resource.id} is being deleted",
                                hint="wait a minute for it to go, then run `provision up` again")
        if not item.get("Encrypted", True):
            raise DriftConflict(f"file system {resource.id} is not encrypted, and EFS cannot encrypt one in place",
                                hint="copy what it holds elsewhere, delete it (or `provision down`) and run `up` again")
        efs = ctx.client("efs")
        changes = ctx.converge_tags(item.get("Tags", []), self.name, apply, lambda missing: efs.tag_resource(
            ResourceId=resource.id, Tags=missing))
        live = efs.describe_lifecycle_configuration(FileSystemId=resource.id).get("LifecyclePolicies", [])
        if sorted(map(str, live)) != sorted(map(str, LIFECYCLE_POLICIES)):
            changes.append("put back the lifecycle policy (Infrequent Access after 30 days)")
            if apply:
                efs.put_lifecycle_configuration(FileSystemId=resource.id, LifecyclePolicies=LIFECYCLE_POLICIES)
        # Adopted mid-creation (an interrupted run): `ready` finishes the wait.
        return changes

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        # The mount targets are deleted first (they depend on it), but AWS counts them until they
        # are gone and refuses the deletion meanwhile (FileSystemInUse).
        ctx.wait("efs", "FileSystemMountTargetsGone", FileSystemId=resource.id, timeout=self.delete_timeout,
                 what="the file system's mount targets to be gone")
        efs = ctx.client("efs")
        ctx.retry("dependency", efs.delete_file_system, FileSystemId=resource.id)
        ctx.wait("efs", "FileSystemDeleted", FileSystemId=resource.id, timeout=self.delete_timeout,
                 what="file system to be deleted")

    def app_environment(self, ctx, resource):
        # The boot script mounts it (NFSv4.1; Ubuntu has no amazon-efs-utils) and the backend
        # container sees its `stylesphere` directory, the access point's root, at /shared.
        return {"SHARED_FILES_ID": resource.id, "SHARED_FILES_DIR": "/shared"} if resource is not None else {}

    def outputs(self, resource):
        return {"shared_files_id": resource.id}

    def describe(self, resource):
        return f"{resource.raw.get('LifeCycleState', '')}, {resource.raw.get('ThroughputMode', '')} throughput"
