"""`provision verify`: the live stack against the design's rules and the AWS Security Hub
Foundational Security Best Practices (FSBP) controls that apply to its shape.

Each control is one declaration in CONTROLS: its id, title, why it matters, when it applies (a
reason when it does not), when the design breaks it on purpose (accepted, with the option that
makes it pass), and a check that reads AWS and returns pass or fail with the value it read.
Everything is read-only: the context's guard on `before-call` refuses any mutating call, as for
`plan` and `status`.

Probes (not in the sandbox, not with --no-probes) ask the stack itself over HTTP: port 80
redirects, /api/health answers, an image is public and a release is not.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

from botocore.exceptions import ClientError

from provisioner.commands.connection import GlobalOptions, guarded
from provisioner.engine.errors import EXIT_AWS, EXIT_OK, ConfigError
from provisioner.engine.retries import error_code
from provisioner.shape.config import StackConfig
from provisioner.ui.console import ConsoleReporter

PASS, FAIL, ACCEPTED, NOT_APPLICABLE = "PASS", "FAIL", "accepted", "n/a"

# ELB.17's list of recommended policies (Security Hub, "[ELB.17] Application and Network Load
# Balancers with listeners should use recommended security policies"): the TLS 1.3 ones.
RECOMMENDED_SSL_POLICIES = frozenset({
    "ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06", "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04", "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09", "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09"})
# RDS.9: the logs each engine must publish to CloudWatch Logs (the control's defaults).
RDS_LOG_EXPORTS = {"postgres": ("postgresql",), "mysql": ("audit", "error", "general", "slowquery"),
                   "mariadb": ("audit", "error", "general", "slowquery")}
APP_PORTS = (3000, 5000)
PROBE_TIMEOUT = 10.0


@dataclass
class Finding:
    passed: bool
    value: str


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    why: str
    check: Callable[["LiveStack"], Finding]
    # None when the control applies to this shape, else why it does not.
    not_applicable: Callable[[StackConfig], str | None] = lambda config: None
    # None unless the design breaks it on purpose: then (the reason, what makes it pass).
    accepted: Callable[[StackConfig], tuple[str, str] | None] = lambda config: None


@dataclass
class Result:
    id: str
    title: str
    result: str
    value: str
    why: str
    reason: str = ""

    def to_json(self) -> dict:
        return {"id": self.id, "title": self.title, "result": self.result, "value": self.value,
                "why": self.why, "reason": self.reason or None}


class LiveStack:
    """What the controls read, each read once: the stack's resources by the ids its state holds."""

    def __init__(self, ctx, resources: dict[str, dict], config: StackConfig, outputs: dict | None = None):
        self.ctx, self.config, self.outputs = ctx, config, outputs or {}
        self.ids = {name: r.get("id") for name, r in resources.items()}

    def id(self, step: str) -> str | None:
        return self.ids.get(step)

    # -- the edge ------------------------------------------------------------------------------
    @cached_property
    def load_balancer(self) -> dict | None:
        arn = self.id("load-balancer")
        if not arn:
            return None
        try:
            return self.ctx.client("elbv2").describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
        except ClientError as e:
            if error_code(e) == "LoadBalancerNotFound":
                return None
            raise

    @cached_property
    def lb_attributes(self) -> dict:
        if self.load_balancer is None:
            return {}
        return {a["Key"]: a["Value"] for a in self.ctx.client("elbv2").describe_load_balancer_attributes(
            LoadBalancerArn=self.load_balancer["LoadBalancerArn"])["Attributes"]}

    @cached_property
    def listeners(self) -> list[dict]:
        if self.load_balancer is None:
            return []
        return self.ctx.client("elbv2").describe_listeners(
            LoadBalancerArn=self.load_balancer["LoadBalancerArn"])["Listeners"]

    def rules(self, listener_arn: str) -> list[dict]:
        return self.ctx.client("elbv2").describe_rules(ListenerArn=listener_arn)["Rules"]

    @cached_property
    def web_acl(self) -> dict | None:
        if self.load_balancer is None:
            return None
        try:
            return self.ctx.client("wafv2").get_web_acl_for_resource(
                ResourceArn=self.load_balancer["LoadBalancerArn"]).get("WebACL")
        except ClientError as e:
            if error_code(e) == "WAFNonexistentItemException":
                return None
            raise

    @cached_property
    def certificate(self) -> dict | None:
        arn = self.config.certificate_arn or self.id("certificate")
        if not arn:
            return None
        return self.ctx.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]

    # -- the network ---------------------------------------------------------------------------
    @cached_property
    def security_groups(self) -> list[dict]:
        vpc = self.id("vpc")
        if not vpc:
            return []
        return self.ctx.ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]

    def group(self, step: str) -> dict | None:
        return next((g for g in self.security_groups if g["GroupId"] == self.id(step)), None)

    @cached_property
    def subnets(self) -> dict[str, dict]:
        names = {i: n for n, i in self.ids.items() if n.endswith(("-subnet-1", "-subnet-2")) and i}
        if not names:
            return {}
        found = self.ctx.ec2.describe_subnets(SubnetIds=sorted(names))["Subnets"]
        return {names[s["SubnetId"]]: s for s in found}

    @cached_property
    def flow_logs(self) -> list[dict]:
        logs = []
        for page in self.ctx.ec2.get_paginator("describe_flow_logs").paginate(
                Filters=[{"Name": "resource-id", "Values": [self.id("vpc") or "none"]}]):
            logs += page["FlowLogs"]
        return [f for f in logs if f.get("ResourceId") == self.id("vpc")]

    # -- compute -------------------------------------------------------------------------------
    @cached_property
    def group_of_instances(self) -> dict | None:
        name = self.id("auto-scaling-group")
        if not name:
            return None
        groups = self.ctx.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return groups[0] if groups else None

    @cached_property
    def instances(self) -> list[dict]:
        ids = [i["InstanceId"] for i in (self.group_of_instances or {}).get("Instances", [])]
        if self.id("bastion"):
            ids.append(self.id("bastion"))
        if not ids:
            return []
        found = []
        for reservation in self.ctx.ec2.describe_instances(InstanceIds=ids)["Reservations"]:
            found += [i for i in reservation["Instances"] if i["State"]["Name"] != "terminated"]
        return found

    @cached_property
    def launch_template_data(self) -> tuple[str, dict] | None:
        """The version the group launches from, and its data."""
        template = self.id("launch-template")
        if not template:
            return None
        spec = (self.group_of_instances or {}).get("LaunchTemplate") or {}
        version = str(spec.get("Version") or "$Default")
        found = self.ctx.ec2.describe_launch_template_versions(
            LaunchTemplateId=template, Versions=[version])["LaunchTemplateVersions"]
        if not found:
            return None
        return f"{template} v{found[0]['VersionNumber']}", found[0].get("LaunchTemplateData") or {}

    # -- storage -------------------------------------------------------------------------------
    @property
    def bucket(self) -> str | None:
        return self.id("assets-bucket")

    def _bucket_setting(self, call: str, unset_code: str, key: str, unset):
        try:
            return getattr(self.ctx.client("s3"), call)(Bucket=self.bucket)[key]
        except ClientError as e:
            if error_code(e) != unset_code:
                raise
            return unset

    @cached_property
    def bucket_policy(self) -> list[dict]:
        if not self.bucket:
            return []
        policy = self._bucket_setting("get_bucket_policy", "NoSuchBucketPolicy", "Policy", None)
        statements = json.loads(policy).get("Statement", []) if policy else []
        return [statements] if isinstance(statements, dict) else statements

    @cached_property
    def bucket_access_block(self) -> dict:
        if not self.bucket:
            return {}
        return self._bucket_setting("get_public_access_block", "NoSuchPublicAccessBlockConfiguration",
                                    "PublicAccessBlockConfiguration", {})

    @cached_property
    def bucket_ownership(self) -> str | None:
        if not self.bucket:
            return None
        rules = self._bucket_setting("get_bucket_ownership_controls", "OwnershipControlsNotFoundError",
                                     "OwnershipControls", {"Rules": []})["Rules"]
        return rules[0].get("ObjectOwnership") if rules else None

    @cached_property
    def account_access_block(self) -> dict:
        try:
            return self.ctx.client("s3control").get_public_access_block(
                AccountId=self.ctx.account)["PublicAccessBlockConfiguration"]
        except ClientError as e:
            if error_code(e) != "NoSuchPublicAccessBlockConfiguration":
                raise
            return {}

    # -- data ----------------------------------------------------------------------------------
    @cached_property
    def database(self) -> dict | None:
        name = self.id("database")
        if not name:
            return None
        try:
            return self.ctx.client("rds").describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
        except ClientError as e:
            if error_code(e) == "DBInstanceNotFound":
                return None
            raise


# -- the checks --------------------------------------------------------------------------------

def _missing(what: str) -> Finding:
    return Finding(False, f"no {what} found")


def _is_redirect_to_https(listener: dict) -> bool:
    actions = listener.get("DefaultActions", [])
    return bool(actions) and all(a["Type"] == "redirect" and a.get("RedirectConfig", {}).get("Protocol") == "HTTPS"
                                 for a in actions)


def _listeners(live: LiveStack, protocol: str) -> list[dict]:
    return [listener for listener in live.listeners if listener.get("Protocol") == protocol]


def elb_1(live):
    http = _listeners(live, "HTTP")
    if live.load_balancer is None:
        return _missing("load balancer")
    bad = [str(listener["Port"]) for listener in http if not _is_redirect_to_https(listener)]
    return Finding(not bad, f"HTTP listener(s) on {', '.join(bad)} do not redirect to HTTPS" if bad else
                   f"{len(http)} HTTP listener(s), each redirecting to HTTPS")


def elb_4(live):
    if live.load_balancer is None:
        return _missing("load balancer")
    value = live.lb_attributes.get("routing.http.drop_invalid_header_fields.enabled", "false")
    return Finding(value == "true", f"routing.http.drop_invalid_header_fields.enabled={value}")


def elb_13(live):
    if live.load_balancer is None:
        return _missing("load balancer")
    zones = sorted(z["ZoneName"] for z in live.load_balancer.get("AvailabilityZones", []))
    return Finding(len(zones) >= 2, f"{len(zones)} zone(s): {', '.join(zones) or 'none'}")


def elb_16(live):
    if live.load_balancer is None:
        return _missing("load balancer")
    acl = live.web_acl
    return Finding(acl is not None, f"web ACL {acl['Name']}" if acl else "no web ACL associated")


def elb_17(live):
    if live.load_balancer is None:
        return _missing("load balancer")
    https = _listeners(live, "HTTPS")
    if not https:
        return Finding(False, "no HTTPS listener")
    policies = sorted({listener.get("SslPolicy", "none") for listener in https})
    return Finding(all(p in RECOMMENDED_SSL_POLICIES for p in policies), ", ".join(policies))


def ec2_2(live):
    default = next((g for g in live.security_groups if g["GroupName"] == "default"), None)
    if default is None:
        return _missing("default security group")
    count = len(default.get("IpPermissions", [])) + len(default.get("IpPermissionsEgress", []))
    return Finding(count == 0, f"{default['GroupId']}: {count} rule(s)")


def ec2_6(live):
    logs = [f for f in live.flow_logs if f.get("TrafficType") in ("ALL", "REJECT")
            and f.get("FlowLogStatus", "ACTIVE") == "ACTIVE"]
    return Finding(bool(logs), ", ".join(f"{f['FlowLogId']} ({f['TrafficType']})" for f in logs)
                   or f"no flow log of ALL or REJECT traffic on {live.id('vpc')}")


def ec2_8(live):
    instances = live.instances
    weak = [i["InstanceId"] for i in instances if (i.get("MetadataOptions") or {}).get("HttpTokens") != "required"]
    if weak:
        return Finding(False, f"IMDSv1 allowed on {', '.join(weak)}")
    return Finding(True, f"{len(instances)} instance(s), HttpTokens=required")


def _open_to_world(group: dict, port: int) -> bool:
    for p in group.get("IpPermissions", []):
        covers = p.get("IpProtocol") == "-1" or (
            p.get("IpProtocol") in ("tcp", "6") and p.get("FromPort", 0) <= port <= p.get("ToPort", 65535))
        world = any(r.get("CidrIp") == "0.0.0.0/0" for r in p.get("IpRanges", [])) or any(
            r.get("CidrIpv6") == "::/0" for r in p.get("Ipv6Ranges", []))
        if covers and world:
            return True
    return False


def _port_closed_to_world(port: int):
    def check(live):
        open_ = [g["GroupId"] for g in live.security_groups if _open_to_world(g, port)]
        return Finding(not open_, f"port {port} open to the internet in {', '.join(open_)}" if open_ else
                       f"{len(live.security_groups)} group(s), none open on {port} to 0.0.0.0/0 or ::/0")
    return check


def ec2_15(live):
    subnets = {n: s for n, s in live.subnets.items() if not n.startswith("public-")}
    if not subnets:
        return _missing("private subnet")
    mapping = sorted(n for n, s in subnets.items() if s.get("MapPublicIpOnLaunch"))
    return Finding(not mapping, f"{', '.join(mapping)} assign public addresses" if mapping else
                   f"{len(subnets)} private and data subnet(s), MapPublicIpOnLaunch=false")


def ec2_25(live):
    if live.launch_template_data is None:
        return _missing("launch template")
    name, data = live.launch_template_data
    public = any(i.get("AssociatePublicIpAddress") for i in data.get("NetworkInterfaces", []))
    return Finding(not public, f"{name}: " + ("assigns public addresses" if public else "no public address"))


def autoscaling_1(live):
    group = live.group_of_instances
    if group is None:
        return _missing("Auto Scaling Group")
    return Finding(group.get("HealthCheckType") == "ELB", f"HealthCheckType={group.get('HealthCheckType')}")


def autoscaling_3(live):
    # FSBP reads launch configurations; the group launches from a launch template, whose
    # metadata options are the same setting.
    if live.launch_template_data is None:
        return _missing("launch template")
    name, data = live.launch_template_data
    tokens = (data.get("MetadataOptions") or {}).get("HttpTokens", "optional")
    return Finding(tokens == "required", f"{name}: HttpTokens={tokens}")


def acm_2(live):
    certificate = live.certificate
    if certificate is None:
        return _missing("certificate")
    algorithm = certificate.get("KeyAlgorithm", "unknown")
    bits = int(algorithm.split("_")[1]) if algorithm.startswith("RSA_") and algorithm[4:].isdigit() else None
    return Finding(bits is None or bits >= 2048, algorithm)


def _public_statements(live: LiveStack, verbs: tuple[str, ...]) -> list[str]:
    found = []
    for s in live.bucket_policy:
        principal = s.get("Principal")
        everyone = principal == "*" or (isinstance(principal, dict) and principal.get("AWS") in ("*", ["*"]))
        if s.get("Effect") != "Allow" or not everyone or s.get("Condition"):
            continue
        actions = s.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if any(a in ("*", "s3:*") or a.split(":", 1)[-1].startswith(verbs) for a in actions):
            found.append(s.get("Sid") or "a statement")
    return found


def s3_1(live):
    block = live.account_access_block
    off = sorted(k for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
                 if not block.get(k))
    return Finding(not off, "account Block Public Access: " + (f"off: {', '.join(off)}" if off else "all on"))


def s3_2(live):
    if not live.bucket:
        return _missing("bucket")
    public = _public_statements(live, ("Get", "List"))
    return Finding(not public, f"public read by {', '.join(public)}" if public else "no public read")


def s3_3(live):
    if not live.bucket:
        return _missing("bucket")
    public = _public_statements(live, ("Put", "Delete", "Restore", "Abort"))
    acl = live.bucket_ownership
    if public:
        return Finding(False, f"public write by {', '.join(public)}")
    if acl != "BucketOwnerEnforced" and not live.bucket_access_block.get("BlockPublicAcls"):
        return Finding(False, f"ACLs on (ObjectOwnership={acl}) and public ACLs not blocked")
    return Finding(True, f"no public write, ObjectOwnership={acl}")


def s3_5(live):
    if not live.bucket:
        return _missing("bucket")
    for s in live.bucket_policy:
        condition = (s.get("Condition") or {}).get("Bool", {})
        if s.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false":
            return Finding(True, f"{s.get('Sid', 'a statement')} denies aws:SecureTransport=false")
    return Finding(False, "no statement denies aws:SecureTransport=false")


def s3_8(live):
    if not live.bucket:
        return _missing("bucket")
    off = sorted(k for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
                 if not live.bucket_access_block.get(k))
    return Finding(not off, "bucket Block Public Access: " + (f"off: {', '.join(off)}" if off else "all on"))


def cloudtrail_1(live):
    cloudtrail = live.ctx.client("cloudtrail")
    seen = []
    for trail in cloudtrail.describe_trails(includeShadowTrails=False)["trailList"]:
        arn = trail["TrailARN"]
        seen.append(trail["Name"])
        if not trail.get("IsMultiRegionTrail") or not cloudtrail.get_trail_status(Name=arn).get("IsLogging"):
            continue
        selectors = cloudtrail.get_event_selectors(TrailName=arn)
        # A trail never given selectors logs every management event, read and write (AWS's
        # default); emulators answer it with no selectors at all.
        default = not selectors.get("EventSelectors") and not selectors.get("AdvancedEventSelectors")
        basic = default or any(s.get("IncludeManagementEvents", True) and s.get("ReadWriteType", "All") == "All"
                    for s in selectors.get("EventSelectors") or [])
        advanced = any(any(f.get("Field") == "eventCategory" and "Management" in f.get("Equals", [])
                           for f in s.get("FieldSelectors", [])) and
                       not any(f.get("Field") == "readOnly" for f in s.get("FieldSelectors", []))
                       for s in selectors.get("AdvancedEventSelectors") or [])
        if basic or advanced:
            return Finding(True, f"{trail['Name']}: multi-Region, logging, read and write management events")
    return Finding(False, f"no multi-Region trail logging all management events (trails: {', '.join(seen) or 'none'})")


def _stack_trail(live) -> dict | None:
    name = live.id("trail") or f"{live.ctx.stack}-trail"
    trails = live.ctx.client("cloudtrail").describe_trails(trailNameList=[name], includeShadowTrails=False)["trailList"]
    return trails[0] if trails else None


def cloudtrail_2(live):
    trail = _stack_trail(live)
    if trail is None:
        return Finding(False, "the stack has no trail")
    key = trail.get("KmsKeyId")
    return Finding(bool(key), f"{trail['Name']}: log files encrypted with {key}" if key
                   else f"{trail['Name']}: no KmsKeyId (log files SSE-S3 only)")


def cloudtrail_4(live):
    trail = _stack_trail(live)
    if trail is None:
        return Finding(False, "the stack has no trail")
    on = bool(trail.get("LogFileValidationEnabled"))
    return Finding(on, f"{trail['Name']}: LogFileValidationEnabled={on}")


def guardduty_1(live):
    guardduty = live.ctx.client("guardduty")
    ids = guardduty.list_detectors().get("DetectorIds", [])
    enabled = [d for d in ids if guardduty.get_detector(DetectorId=d).get("Status") == "ENABLED"]
    return Finding(bool(enabled), f"detector {enabled[0]} ENABLED in {live.ctx.region}" if enabled
                   else f"no enabled GuardDuty detector in {live.ctx.region} (detectors: {', '.join(ids) or 'none'})")


def kms_4(live):
    kms = live.ctx.client("kms")
    alias = f"alias/provision/{live.ctx.stack}"
    found = next((a for page in kms.get_paginator("list_aliases").paginate() for a in page["Aliases"]
                  if a["AliasName"] == alias), None)
    if found is None or not found.get("TargetKeyId"):
        return Finding(False, f"no key behind {alias}")
    enabled = kms.get_key_rotation_status(KeyId=found["TargetKeyId"])["KeyRotationEnabled"]
    return Finding(bool(enabled), f"{alias} ({found['TargetKeyId']}): rotation {'on' if enabled else 'off'}")


def _database(check):
    def run(live):
        return _missing("database") if live.database is None else check(live.database)
    return run


def rds_9(db):
    wanted = set(RDS_LOG_EXPORTS.get(db.get("Engine", ""), ()))
    have = set(db.get("EnabledCloudwatchLogsExports") or [])
    return Finding(wanted <= have, f"exports: {', '.join(sorted(have)) or 'none'}"
                   + (f"; missing {', '.join(sorted(wanted - have))}" if wanted - have else ""))


# -- the design's own rules ----------------------------------------------------------------------

def app_reachable_from_alb_only(live):
    web, alb = live.group("web-security-group"), live.id("alb-security-group")
    if web is None:
        return _missing("web security group")
    allowed = {(p, alb) for p in APP_PORTS}
    if live.config.bastion:
        allowed.add((22, live.id("bastion-security-group")))
    extra = []
    for p in web.get("IpPermissions", []):
        port = p.get("FromPort")
        for g in p.get("UserIdGroupPairs", []):
            if (port, g["GroupId"]) not in allowed or p.get("ToPort") != port:
                extra.append(f"{p.get('IpProtocol')}/{port}-{p.get('ToPort')} from {g['GroupId']}")
        extra += [f"{p.get('IpProtocol')}/{port} from {r['CidrIp']}" for r in p.get("IpRanges", [])]
        extra += [f"{p.get('IpProtocol')}/{port} from {r['CidrIpv6']}" for r in p.get("Ipv6Ranges", [])]
        extra += [f"{p.get('IpProtocol')}/{port} from {r['PrefixListId']}" for r in p.get("PrefixListIds", [])]
    return Finding(not extra, f"also open: {'; '.join(extra)}" if extra else
                   f"{web['GroupId']}: 3000 and 5000 from the load balancer's group only")


def instances_in_private_subnets(live):
    group = live.group_of_instances
    if group is None:
        return _missing("Auto Scaling Group")
    private = {live.id(f"private-subnet-{i}") for i in (1, 2)}
    subnets = set(filter(None, group.get("VPCZoneIdentifier", "").split(",")))
    app = {i["InstanceId"] for i in group.get("Instances", [])}
    public = [i["InstanceId"] for i in live.instances if i["InstanceId"] in app and i.get("PublicIpAddress")]
    if not subnets <= private:
        return Finding(False, f"the group launches into {', '.join(sorted(subnets - private))}")
    if public:
        return Finding(False, f"public addresses on {', '.join(public)}")
    return Finding(True, f"the group's subnets are the private ones; {len(app)} instance(s), no public address")


def permanent_redirect(live):
    http = [listener for listener in _listeners(live, "HTTP") if listener["Port"] == 80]
    if not http:
        return Finding(False, "no HTTP listener on 80")
    config = (http[0].get("DefaultActions") or [{}])[0].get("RedirectConfig") or {}
    ok = (config.get("Protocol"), str(config.get("Port")), config.get("StatusCode")) == ("HTTPS", "443", "HTTP_301")
    return Finding(ok, f"80 -> {config.get('StatusCode', 'no redirect')} {config.get('Protocol', '')}:"
                       f"{config.get('Port', '')}")


def api_to_backend(live):
    backend = live.id("backend-target-group")
    https = _listeners(live, "HTTPS")
    if not https:
        return Finding(False, "no HTTPS listener")
    for rule in live.rules(https[0]["ListenerArn"]):
        paths = [v for c in rule.get("Conditions", []) if c.get("Field") == "path-pattern"
                 for v in (c.get("PathPatternConfig", {}).get("Values") or c.get("Values") or [])]
        targets = {a.get("TargetGroupArn") for a in rule.get("Actions", []) if a["Type"] == "forward"}
        if "/api/*" in paths and backend in targets:
            return Finding(True, f"rule {rule.get('Priority')}: /api/* -> backend target group")
    return Finding(False, "no rule forwards /api/* to the backend target group")


def _without(flag: str, what: str):
    return lambda config: None if getattr(config, flag) else f"without --{flag} the stack has no {what}"


def _public_images(config):
    if config.cdn:
        return None
    return ("the product images (images/) are public-read by design, straight from the bucket", "--cdn")


CONTROLS: tuple[Control, ...] = (
    Control("ELB.1", "ALB redirects all HTTP requests to HTTPS",
            "Plain HTTP exposes sessions and form data to anyone on the path.", elb_1),
    Control("ELB.4", "ALB drops invalid HTTP headers",
            "Malformed headers are the vehicle of request smuggling against the app behind.", elb_4),
    Control("ELB.13", "Load balancer spans multiple Availability Zones",
            "One zone's outage would take the whole site down.", elb_13),
    Control("ELB.16", "ALB is associated with a WAF web ACL",
            "The web ACL blocks common exploits and floods before they reach the app.", elb_16,
            _without("waf", "web ACL (`up --waf` adds one)")),
    Control("ELB.17", "HTTPS listeners use a recommended security policy",
            "Old TLS versions and ciphers let a network attacker read or alter traffic.", elb_17),
    Control("EC2.2", "The VPC's default security group allows no traffic",
            "Anything launched without a group would otherwise get the default group's open rules.", ec2_2),
    Control("EC2.6", "VPC flow logging is enabled",
            "Flow logs are the record of who talked to what, for an investigation.", ec2_6,
            _without("audit", "flow logs (`up --audit` adds them)")),
    Control("EC2.8", "Instances require IMDSv2",
            "IMDSv1 lets a server-side request forgery read the instance role's credentials.", ec2_8),
    Control("EC2.13", "No security group allows 0.0.0.0/0 or ::/0 to port 22",
            "SSH open to the internet is brute-forced within minutes.", _port_closed_to_world(22)),
    Control("EC2.14", "No security group allows 0.0.0.0/0 or ::/0 to port 3389",
            "RDP open to the internet is a common ransomware entry point.", _port_closed_to_world(3389)),
    Control("EC2.15", "Private subnets do not assign public IP addresses",
            "A public address on a private instance would bypass the load balancer and the NAT.", ec2_15),
    Control("EC2.25", "Launch templates do not assign public IPs to network interfaces",
            "Every instance launched from the template would be reachable from the internet.", ec2_25),
    Control("AutoScaling.1", "The group uses the load balancer's health checks",
            "With EC2 checks only, an instance whose app is down keeps serving errors.", autoscaling_1),
    Control("AutoScaling.3", "The group's instances require IMDSv2",
            "Every instance the group launches inherits the template's metadata settings.", autoscaling_3),
    Control("ACM.2", "RSA certificates use keys of at least 2048 bits",
            "Shorter RSA keys can be factored, and the TLS sessions with them decrypted.", acm_2),
    Control("S3.1", "Account-level S3 Block Public Access is on",
            "It is the account-wide net under every bucket's own settings.", s3_1,
            accepted=lambda config: _public_images(config) or (
                "an account-wide setting: provision changes nothing outside its stacks",
                "aws s3control put-public-access-block --account-id ACCOUNT --public-access-block-configuration "
                "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true")),
    Control("S3.2", "The bucket prohibits public read access",
            "Public read leaks whatever lands in the bucket by mistake.", s3_2, accepted=_public_images),
    Control("S3.3", "The bucket prohibits public write access",
            "Public write lets anyone replace the site's files or run up the bill.", s3_3),
    Control("S3.5", "The bucket requires TLS (denies aws:SecureTransport false)",
            "Requests over plain HTTP expose objects and credentials in transit.", s3_5),
    Control("S3.8", "The bucket blocks public access",
            "Block Public Access stops a later policy or ACL from making the bucket public.", s3_8,
            accepted=_public_images),
    Control("CloudTrail.1", "A multi-Region trail logs read and write management events",
            "Without it, no one can tell who changed or deleted what in the account.", cloudtrail_1,
            _without("audit", "trail (`up --audit` adds one)")),
    Control("CloudTrail.2", "The trail's log files are encrypted at rest with a KMS key",
            "SSE-KMS adds a key policy between a reader of the audit bucket and the record.", cloudtrail_2,
            _without("audit", "trail (`up --audit` adds one)")),
    Control("CloudTrail.4", "The trail validates its log files",
            "Digest files prove the record was not altered or deleted after delivery.", cloudtrail_4,
            _without("audit", "trail (`up --audit` adds one)")),
    Control("GuardDuty.1", "GuardDuty is enabled",
            "It watches the account's API calls, DNS and flow logs for compromise.", guardduty_1,
            _without("audit", "GuardDuty detector (`up --audit` uses the account's or makes one)")),
    Control("KMS.4", "The stack's customer KMS key rotates",
            "Rotation limits how much data one compromised key version protects.", kms_4,
            _without("audit", "customer KMS key (`up --audit` adds one)")),
    Control("RDS.3", "The database's storage is encrypted",
            "Snapshots and disks of an unencrypted database are readable by whoever gets them.",
            _database(lambda db: Finding(bool(db.get("StorageEncrypted")),
                                         f"StorageEncrypted={db.get('StorageEncrypted')}")),
            lambda config: None if config.database != "none" else "without --database the stack has no database"),
    Control("RDS.5", "The database is Multi-AZ",
            "A standby in the other zone takes over when the primary's zone fails.",
            _database(lambda db: Finding(bool(db.get("MultiAZ")), f"MultiAZ={db.get('MultiAZ')}")),
            lambda config: None if config.database != "none" else "without --database the stack has no database",
            accepted=lambda config: None if config.db_multi_az else (
                "a single-zone database by default (half the cost, for labs)", "--db-multi-az")),
    Control("RDS.9", "The database publishes its logs to CloudWatch Logs",
            "Its error and connection logs are the record of failures and intrusions.", _database(rds_9),
            lambda config: None if config.database != "none" else "without --database the stack has no database"),
    # The design's own promises (README "How it works").
    Control("STACK.1", "App instances are reachable only from the ALB, on 3000 and 5000",
            "The app has no authentication of its own at the network edge: the load balancer is it.",
            app_reachable_from_alb_only),
    Control("STACK.2", "App instances live in the private subnets, without public addresses",
            "Only the load balancer and the NAT face the internet.", instances_in_private_subnets),
    Control("STACK.3", "HTTP on 80 answers a permanent (301) redirect to HTTPS on 443",
            "Browsers and crawlers remember a 301 and go straight to HTTPS next time.", permanent_redirect),
    Control("STACK.4", "/api/* goes to the backend target group",
            "The storefront's pages call the API under /api on the same host.", api_to_backend),
)


def run_controls(live: LiveStack, controls=None) -> list[Result]:
    results = []
    for control in CONTROLS if controls is None else controls:
        skip = control.not_applicable(live.config)
        if skip:
            results.append(Result(control.id, control.title, NOT_APPLICABLE, "", control.why, skip))
            continue
        finding = control.check(live)
        accepted = None if finding.passed else control.accepted(live.config)
        if accepted:
            reason, remedy = accepted
            results.append(Result(control.id, control.title, ACCEPTED, finding.value, control.why,
                                  f"{reason}; passes with {remedy}"))
        else:
            results.append(Result(control.id, control.title, PASS if finding.passed else FAIL, finding.value,
                                  control.why))
    return results


# -- probes --------------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def http_status(url: str, timeout: float = PROBE_TIMEOUT, verify_tls: bool = True) -> tuple[int | None, dict, str]:
    """(status, headers, error) of a GET that follows no redirect."""
    context = None
    if url.startswith("https:") and not verify_tls:
        # The stack's own certificate is self-signed unless --certificate-arn gave one.
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
            return response.status, dict(response.headers), ""
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers or {}), ""
    except (urllib.error.URLError, OSError) as e:
        return None, {}, str(getattr(e, "reason", e))


@dataclass(frozen=True)
class Probe:
    id: str
    title: str
    url: str
    passes: Callable[[int | None, dict], bool]
    verify_tls: bool = True


def probes_for(live: LiveStack, image_key: str | None, *, http_base: str | None = None,
               https_base: str | None = None, bucket_base: str | None = None) -> list[Probe]:
    """The probes of this stack, at the URL its outputs give (the distribution's or the load
    balancer's); the bases are for tests, which serve them on loopback."""
    host = (live.outputs.get("url") or "").removeprefix("https://").rstrip("/") or live.outputs.get("alb_dns_name", "")
    http_base, https_base = http_base or f"http://{host}", https_base or f"https://{host}"
    self_signed = not live.config.certificate_arn
    probes = [
        Probe("PROBE.1", "port 80 answers 301 to HTTPS", f"{http_base}/",
              lambda status, headers: status == 301 and headers.get("Location", "").startswith("https://")),
        Probe("PROBE.2", "/api/health answers 200", f"{https_base}/api/health",
              lambda status, headers: status == 200, verify_tls=not self_signed),
    ]
    images = live.outputs.get("images_base_url")
    if images and image_key and not live.config.cdn:
        base = f"{bucket_base}/images/" if bucket_base else images.rstrip("/") + "/"
        probes.append(Probe("PROBE.3", "an image is readable anonymously", base + image_key.split("/", 1)[-1],
                            lambda status, headers: status == 200))
    release = live.outputs.get("release_key")
    if release and live.bucket:
        base = bucket_base or f"https://{live.bucket}.s3.{live.ctx.region}.amazonaws.com"
        # Anonymous and private: S3 answers 403 (AccessDenied) for an object one may not read.
        probes.append(Probe("PROBE.4", "a release object is not readable anonymously", f"{base}/{release}",
                            lambda status, headers: status in (401, 403, 404)))
    return probes


def run_probes(probes: list[Probe], timeout: float = PROBE_TIMEOUT) -> list[Result]:
    results = []
    for probe in probes:
        status, headers, error = http_status(probe.url, timeout, probe.verify_tls)
        value = f"GET {probe.url}: " + (f"{status}" + (f" -> {headers['Location']}" if "Location" in headers else "")
                                        if status is not None else f"no answer ({error})")
        results.append(Result(probe.id, probe.title, PASS if probe.passes(status, headers) else FAIL, value,
                              "What a visitor gets, whatever the configuration says."))
    return results


def first_image_key(live: LiveStack) -> str | None:
    if not live.bucket:
        return None
    listed = live.ctx.client("s3").list_objects_v2(Bucket=live.bucket, Prefix="images/", MaxKeys=1)
    return next((o["Key"] for o in listed.get("Contents", [])), None)


# -- the command ---------------------------------------------------------------------------------

def exit_code(results: list[Result], strict: bool = False) -> int:
    failing = {FAIL, ACCEPTED} if strict else {FAIL}
    return EXIT_AWS if any(r.result in failing for r in results) else EXIT_OK


STYLES = {PASS: "green", FAIL: "bold red", ACCEPTED: "yellow", NOT_APPLICABLE: "dim"}


def print_results(reporter: ConsoleReporter, title: str, results: list[Result], notes: list[str]) -> None:
    out = reporter.out
    if out.is_terminal:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, title_justify="left")
        for column in ("control", "result", "value", "why it matters"):
            table.add_column(column, no_wrap=column in ("control", "result"))
        for r in results:
            why = r.why + (f" ({r.reason})" if r.reason else "")
            table.add_row(r.id, Text(r.result, style=STYLES.get(r.result, "")), r.value, why)
        out.print(table)
    else:
        # Plain lines, never wrapped: `provision verify | grep FAIL` must see whole lines.
        print(title)
        for r in results:
            print("  ".join(filter(None, [f"{r.id:<14}", f"{r.result:<8}", r.value, r.why,
                                          f"({r.reason})" if r.reason else ""])))
    counts = {state: sum(r.result == state for r in results) for state in (PASS, FAIL, ACCEPTED, NOT_APPLICABLE)}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    for note in notes:
        print(f"note: {note}") if not out.is_terminal else out.print(f"note: {note}", style="dim")
    print(summary) if not out.is_terminal else out.print(summary)


@guarded
def cmd_verify(opts: GlobalOptions, reporter: ConsoleReporter, as_json: bool, no_probes: bool = False,
               strict: bool = False) -> int:
    from provisioner.commands.runner import Run

    run = Run(opts, reporter)
    if run.is_new or not run.state.resources:
        raise ConfigError(f"stack {opts.stack!r} does not exist in {opts.state_dir} for {run.where()}",
                          hint="`provision up` builds it (or pass the --state-dir and --region it used)")
    # Nothing here may change the stack: the same guard as `plan` and `status`.
    run.ctx.read_only = True
    live = LiveStack(run.ctx, run.state.resources, run.config, run.state.outputs)
    results = run_controls(live)
    notes = []
    if opts.sandbox:
        notes.append("probes skipped: the sandbox's stack does not answer HTTP")
    elif no_probes:
        notes.append("probes skipped (--no-probes): the configuration alone was checked")
    else:
        results += run_probes(probes_for(live, first_image_key(live)))
    if as_json:
        print(json.dumps({"stack": opts.stack, "region": run.ctx.region, "strict": strict,
                          "controls": [r.to_json() for r in results], "notes": notes,
                          "failed": sum(r.result == FAIL for r in results),
                          "accepted": sum(r.result == ACCEPTED for r in results)}, indent=2))
    else:
        print_results(reporter, f"verify: {run.where()}", results, notes)
    return exit_code(results, strict)
