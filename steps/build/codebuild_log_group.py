"""The CodeBuild project's log group, `/aws/codebuild/<stack>-image-build`, made by the tool
(tagged, kept --log-retention-days) before the project that writes to it.

Left to CodeBuild, the group is made at the first build, untagged and kept forever: `list` and
`cleanup` could not see it, and a `down` interrupted between the project's delete and the group's
left it billing storage for good.
"""

from provisioner.engine.registry import register

from steps.build.build_role import log_group_name
from steps.monitoring.log_group import LogGroupStep, log_group_iam, log_group_listing

CODEBUILD_LOG_PREFIX = "/aws/codebuild/"
LOG_GROUP_ARN = "arn:{partition}:logs:{region}:{account}:log-group:/aws/codebuild/{stack}-image-build"


@register
class CodeBuildLogGroup(LogGroupStep):
    """Where the image builds log; deleted with its logs by `down`."""

    kind = "codebuild_log_group"
    gone_codes = frozenset({"ResourceNotFoundException"})
    listing = log_group_listing("codebuild_log_group", CODEBUILD_LOG_PREFIX, "CloudWatch Logs groups (CodeBuild)",
                                candidate=lambda ctx, item: item.get("logGroupName", "").endswith("-image-build"))
    iam = log_group_iam(LOG_GROUP_ARN)

    def __init__(self):
        super().__init__("build-log-group", depends_on=())

    @classmethod
    def instances(cls, config):
        return [] if config.build_on_instance else [cls()]

    def resource_name(self, ctx):
        return log_group_name(ctx)

    def retention(self, ctx):
        return ctx.config.log_retention_days

    def find_all(self, ctx, known_id):
        found = super().find_all(ctx, known_id)
        if found:
            return found
        # A group of this name with no tags at all is the one CodeBuild made itself for the
        # stack's project (as it did before this step existed; the project's name is the
        # stack's, unique in the region): taken over, and `up` tags it. One with anyone's tags is
        # not, and check_name refuses it.
        item, tags = self.read(ctx, self.resource_name(ctx))
        return [self.to_resource(item, [])] if item is not None and not tags else []

    def check_name(self, ctx, known_id):
        if known_id == self.resource_name(ctx):
            return  # the state knows it by that name: find_all reads it (no second read)
        item, tags = self.read(ctx, self.resource_name(ctx))
        if item is not None and tags and not ctx.is_ours(tags, self.name):
            raise self.taken(ctx)

    def outputs(self, resource):
        return {"build_log_group": resource.id}
