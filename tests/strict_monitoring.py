"""Strict rules for the monitoring tier: see strict.py.

A mixin of StrictAws. What moto accepts and AWS refuses or does otherwise:
- SNS: an email subscription stays "pending confirmation" until the recipient follows the link
  (moto confirms at once): ListSubscriptionsByTopic names it "PendingConfirmation", its attributes
  say PendingConfirmation "true", and Unsubscribe is refused (SNS developer guide: a subscription
  pending confirmation cannot be deleted; SNS removes it after 48 hours, or with its topic);
  `confirm(endpoint)` plays the recipient;
- CloudWatch: PutDashboard validates the body's widgets (moto only parses the JSON): a metric
  widget without `region`, or a metric line shorter than namespace and name, is refused with
  InvalidParameterInput ("The dashboard body is invalid, there are N validation errors").
"""

from __future__ import annotations

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import ORDER, refuse

PENDING = "PendingConfirmation"


class MonitoringRules:
    def strict_setup_monitoring(self):
        self.confirmed_endpoints: set[str] = set()

    def confirm(self, endpoint: str) -> None:
        self.confirmed_endpoints.add(endpoint)

    def strict_rules_monitoring(self):
        return {"sns.Unsubscribe": self._unsubscribe}

    def strict_params_monitoring(self):
        return {"cloudwatch.PutDashboard": self._put_dashboard}

    def strict_after_monitoring(self):
        return {"sns.ListSubscriptionsByTopic": self._after_list_subscriptions,
                "sns.ListSubscriptions": self._after_list_subscriptions,
                "sns.GetSubscriptionAttributes": self._after_subscription_attributes}

    def _sns_subscription(self, arn):
        from moto.sns.models import sns_backends

        return sns_backends[DEFAULT_ACCOUNT_ID][self.region].subscriptions.get(arn)

    def _pending(self, protocol, endpoint) -> bool:
        return protocol == "email" and endpoint not in self.confirmed_endpoints

    def _after_list_subscriptions(self, parsed):
        for sub in parsed.get("Subscriptions", []):
            if self._pending(sub.get("Protocol"), sub.get("Endpoint")):
                sub["SubscriptionArn"] = PENDING

    def _after_subscription_attributes(self, parsed):
        attributes = parsed.get("Attributes", {})
        if self._pending(attributes.get("Protocol"), attributes.get("Endpoint")):
            attributes.update(PendingConfirmation="true", ConfirmationWasAuthenticated="false")

    def _unsubscribe(self, body):
        arn = body.get("SubscriptionArn", "")
        sub = self._sns_subscription(arn)
        if arn == PENDING or (sub is not None and self._pending(sub.protocol, sub.endpoint)):
            return refuse("InvalidParameter", "Invalid parameter: SubscriptionArn (a subscription pending "
                                              "confirmation cannot be deleted)", ORDER)
        return None

    def _put_dashboard(self, params):
        import json

        try:
            widgets = json.loads(params.get("DashboardBody", "")).get("widgets", [])
        except ValueError:
            return None  # moto's own answer
        errors = []
        for n, widget in enumerate(widgets):
            if widget.get("type") != "metric":
                continue
            properties = widget.get("properties") or {}
            if not properties.get("region"):
                errors.append(f"/widgets/{n}/properties: Should have required property 'region'")
            for m, metric in enumerate(properties.get("metrics") or []):
                names = [x for x in metric if isinstance(x, str)]
                if len(names) < 2 or any(not x for x in names):
                    errors.append(f"/widgets/{n}/properties/metrics/{m}: Should NOT have fewer than 2 items "
                                  "(or an empty string)")
        if errors:
            return refuse("InvalidParameterInput", f"The dashboard body is invalid, there are {len(errors)} "
                                                   f"validation errors: {errors}", "validation")
        return None
