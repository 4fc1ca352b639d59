"""The identity steps on moto with the strict fixture: the instance role, the instance profile and
the role inside it, the certificate, and the preflight check of a --certificate-arn."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import steps.edge.certificate as certificate_step
from provisioner.engine.errors import ConfigError
from provisioner.account.preflight import check_certificate

from stacks import ACCOUNT, REGION, make_session, outcomes

NAME = f"stylesphere-{REGION}-web"
BUCKET = f"stylesphere-assets-{ACCOUNT}-{REGION}"
SSM = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
IAM_STEPS = ["instance-profile-role"]


def iam():
    return boto3.client("iam", region_name=REGION)


def acm(region=REGION):
    return boto3.client("acm", region_name=region)


def order_refusals(strict):
    return [r for r in strict.refusals if r[2] == "order"]


# -- the role, the profile and the role in it -----------------------------------------------

def test_role_grants_exactly_the_release_prefix_and_ssm(make_stack, strict):
    stack = make_stack()
    results = {r.name: r for r in stack.up(only=["instance-role"])}
    assert results["instance-role"].outcome == "created", results["instance-role"].detail
    role = iam().get_role(RoleName=NAME)["Role"]
    assert role["Path"] == "/provision/"
    assert results["instance-role"].resources[0].attrs == {"name": NAME, "arn": role["Arn"]}
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    tags = {t["Key"]: t["Value"] for t in role["Tags"]}
    assert tags["provision:stack"] == "stylesphere" and tags["provision:step"] == "instance-role"
    assert iam().list_role_policies(RoleName=NAME)["PolicyNames"] == ["read-app-releases"]
    document = iam().get_role_policy(RoleName=NAME, PolicyName="read-app-releases")["PolicyDocument"]
    # The release, and a read-only pull from the stack's own repository (GetAuthorizationToken
    # takes no resource but "*").
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in document["Statement"]] == [
        ("Allow", "s3:GetObject", f"arn:aws:s3:::{BUCKET}/releases/*"),
        ("Allow", ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
         f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/provision/stylesphere"),
        ("Allow", "ecr:GetAuthorizationToken", "*")]
    assert [p["PolicyArn"] for p in iam().list_attached_role_policies(RoleName=NAME)["AttachedPolicies"]] == [SSM]

    again = stack.up(only=["instance-role"])
    assert set(outcomes(again).values()) == {"kept"}
    assert stack.mutating_calls() == []

    stack.state_file.remove()
    assert outcomes(stack.up(only=["instance-role"]))["instance-role"] == "kept"
    assert stack.mutating_calls() == []


def test_role_drift_is_put_back(make_stack):
    stack = make_stack()
    stack.up(only=["instance-role"])
    client = iam()
    client.detach_role_policy(RoleName=NAME, PolicyArn=SSM)
    client.put_role_policy(RoleName=NAME, PolicyName="read-app-releases", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    client.put_role_policy(RoleName=NAME, PolicyName="extra", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}))
    result = {r.name: r for r in stack.up(only=["instance-role"])}["instance-role"]
    assert result.outcome == "updated"
    assert len(result.changes) == 3, result.changes
    assert client.list_role_policies(RoleName=NAME)["PolicyNames"] == ["read-app-releases"]
    document = client.get_role_policy(RoleName=NAME, PolicyName="read-app-releases")["PolicyDocument"]
    assert document["Statement"][0]["Action"] == "s3:GetObject"
    assert [p["PolicyArn"] for p in client.list_attached_role_policies(RoleName=NAME)["AttachedPolicies"]] == [SSM]
    assert outcomes(stack.up(only=["instance-role"]))["instance-role"] == "kept"


def test_profile_holds_the_role_and_down_goes_in_order(make_stack, strict):
    stack = make_stack()
    results = outcomes(stack.up(only=IAM_STEPS))
    assert results == {"assets-bucket": "created", "instance-role": "created", "instance-profile": "created",
                       "instance-profile-role": "created"}
    profile = iam().get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    assert profile["Path"] == "/provision/"
    assert [r["RoleName"] for r in profile["Roles"]] == [NAME]
    assert {t["Key"]: t["Value"] for t in profile["Tags"]}["provision:step"] == "instance-profile"

    assert set(outcomes(stack.up(only=IAM_STEPS)).values()) == {"kept"}
    assert stack.mutating_calls() == []

    # The relationship is found through the profile without the state file.
    stack.state_file.remove()
    status = {r.name: r for r in stack.status(only=IAM_STEPS)}
    assert status["instance-profile-role"].outcome == "present"
    assert status["instance-profile-role"].resource_id == f"{NAME}/{NAME}"

    down = outcomes(stack.down(only=IAM_STEPS))
    # `down` looks for every option's steps: the role's data-tier dependencies are absent here.
    iam_steps = {"assets-bucket", "instance-role", "instance-profile", "instance-profile-role"}
    assert {down[name] for name in iam_steps} == {"deleted"}, down
    assert {v for k, v in down.items() if k not in iam_steps} <= {"absent"}, down
    assert order_refusals(strict) == []
    assert iam().list_roles(PathPrefix="/provision/")["Roles"] == []
    assert iam().list_instance_profiles(PathPrefix="/provision/")["InstanceProfiles"] == []

    assert set(outcomes(stack.down(only=IAM_STEPS)).values()) == {"absent"}
    assert stack.mutating_calls() == []


def test_a_foreign_role_in_the_profile_is_replaced(make_stack):
    stack = make_stack()
    stack.up(only=IAM_STEPS)
    client = iam()
    client.create_role(RoleName="someone-else", AssumeRolePolicyDocument="{}")
    client.remove_role_from_instance_profile(InstanceProfileName=NAME, RoleName=NAME)
    client.add_role_to_instance_profile(InstanceProfileName=NAME, RoleName="someone-else")
    result = {r.name: r for r in stack.up(only=IAM_STEPS)}["instance-profile-role"]
    assert result.outcome == "updated" and result.changes == [f"replace role someone-else with {NAME}"]
    assert result.resource_id == f"{NAME}/{NAME}"
    roles = client.get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]["Roles"]
    assert [r["RoleName"] for r in roles] == [NAME]


def test_role_in_another_profile_is_taken_out_before_delete(make_stack, strict):
    stack = make_stack()
    stack.up(only=["instance-role"])
    client = iam()
    client.create_instance_profile(InstanceProfileName="hand-made")
    client.add_role_to_instance_profile(InstanceProfileName="hand-made", RoleName=NAME)
    assert outcomes(stack.down(only=["instance-role"]))["instance-role"] == "deleted"
    assert order_refusals(strict) == []
    assert client.get_instance_profile(InstanceProfileName="hand-made")["InstanceProfile"]["Roles"] == []


def test_a_role_of_that_name_without_our_tags_is_left_alone(make_stack):
    iam().create_role(RoleName=NAME, AssumeRolePolicyDocument="{}")
    stack = make_stack()
    result = {r.name: r for r in stack.up(only=["instance-role"])}["instance-role"]
    assert result.outcome == "failed"
    assert "not this stack's" in result.detail
    assert outcomes(stack.down(only=["instance-role"]))["instance-role"] == "absent"
    iam().get_role(RoleName=NAME)  # still there


def test_strict_refuses_deleting_a_role_that_has_policies_or_a_profile(strict):
    client = make_session(strict).client("iam")
    client.create_role(RoleName="r", AssumeRolePolicyDocument="{}")
    client.attach_role_policy(RoleName="r", PolicyArn=SSM)
    client.create_instance_profile(InstanceProfileName="p")
    client.add_role_to_instance_profile(InstanceProfileName="p", RoleName="r")
    for call in (lambda: client.delete_role(RoleName="r"), lambda: client.delete_instance_profile(InstanceProfileName="p")):
        with pytest.raises(client.exceptions.DeleteConflictException):
            call()
    assert strict.refusals == [("DeleteRole", "DeleteConflict", "order"),
                               ("DeleteInstanceProfile", "DeleteConflict", "order")]


# -- the certificate --------------------------------------------------------------------------

def load(arn):
    return x509.load_pem_x509_certificate(acm().get_certificate(CertificateArn=arn)["Certificate"].encode())


def test_self_signed_certificate(make_stack, strict):
    stack = make_stack()
    result = {r.name: r for r in stack.up(only=["certificate"])}["certificate"]
    assert result.outcome == "created", result.detail
    arn = result.resource_id
    cert = load(arn)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "stylesphere.example.com"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["stylesphere.example.com"]
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 2048
    assert cert.signature_hash_algorithm.name == "sha256"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    now = dt.datetime.now(dt.timezone.utc)
    assert cert.not_valid_before_utc < now - dt.timedelta(minutes=1)
    assert dt.timedelta(days=360) < cert.not_valid_after_utc - now <= dt.timedelta(days=366)
    described = acm().describe_certificate(CertificateArn=arn)["Certificate"]
    assert described["KeyAlgorithm"] == "RSA_2048" and described["Type"] == "IMPORTED"
    tags = {t["Key"]: t["Value"] for t in acm().list_tags_for_certificate(CertificateArn=arn)["Tags"]}
    assert tags["provision:step"] == "certificate" and tags["provision:stack"] == "stylesphere"

    attrs = result.resources[0].attrs
    assert set(attrs) == {"arn", "domain", "self_signed", "not_after"}
    assert attrs["domain"] == "stylesphere.example.com" and attrs["self_signed"] is True
    assert dt.datetime.fromisoformat(attrs["not_after"]) == cert.not_valid_after_utc
    # The private key lives in memory only: never in the state file.
    text = stack.state_file.path.read_text()
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
    state = json.loads(text)
    assert state["resources"]["certificate"]["attrs"] == attrs
    assert state["outputs"]["certificate_arn"] == arn and state["outputs"]["domain"] == "stylesphere.example.com"

    assert outcomes(stack.up(only=["certificate"])) == {"certificate": "kept"}
    assert stack.mutating_calls() == []

    stack.state_file.remove()
    again = {r.name: r for r in stack.up(only=["certificate"])}["certificate"]
    assert again.outcome == "kept" and again.resource_id == arn
    assert stack.mutating_calls() == []

    assert outcomes(stack.down(only=["certificate"])) == {"certificate": "deleted"}
    assert acm().list_certificates()["CertificateSummaryList"] == []
    assert outcomes(stack.down(only=["certificate"])) == {"certificate": "absent"}
    assert stack.mutating_calls() == []


def test_domain_change_reimports_into_the_same_arn(make_stack):
    stack = make_stack()
    arn = stack.up(only=["certificate"])[0].resource_id
    config = dataclasses.replace(stack.config, domain="shop.example.org")
    result = {r.name: r for r in stack.up(only=["certificate"], config=config)}["certificate"]
    assert result.outcome == "updated" and result.resource_id == arn
    assert "domain stylesphere.example.com -> shop.example.org" in result.detail
    assert load(arn).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "shop.example.org"
    assert result.resources[0].attrs["domain"] == "shop.example.org"
    # The re-import kept the tags, so the stack still finds it.
    stack.state_file.remove()
    again = {r.name: r for r in stack.up(only=["certificate"], config=config)}["certificate"]
    assert again.outcome == "kept" and again.resource_id == arn


def test_certificate_expiring_soon_is_renewed_in_place(make_stack, monkeypatch):
    monkeypatch.setattr(certificate_step, "VALIDITY", dt.timedelta(days=10))
    stack = make_stack()
    arn = stack.up(only=["certificate"])[0].resource_id
    monkeypatch.setattr(certificate_step, "VALIDITY", dt.timedelta(days=365))
    result = {r.name: r for r in stack.up(only=["certificate"])}["certificate"]
    assert result.outcome == "updated" and result.resource_id == arn
    assert "expires" in result.detail
    assert load(arn).not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=300)


def test_certificate_delete_waits_while_in_use(make_stack):
    refused = []

    def in_use(**_):
        if len(refused) < 2:
            refused.append(1)
            from strict_base import _Http
            return _Http(400), {"Error": {"Code": "ResourceInUseException", "Message": "in use by a listener"},
                                "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    stack = make_stack()
    stack.up(only=["certificate"])
    stack.hooks.append(("before-call.acm.DeleteCertificate", in_use))
    assert outcomes(stack.down(only=["certificate"])) == {"certificate": "deleted"}
    assert len(refused) == 2
    assert acm().list_certificates()["CertificateSummaryList"] == []


def import_users_certificate(domain="shop.example.org", region=REGION):
    body, key = certificate_step.self_signed(domain)
    return acm(region).import_certificate(Certificate=body, PrivateKey=key)["CertificateArn"]


def test_given_certificate_is_adopted_and_never_deleted(make_stack, strict):
    arn = import_users_certificate()
    stack = make_stack()
    stack.config = dataclasses.replace(stack.config, certificate_arn=arn)
    result = {r.name: r for r in stack.up(only=["certificate"])}["certificate"]
    assert result.outcome == "kept" and result.resource_id == arn
    assert result.resources[0].attrs["self_signed"] is False
    assert stack.mutating_calls() == []
    # `down` looks only for the stack's own certificate: the user's is not even a candidate.
    assert outcomes(stack.down(only=["certificate"])) == {"certificate": "absent"}
    assert "DeleteCertificate" not in [op for _, op in stack.last_ctx.calls]
    acm().describe_certificate(CertificateArn=arn)  # still there


def test_switching_to_a_given_certificate_leaves_nothing_behind_at_down(make_stack, strict):
    stack = make_stack()
    own = {r.name: r for r in stack.up(only=["certificate"])}["certificate"].resource_id
    arn = import_users_certificate()
    given = dataclasses.replace(stack.config, certificate_arn=arn)
    assert {r.name: r for r in stack.up(config=given, only=["certificate"])}["certificate"].resource_id == arn
    assert outcomes(stack.down(only=["certificate"])) == {"certificate": "deleted"}
    remaining = [c["CertificateArn"] for c in acm().list_certificates()["CertificateSummaryList"]]
    assert remaining == [arn] and own not in remaining


def test_unknown_given_certificate_fails_clearly(make_stack):
    arn = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/12345678-1234-1234-1234-123456789012"
    stack = make_stack()
    stack.config = dataclasses.replace(stack.config, certificate_arn=arn)
    result = {r.name: r for r in stack.up(only=["certificate"])}["certificate"]
    assert result.outcome == "failed"
    assert isinstance(result.error, ConfigError) and arn in result.error.message
    assert acm().list_certificates()["CertificateSummaryList"] == []


# -- preflight: --certificate-arn ---------------------------------------------------------------

def checked(make_stack, arn, hooks=()):
    stack = make_stack(hooks=list(hooks))
    ctx = stack.context(dataclasses.replace(stack.config, certificate_arn=arn))
    return check_certificate(ctx)


def test_check_certificate_accepts_an_issued_one_and_none(make_stack):
    assert checked(make_stack, import_users_certificate()) is None
    assert checked(make_stack, None) is None


def test_check_certificate_in_another_region(make_stack):
    arn = import_users_certificate(region="eu-west-1")
    with pytest.raises(ConfigError) as error:
        checked(make_stack, arn)
    assert error.value.exit_code == 2
    assert "eu-west-1" in error.value.message and REGION in error.value.message
    assert "own region" in error.value.hint


def test_check_certificate_unknown(make_stack):
    arn = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/12345678-1234-1234-1234-123456789012"
    with pytest.raises(ConfigError) as error:
        checked(make_stack, arn)
    assert "has no certificate" in error.value.message
    assert ACCOUNT in error.value.message and REGION in error.value.message


def test_check_certificate_not_issued(make_stack):
    arn = acm().request_certificate(DomainName="shop.example.org", ValidationMethod="DNS")["CertificateArn"]
    with pytest.raises(ConfigError) as error:
        checked(make_stack, arn)
    assert "PENDING_VALIDATION" in error.value.message and "not ISSUED" in error.value.message
    assert "validation" in error.value.hint


def test_check_certificate_expired(make_stack):
    arn = import_users_certificate()

    def expired(parsed, **_):
        # ACM refuses to import an expired certificate; one expires after its import.
        parsed["Certificate"]["NotAfter"] = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)

    with pytest.raises(ConfigError) as error:
        checked(make_stack, arn, hooks=[("after-call.acm.DescribeCertificate", expired)])
    assert "expired on 2020-01-01" in error.value.message
