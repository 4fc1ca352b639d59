"""The email subscription of the alert topic (--alert-email ADDRESS).

SNS mails the address a link, and the subscription is "pending confirmation" until it is
followed: ListSubscriptionsByTopic then names it "PendingConfirmation" instead of an ARN, and no
message reaches the address. A pending subscription cannot be deleted (Unsubscribe is refused:
"You can't delete a subscription that's pending confirmation", SNS developer guide, "Deleting a
topic and subscription"); SNS removes it by itself after 48 hours, and deleting the topic removes
it at once. So `down` unsubscribes a confirmed one, leaves a pending one to the topic's deletion
(the next step of the reversed graph), and `status` says which it is.

It has no tags of its own (SNS tags topics only): the inventory sees it through its topic.
"""

from provisioner.engine.context import Resource
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import Step, created, register
from provisioner.engine.retries import lookup

from steps.monitoring.alert_topic import TOPIC_ARN

PENDING = "PendingConfirmation"
PROTOCOL = "email"


@register
class AlertSubscription(Step):
    kind = "sns_subscription"
    tagged = False
    found_through = "sns_topic"
    gone_codes = frozenset({"NotFound"})
    aws_type = "AWS::SNS::Subscription"
    iam = Iam(create=(actions("sns:Subscribe", on=TOPIC_ARN),),
              read=(actions("sns:ListSubscriptionsByTopic", on=TOPIC_ARN), actions("sns:GetSubscriptionAttributes")),
              change=(actions("sns:Subscribe", on=TOPIC_ARN), actions("sns:Unsubscribe")),
              delete=(actions("sns:Unsubscribe"),))

    def __init__(self):
        super().__init__("alert-subscription", depends_on=(created("alert-topic"),))

    @classmethod
    def instances(cls, config):
        return [cls()] if config.monitoring and config.alert_email else []

    # -- find --------------------------------------------------------------------------------
    def _subscriptions(self, ctx, topic) -> list[dict]:
        sns = ctx.client("sns")
        found, token = [], None
        while True:
            page = lookup(sns.list_subscriptions_by_topic, TopicArn=topic, gone=self.gone_codes,
                          **({"NextToken": token} if token else {}))
            if page is None:
                return []
            found += [s for s in page.get("Subscriptions", []) if s.get("Protocol") == PROTOCOL]
            token = page.get("NextToken")
            if not token:
                return found

    def find_all(self, ctx, known_id):
        topic = ctx.dep("alert-topic")
        if topic is None:
            return []
        # Every email subscription of the stack's topic is the stack's (the topic is, by its tag):
        # one to an address given before is found too, and `up` moves it to the new one.
        subs = self._subscriptions(ctx, topic.id)
        return [self._resource(ctx, topic.id, subs[0], known_id)] if subs else []

    def _resource(self, ctx, topic, sub, known_id) -> Resource:
        arn = sub.get("SubscriptionArn")
        pending = arn == PENDING
        if not pending:
            # A subscription confirmed moments ago may still list as pending elsewhere: its own
            # attributes are the authority.
            attributes = (lookup(ctx.client("sns").get_subscription_attributes, SubscriptionArn=arn,
                                 gone=self.gone_codes) or {}).get("Attributes", {})
            pending = attributes.get("PendingConfirmation") == "true"
        rid = arn if not pending and arn != PENDING else (known_id or f"{topic}:{PENDING}")
        return Resource(id=rid, attrs={"endpoint": sub.get("Endpoint"), "pending": pending, "topic": topic},
                        raw=dict(sub))

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        topic = ctx.dep("alert-topic").id
        # ReturnSubscriptionArn: the ARN even while pending, so the state has an id to keep.
        arn = ctx.client("sns").subscribe(TopicArn=topic, Protocol=PROTOCOL, Endpoint=ctx.config.alert_email,
                                          ReturnSubscriptionArn=True)["SubscriptionArn"]
        found = [s for s in self._subscriptions(ctx, topic) if s.get("Endpoint") == ctx.config.alert_email]
        if found:
            return self._resource(ctx, topic, found[0], arn)
        return Resource(id=arn, attrs={"endpoint": ctx.config.alert_email, "pending": True, "topic": topic},
                        raw={"SubscriptionArn": PENDING, "Endpoint": ctx.config.alert_email})

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        want, have = ctx.config.alert_email, resource.attrs.get("endpoint")
        if have == want:
            return []
        if apply:
            ctx.client("sns").subscribe(TopicArn=resource.attrs["topic"], Protocol=PROTOCOL, Endpoint=want,
                                        ReturnSubscriptionArn=True)
            self.delete(ctx, resource)
        note = " (still pending: SNS removes it within 48 hours)" if resource.attrs.get("pending") else ""
        return [f"send alerts to {want} instead of {have}{note}"]

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        if resource.attrs.get("pending"):
            return  # refused by SNS; gone with the topic, or after 48 hours
        lookup(ctx.client("sns").unsubscribe, SubscriptionArn=resource.id, gone=self.gone_codes)

    def outputs(self, resource):
        return {"alert_email": resource.attrs.get("endpoint"),
                "alert_subscription": "pending confirmation" if resource.attrs.get("pending") else "confirmed"}

    def describe(self, resource):
        endpoint = resource.attrs.get("endpoint")
        if resource.attrs.get("pending"):
            return f"{endpoint}: pending confirmation (follow the link in AWS's email; alarms reach no one until then)"
        return f"{endpoint}: confirmed"
