"""The web ACL's association with the load balancer (--waf): a relationship, without tags."""

from provisioner.engine.context import Resource
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import lookup

from steps.edge.load_balancer import LOAD_BALANCER_ARN
from steps.edge.web_acl import WEB_ACL_ARN


@register
class WebAclAssociation(Step):
    """Every request to the load balancer passes the web ACL."""

    kind = "web_acl_association"
    tagged = False
    found_through = "web_acl"
    # The load balancer (the ARN it names) is gone: so is the association.
    gone_codes = frozenset({"WAFNonexistentItemException"})
    aws_type = "AWS::WAFv2::WebACLAssociation"
    # AssociateWebACL also needs the right to set the ACL on the load balancer itself.
    iam = Iam(create=(actions("wafv2:AssociateWebACL", on=(WEB_ACL_ARN, LOAD_BALANCER_ARN)),
                      actions("elasticloadbalancing:SetWebACL", on=LOAD_BALANCER_ARN)),
              read=(actions("wafv2:GetWebACLForResource"),),
              change=(actions("wafv2:AssociateWebACL", on=(WEB_ACL_ARN, LOAD_BALANCER_ARN)),
                      actions("elasticloadbalancing:SetWebACL", on=LOAD_BALANCER_ARN)),
              delete=(actions("wafv2:DisassociateWebACL", on=LOAD_BALANCER_ARN),
                      actions("elasticloadbalancing:SetWebACL", on=LOAD_BALANCER_ARN)))

    def __init__(self):
        super().__init__("web-acl-association", depends_on=("web-acl", "load-balancer"))

    @classmethod
    def instances(cls, config):
        return [cls()] if config.waf else []

    def find_all(self, ctx, known_id):
        balancer, acl = ctx.dep("load-balancer"), ctx.dep("web-acl")
        if balancer is None or acl is None:
            return []
        answer = lookup(ctx.client("wafv2").get_web_acl_for_resource, ResourceArn=balancer.id)
        live = (answer or {}).get("WebACL")
        # Another ACL on our load balancer (set by hand) is not this association: `up` replaces it.
        if live is None or live.get("ARN") != acl.id:
            return []
        return [Resource(id=balancer.id, attrs={"load_balancer_arn": balancer.id, "web_acl_arn": acl.id})]

    def create(self, ctx):
        balancer, acl = ctx.dep("load-balancer"), ctx.dep("web-acl")
        # A load balancer made moments ago can be unknown to WAF (WAFUnavailableEntityException).
        ctx.retry("waf-association", ctx.client("wafv2").associate_web_acl,
                  WebACLArn=acl.id, ResourceArn=balancer.id)
        return Resource(id=balancer.id, attrs={"load_balancer_arn": balancer.id, "web_acl_arn": acl.id})

    def delete(self, ctx, resource):
        ctx.client("wafv2").disassociate_web_acl(ResourceArn=resource.id)

    def describe(self, resource):
        return f"{resource.attrs.get('web_acl_arn', '?').split('/')[-2]} on the load balancer"
