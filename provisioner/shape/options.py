"""Every option of a stack's shape, declared once: its flag(s), its stack-file key, its type, its
default as users read it, its help, how a given value becomes the configuration's, and the steps
it affects. The click options of `up`, `plan`, `policy` and `fleet up`, the stack file's keys and
their checks (provisioner/shape/stackfile.py) and the README's table (`python3 -m provisioner.shape.options
--markdown`) are all made from this list; StackConfig's validate() checks the values together.

Adding a tier's option is one declaration here (and its field in StackConfig) plus its steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from provisioner.engine.errors import ConfigError


@dataclass(frozen=True)
class Option:
    key: str                  # the stack file's key, and the click parameter's name
    flags: str                # "--vpc-cidr", or "--bastion/--no-bastion" (a switch)
    kind: type                # str, int, bool, list (of strings)
    help: str
    default: str              # the default as users read it
    field: str | None = None  # StackConfig's field it sets (None: combined, see overrides())
    steps: tuple[str, ...] = ()
    metavar: str | None = None
    flag_only: bool = False   # a bare flag (`--allow-wide-ssh`): on, or not given
    more: str = ""            # for the README's table, beyond the help text

    @property
    def flag(self) -> str:
        return self.flags.split("/")[0]


def _cidr_pair(flag: str):
    def parse(value):
        from provisioner.shape.config import parse_cidr_pair

        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{flag} takes CIDRs as strings, got {value!r}")
            value = ",".join(value)
        return parse_cidr_pair(value, flag)
    return parse


def _zones(value):
    from provisioner.shape.config import parse_zones

    return parse_zones(value)


def _ssh_cidr(value):
    from provisioner.shape.config import normalize_ssh_cidr

    return normalize_ssh_cidr(value)


def _countries(value):
    from provisioner.shape.config import parse_countries

    return parse_countries(value)


PARSE: dict[str, Callable[[Any], Any]] = {
    "block_countries": _countries,
    "public_subnets": _cidr_pair("--public-subnets"),
    "data_subnets": _cidr_pair("--data-subnets"),
    "private_subnets": _cidr_pair("--private-subnets"),
    "ssh_cidr": _ssh_cidr,
    "zones": _zones,
}

OPTIONS: tuple[Option, ...] = (
    Option("vpc_cidr", "--vpc-cidr", str, "VPC CIDR", "10.0.0.0/16", "vpc_cidr", ("vpc",)),
    Option("public_subnets", "--public-subnets", list, "Public subnet CIDRs", "10.0.1.0/24,10.0.2.0/24",
           "public_subnet_cidrs", ("public-subnet-1", "public-subnet-2"), metavar="CIDR,CIDR"),
    Option("private_subnets", "--private-subnets", list, "Private subnet CIDRs", "10.0.11.0/24,10.0.12.0/24",
           "private_subnet_cidrs", ("private-subnet-1", "private-subnet-2"), metavar="CIDR,CIDR"),
    Option("zones", "--zones", list, "The two availability zones, e.g. us-east-1a,us-east-1c",
           "the region's first two zones that offer the instance type", "zones",
           ("public-subnet-1", "public-subnet-2", "private-subnet-1", "private-subnet-2"), metavar="ZONE,ZONE",
           more="a zone that does not offer the instance type is refused before anything is built; kept for "
                "the stack's life (subnets cannot move zones)"),
    Option("nat_per_az", "--nat-per-az/--single-nat", bool,
           "One NAT gateway per zone (resilient, twice the cost) or one shared", "single", "nat_per_az",
           ("nat-gateway-2", "nat-eip-2", "private-route-table-2")),
    Option("instance_type", "--instance-type", str, "EC2 instance type of the app instances", "t3.micro",
           "instance_type", ("launch-template",),
           more="checked against the region and both zones before anything is created"),
    Option("ami", "--ami", str, "AMI id", "the latest Ubuntu 24.04 LTS, from AWS's public SSM parameter", "ami",
           ("launch-template",), more="resolved once, for the instance type's architecture, and kept"),
    Option("min", "--min", int, "Auto Scaling Group minimum", "1", "min_size", ("auto-scaling-group",)),
    Option("desired", "--desired", int, "Instances to run", "2", "desired_capacity", ("auto-scaling-group",),
           more="must lie within min..max"),
    Option("max", "--max", int, "Auto Scaling Group maximum", "4", "max_size", ("auto-scaling-group",)),
    Option("grace_period", "--grace-period", int, "Health check grace period; must cover the first boot",
           "360, or 600 with --build-on-instance", "grace_period", ("auto-scaling-group", "launch-template"),
           metavar="SECONDS",
           more="240 (300 with --build-on-instance) to 7200: the first boot (Docker and a pull of the images, or "
                "both image builds) must fit in it, or the group replaces instances that are still booting"),
    Option("build_on_instance", "--build-on-instance/--build-in-aws", bool,
           "Build both images on each instance at boot (no ECR repository, no CodeBuild), or once in AWS with "
           "CodeBuild and pull them", "built once in AWS", "build_on_instance",
           ("image-repository", "build-role", "build-project", "image-build", "instance-role", "launch-template"),
           more="for accounts without CodeBuild, or to show the original lesson: minutes of 502s while a "
                "t3.micro runs `npm ci` and `next build`"),
    Option("domain", "--domain", str, "Name on the self-signed certificate", "<stack>.example.com", "domain",
           ("certificate",), more="the Common Name and SAN"),
    Option("certificate_arn", "--certificate-arn", str,
           "Use this ACM certificate (same region as the stack) instead of a self-signed one", "a self-signed one",
           "certificate_arn", ("certificate", "https-listener"),
           more="the self-signed one is RSA 2048, made locally with `cryptography` and imported into ACM (its "
                "private key is never written anywhere); a given certificate is never deleted, and must be in "
                "the stack's region and issued"),
    Option("ttl", "--ttl", str, "Expire the stack after this long (e.g. 4h, 90m, 2d; `never` to clear): "
           "`provision reap` deletes expired stacks", "no expiry", None, ("every resource's provision:expires-at",),
           metavar="DURATION", more="at most a year; stamped on every resource for `reap`"),
    Option("expires_at", "--expires-at", str, "Expire the stack at this time (ISO 8601, UTC if no zone)",
           "no expiry", None, ("every resource's provision:expires-at",), metavar="TIME",
           more="in the future and at most a year away"),
    Option("bastion", "--bastion/--no-bastion", bool,
           "A small SSH jump host in a public subnet, for `provision exec` and `provision ssh`", "no bastion",
           "bastion", ("bastion", "key-pair", "bastion-security-group", "launch-template")),
    Option("ssh_cidr", "--ssh-cidr", str, "Who may SSH to the bastion, e.g. 203.0.113.7/32 (asked for at a "
           "terminal; 0.0.0.0/0 is never assumed)", "none", "ssh_cidr", ("bastion-security-group",),
           metavar="CIDR", more="required with `--bastion` when not at a terminal"),
    Option("allow_wide_ssh", "--allow-wide-ssh", bool, "Accept an --ssh-cidr wider than /16 (such as 0.0.0.0/0, "
           "the whole internet); remembered with that CIDR", "off", "allow_wide_ssh", ("bastion-security-group",),
           flag_only=True, more="warned about on every run"),
    # The data tier: each piece is used by the app (app/README.md says how).
    Option("database", "--database", str, "A managed database (RDS) for the catalog, carts and orders: postgres, "
           "mysql, mariadb or none", "none", "database",
           ("database", "database-subnet-group", "database-security-group", "data-subnet-1", "data-subnet-2",
            "instance-role", "launch-template"), metavar="ENGINE",
           more="in the data subnets, reachable from the app instances only; 20 GB gp3, encrypted, 7 days of "
                "backups; the master password is managed by Secrets Manager and never leaves it (the app reads it "
                "with the instance role); the engine cannot change in place"),
    Option("db_class", "--db-class", str, "The database's instance class", "db.t4g.micro", "db_class", ("database",),
           metavar="CLASS"),
    Option("db_multi_az", "--db-multi-az/--db-single-az", bool,
           "A standby in the other zone (survives a zone, twice the cost, creates in about 15 minutes)",
           "single zone", "db_multi_az", ("database",)),
    Option("db_deletion_protection", "--db-deletion-protection/--no-db-deletion-protection", bool,
           "RDS refuses to delete the database until this is turned off", "off (labs)", "db_deletion_protection",
           ("database",), more="`down` then stops and says how to turn it off"),
    Option("final_snapshot", "--final-snapshot/--no-final-snapshot", bool,
           "`down` keeps a final snapshot of the database (it bills until deleted)", "none: the database and its "
           "automated backups are deleted", "final_snapshot", ("database",), more="`down` names the snapshot"),
    Option("data_subnets", "--data-subnets", list, "Data subnet CIDRs (no route to the internet), with a database "
           "or a cache", "10.0.32.0/24,10.0.33.0/24", "data_subnet_cidrs", ("data-subnet-1", "data-subnet-2"),
           metavar="CIDR,CIDR"),
    Option("catalog", "--catalog", str, "Where the app keeps its catalog, users, orders and carts: json (the file in "
           "the image) or dynamodb (four tables)", "json, or the database when there is one", "catalog",
           ("products-table", "users-table", "orders-table", "cart-table", "instance-role", "launch-template"),
           metavar="STORE", more="on-demand billing, encrypted, point-in-time recovery; the instances may use "
                                 "exactly the item actions the app makes on them"),
    Option("cache", "--cache", str, "ElastiCache Redis (a primary and a replica across the zones) caching the "
           "catalog and carts: redis or none", "none", "cache",
           ("cache", "cache-subnet-group", "cache-security-group", "cache-auth-token", "data-subnet-1",
            "data-subnet-2", "instance-role", "launch-template"), metavar="ENGINE",
           more="encrypted in transit and at rest; its AUTH token kept in Secrets Manager"),
    Option("cache_node_type", "--cache-node-type", str, "The cache's node type", "cache.t4g.micro", "cache_node_type",
           ("cache",), metavar="TYPE"),
    Option("shared_files", "--shared-files/--no-shared-files", bool, "An encrypted EFS file system mounted by every "
           "instance (order receipts)", "off", "shared_files",
           ("shared-files", "shared-files-mount-1", "shared-files-mount-2", "shared-files-access-point",
            "files-security-group", "instance-role", "launch-template")),
    Option("waf", "--waf/--no-waf", bool, "A WAF web ACL on the load balancer: AWS's managed rules (common, SQL "
           "injection, known bad inputs), a rate limit per address and an optional geo block", "no WAF", "waf",
           ("waf-log-group", "web-acl", "web-acl-association"),
           more="logs to CloudWatch Logs `aws-waf-logs-<stack>` (30 days); about $5/month plus $1 per rule and "
                "$0.60 per million requests"),
    Option("rate_limit", "--rate-limit", int, "WAF: block an address above this many requests per 5 minutes",
           "1000", "waf_rate_limit", ("web-acl",), metavar="REQUESTS", more="10 to 2,000,000,000; with --waf"),
    Option("block_countries", "--block-countries", list, "WAF: block requests from these countries (ISO codes, "
           "e.g. DE,FR; \"\" for none)", "none", "waf_block_countries", ("web-acl",), metavar="CC,CC",
           more="with --waf; by the address's country as AWS WAF reads it"),
    Option("cdn", "--cdn/--no-cdn", bool, "A CloudFront distribution in front: images from the bucket through "
           "Origin Access Control (the bucket is no longer public), the rest from the load balancer, which "
           "then refuses requests that bypass CloudFront", "no CDN", "cdn",
           ("origin-access-control", "cloudfront-distribution", "assets-bucket", "https-listener",
            "api-routing-rule", "cdn-frontend-rule", "launch-template"),
           more="the URL becomes the distribution's; creating, disabling and deleting it take minutes each"),
    Option("audit", "--audit/--no-audit", bool, "A customer KMS key, CloudTrail, VPC flow logs and GuardDuty", "off", "audit", ()),
)
BY_KEY = {o.key: o for o in OPTIONS}


def overrides(values: dict[str, Any]) -> dict:
    """StackConfig overrides (None: not given) from option values by key (a flag's raw value,
    or a stack file's); raises ConfigError for a value its option refuses."""
    from provisioner.account.expiry import expiry_from_options

    out: dict[str, Any] = {}
    for option in OPTIONS:
        if option.field is None:
            continue
        value = values.get(option.key)
        if value is not None and option.key in PARSE:
            value = PARSE[option.key](value)
        out[option.field] = value
    out["expires_at"] = expiry_from_options(values.get("ttl"), values.get("expires_at"))
    # The permission is for the CIDR it came with: a new --ssh-cidr without the flag drops it, and
    # no flag and no CIDR keep what the stack was built with.
    wide, cidr = values.get("allow_wide_ssh"), values.get("ssh_cidr")
    out["allow_wide_ssh"] = True if wide else (False if cidr is not None else None)
    return out


def click_options(f):
    """Decorate a click command with every option, in the order declared."""
    import click

    for option in reversed(OPTIONS):
        kwargs: dict[str, Any] = {"help": f"{option.help} [{option.default}]"}
        if option.flag_only:
            kwargs.update(is_flag=True, default=None, help=option.help + ".")
        elif option.kind is bool:
            kwargs["default"] = None
        elif option.kind is int:
            kwargs["type"] = int
        if option.metavar:
            kwargs["metavar"] = option.metavar
        f = click.option(option.flags, option.key, **kwargs)(f)
    return f


def markdown_table() -> str:
    """The README's table of shape options."""
    rows = ["| option | stack file key | default | meaning |", "| --- | --- | --- | --- |"]
    for option in OPTIONS:
        flags = " / ".join(f"`{f}`" for f in option.flags.split("/"))
        if option.metavar:
            flags = flags[:-1] + f" {option.metavar}`"
        meaning = option.help + (f"; {option.more}" if option.more else "")
        rows.append(f"| {flags} | `{option.key}` | {option.default} | {meaning} |".replace("\n", " "))
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python3 -m provisioner.shape.options --markdown
    print(markdown_table(), end="")
