"""Where both containers of every instance log (--monitoring): `/provision/<stack>/app`, kept
--log-retention-days. Docker's awslogs driver on each instance writes one stream per container,
`<instance-id>/<container>`; `provision logs --app` reads them back."""

from provisioner.engine.registry import register

from steps.monitoring.log_group import LogGroupStep, log_group_iam, log_group_listing

APP_LOG_PREFIX = "/provision/"
LOG_GROUP_ARN = "arn:{partition}:logs:{region}:{account}:log-group:/provision/{stack}/app"
# What the awslogs driver calls: a stream per container at its start, then its events. The group
# exists before any instance (the launch template waits for it): the driver must never create it.
DRIVER_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")


def app_log_group_name(stack: str) -> str:
    return f"{APP_LOG_PREFIX}{stack}/app"


@register
class AppLogGroup(LogGroupStep):
    """The app's log group; deleted with its logs by `down`."""

    kind = "app_log_group"
    gone_codes = frozenset({"ResourceNotFoundException"})
    listing = log_group_listing("app_log_group", APP_LOG_PREFIX, "CloudWatch Logs groups (app)",
                                candidate=lambda ctx, item: item.get("logGroupName", "").endswith("/app"))
    iam = log_group_iam(LOG_GROUP_ARN)
    # The instances' role writes to it and the launch template names it (the daemon's driver
    # fails a container's start on a group that does not exist): both wait for its creation.
    serves_app = True
    # The driver runs in the Docker daemon, on the host: its calls take the instance role from
    # IMDS at hop limit 1, so no container needs the role for it (launch_template.METADATA_OPTIONS).
    containers_call_aws = False

    def __init__(self, audit: bool = False):
        super().__init__("app-log-group", depends_on=(), audit=audit)

    @classmethod
    def instances(cls, config):
        return [cls(config.audit)] if config.monitoring else []

    def resource_name(self, ctx):
        return app_log_group_name(ctx.stack)

    def retention(self, ctx):
        return ctx.config.log_retention_days

    # -- what the app's instances take from it -------------------------------------------------
    def app_environment(self, ctx, resource):
        """Read by the compose file's awslogs override (app/docker-compose.awslogs.yml), not by the
        backend; the bootstrap adds AWSLOGS_INSTANCE (the instance's id) at boot."""
        return {"AWSLOGS_GROUP": self.resource_name(ctx), "AWSLOGS_REGION": ctx.region}

    def app_statements(self, ctx, resource):
        arn = resource.attrs["arn"] if resource is not None else self.arn(ctx)
        return [{"Sid": "WriteAppLogs", "Effect": "Allow", "Action": list(DRIVER_ACTIONS),
                 "Resource": [arn, f"{arn}:log-stream:*"]}]

    def outputs(self, resource):
        return {"app_log_group": resource.id}
