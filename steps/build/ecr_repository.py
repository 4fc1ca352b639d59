"""The stack's private ECR repository: both images of every release, tagged by its hash."""
import json

from provisioner.account.pricing import HOURS_PER_MONTH, price_of
from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import Iam, ItemTags, Listing, PriceKey, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import error_code, lookup

REPOSITORY_PREFIX = "provision/"
REPOSITORY_ARN = "arn:{partition}:ecr:{region}:{account}:repository/provision/{stack}"
# Both images of a release (backend and frontend) count: the last three releases stay, so the
# instances of a refresh still in progress can pull the release they were launched with.
KEEP_IMAGES = 6
LIFECYCLE_POLICY = {"rules": [{
    "rulePriority": 1, "description": f"keep the last {KEEP_IMAGES} images (3 releases)",
    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
    "action": {"type": "expire"}}]}
# A tag is a release's content hash: it must always name the same bytes.
TAG_MUTABILITY = "IMMUTABLE"


def repository_name(ctx) -> str:
    """ECR is regional: one repository per stack and region, under the tool's prefix."""
    return f"{REPOSITORY_PREFIX}{ctx.stack}"


def repository_uri(ctx, repository: dict) -> str:
    return repository["repositoryUri"]


def _storage_products(products, region, instance_types):
    return price_of(products("AmazonECR", regionCode=region), "TimedStorage-ByteHrs")


ECR_STORAGE_GB_MONTH = PriceKey("ecr_storage_gb_month", "ECR storage", "GB-month", _storage_products,
                                # us-east-1's figure until `provision prices --refresh` has one.
                                default=0.10)


def ecr_storage_charges(item, prices, region):
    """The images' storage, when the listing knows their size. ECR bills it by use per GB-month
    (as S3 bills the bucket), and DescribeRepositories does not say it: usually no row, like S3."""
    size = (getattr(item, "detail", None) or {}).get("size_gb")
    if not isinstance(size, (int, float)) or size <= 0:
        return [], []
    rate = prices["ecr_storage_gb_month"]
    return [(f"ECR storage (${rate:g}/GB-month)", size, "GB", rate / HOURS_PER_MONTH)], []


@register
class ImageRepository(Step):
    """Private, tags immutable, scanned on push, encrypted, with a lifecycle policy keeping the
    last few images; deleted with its images by `down`."""

    kind = "ecr_repository"
    gone_codes = frozenset({"RepositoryNotFoundException"})
    aws_type = "AWS::ECR::Repository"
    listing = Listing("ecr_repository", "ecr", "describe_repositories", "repositories", "repositoryArn",
                      label="ECR repositories", created_field="createdAt",
                      tags=ItemTags("list_tags_for_resource", "resourceArn", "tags"),
                      candidate=lambda ctx, i: i["repositoryName"].startswith(REPOSITORY_PREFIX),
                      price=ecr_storage_charges, price_keys=(ECR_STORAGE_GB_MONTH,))
    iam = Iam(create=(actions("ecr:CreateRepository", "ecr:TagResource", "ecr:PutLifecyclePolicy", on=REPOSITORY_ARN),),
              read=(actions("ecr:DescribeRepositories", "ecr:ListTagsForResource", "ecr:GetLifecyclePolicy",
                            on=REPOSITORY_ARN),),
              change=(actions("ecr:TagResource", "ecr:PutLifecyclePolicy", "ecr:PutImageTagMutability",
                              on=REPOSITORY_ARN),),
              # Deleting with force deletes the images too, and needs the right to.
              delete=(actions("ecr:DeleteRepository", "ecr:BatchDeleteImage", "ecr:ListImages", on=REPOSITORY_ARN),))

    def __init__(self):
        super().__init__("image-repository", depends_on=())

    @classmethod
    def instances(cls, config):
        return [] if config.build_on_instance else [cls()]

    # -- find --------------------------------------------------------------------------------
    def find_all(self, ctx, known_id):
        ecr = ctx.client("ecr")
        for name in dict.fromkeys(n for n in (known_id, repository_name(ctx)) if n):
            found = lookup(ecr.describe_repositories, repositoryNames=[name], gone=self.gone_codes)
            if not found or not found["repositories"]:
                continue
            repository = found["repositories"][0]
            tags = ecr.list_tags_for_resource(resourceArn=repository["repositoryArn"]).get("tags", [])
            if name == known_id:
                ctx.claim(self.name, name, tags, "ECR repository")
            if ctx.owns(tags, self.name):
                return [self._resource(repository, tags)]
        return []

    @staticmethod
    def _resource(repository, tags):
        return Resource(id=repository["repositoryName"],
                        attrs={"name": repository["repositoryName"], "arn": repository["repositoryArn"],
                               "uri": repository["repositoryUri"]},
                        raw={**repository, "Tags": tags})

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        from botocore.exceptions import ClientError

        ecr = ctx.client("ecr")
        name = repository_name(ctx)
        try:
            repository = ecr.create_repository(
                repositoryName=name, imageTagMutability=TAG_MUTABILITY,
                imageScanningConfiguration={"scanOnPush": True}, encryptionConfiguration={"encryptionType": "AES256"},
                tags=ctx.tags(self.name))["repository"]
        except ClientError as e:
            if error_code(e) == "RepositoryAlreadyExistsException":
                raise ConfigError(f"an ECR repository named {name} exists but is not this stack's (no provision tags)",
                                  hint="delete or rename that repository, or use another --stack name") from None
            raise
        ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(LIFECYCLE_POLICY))
        return self._resource(repository, ctx.tags(self.name))

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        ecr = ctx.client("ecr")
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: ecr.tag_resource(
            resourceArn=resource.attrs["arn"], tags=missing))
        have = lookup(ecr.get_lifecycle_policy, repositoryName=resource.id,
                      gone=frozenset({"LifecyclePolicyNotFoundException"}))
        if have is None or json.loads(have["lifecyclePolicyText"]) != LIFECYCLE_POLICY:
            if apply:
                ecr.put_lifecycle_policy(repositoryName=resource.id, lifecyclePolicyText=json.dumps(LIFECYCLE_POLICY))
            changes.append(f"{'set' if have is None else 'put back'} the lifecycle policy (keep the last "
                           f"{KEEP_IMAGES} images)")
        if resource.raw.get("imageTagMutability", TAG_MUTABILITY) != TAG_MUTABILITY:
            if apply:
                ecr.put_image_tag_mutability(repositoryName=resource.id, imageTagMutability=TAG_MUTABILITY)
            changes.append(f"image tags {resource.raw.get('imageTagMutability')} -> {TAG_MUTABILITY}")
        return changes

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        # Without force, AWS refuses a repository that holds any image (RepositoryNotEmptyException);
        # force deletes the images with it.
        ctx.client("ecr").delete_repository(repositoryName=resource.id, force=True)

    def outputs(self, resource):
        return {"image_repository_uri": resource.attrs["uri"]}

    def describe(self, resource):
        return resource.attrs.get("uri", "")
