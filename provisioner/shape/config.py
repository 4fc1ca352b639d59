"""What a stack is made of, validated before anything touches AWS."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field

from provisioner.engine.errors import ConfigError

DEFAULT_STACK = "stylesphere"

# The longest name the tool derives from a stack is a target group's, "<stack>-frontend", and
# ELBv2 caps target group (and load balancer) names at 32 characters.
LONGEST_NAME_SUFFIX = "-frontend"
AWS_NAME_LIMIT = 32
STACK_NAME_MAX = AWS_NAME_LIMIT - len(LONGEST_NAME_SUFFIX)
# Every input pattern here is anchored with \A...\Z and used with fullmatch: `$` also matches
# before a trailing newline, so `--stack $'abc\n'` passed and built 21 resources before AWS
# refused the name. ASCII classes only: `\d` takes any script's digits ("١", "１"), and
# IGNORECASE would let the Kelvin sign pass as k and a dotless ı as i.
# Lower case only: the stack name also goes into the S3 bucket name, which allows no capitals.
# ELBv2 names may not start or end with a hyphen; S3 rejects consecutive ones next to dots.
STACK_NAME_RE = re.compile(r"\A[a-z](?:[a-z0-9]|-(?=[a-z0-9]))*\Z")

ZONE_COUNT = 2

DEFAULT_INSTANCE_TYPE = "t3.micro"
# The bastion (`--bastion`) only relays SSH: the smallest current general-purpose type.
BASTION_INSTANCE_TYPE = "t3.micro"
# ACM refuses a certificate whose Common Name is longer than 64 characters.
CERTIFICATE_CN_MAX = 64
# The ASG's health check grace period must cover the first boot: with --build-on-instance the
# Docker install and both image builds on a micro instance; by default the Docker install and a
# pull of the images built in AWS. See userdata.DEFAULT_GRACE_PERIOD_SECONDS.
DEFAULT_GRACE_PERIOD = 600
MIN_GRACE_PERIOD = 300
DEFAULT_PULL_GRACE_PERIOD = 360
MIN_PULL_GRACE_PERIOD = 240
MAX_GRACE_PERIOD = 7200
INSTANCE_TYPE_RE = re.compile(r"\A[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.[a-z0-9]+\Z")
AMI_RE = re.compile(r"\Aami-(?:[0-9a-f]{8}|[0-9a-f]{17})\Z")
CERTIFICATE_ARN_RE = re.compile(
    r"\Aarn:aws[a-z-]*:acm:(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]+):(?P<account>[0-9]{12}):certificate/[0-9a-f-]{36}\Z")
# The data tier: the smallest current classes (Graviton), which support Multi-AZ and encryption.
DEFAULT_DB_CLASS = "db.t4g.micro"
DEFAULT_CACHE_NODE_TYPE = "cache.t4g.micro"
DATABASE_ENGINES = ("postgres", "mysql", "mariadb")
DB_CLASS_RE = re.compile(r"\Adb\.[a-z0-9]+\.[a-z0-9]+\Z")
CACHE_NODE_TYPE_RE = re.compile(r"\Acache\.[a-z0-9]+\.[a-z0-9]+\Z")
DNS_LABEL_RE = re.compile(r"\A(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
SSH_CIDR_HINT = "--ssh-cidr 203.0.113.7/32 (your address; `curl https://checkip.amazonaws.com`)"
# The widest SSH source the bastion takes without --allow-wide-ssh: a /16 (65,536 addresses, a
# campus or a provider's block). Wider is a good part of the internet, whose scanners find an
# open port 22 within minutes of the bastion getting its public address.
WIDEST_SSH_PREFIX = 16
# WAF's rate-based rule: requests from one address per 5-minute window (AWS takes 10 to 2e9).
DEFAULT_RATE_LIMIT = 1000
MIN_RATE_LIMIT = 10
MAX_RATE_LIMIT = 2_000_000_000
COUNTRY_CODE_RE = re.compile(r"\A[A-Z]{2}\Z")


@dataclass
class StackConfig:
    """Everything `up` needs to know about the stack's shape. Saved in the state file so that
    later commands (and a later `up` without flags) use what the stack was built with."""

    vpc_cidr: str = "10.0.0.0/16"
    public_subnet_cidrs: list[str] = field(default_factory=lambda: ["10.0.1.0/24", "10.0.2.0/24"])
    private_subnet_cidrs: list[str] = field(default_factory=lambda: ["10.0.11.0/24", "10.0.12.0/24"])
    nat_per_az: bool = False
    # Filled in at preflight from the region's available zones, then kept stable in state.
    zones: list[str] = field(default_factory=list)
    # The compute and edge tier.
    instance_type: str = DEFAULT_INSTANCE_TYPE
    ami: str | None = None               # None: the latest Ubuntu 24.04 LTS, from SSM at create time
    min_size: int = 1
    desired_capacity: int = 2
    max_size: int = 4
    domain: str | None = None            # None: <stack>.example.com (the self-signed certificate's name)
    certificate_arn: str | None = None   # None: a self-signed certificate imported into ACM
    # None: the boot path's own default (a pull needs less than a build on the instance).
    grace_period: int | None = None
    # --build-on-instance: no ECR repository or CodeBuild; each instance builds both images at
    # boot, as before the images were built in AWS.
    build_on_instance: bool = False
    # When `provision reap` may delete the stack: "YYYY-MM-DDTHH:MM:SSZ" (UTC), "never", or None
    # (not set here: an expiry tag already on the resources is left as it is).
    expires_at: str | None = None
    # Remote diagnostics: a bastion in a public subnet, reachable on SSH from `ssh_cidr` only.
    bastion: bool = False
    ssh_cidr: str | None = None
    # --allow-wide-ssh: the user knows that ssh_cidr is wider than a /16. Kept with that CIDR (a
    # later plain `up` needs no flag); a new --ssh-cidr given without the flag clears it.
    allow_wide_ssh: bool = False
    # Classroom fleets: the roster a stack was made from and its student, as tags (`list`,
    # `cleanup --roster` and `fleet` find a class's stacks by them).
    roster: str | None = None
    student: str | None = None
    # The data tier. A database or a cache puts them in two data subnets with no route out.
    data_subnet_cidrs: list[str] = field(default_factory=lambda: ["10.0.32.0/24", "10.0.33.0/24"])
    database: str = "none"               # none | postgres | mysql | mariadb (RDS)
    db_class: str = DEFAULT_DB_CLASS
    db_multi_az: bool = False
    db_deletion_protection: bool = False
    # `down` takes a final snapshot (which keeps billing) only when asked.
    final_snapshot: bool = False
    catalog: str = "json"                # json (the file in the image) | dynamodb (four tables)
    cache: str = "none"                  # none | redis (ElastiCache, a primary and a replica)
    cache_node_type: str = DEFAULT_CACHE_NODE_TYPE
    shared_files: bool = False           # EFS, mounted by every instance
    # The edge tier's options (all off by default). --waf: a regional WAFv2 web ACL on the load
    # balancer (AWS's managed rule groups, a rate-based rule, an optional geo block), logging to
    # CloudWatch Logs.
    waf: bool = False
    waf_rate_limit: int = DEFAULT_RATE_LIMIT
    waf_block_countries: list[str] = field(default_factory=list)
    # --cdn: a CloudFront distribution in front of the load balancer and the assets bucket; the
    # load balancer then answers 403 to a request without the distribution's secret header.
    cdn: bool = False
    # --audit: a customer KMS key, a CloudTrail trail, VPC flow logs and GuardDuty.
    audit: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StackConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def merged(self, overrides: dict) -> "StackConfig":
        """This config with the options the user gave on the command line (None = not given)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def replacements(self, new: "StackConfig") -> list[str]:
        """What `new` changes that AWS cannot change in place (a VPC's or subnet's CIDR, a
        subnet's zone). Zones not chosen yet (a state from before they were recorded) are none."""
        fields = {"vpc_cidr": "--vpc-cidr", "public_subnet_cidrs": "--public-subnets",
                  "private_subnet_cidrs": "--private-subnets", "zones": "--zones"}
        if self.data_subnets and new.data_subnets:
            fields["data_subnet_cidrs"] = "--data-subnets"
        # An engine cannot be changed in place: a new database, and the data goes with the old.
        if self.database != "none" and new.database not in ("none", self.database):
            fields["database"] = "--database"
        return [f"{option} {getattr(self, name)} -> {getattr(new, name)}"
                for name, option in fields.items()
                if getattr(self, name) != getattr(new, name) and (name != "zones" or self.zones and new.zones)]

    def superset(self) -> "StackConfig":
        """The config whose steps include every optional resource, so that `down` looks for
        all of them whatever the stack was last built with."""
        # Without --certificate-arn, the certificate step looks for the stack's own (tagged,
        # self-signed) certificate, also one left from before an ARN was given, and never
        # for the user's certificate, which is not the stack's to delete.
        # The image build's steps exist only without --build-on-instance.
        # The data tier: every kind of it (the engine only changes the port its group opens).
        return dataclasses.replace(self, nat_per_az=True, certificate_arn=None, bastion=True, build_on_instance=False,
                                   database=self.database if self.database != "none" else "postgres",
                                   catalog="dynamodb", cache="redis", shared_files=True, waf=True, cdn=True)

    @property
    def grace_seconds(self) -> int:
        """The health check grace period in force: the one given, else the boot path's default."""
        if self.grace_period is not None:
            return self.grace_period
        return DEFAULT_GRACE_PERIOD if self.build_on_instance else DEFAULT_PULL_GRACE_PERIOD

    @property
    def min_grace_period(self) -> int:
        return MIN_GRACE_PERIOD if self.build_on_instance else MIN_PULL_GRACE_PERIOD

    @property
    def data_subnets(self) -> bool:
        """A database or a cache lives in the data subnets (DynamoDB and EFS need none)."""
        return self.database != "none" or self.cache != "none"

    @property
    def nat_count(self) -> int:
        return ZONE_COUNT if self.nat_per_az else 1

    def domain_for(self, stack: str) -> str:
        return self.domain or f"{stack}.example.com"

    def certificate_region(self) -> str | None:
        match = CERTIFICATE_ARN_RE.fullmatch(self.certificate_arn or "")
        return match.group("region") if match else None

    def validate(self) -> None:
        try:
            vpc = ipaddress.IPv4Network(self.vpc_cidr)
        except ValueError as e:
            raise ConfigError(f"invalid VPC CIDR {self.vpc_cidr!r}: {e}") from None
        # ipaddress also reads "10.0.0.0/016" and "10.0.0.0/255.255.0.0"; EC2 gets the text as
        # typed, so only the form ipaddress writes back goes through.
        if str(vpc) != self.vpc_cidr:
            raise ConfigError(f"VPC CIDR {self.vpc_cidr!r} is not written as a network", hint=f"--vpc-cidr {vpc}")
        if not 16 <= vpc.prefixlen <= 28:
            raise ConfigError(
                f"VPC CIDR {self.vpc_cidr} has prefix /{vpc.prefixlen}; AWS allows /16 to /28")
        if not vpc.is_private:
            raise ConfigError(f"VPC CIDR {self.vpc_cidr} is not a private (RFC 1918) range",
                              hint="use a range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
        subnets: list[tuple[str, ipaddress.IPv4Network]] = []
        tiers = [("public", self.public_subnet_cidrs), ("private", self.private_subnet_cidrs)]
        if self.data_subnets:
            tiers.append(("data", self.data_subnet_cidrs))
        for tier, cidrs in tiers:
            if len(cidrs) != ZONE_COUNT:
                raise ConfigError(f"{tier} subnets: need exactly {ZONE_COUNT} CIDRs (one per zone), got {len(cidrs)}")
            for cidr in cidrs:
                try:
                    net = ipaddress.IPv4Network(cidr)
                except ValueError as e:
                    raise ConfigError(f"invalid {tier} subnet CIDR {cidr!r}: {e}") from None
                if str(net) != cidr:
                    raise ConfigError(f"{tier} subnet CIDR {cidr!r} is not written as a network",
                                      hint=f"--{tier}-subnets with {net}")
                if not net.subnet_of(vpc):
                    raise ConfigError(f"{tier} subnet {cidr} is not inside the VPC CIDR {vpc}")
                if not 16 <= net.prefixlen <= 28:
                    raise ConfigError(f"{tier} subnet {cidr} has prefix /{net.prefixlen}; AWS allows /16 to /28")
                for other_name, other in subnets:
                    if net.overlaps(other):
                        raise ConfigError(f"{tier} subnet {cidr} overlaps {other_name} subnet {other}")
                subnets.append((tier, net))
        self.validate_compute()
        self.validate_data()

    def validate_data(self) -> None:
        if self.database not in ("none", *DATABASE_ENGINES):
            raise ConfigError(f"--database {self.database!r}: not an engine the tool builds",
                              hint="--database postgres, mysql or mariadb (or none)")
        if not DB_CLASS_RE.fullmatch(self.db_class or ""):
            raise ConfigError(f"invalid database class {self.db_class!r}", hint=f"e.g. --db-class {DEFAULT_DB_CLASS}")
        if self.catalog not in ("json", "dynamodb"):
            raise ConfigError(f"--catalog {self.catalog!r}: json or dynamodb")
        if self.cache not in ("none", "redis"):
            raise ConfigError(f"--cache {self.cache!r}: redis or none")
        if not CACHE_NODE_TYPE_RE.fullmatch(self.cache_node_type or ""):
            raise ConfigError(f"invalid cache node type {self.cache_node_type!r}",
                              hint=f"e.g. --cache-node-type {DEFAULT_CACHE_NODE_TYPE}")
        if self.database == "none" and (self.db_multi_az or self.db_deletion_protection or self.final_snapshot):
            given = [f for f, on in (("--db-multi-az", self.db_multi_az),
                                     ("--db-deletion-protection", self.db_deletion_protection),
                                     ("--final-snapshot", self.final_snapshot)) if on]
            raise ConfigError(f"{', '.join(given)} without a database", hint="add --database postgres|mysql|mariadb")

    def validate_tags(self) -> None:
        """The values that become tags on every resource, against AWS's tag rules: EC2 takes
        nearly anything, and the first refusal (ACM, IAM, ELBv2) would come a score of resources
        in. A fleet's roster and student are checked line by line when the roster is read; this
        also covers a state file written by hand or by an older version. Not part of validate():
        `down` and `status` must still work on a stack saved with such a value."""
        from provisioner.engine.resource import TAG_EXPIRES_AT, TAG_ROSTER, TAG_STUDENT
        from provisioner.shape.tags import check_tag_value

        for key, value, label in ((TAG_ROSTER, self.roster, "roster"), (TAG_STUDENT, self.student, "student"),
                                  (TAG_EXPIRES_AT, self.expires_at, "expiry")):
            check_tag_value(key, value, f"the stack's {label}",
                            hint="the state file holds it (edited, or from an older version); `provision down` "
                                 "still removes a stack saved with it")

    def validate_compute(self) -> None:
        if not INSTANCE_TYPE_RE.fullmatch(self.instance_type or ""):
            raise ConfigError(f"invalid instance type {self.instance_type!r}",
                              hint="use an EC2 instance type such as t3.micro, t3.small or m7i.large")
        if self.ami is not None and not AMI_RE.fullmatch(self.ami):
            raise ConfigError(f"invalid AMI id {self.ami!r}", hint="an AMI id looks like ami-0123456789abcdef0")
        for name, value in (("--min", self.min_size), ("--desired", self.desired_capacity), ("--max", self.max_size)):
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a whole number of instances, 0 or more (got {value!r})")
        if self.max_size < 1:
            raise ConfigError("--max must be at least 1")
        if self.min_size > self.max_size:
            raise ConfigError(f"--min {self.min_size} is larger than --max {self.max_size}")
        if not self.min_size <= self.desired_capacity <= self.max_size:
            raise ConfigError(
                f"--desired {self.desired_capacity} is outside --min {self.min_size} .. --max {self.max_size}",
                hint="the Auto Scaling Group refuses a desired capacity outside its minimum and maximum")
        if self.grace_period is not None and (
                not isinstance(self.grace_period, int) or isinstance(self.grace_period, bool)
                or not self.min_grace_period <= self.grace_period <= MAX_GRACE_PERIOD):
            path = "with --build-on-instance" if self.build_on_instance else "when the instances pull their images"
            raise ConfigError(
                f"--grace-period {self.grace_period!r} must be {self.min_grace_period} to {MAX_GRACE_PERIOD} "
                f"seconds {path}",
                hint="the first boot (Docker, then a pull of the images, or both image builds with "
                     "--build-on-instance) takes minutes; shorter grace periods replace instances that are "
                     "still booting")
        if self.domain is not None:
            validate_domain(self.domain)
        from provisioner.account.expiry import validate_expiry

        validate_expiry(self.expires_at)
        if self.ssh_cidr is not None:
            normalized = normalize_ssh_cidr(self.ssh_cidr)
            if normalized != self.ssh_cidr:
                raise ConfigError(f"--ssh-cidr {self.ssh_cidr!r} is not written as a network",
                                  hint=f"--ssh-cidr {normalized}")
        if self.bastion and not self.ssh_cidr:
            raise ConfigError("--bastion needs --ssh-cidr, the addresses SSH is allowed from; refusing to guess "
                              "0.0.0.0/0 (the whole internet)", hint=SSH_CIDR_HINT)
        self.validate_edge()
        if self.certificate_arn is not None and not CERTIFICATE_ARN_RE.fullmatch(self.certificate_arn):
            raise ConfigError(f"invalid certificate ARN {self.certificate_arn!r}",
                              hint="an ACM certificate ARN looks like "
                                   "arn:aws:acm:us-east-1:123456789012:certificate/<uuid>")

    def validate_edge(self) -> None:
        limit = self.waf_rate_limit
        if not isinstance(limit, int) or isinstance(limit, bool) or not MIN_RATE_LIMIT <= limit <= MAX_RATE_LIMIT:
            raise ConfigError(f"--rate-limit {limit!r} must be {MIN_RATE_LIMIT} to {MAX_RATE_LIMIT:,} requests per "
                              "address per 5 minutes (AWS WAF's range)")
        for code in self.waf_block_countries:
            if not COUNTRY_CODE_RE.fullmatch(code):
                raise ConfigError(f"--block-countries: {code!r} is not a country code",
                                  hint="two capital letters per country (ISO 3166-1 alpha-2), e.g. --block-countries DE,FR")

    def check_ssh_exposure(self) -> str | None:
        """Refuse a bastion whose SSH rule is wider than a /16 unless --allow-wide-ssh was
        given; with it, the warning to show. Not part of validate(): `up` and `plan` check it,
        while `down`, `status` and the rest must still work on a stack saved with such a rule."""
        if not self.bastion or not self.ssh_cidr:
            return None
        network = ipaddress.IPv4Network(self.ssh_cidr)
        if network.prefixlen >= WIDEST_SSH_PREFIX:
            return None
        reach = "the whole internet" if network.prefixlen == 0 else f"{network.num_addresses:,} addresses"
        if not self.allow_wide_ssh:
            raise ConfigError(f"--ssh-cidr {self.ssh_cidr} opens the bastion's SSH port to {reach}; refusing "
                              f"anything wider than /{WIDEST_SSH_PREFIX} without --allow-wide-ssh",
                              hint=f"{SSH_CIDR_HINT}, or add --allow-wide-ssh if that range is really meant")
        return (f"the bastion accepts SSH from {self.ssh_cidr} ({reach}, --allow-wide-ssh); "
                "your own address/32 is safer")


def validate_domain(domain: str) -> str:
    """A name the self-signed certificate can carry as its Common Name and SAN."""
    name = domain[2:] if domain.startswith("*.") else domain
    labels = name.split(".")
    if (domain != domain.lower() or len(labels) < 2 or not all(DNS_LABEL_RE.fullmatch(label) for label in labels)
            or labels[-1].isdigit()):
        raise ConfigError(f"invalid domain {domain!r}",
                          hint="use a lower-case DNS name such as shop.example.com")
    if len(domain) > CERTIFICATE_CN_MAX:
        raise ConfigError(f"domain {domain!r} is {len(domain)} characters; a certificate's Common Name "
                          f"holds at most {CERTIFICATE_CN_MAX}")
    return domain


def normalize_ssh_cidr(value: str | None) -> str | None:
    """The bastion's SSH source as a network: a bare IPv4 address becomes its /32
    ("203.0.113.7" -> "203.0.113.7/32"); a network with host bits set ("203.0.113.7/24") is
    refused rather than silently widened or narrowed. IPv4 only: the stack's VPC has no IPv6, so
    the bastion has a public IPv4 address alone and an IPv6 rule would let nobody in."""
    if value is None:
        return None
    text = value.strip()
    try:
        interface = ipaddress.ip_interface(text)   # an address alone is its own /32 (/128)
    except ValueError:
        raise ConfigError(f"invalid --ssh-cidr {value!r}: not an IPv4 address or network", hint=SSH_CIDR_HINT) from None
    if interface.version != 4:
        raise ConfigError(f"--ssh-cidr {value} is IPv6; the bastion has only a public IPv4 address",
                          hint=SSH_CIDR_HINT)
    network = interface.network
    if interface.ip != network.network_address:
        raise ConfigError(f"--ssh-cidr {value} has host bits set (the network is {network.with_prefixlen})",
                          hint=f"--ssh-cidr {network.with_prefixlen} for the whole network, or "
                               f"--ssh-cidr {interface.ip}/32 for that address alone")
    return network.with_prefixlen


def validate_stack_name(name: str) -> str:
    if not name:
        raise ConfigError("the stack name is empty")
    if len(name) > STACK_NAME_MAX:
        raise ConfigError(
            f"stack name {name!r} is {len(name)} characters; at most {STACK_NAME_MAX} fit, because "
            f"the longest derived name ('{name}{LONGEST_NAME_SUFFIX}', a target group) must fit "
            f"AWS's {AWS_NAME_LIMIT}-character limit")
    if not STACK_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid stack name {name!r}",
            hint="use lower-case letters, digits and single hyphens, starting with a letter "
                 "and not ending with a hyphen (e.g. 'stylesphere' or 'lab-alice')")
    return name


ZONE_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+[a-z](-[a-z0-9]+)?$")


def parse_zones(value) -> list[str] | None:
    """--zones a,b: two distinct zone names (us-east-1a, or a Local Zone's us-west-2-lax-1a)."""
    if value is None:
        return None
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"--zones takes zone names as strings, got {value!r}")
        value = ",".join(value)
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if len(parts) != ZONE_COUNT or len(set(parts)) != ZONE_COUNT:
        raise ConfigError(f"--zones takes {ZONE_COUNT} different comma-separated zone names, got {value!r}",
                          hint="e.g. --zones us-east-1a,us-east-1b")
    bad = [p for p in parts if not ZONE_NAME.match(p)]
    if bad:
        raise ConfigError(f"--zones: {bad[0]!r} is not a zone name", hint="e.g. --zones us-east-1a,us-east-1b")
    return parts


def parse_countries(value) -> list[str] | None:
    """--block-countries DE,FR: ISO 3166-1 alpha-2 codes, as WAF's geo match takes them; "" for none."""
    if value is None:
        return None
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"--block-countries takes country codes as strings, got {value!r}")
        value = ",".join(value)
    codes = [c.strip() for c in value.split(",") if c.strip()]
    if len(set(codes)) != len(codes):
        raise ConfigError(f"--block-countries names a country twice: {value!r}")
    return codes


def parse_cidr_pair(value: str | None, option: str) -> list[str] | None:
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if len(parts) != ZONE_COUNT:
        raise ConfigError(f"{option} takes {ZONE_COUNT} comma-separated CIDRs, got {value!r}")
    return parts
