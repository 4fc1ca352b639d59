import json

from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import FREE, Iam, ItemTags, Listing, actions
from provisioner.engine.registry import CREATED, Dep, Step, register
from provisioner.engine.retries import error_code, lookup

from steps.storage.s3_bucket import RELEASES_PREFIX, bucket_arn, bucket_name, partition

IAM_PATH = "/provision/"
INLINE_POLICY = "read-app-releases"
# Session Manager instead of SSH: no key pair, no port 22, and the instances stay private.
SSM_POLICY = "AmazonSSMManagedInstanceCore"

TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}  # the instances' (StackRole.trust makes it from the service)


def iam_name(ctx) -> str:
    """IAM is global: the region is in the name, so a stack of the same name in another region
    of the account gets its own role and profile."""
    return f"{ctx.stack}-{ctx.region}-web"


def find_owned(ctx, step: str, known_id: str | None, get, name: str | None = None) -> dict | None:
    """The IAM entity (a role, an instance profile) by the name in state, then by the derived
    name, if it carries the stack's tags. One of that name without them is someone else's:
    never adopted, never deleted (create then says so)."""
    for name in dict.fromkeys(n for n in (known_id, name or iam_name(ctx)) if n):
        entity = lookup(get, name, gone=frozenset({"NoSuchEntity"}))
        if entity is None:
            continue
        if name == known_id:
            ctx.claim(step, name, entity.get("Tags", []), "IAM")
        if ctx.owns(entity.get("Tags", []), step):
            return entity
    return None


# Pulling from the stack's repository, read-only. GetAuthorizationToken names no repository:
# AWS accepts only "*" for it.
ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


def release_read_policy(ctx) -> dict:
    """Exactly what the instances' bootstrap needs: GetObject on the release prefix, and (unless
    they build the images themselves) a pull from the stack's own repository."""
    from steps.build.ecr_repository import repository_name

    bucket = ctx.dep("assets-bucket")
    name = bucket.id if bucket is not None else bucket_name(ctx)
    statements = [{"Sid": "ReadAppReleases", "Effect": "Allow", "Action": "s3:GetObject",
                   "Resource": f"{bucket_arn(ctx, name)}/{RELEASES_PREFIX}*"}]
    if not ctx.config.build_on_instance:
        repository = (f"arn:{partition(ctx.region)}:ecr:{ctx.region}:{ctx.account or '*'}:repository/"
                      f"{repository_name(ctx)}")
        statements += [{"Sid": "PullAppImages", "Effect": "Allow", "Action": ECR_PULL_ACTIONS, "Resource": repository},
                       {"Sid": "LogInToEcr", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]
    return {"Version": "2012-10-17", "Statement": statements}


def managed_policy_arns(ctx) -> list[str]:
    return [f"arn:{partition(ctx.region)}:iam::aws:policy/{SSM_POLICY}"]


def _canonical(value):
    if isinstance(value, str):
        try:  # IAM hands documents back URL-decoded by botocore, but some SDK paths as text
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, sort_keys=True)


ROLE_ARN = "arn:{partition}:iam::{account}:role/provision/{stack}-{region}-web"


# The tool's roles: the instances' (-web), CodeBuild's (-build, steps/build/build_role.py) and the
# flow logs' delivery role (-flow-logs, steps/security/flow_log_role.py).
ROLE_SUFFIXES = ("web", "build", "flow-logs")


def iam_of_region(ctx, stack: str, name: str) -> bool:
    """IAM is global: the role (or profile) of this region's stack of that name."""
    return any(name == f"{stack}-{ctx.region}-{suffix}" for suffix in ROLE_SUFFIXES)


# Every role of the tool, listed once here; the build role's step declares this same listing.
IAM_ROLES = Listing("iam_role", "iam", "list_roles", "Roles", "RoleName", label="IAM roles",
                    params={"PathPrefix": IAM_PATH}, tags=ItemTags("list_role_tags", "RoleName", "Tags"),
                    created_field="CreateDate",
                    candidate=lambda ctx, i: i["RoleName"].endswith(tuple(f"-{ctx.region}-{s}" for s in ROLE_SUFFIXES)),
                    belongs=iam_of_region, price=FREE)


def trust_policy(service: str) -> dict:
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}


class StackRole(Step):
    """A role of the stack's, for one AWS service to assume: found by its derived name and the
    stack's tags, with one inline policy (the subclass's `policy`) and the managed policies
    `managed_policy_arns` names; any other inline policy is removed. The instances' role and
    CodeBuild's are both this, with their own name, service and policy. (Each kind declares its
    own gone codes: NoSuchEntity, as every call of the delete names the role.)"""

    # IAM is eventually consistent across its own calls: a role made a moment ago can be unknown
    # to the next call (PutRolePolicy, AddRoleToInstanceProfile).
    not_found_codes = frozenset({"NoSuchEntity"})
    aws_type = "AWS::IAM::Role"
    # Every role of the tool is listed once, by the one listing (see ROLE_SUFFIXES).
    listing = IAM_ROLES
    suffix: str              # the role's name is <stack>-<region>-<suffix>
    service: str             # the one principal the trust policy admits
    inline_policy: str
    purpose: str             # the role's description: what it is for
    policy_summary: str = ""  # said when the inline policy is put back
    # Managed policies are compared on every `up` only where the role has any (one read fewer).
    converges_managed = False
    # A role some instance profile may hold: removed from it before the delete.
    in_profiles = False

    def role_name(self, ctx) -> str:
        """IAM is global: the region is in the name, so a stack of the same name in another
        region of the account gets its own role."""
        return f"{ctx.stack}-{ctx.region}-{self.suffix}"

    def policy(self, ctx) -> dict:
        raise NotImplementedError

    def managed_policy_arns(self, ctx) -> list[str]:
        return []

    @property
    def trust(self) -> dict:
        return trust_policy(self.service)

    def find_all(self, ctx, known_id):
        iam = ctx.client("iam")
        role = find_owned(ctx, self.name, known_id, lambda name: iam.get_role(RoleName=name)["Role"],
                          name=self.role_name(ctx))
        return [self._resource(role)] if role else []

    @staticmethod
    def _resource(role):
        return Resource(id=role["RoleName"], attrs={"name": role["RoleName"], "arn": role["Arn"]}, raw=role)

    def create(self, ctx):
        from botocore.exceptions import ClientError

        iam = ctx.client("iam")
        name = self.role_name(ctx)
        try:
            role = iam.create_role(RoleName=name, Path=IAM_PATH, AssumeRolePolicyDocument=json.dumps(self.trust),
                                   Description=f"provision stack {ctx.stack}: {self.purpose}",
                                   Tags=ctx.tags(self.name))["Role"]
        except ClientError as e:
            if error_code(e) == "EntityAlreadyExists":
                raise ConfigError(f"an IAM role named {name} exists but is not this stack's (no provision tags)",
                                  hint="delete or rename that role, or use another --stack name") from None
            raise
        # IAM is eventually consistent: the role may be unknown for a moment to the next call.
        ctx.retry("eventual-consistency", iam.put_role_policy, RoleName=name, PolicyName=self.inline_policy,
                  PolicyDocument=json.dumps(self.policy(ctx)))
        for arn in self.managed_policy_arns(ctx):
            ctx.retry("eventual-consistency", iam.attach_role_policy, RoleName=name, PolicyArn=arn)
        return self._resource(role)

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        changes = []
        for helper in (self._converge_tags, self._converge_trust, self._converge_inline, self._converge_managed):
            changes.extend(helper(ctx, resource, apply))
        return changes

    def _converge_tags(self, ctx, resource, apply):
        return ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply,
                                 lambda missing: ctx.client("iam").tag_role(RoleName=resource.id, Tags=missing))

    def _converge_trust(self, ctx, resource, apply):
        if _canonical(resource.raw.get("AssumeRolePolicyDocument")) == _canonical(self.trust):
            return []
        if apply:
            ctx.client("iam").update_assume_role_policy(RoleName=resource.id, PolicyDocument=json.dumps(self.trust))
        return [f"put back the trust policy ({self.service} only)"]

    def _converge_inline(self, ctx, resource, apply):
        iam = ctx.client("iam")
        want, inline = self.policy(ctx), self.inline_policy
        names = [n for page in iam.get_paginator("list_role_policies").paginate(RoleName=resource.id)
                 for n in page["PolicyNames"]]
        changes = []
        if inline not in names:
            changes.append(f"add inline policy {inline}")
        elif _canonical(iam.get_role_policy(RoleName=resource.id, PolicyName=inline)["PolicyDocument"]) \
                != _canonical(want):
            changes.append(f"put back inline policy {inline}"
                           + (f" ({self.policy_summary})" if self.policy_summary else ""))
        if changes and apply:
            iam.put_role_policy(RoleName=resource.id, PolicyName=inline, PolicyDocument=json.dumps(want))
        # Least privilege: the role is the tool's, and what it may do is part of the stack.
        for extra in sorted(set(names) - {inline}):
            if apply:
                iam.delete_role_policy(RoleName=resource.id, PolicyName=extra)
            changes.append(f"delete inline policy {extra} (not the stack's)")
        return changes

    def _converge_managed(self, ctx, resource, apply):
        if not self.converges_managed:
            return []  # managed policies attached by hand are detached by `down`
        iam = ctx.client("iam")
        attached = attached_policy_arns(iam, resource.id)
        want = self.managed_policy_arns(ctx)
        changes = []
        for arn in want:
            if arn not in attached:
                if apply:
                    iam.attach_role_policy(RoleName=resource.id, PolicyArn=arn)
                changes.append(f"attach {arn.rsplit('/', 1)[-1]}")
        for arn in attached:
            if arn not in want:
                if apply:
                    iam.detach_role_policy(RoleName=resource.id, PolicyArn=arn)
                changes.append(f"detach {arn.rsplit('/', 1)[-1]} (not the stack's)")
        return changes

    # -- delete: IAM refuses DeleteRole (DeleteConflict) while anything hangs on the role ------
    def delete(self, ctx, resource):
        iam = ctx.client("iam")
        name = resource.id
        for arn in attached_policy_arns(iam, name):
            iam.detach_role_policy(RoleName=name, PolicyArn=arn)
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
            for policy in page["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
        if self.in_profiles:
            # The instance-profile-role step removes it from the stack's profile first; this
            # covers any other profile someone put it in.
            for page in iam.get_paginator("list_instance_profiles_for_role").paginate(RoleName=name):
                for profile in page["InstanceProfiles"]:
                    iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"],
                                                          RoleName=name)
        ctx.retry("dependency", iam.delete_role, RoleName=name)

    def describe(self, resource):
        return resource.attrs.get("arn", "")


@register
class InstanceRole(StackRole):
    """The app instances' role: read the release prefix, plus AmazonSSMManagedInstanceCore."""

    kind = "iam_role"
    gone_codes = frozenset({"NoSuchEntity"})
    iam = Iam(create=(actions("iam:CreateRole", "iam:TagRole", "iam:PutRolePolicy", "iam:AttachRolePolicy",
                              on=ROLE_ARN),),
              read=(actions("iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
                            "iam:ListRoleTags", "iam:ListInstanceProfilesForRole", on=ROLE_ARN), actions("iam:ListRoles")),
              change=(actions("iam:TagRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
                              "iam:UpdateAssumeRolePolicy", "iam:DeleteRolePolicy", on=ROLE_ARN),),
              delete=(actions("iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy",
                              "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", on=ROLE_ARN),))

    suffix, service, inline_policy = "web", "ec2.amazonaws.com", INLINE_POLICY
    purpose = "the web instances"
    policy_summary = f"s3:GetObject on {RELEASES_PREFIX} only"
    converges_managed = in_profiles = True

    def __init__(self, app=()):
        # The data tier's resources the app uses, created (their ARNs): the role may use those
        # alone, and need not wait for a database to finish.
        super().__init__("instance-role", depends_on=("assets-bucket", *app))

    @classmethod
    def instances(cls, config):
        from provisioner.engine.registry import app_needs

        return [cls(app=tuple(Dep(d.step, CREATED) for d in app_needs(config)))]

    def policy(self, ctx):
        from provisioner.engine.registry import app_steps

        policy = release_read_policy(ctx)
        for step in app_steps(ctx.config):
            policy["Statement"] += step.app_statements(ctx, ctx.dep(step.name))
        return policy

    def managed_policy_arns(self, ctx):
        return managed_policy_arns(ctx)


def attached_policy_arns(iam, role_name: str) -> list[str]:
    return [p["PolicyArn"] for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name)
            for p in page["AttachedPolicies"]]
