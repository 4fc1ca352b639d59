"""CodeBuild's service role: read the release, push to the stack's repository, write its logs."""
import json

from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import error_code

from steps.build.ecr_repository import repository_name
from steps.identity.iam_role import IAM_PATH, IAM_ROLES, attached_policy_arns, find_owned
from steps.storage.s3_bucket import RELEASES_PREFIX, bucket_arn, bucket_name, partition

INLINE_POLICY = "build-app-images"
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
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
             "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [logs, f"{logs}:*"]},
        ],
    }


def _canonical(value):
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, sort_keys=True)


@register
class BuildRole(Step):
    """The role CodeBuild assumes for the stack's image builds, and nothing else."""

    kind = "codebuild_service_role"
    gone_codes = frozenset({"NoSuchEntity"})
    not_found_codes = frozenset({"NoSuchEntity"})
    aws_type = "AWS::IAM::Role"
    # The same listing as the instance role's: both are the tool's IAM roles.
    listing = IAM_ROLES
    iam = Iam(create=(actions("iam:CreateRole", "iam:TagRole", "iam:PutRolePolicy", on=BUILD_ROLE_ARN),),
              read=(actions("iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
                            "iam:ListRoleTags", "iam:ListInstanceProfilesForRole", on=BUILD_ROLE_ARN),),
              change=(actions("iam:TagRole", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:DeleteRolePolicy",
                              "iam:DetachRolePolicy", on=BUILD_ROLE_ARN),),
              delete=(actions("iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:ListRolePolicies",
                              "iam:ListAttachedRolePolicies", on=BUILD_ROLE_ARN),))

    def __init__(self):
        super().__init__("build-role", depends_on=("assets-bucket",))

    @classmethod
    def instances(cls, config):
        return [] if config.build_on_instance else [cls()]

    def find_all(self, ctx, known_id):
        iam = ctx.client("iam")
        role = find_owned(ctx, self.name, known_id, lambda name: iam.get_role(RoleName=name)["Role"],
                          name=build_role_name(ctx))
        return [self._resource(role)] if role else []

    @staticmethod
    def _resource(role):
        return Resource(id=role["RoleName"], attrs={"name": role["RoleName"], "arn": role["Arn"]}, raw=role)

    def create(self, ctx):
        from botocore.exceptions import ClientError

        iam = ctx.client("iam")
        name = build_role_name(ctx)
        try:
            role = iam.create_role(RoleName=name, Path=IAM_PATH, AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
                                   Description=f"provision stack {ctx.stack}: CodeBuild's image builds",
                                   Tags=ctx.tags(self.name))["Role"]
        except ClientError as e:
            if error_code(e) == "EntityAlreadyExists":
                raise ConfigError(f"an IAM role named {name} exists but is not this stack's (no provision tags)",
                                  hint="delete or rename that role, or use another --stack name") from None
            raise
        ctx.retry("eventual-consistency", iam.put_role_policy, RoleName=name, PolicyName=INLINE_POLICY,
                  PolicyDocument=json.dumps(build_policy(ctx)))
        return self._resource(role)

    def update(self, ctx, resource, apply):
        iam = ctx.client("iam")
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply,
                                    lambda missing: iam.tag_role(RoleName=resource.id, Tags=missing))
        if _canonical(resource.raw.get("AssumeRolePolicyDocument")) != _canonical(TRUST_POLICY):
            if apply:
                iam.update_assume_role_policy(RoleName=resource.id, PolicyDocument=json.dumps(TRUST_POLICY))
            changes.append("put back the trust policy (codebuild.amazonaws.com only)")
        want = build_policy(ctx)
        names = [n for page in iam.get_paginator("list_role_policies").paginate(RoleName=resource.id)
                 for n in page["PolicyNames"]]
        if INLINE_POLICY not in names or _canonical(
                iam.get_role_policy(RoleName=resource.id, PolicyName=INLINE_POLICY)["PolicyDocument"]) != _canonical(want):
            if apply:
                iam.put_role_policy(RoleName=resource.id, PolicyName=INLINE_POLICY, PolicyDocument=json.dumps(want))
            changes.append(f"{'add' if INLINE_POLICY not in names else 'put back'} inline policy {INLINE_POLICY}")
        # Least privilege: what the role may do is part of the stack. (Managed policies attached
        # by hand are detached only by `down`: one read fewer on every `up`.)
        for extra in sorted(set(names) - {INLINE_POLICY}):
            if apply:
                iam.delete_role_policy(RoleName=resource.id, PolicyName=extra)
            changes.append(f"delete inline policy {extra} (not the stack's)")
        return changes

    def delete(self, ctx, resource):
        iam = ctx.client("iam")
        for arn in attached_policy_arns(iam, resource.id):
            iam.detach_role_policy(RoleName=resource.id, PolicyArn=arn)
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=resource.id):
            for policy in page["PolicyNames"]:
                iam.delete_role_policy(RoleName=resource.id, PolicyName=policy)
        ctx.retry("dependency", iam.delete_role, RoleName=resource.id)

    def describe(self, resource):
        return resource.attrs.get("arn", "")
