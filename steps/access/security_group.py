from provisioner.engine.kinds import FREE, Iam, actions, ec2_listing
from provisioner.engine.registry import Ec2Step, register

from steps.network.vpc import describe_eni, network_interfaces

ANYWHERE = {"ipv4": "0.0.0.0/0", "ipv6": "::/0"}
DATABASE_PORTS = {"postgres": 5432, "mysql": 3306, "mariadb": 3306}


@register
class SecurityGroup(Ec2Step):
    """`alb`: the load balancer, open to the internet on 80 and 443 (IPv4 and IPv6).
    `web`: the app instances, reachable only from the `alb` group on 3000 (frontend) and
    5000 (backend), and with --bastion on 22 from the `bastion` group; nothing from the internet.
    `bastion` (with --bastion): SSH on 22 from --ssh-cidr only.
    The data tier's, each open to the `web` group alone: `database` on the engine's port,
    `cache` on 6379 (Redis), `files` on 2049 (NFS, EFS's mount targets)."""

    kind = "security_group"
    gone_codes = frozenset({"InvalidGroup.NotFound", "InvalidGroupId.NotFound"})
    not_found_codes = frozenset({"InvalidGroup.NotFound", "InvalidGroupId.NotFound"})
    aws_type = "AWS::EC2::SecurityGroup"
    listing = ec2_listing("security_group", "describe_security_groups", "SecurityGroups", "GroupId", price=FREE)
    iam = Iam(create=(actions("ec2:CreateSecurityGroup", "ec2:CreateTags", "ec2:AuthorizeSecurityGroupIngress"),),
              read=(actions("ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules",
                            "ec2:DescribeNetworkInterfaces"),),
              change=(actions("ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:CreateTags"),),
              delete=(actions("ec2:DeleteSecurityGroup", "ec2:RevokeSecurityGroupIngress"),))
    describe_operation, result_key = "describe_security_groups", "SecurityGroups"
    id_field, id_filter, tag_resource_type = "GroupId", "group-id", "security-group"

    def __init__(self, role: str, description: str, rules, depends_on=()):
        super().__init__(f"{role}-security-group", depends_on=("vpc", *depends_on))
        self.role, self.description = role, description
        # (port, source) where source is "ipv4"/"ipv6" (anywhere), an IPv4 CIDR ("203.0.113.7/32")
        # or the name of a group step.
        self.rules = rules

    @classmethod
    def instances(cls, config):
        web_rules = [(3000, "alb-security-group"), (5000, "alb-security-group")]
        web_deps = ("alb-security-group",)
        groups = [cls("alb", "Load balancer: HTTP and HTTPS from anywhere",
                      [(port, family) for port in (80, 443) for family in ("ipv4", "ipv6")])]
        if config.bastion:
            # A group's description cannot be changed after creation, so it names the option,
            # not the CIDR: a new --ssh-cidr converges the rule and keeps the group.
            # Without a CIDR (the superset that `down` builds from a state that never had one)
            # the group still is found and deleted; it just has no rule to compare.
            groups.append(cls("bastion", "Bastion: SSH from --ssh-cidr only",
                              [(22, config.ssh_cidr)] if config.ssh_cidr else []))
            web_rules.append((22, "bastion-security-group"))
            web_deps += ("bastion-security-group",)
        # The same description with and without the bastion: it cannot change once created.
        groups.append(cls("web", "App instances: frontend and backend ports from the load balancer only",
                          web_rules, depends_on=web_deps))
        # Descriptions name no port: a group's description is fixed at creation, and the rules
        # converge (a new engine's port replaces the old one).
        if config.database != "none":
            groups.append(cls("database", "Database: its engine's port from the app instances only",
                              [(DATABASE_PORTS[config.database], "web-security-group")],
                              depends_on=("web-security-group",)))
        if config.cache != "none":
            groups.append(cls("cache", "Cache: Redis from the app instances only", [(6379, "web-security-group")],
                              depends_on=("web-security-group",)))
        if config.shared_files:
            groups.append(cls("files", "Shared files: NFS from the app instances only", [(2049, "web-security-group")],
                              depends_on=("web-security-group",)))
        return groups

    def attrs(self, item):
        return {"group_name": item["GroupName"]}

    def create(self, ctx):
        group = ctx.retry("eventual-consistency", ctx.ec2.create_security_group,
                          GroupName=f"{ctx.stack}-{self.role}", Description=self.description,
                          VpcId=ctx.dep("vpc").id,
                          TagSpecifications=ctx.tag_specifications("security-group", self.name))
        group_id = group["GroupId"]
        ctx.wait("ec2", "security_group_exists", GroupIds=[group_id], what="security group to exist")
        wanted = self._wanted(ctx)
        if wanted:
            ctx.retry("eventual-consistency", ctx.ec2.authorize_security_group_ingress, GroupId=group_id,
                      IpPermissions=[self._permission(ctx, rule) for rule in sorted(wanted, key=str)])
        return self.to_resource(self._describe(ctx, [{"Name": "group-id", "Values": [group_id]}])[0])

    def _wanted(self, ctx):
        """The rules as comparable tuples: (protocol, port, kind, source id)."""
        wanted = set()
        for port, source in self.rules:
            if source in ANYWHERE:
                wanted.add(("tcp", port, source, ANYWHERE[source]))
            elif "/" in source:  # a CIDR (config.validate admits IPv4 ones only)
                wanted.add(("tcp", port, "ipv6" if ":" in source else "ipv4", source))
            else:
                wanted.add(("tcp", port, "group", ctx.dep(source).id if ctx.dep(source) else source))
        return wanted

    @staticmethod
    def _live(item):
        live = set()
        for p in item.get("IpPermissions", []):
            proto, port = p.get("IpProtocol"), p.get("FromPort")
            live |= {(proto, port, "ipv4", r["CidrIp"]) for r in p.get("IpRanges", [])}
            live |= {(proto, port, "ipv6", r["CidrIpv6"]) for r in p.get("Ipv6Ranges", [])}
            live |= {(proto, port, "group", g["GroupId"]) for g in p.get("UserIdGroupPairs", [])}
        return live

    @staticmethod
    def _permission(ctx, rule):
        proto, port, kind, source = rule
        permission = {"IpProtocol": proto, "FromPort": port, "ToPort": port}
        if kind == "ipv4":
            permission["IpRanges"] = [{"CidrIp": source}]
        elif kind == "ipv6":
            permission["Ipv6Ranges"] = [{"CidrIpv6": source}]
        else:
            permission["UserIdGroupPairs"] = [{"GroupId": source}]
        return permission

    def update(self, ctx, resource, apply):
        changes = super().update(ctx, resource, apply)
        wanted, live = self._wanted(ctx), self._live(resource.raw)
        missing, extra = sorted(wanted - live, key=str), sorted(live - wanted, key=str)
        changes += [f"allow {r[0]}/{r[1]} from {r[3]}" for r in missing]
        changes += [f"remove rule {r[0]}/{r[1]} from {r[3]}" for r in extra]
        if apply and missing:
            ctx.ec2.authorize_security_group_ingress(GroupId=resource.id,
                                                     IpPermissions=[self._permission(ctx, r) for r in missing])
        if apply and extra:
            ctx.ec2.revoke_security_group_ingress(GroupId=resource.id,
                                                  IpPermissions=[self._permission(ctx, r) for r in extra])
        return changes

    def delete(self, ctx, resource):
        # AWS refuses while an interface (instance, load balancer) uses the group or another
        # group's rule references it.
        ctx.retry("dependency", ctx.ec2.delete_security_group, GroupId=resource.id,
                  blocked_by=lambda: security_group_blockers(ctx, resource.id))

    def outputs(self, resource):
        return {f"{self.role}_security_group_id": resource.id}

    def describe(self, resource):
        return ", ".join(f"{p}/{port} from {src}" for p, port, _, src in sorted(self._live(resource.raw), key=str))


def security_group_blockers(ctx, group_id):
    enis = network_interfaces(ctx, "group-id", group_id)
    referencing = ctx.ec2.describe_security_groups(
        Filters=[{"Name": "ip-permission.group-id", "Values": [group_id]}])["SecurityGroups"]
    return ", ".join([describe_eni(e) for e in enis]
                     + [f"rules of {g['GroupId']} ({g['GroupName']})" for g in referencing if g["GroupId"] != group_id])
