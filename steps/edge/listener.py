from provisioner.engine.kinds import ELB_TAGS, FREE, Iam, Listing, actions
from provisioner.engine.registry import register

from steps.edge.elbv2 import ElbStep, actions_value, described, forward, listener_on

# TLS 1.3 and 1.2 only, forward-secret ciphers: AWS's recommended policy for new listeners.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Permanent (301) to the same host, path and query over HTTPS: browsers and crawlers remember it.
REDIRECT_TO_HTTPS = [{"Type": "redirect", "RedirectConfig": {
    "Protocol": "HTTPS", "Port": "443", "Host": "#{host}", "Path": "/#{path}", "Query": "#{query}",
    "StatusCode": "HTTP_301"}}]


# With --cdn: what the HTTPS listener answers a request without CloudFront's secret header (the
# rules forward only those that carry it), so the cache and the WAF cannot be gone around.
FORBIDDEN = [{"Type": "fixed-response", "FixedResponseConfig": {
    "StatusCode": "403", "ContentType": "text/plain", "MessageBody": "Forbidden"}}]

LISTENER_ARN = "arn:{partition}:elasticloadbalancing:{region}:{account}:listener/app/{stack}-*"


@register
class Listener(ElbStep):
    """HTTPS 443 (the certificate, default forward to the frontend) and HTTP 80 (301 to HTTPS)."""

    kind = "listener"
    gone_codes = frozenset({"ListenerNotFound"})
    not_found_codes = frozenset({"ListenerNotFound"})
    aws_type = "AWS::ElasticLoadBalancingV2::Listener"
    listing = Listing("listener", "elbv2", "describe_listeners", "Listeners", "ListenerArn", tags=ELB_TAGS,
                      parent="load_balancer", parent_param="LoadBalancerArn", price=FREE)
    iam = Iam(create=(actions("elasticloadbalancing:CreateListener", "elasticloadbalancing:AddTags",
                              on=(LISTENER_ARN, "arn:{partition}:elasticloadbalancing:{region}:{account}:"
                                                "loadbalancer/app/{stack}-*")),),
              read=(actions("elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeTags"),),
              change=(actions("elasticloadbalancing:ModifyListener", "elasticloadbalancing:AddTags",
                              on=LISTENER_ARN),),
              delete=(actions("elasticloadbalancing:DeleteListener", on=LISTENER_ARN),))
    arn_key = "ListenerArn"

    def __init__(self, protocol: str, port: int, depends_on):
        super().__init__(f"{protocol.lower()}-listener", depends_on=("load-balancer", *depends_on))
        self.protocol, self.port = protocol, port

    @classmethod
    def instances(cls, config):
        return [cls("HTTPS", 443, ("certificate", "frontend-target-group")), cls("HTTP", 80, ())]

    def attrs(self, item):
        return {"arn": item["ListenerArn"], "port": item["Port"]}

    def by_arn(self, ctx, arn):
        return described(ctx.client("elbv2").describe_listeners, "Listeners", ListenerArns=[arn])

    def candidates(self, ctx):
        listener = listener_on(ctx, self.port)
        return [listener] if listener else []

    def wanted(self, ctx) -> dict:
        """What the listener must be, as CreateListener / ModifyListener take it; None where a
        dependency does not exist yet (plan)."""
        if self.protocol == "HTTP":
            return {"Protocol": "HTTP", "Port": self.port, "DefaultActions": REDIRECT_TO_HTTPS}
        certificate, frontend = ctx.dep("certificate"), ctx.dep("frontend-target-group")
        return {"Protocol": "HTTPS", "Port": self.port, "SslPolicy": SSL_POLICY,
                "Certificates": [{"CertificateArn": certificate.id}] if certificate else None,
                "DefaultActions": FORBIDDEN if ctx.config.cdn else (forward(frontend.id) if frontend else None)}

    def create(self, ctx):
        tags = ctx.tags(self.name)
        # A certificate imported moments ago can be CertificateNotFound to ELB for a while.
        listener = ctx.retry("eventual-consistency", ctx.client("elbv2").create_listener,
                             LoadBalancerArn=ctx.dep("load-balancer").id, Tags=tags,
                             **self.wanted(ctx))["Listeners"][0]
        return self.created(listener, tags)

    def update(self, ctx, resource, apply):
        changes = super().update(ctx, resource, apply)
        live, wanted = resource.raw, self.wanted(ctx)
        differ = []
        if live.get("Protocol") != wanted["Protocol"]:
            differ.append(f"set protocol to {wanted['Protocol']} (was {live.get('Protocol')})")
        if "SslPolicy" in wanted and live.get("SslPolicy") != wanted["SslPolicy"]:
            differ.append(f"set SSL policy to {wanted['SslPolicy']} (was {live.get('SslPolicy')})")
        if wanted.get("Certificates") is not None:
            have = [c["CertificateArn"] for c in live.get("Certificates", [])]
            if have != [c["CertificateArn"] for c in wanted["Certificates"]]:
                differ.append(f"use certificate {wanted['Certificates'][0]['CertificateArn']} "
                              f"(was {', '.join(have) or 'none'})")
        if wanted["DefaultActions"] is not None and \
                actions_value(live.get("DefaultActions", [])) != actions_value(wanted["DefaultActions"]):
            differ.append(f"set default action to {describe_actions(wanted['DefaultActions'])} "
                          f"(was {describe_actions(live.get('DefaultActions', []))})")
        if apply and differ:
            ctx.client("elbv2").modify_listener(ListenerArn=resource.id,
                                                **{k: v for k, v in wanted.items() if v is not None})
        return changes + differ

    def delete(self, ctx, resource):
        ctx.client("elbv2").delete_listener(ListenerArn=resource.id)

    def describe(self, resource):
        listener = resource.raw
        detail = (f"{listener.get('Protocol')}:{listener.get('Port')} -> "
                  f"{describe_actions(listener.get('DefaultActions', []))}")
        if listener.get("Protocol") == "HTTPS":
            detail += f", {listener['SslPolicy']}"
        return detail


def describe_actions(actions: list[dict]) -> str:
    out = []
    for action in actions:
        if action["Type"] == "forward":
            arn = action.get("TargetGroupArn") or action.get("ForwardConfig", {}).get("TargetGroups", [{}])[0].get(
                "TargetGroupArn", "?")
            out.append(f"forward to {arn.split('/')[-2] if '/' in arn else arn}")
        elif action["Type"] == "fixed-response":
            out.append(f"answer {action.get('FixedResponseConfig', {}).get('StatusCode')}")
        elif action["Type"] == "redirect":
            config = action.get("RedirectConfig", {})
            out.append(f"redirect {config.get('StatusCode')} to {config.get('Protocol')}:{config.get('Port')}")
        else:
            out.append(action["Type"])
    return ", ".join(out) or "none"
