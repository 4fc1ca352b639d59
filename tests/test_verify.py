"""`provision verify` on moto: the stack as built passes every control that applies to its shape;
for each control, a resource broken on purpose with boto3 makes it fail; controls of tiers the
shape lacks are n/a; what the design breaks on purpose is accepted (and fails under --strict); the
command is read-only; the probes against a local HTTP server on loopback."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading

import boto3
import pytest
from click.testing import CliRunner

from provisioner.cli.main import main
from provisioner.commands import verify as v
from provisioner.account.policy import allows, document, iam_actions
from provisioner.engine.context import is_mutating
from provisioner.shape.config import StackConfig

from stacks import ACCOUNT, REGION, ZONES

BASE = dict(zones=list(ZONES))


def client(service):
    return boto3.client(service, region_name=REGION)


def results(stack, config: StackConfig, ids=None) -> dict[str, v.Result]:
    state = stack.state_file.read()
    ctx = stack.context(config)
    ctx.read_only = True
    live = v.LiveStack(ctx, state.resources, config, state.outputs)
    if ids:
        live.ids.update(ids)
    found = {r.id: r for r in v.run_controls(live)}
    assert [c for c in ctx.calls if is_mutating(c[1])] == []
    # Every read verify made is one `provision policy` grants for this shape.
    policy = document(config, "stylesphere", REGION, ACCOUNT)
    denied = sorted({a for service, op in ctx.calls for a in iam_actions(_signing(service), op)
                     if not allows(policy, a)})
    assert denied == [], denied
    return found


def _signing(service: str) -> str:
    if service == "s3control":  # signs as s3; its actions are named in policy.OPERATION_ACTIONS
        return service
    return boto3.client(service, region_name=REGION).meta.service_model.signing_name


def ids(stack) -> dict[str, str]:
    return {name: r["id"] for name, r in stack.state_file.read().resources.items()}


# -- the stack as built ---------------------------------------------------------------------------

SHAPES = {
    "default": dict(BASE),
    "database and waf": dict(BASE, database="postgres", waf=True),
    "cdn": dict(BASE, cdn=True),
    "audit and database": dict(BASE, audit=True, database="postgres"),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_stack_as_built_passes_every_control_that_applies(make_stack, shape):
    config = StackConfig(**SHAPES[shape])
    stack = make_stack(config=config)
    stack.up()
    found = results(stack, config)
    assert set(found) == {c.id for c in v.CONTROLS}
    assert [(r.id, r.value) for r in found.values() if r.result == v.FAIL] == []
    accepted = {r.id for r in found.values() if r.result == v.ACCEPTED}
    if config.cdn:
        # The bucket is private; only the account-wide switch is not the stack's to set.
        assert accepted == {"S3.1"}
        assert found["S3.2"].result == found["S3.8"].result == v.PASS
    else:
        assert accepted >= {"S3.1", "S3.2", "S3.8"}
        assert "--cdn" in found["S3.2"].reason
    if config.database != "none":
        assert found["RDS.5"].result == v.ACCEPTED and "--db-multi-az" in found["RDS.5"].reason
        assert found["RDS.3"].result == found["RDS.9"].result == v.PASS
    else:
        assert {found[i].result for i in ("RDS.3", "RDS.5", "RDS.9")} == {v.NOT_APPLICABLE}
    assert (found["ELB.16"].result == v.PASS) is config.waf
    for control in AUDIT_CONTROLS:
        if config.audit:
            assert found[control].result == v.PASS, (control, found[control].value)
        else:
            assert found[control].result == v.NOT_APPLICABLE and "--audit" in found[control].reason


# -- each control, broken on purpose --------------------------------------------------------------

def _listener(stack, protocol):
    elb = client("elbv2")
    listeners = elb.describe_listeners(LoadBalancerArn=ids(stack)["load-balancer"])["Listeners"]
    return next(listener for listener in listeners
                if listener["Protocol"] == protocol)


def _forward_http(stack):
    client("elbv2").modify_listener(ListenerArn=_listener(stack, "HTTP")["ListenerArn"], DefaultActions=[
        {"Type": "forward", "TargetGroupArn": ids(stack)["frontend-target-group"]}])


def _keep_headers(stack):
    client("elbv2").modify_load_balancer_attributes(LoadBalancerArn=ids(stack)["load-balancer"], Attributes=[
        {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "false"}])


def _one_zone(stack):
    # AWS refuses an Application Load Balancer in one zone (and moto with it); a Network Load
    # Balancer may have one, and ELB.13 covers both.
    arn = client("elbv2").create_load_balancer(Name="one-zone", Type="network", Scheme="internet-facing",
                                               Subnets=[ids(stack)["public-subnet-1"]])["LoadBalancers"][0][
        "LoadBalancerArn"]
    return {"load-balancer": arn}


def _no_web_acl(stack):
    client("wafv2").disassociate_web_acl(ResourceArn=ids(stack)["load-balancer"])


def _old_tls(stack):
    client("elbv2").modify_listener(ListenerArn=_listener(stack, "HTTPS")["ListenerArn"],
                                    SslPolicy="ELBSecurityPolicy-2016-08")


def _default_group(stack):
    return client("ec2").describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [ids(stack)["vpc"]]}, {"Name": "group-name", "Values": ["default"]}])[
        "SecurityGroups"][0]["GroupId"]


def _open_default_group(stack):
    client("ec2").authorize_security_group_ingress(GroupId=_default_group(stack), IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": _default_group(stack)}]}])


def _imds_v1(stack):
    group = client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[ids(stack)["auto-scaling-group"]])["AutoScalingGroups"][0]
    client("ec2").modify_instance_metadata_options(InstanceId=group["Instances"][0]["InstanceId"],
                                                   HttpTokens="optional")


def _open(group_step, port, cidr):
    def brk(stack):
        key = "CidrIpv6" if ":" in cidr else "CidrIp"
        client("ec2").authorize_security_group_ingress(GroupId=ids(stack)[group_step], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
             ("Ipv6Ranges" if ":" in cidr else "IpRanges"): [{key: cidr}]}])
    return brk


def _map_public(stack):
    client("ec2").modify_subnet_attribute(SubnetId=ids(stack)["private-subnet-1"], MapPublicIpOnLaunch={"Value": True})


def _template_version(data):
    def brk(stack):
        version = client("ec2").create_launch_template_version(
            LaunchTemplateId=ids(stack)["launch-template"], SourceVersion="$Latest",
            LaunchTemplateData=data)["LaunchTemplateVersion"]["VersionNumber"]
        client("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName=ids(stack)["auto-scaling-group"],
            LaunchTemplate={"LaunchTemplateId": ids(stack)["launch-template"], "Version": str(version)})
    return brk


def _ec2_health_checks(stack):
    client("autoscaling").update_auto_scaling_group(AutoScalingGroupName=ids(stack)["auto-scaling-group"],
                                                    HealthCheckType="EC2")


def _weak_certificate(stack):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stylesphere.example.com")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    client("acm").import_certificate(
        CertificateArn=ids(stack)["certificate"], Certificate=cert.public_bytes(serialization.Encoding.PEM),
        PrivateKey=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))


def _policy(stack, statements):
    bucket = ids(stack)["assets-bucket"]
    client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        dict(s, Resource=f"arn:aws:s3:::{bucket}/*") for s in statements]}))


def _public_read(stack):
    bucket = ids(stack)["assets-bucket"]
    client("s3").put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": False})
    _policy(stack, [{"Sid": "Everyone", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}])


def _public_write(stack):
    _policy(stack, [{"Sid": "Everyone", "Effect": "Allow", "Principal": "*", "Action": ["s3:PutObject"]}])


def _plain_http(stack):
    _policy(stack, [{"Sid": "Images", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}])


def _bucket_block_off(stack):
    client("s3").delete_public_access_block(Bucket=ids(stack)["assets-bucket"])


def _single_az(stack):
    client("rds").modify_db_instance(DBInstanceIdentifier=ids(stack)["database"], MultiAZ=False, ApplyImmediately=True)


def _no_log_exports(stack):
    client("rds").modify_db_instance(DBInstanceIdentifier=ids(stack)["database"], ApplyImmediately=True,
                                     CloudwatchLogsExportConfiguration={"DisableLogTypes": ["postgresql"]})


def _unencrypted_database(stack):
    # Encryption cannot be turned off in place: an unencrypted instance stands in for the stack's.
    client("rds").create_db_instance(DBInstanceIdentifier="plain-database", Engine="postgres",
                                     DBInstanceClass="db.t4g.micro", MasterUsername="admin",
                                     MasterUserPassword="not-a-secret-1", AllocatedStorage=20, StorageEncrypted=False)
    return {"database": "plain-database"}


def _private_group_in_public_subnets(stack):
    client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=ids(stack)["auto-scaling-group"],
        VPCZoneIdentifier=f"{ids(stack)['public-subnet-1']},{ids(stack)['public-subnet-2']}")


def _temporary_redirect(stack):
    client("elbv2").modify_listener(ListenerArn=_listener(stack, "HTTP")["ListenerArn"], DefaultActions=[
        {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_302"}}])


def _no_api_rule(stack):
    client("elbv2").delete_rule(RuleArn=ids(stack)["api-routing-rule"])


BROKEN = [
    ("ELB.1", {}, _forward_http),
    ("ELB.4", {}, _keep_headers),
    ("ELB.13", {}, _one_zone),
    ("ELB.16", {"waf": True}, _no_web_acl),
    ("ELB.17", {}, _old_tls),
    ("EC2.2", {}, _open_default_group),
    ("EC2.8", {}, _imds_v1),
    ("EC2.13", {}, _open("web-security-group", 22, "0.0.0.0/0")),
    ("EC2.14", {}, _open("alb-security-group", 3389, "::/0")),
    ("EC2.15", {}, _map_public),
    ("EC2.25", {}, _template_version({"NetworkInterfaces": [{"DeviceIndex": 0, "AssociatePublicIpAddress": True}]})),
    ("AutoScaling.1", {}, _ec2_health_checks),
    ("AutoScaling.3", {}, _template_version({"MetadataOptions": {"HttpTokens": "optional"}})),
    ("ACM.2", {}, _weak_certificate),
    ("S3.2", {"cdn": True}, _public_read),
    ("S3.3", {}, _public_write),
    ("S3.5", {}, _plain_http),
    ("S3.8", {"cdn": True}, _bucket_block_off),
    ("RDS.3", {"database": "postgres"}, _unencrypted_database),
    ("RDS.5", {"database": "postgres", "db_multi_az": True}, _single_az),
    ("RDS.9", {"database": "postgres"}, _no_log_exports),
    ("STACK.1", {}, _open("web-security-group", 3000, "0.0.0.0/0")),
    ("STACK.2", {}, _private_group_in_public_subnets),
    ("STACK.3", {}, _temporary_redirect),
    ("STACK.4", {}, _no_api_rule),
]


@pytest.mark.parametrize("control,extra,brk", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_resource_fails_its_control(make_stack, control, extra, brk):
    config = StackConfig(**BASE, **extra)
    stack = make_stack(config=config)
    stack.up()
    assert results(stack, config)[control].result in (v.PASS, v.ACCEPTED)
    found = results(stack, config, brk(stack))
    assert found[control].result == v.FAIL, found[control]


def test_every_control_is_broken_by_a_test_or_checked_against_the_audit_tier():
    covered = {b[0] for b in BROKEN} | set(AUDIT_CONTROLS) | {"S3.1"}
    assert covered == {c.id for c in v.CONTROLS}


# -- the audit tier's controls, against what AWS holds ----------------------------------------------

AUDIT_CONTROLS = ("EC2.6", "CloudTrail.1", "CloudTrail.2", "CloudTrail.4", "GuardDuty.1", "KMS.4")


def test_the_audit_controls_fail_without_the_resources_and_pass_with_them(make_stack):
    """A stack built without the audit tier, checked as one with it: each control reads AWS."""
    config = StackConfig(**BASE, audit=True)
    stack = make_stack(config=StackConfig(**BASE))
    stack.up()
    found = results(stack, config)
    assert {found[c].result for c in AUDIT_CONTROLS} == {v.FAIL}

    # A key behind the stack's alias, without rotation: KMS.4 still fails.
    kms = client("kms")
    key = kms.create_key(Description="stylesphere")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/provision/stylesphere", TargetKeyId=key)
    # A single-Region trail is not enough for CloudTrail.1; a trail that does not log either.
    s3 = client("s3")
    s3.create_bucket(Bucket="stylesphere-trail-logs")
    cloudtrail = client("cloudtrail")
    cloudtrail.create_trail(Name="stylesphere-trail", S3BucketName="stylesphere-trail-logs", IsMultiRegionTrail=False)
    cloudtrail.start_logging(Name="stylesphere-trail")
    # Flow logs of accepted traffic only do not meet EC2.6 (REJECT or ALL).
    ec2 = client("ec2")
    ec2.create_flow_logs(ResourceIds=[ids(stack)["vpc"]], ResourceType="VPC", TrafficType="ACCEPT",
                         LogGroupName="flow-logs-accepted",
                         DeliverLogsPermissionArn=f"arn:aws:iam::{ACCOUNT}:role/flow-logs")
    found = results(stack, config)
    assert {found[c].result for c in AUDIT_CONTROLS} == {v.FAIL}
    assert "rotation off" in found["KMS.4"].value
    assert "no KmsKeyId" in found["CloudTrail.2"].value
    guardduty = client("guardduty")
    detector = guardduty.create_detector(Enable=False)["DetectorId"]
    assert results(stack, config)["GuardDuty.1"].result == v.FAIL

    kms.enable_key_rotation(KeyId=key)
    cloudtrail.update_trail(Name="stylesphere-trail", IsMultiRegionTrail=True, EnableLogFileValidation=True,
                            KmsKeyId=key)
    guardduty.update_detector(DetectorId=detector, Enable=True)
    ec2.create_flow_logs(ResourceIds=[ids(stack)["vpc"]], ResourceType="VPC", TrafficType="ALL",
                         LogGroupName="flow-logs-all",
                         DeliverLogsPermissionArn=f"arn:aws:iam::{ACCOUNT}:role/flow-logs")
    found = results(stack, config)
    assert {c: found[c].result for c in AUDIT_CONTROLS} == dict.fromkeys(AUDIT_CONTROLS, v.PASS)

    # Write-only management events: who read a secret would not be on record.
    cloudtrail.put_event_selectors(TrailName="stylesphere-trail", EventSelectors=[
        {"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}])
    assert results(stack, config)["CloudTrail.1"].result == v.FAIL


def test_account_block_public_access_on_passes_s3_1(make_stack):
    config = StackConfig(**BASE, cdn=True)
    stack = make_stack(config=config)
    stack.up()
    assert results(stack, config)["S3.1"].result == v.ACCEPTED
    client("s3control").put_public_access_block(AccountId=ACCOUNT, PublicAccessBlockConfiguration=dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True))
    assert results(stack, config)["S3.1"].result == v.PASS


# -- the command ----------------------------------------------------------------------------------

def cli(*args, state_dir):
    result = CliRunner().invoke(main, [*args, "--state-dir", state_dir, "--region", REGION], env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def built(moto_aws, tmp_path):
    state_dir = str(tmp_path / "state")
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    return state_dir


def test_verify_prints_a_line_per_control_and_exits_0(built):
    result = cli("verify", "--no-probes", state_dir=built)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for control in v.CONTROLS:
        assert any(line.startswith(control.id + " ") for line in lines), control.id
    assert any(line.startswith("S3.2 ") and "accepted" in line and "--cdn" in line for line in lines)
    assert any(line.startswith("KMS.4 ") and "n/a" in line for line in lines)
    assert "probes skipped (--no-probes)" in result.stdout


def test_verify_json_and_strict(built):
    result = cli("verify", "--no-probes", "--json", state_dir=built)
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    rows = {r["id"]: r for r in report["controls"]}
    assert rows["ELB.4"]["result"] == "PASS" and rows["ELB.4"]["value"].endswith("=true")
    assert report["failed"] == 0 and report["accepted"] >= 3
    # Accepted controls count under --strict.
    assert cli("verify", "--no-probes", "--strict", state_dir=built).exit_code == 1


def test_a_failing_control_exits_1(built):
    state = json.load(open(f"{built}/stylesphere.json"))
    arn = state["resources"]["load-balancer"]["id"]
    client("elbv2").modify_load_balancer_attributes(LoadBalancerArn=arn, Attributes=[
        {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "false"}])
    result = cli("verify", "--no-probes", "--json", state_dir=built)
    assert result.exit_code == 1
    assert {r["id"] for r in json.loads(result.stdout)["controls"] if r["result"] == "FAIL"} == {"ELB.4"}


def test_a_stack_that_does_not_exist_exits_2(moto_aws, tmp_path):
    result = cli("verify", state_dir=str(tmp_path / "state"))
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_verify_makes_no_mutating_call(built, monkeypatch):
    # A control that tries to change something is stopped by the read-only guard, and the VPCs
    # stay as they were.
    before = {x["VpcId"] for x in client("ec2").describe_vpcs()["Vpcs"]}

    def sneaky(live):
        live.ctx.ec2.create_vpc(CidrBlock="10.9.0.0/16")
        return v.Finding(True, "")

    monkeypatch.setattr(v, "CONTROLS", (*v.CONTROLS, v.Control("X.1", "mutates", "", sneaky)))
    result = cli("verify", "--no-probes", state_dir=built)
    assert result.exit_code == 1
    assert "CreateVpc called during a read-only phase" in " ".join(result.output.split())
    assert {x["VpcId"] for x in client("ec2").describe_vpcs()["Vpcs"]} == before


# -- probes ---------------------------------------------------------------------------------------

class Site(http.server.BaseHTTPRequestHandler):
    answers = {}

    def do_GET(self):
        status, headers = self.answers.get(self.path, (404, {}))
        self.send_response(status)
        for k, value in headers.items():
            self.send_header(k, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _live(cdn=False):
    class Ctx:
        region, stack = REGION, "stylesphere"

    return v.LiveStack(Ctx(), {"assets-bucket": {"id": "stylesphere-assets"}}, StackConfig(**BASE, cdn=cdn),
                       {"url": "https://alb.example", "images_base_url": "https://bucket/images/",
                        "release_key": "releases/abc.tar.gz"})


def _probe(site, answers):
    Site.answers = answers
    probes = v.probes_for(_live(), "images/shoe.jpg", http_base=site, https_base=site, bucket_base=site)
    return {r.id: r for r in v.run_probes(probes, timeout=2)}


def test_probes_pass_against_a_stack_that_answers_as_designed(site):
    found = _probe(site, {"/": (301, {"Location": "https://alb.example/"}), "/api/health": (200, {}),
                          "/images/shoe.jpg": (200, {}), "/releases/abc.tar.gz": (403, {})})
    assert {i: r.result for i, r in found.items()} == dict.fromkeys(
        ("PROBE.1", "PROBE.2", "PROBE.3", "PROBE.4"), v.PASS)
    assert "301 -> https://alb.example/" in found["PROBE.1"].value


def test_probes_fail_on_a_plain_page_a_broken_api_a_private_image_and_a_public_release(site):
    found = _probe(site, {"/": (200, {}), "/api/health": (502, {}), "/images/shoe.jpg": (403, {}),
                          "/releases/abc.tar.gz": (200, {})})
    assert {r.result for r in found.values()} == {v.FAIL}


def test_a_probe_that_gets_no_answer_fails_within_its_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = dt.datetime.now()
        (found,) = v.run_probes([v.Probe("PROBE.2", "health", url + "/api/health", lambda s, h: s == 200)],
                                timeout=0.5)
        assert found.result == v.FAIL and "no answer" in found.value
        assert (dt.datetime.now() - started).total_seconds() < 5
    finally:
        listener.close()


def test_no_image_probe_with_the_cdn():
    assert "PROBE.3" not in {p.id for p in v.probes_for(_live(cdn=True), "images/shoe.jpg")}
