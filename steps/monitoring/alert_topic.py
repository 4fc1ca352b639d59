"""The SNS topic every alarm notifies (--monitoring): `<stack>-alerts`.

CreateTopic answers an existing topic of that name with its ARN, whoever made it, so the name is
checked first (check_name) and a topic found is the stack's only with its tag. Topics cost
nothing; email notifications past the first 1,000 a month bill by use ($2 per 100,000).
"""

from provisioner.engine.context import Resource
from provisioner.engine.kinds import Free, Iam, ItemTags, Listing, actions
from provisioner.engine.registry import NamedStep, register
from provisioner.engine.retries import lookup

TOPIC_ARN = "arn:{partition}:sns:{region}:{account}:{stack}-alerts"


def topic_name(stack: str) -> str:
    return f"{stack}-alerts"


def topic_arn(ctx) -> str:
    from steps.storage.s3_bucket import partition

    return f"arn:{partition(ctx.region)}:sns:{ctx.region}:{ctx.account}:{topic_name(ctx.stack)}"


def topic_tags(sns, arn) -> list[dict]:
    return (lookup(sns.list_tags_for_resource, ResourceArn=arn, gone=frozenset({"NotFound", "ResourceNotFound"}))
            or {}).get("Tags", [])


@register
class AlertTopic(NamedStep):
    """Where the alarms go; the email subscription (if any) is on it."""

    kind = "sns_topic"
    what = "SNS topic"
    gone_codes = frozenset({"NotFound"})
    aws_type = "AWS::SNS::Topic"
    listing = Listing("sns_topic", "sns", "list_topics", "Topics", "TopicArn", label="SNS topics",
                      tags=ItemTags("list_tags_for_resource", "ResourceArn", "Tags",
                                    untagged_codes=frozenset({"AuthorizationError"})),
                      price=Free("topics are free; email past 1,000 a month is $2 per 100,000"))
    iam = Iam(create=(actions("sns:CreateTopic", "sns:TagResource", on=TOPIC_ARN),),
              read=(actions("sns:ListTopics"),
                    actions("sns:GetTopicAttributes", "sns:ListTagsForResource", on=TOPIC_ARN)),
              change=(actions("sns:TagResource", on=TOPIC_ARN),),
              delete=(actions("sns:DeleteTopic", on=TOPIC_ARN),))

    def __init__(self):
        super().__init__("alert-topic", depends_on=())

    @classmethod
    def instances(cls, config):
        return [cls()] if config.monitoring else []

    # -- find --------------------------------------------------------------------------------
    def resource_name(self, ctx):
        return topic_arn(ctx)

    def read(self, ctx, name):
        sns = ctx.client("sns")
        got = lookup(sns.get_topic_attributes, TopicArn=name, gone=self.gone_codes)
        if got is None:
            return None, []
        return got.get("Attributes", {}), topic_tags(sns, name)

    @staticmethod
    def to_resource(item, tags):
        arn = item["TopicArn"]
        return Resource(id=arn, attrs={"arn": arn, "name": arn.rsplit(":", 1)[-1]}, raw={**item, "Tags": tags})

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        arn = ctx.client("sns").create_topic(Name=topic_name(ctx.stack), Tags=ctx.tags(self.name))["TopicArn"]
        return self.to_resource({"TopicArn": arn}, ctx.tags(self.name))

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        return ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: ctx.client(
            "sns").tag_resource(ResourceArn=resource.id, Tags=missing))

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        # Its subscriptions go with it, a pending one too (SNS refuses to Unsubscribe those).
        ctx.client("sns").delete_topic(TopicArn=resource.id)

    def outputs(self, resource):
        return {"alert_topic_arn": resource.id}

    def describe(self, resource):
        return resource.attrs.get("name", resource.id)
