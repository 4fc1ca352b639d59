"""CodeBuild's service role: read the release, push to the stack's repository, write its logs."""
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import register

from steps.build.ecr_repository import repository_name
from steps.identity.iam_role import StackRole
from steps.storage.s3_bucket import RELEASES_PREFIX, bucket_arn, bucket_name, partition

INLINE_POLICY = "build-app-images"
BUILD_ROLE_ARN = "arn:{partition}:iam::{account}:role/provision/{stack}-{region}-build"
# What `docker push` calls, on the one repository.
ECR_PUSH_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
                    "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage",
                    "ecr:UploadLayerPart"]


def build_role_name(ctx) -> str:
    """IAM is global: the region is in the name, as the instance role's is."""
    return f"{ctx.stack}-{ctx.region}-build"


def project_name(ctx) -> str:
    return f"{ctx.stack}-image-build"


def log_group_name(ctx) -> str:
    """Where CodeBuild writes a project's logs unless told otherwise."""
    return f"/aws/codebuild/{project_name(ctx)}"


def build_policy(ctx) -> dict:
    bucket = ctx.dep("assets-bucket")
    bucket = bucket.id if bucket is not None else bucket_name(ctx)
    account = ctx.account or "*"
    region = ctx.region
    logs = f"arn:{partition(region)}:logs:{region}:{account}:log-group:{log_group_name(ctx)}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            # Releases are named by their hash; each build reads the one it is given.
            {"Sid": "ReadAppReleases", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"{bucket_arn(ctx, bucket)}/{RELEASES_PREFIX}*"},
            {"Sid": "PushAppImages", "Effect": "Allow", "Action": ECR_PUSH_ACTIONS,
             "Resource": f"arn:{partition(region)}:ecr:{region}:{account}:repository/{repository_name(ctx)}"},
            {"Sid": "LogInToEcr", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Sid": "WriteBuildLogs", "Effect": "Allow",
             "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             # The group is the build-log-group step's: CodeBuild must not make an untagged one.
             "Resource": [logs, f"{logs}:*"]},
        ],
    }


@register
class BuildRole(StackRole):
    """The role CodeBuild assumes for the stack's image builds, and nothing else."""

    kind = "codebuild_service_role"
    gone_codes = frozenset({"NoSuchEntity"})
    iam = Iam(create=(actions("iam:CreateRole", "iam:TagRole", "iam:PutRolePolicy", on=BUILD_ROLE_ARN),),
              read=(actions("iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
                            "iam:ListRoleTags", "iam:ListInstanceProfilesForRole", on=BUILD_ROLE_ARN),),
              change=(actions("iam:TagRole", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:DeleteRolePolicy",
                              "iam:DetachRolePolicy", on=BUILD_ROLE_ARN),),
              delete=(actions("iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:ListRolePolicies",
                              "iam:ListAttachedRolePolicies", on=BUILD_ROLE_ARN),))
    suffix, service, inline_policy = "build", "codebuild.amazonaws.com", INLINE_POLICY
    purpose = "CodeBuild's image builds"

    def __init__(self):
        super().__init__("build-role", depends_on=("assets-bucket",))

    @classmethod
    def instances(cls, config):
        return [] if config.build_on_instance else [cls()]

    def policy(self, ctx):
        return build_policy(ctx)
