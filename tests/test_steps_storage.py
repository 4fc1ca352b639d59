"""The storage steps on moto with the strict fixture: the assets bucket, the product images and
the app release. Each: apply twice (the second changes nothing), delete twice (the second is a
no-op), found again without the state file."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import boto3
import pytest

import steps.storage.s3_bucket as s3_bucket
from provisioner.engine.errors import ConfigError
from steps.storage.app_release import app_dir, pack_app
from steps.storage.product_images import CACHE_CONTROL, content_type
from steps.storage.s3_bucket import bucket_name, images_base_url

from stacks import ACCOUNT, REGION, make_session, outcomes

BUCKET = f"stylesphere-assets-{ACCOUNT}-{REGION}"
REPO_APP = Path(__file__).resolve().parents[1] / "app"


def s3():
    return boto3.client("s3", region_name=REGION)


def ops(stack):
    return [op for _, op in stack.last_ctx.calls]


def order_refusals(strict):
    return [r for r in strict.refusals if r[2] == "order"]


@pytest.fixture
def app_copy(tmp_path, monkeypatch):
    """A copy of the app (compose file, a backend file and the images) in PROVISION_APP_DIR."""
    root = tmp_path / "app"
    shutil.copytree(REPO_APP / "images", root / "images")
    shutil.copy(REPO_APP / "docker-compose.yml", root / "docker-compose.yml")
    (root / "backend").mkdir()
    (root / "backend" / "wsgi.py").write_text("app = None\n")
    monkeypatch.setenv("PROVISION_APP_DIR", str(root))
    return root


# -- the assets bucket ------------------------------------------------------------------------

def test_bucket_name_is_derived_and_valid():
    class Ctx:
        stack, account, region, endpoint_url = "stylesphere", ACCOUNT, REGION, None

    assert bucket_name(Ctx) == BUCKET
    Ctx.stack, Ctx.region = "a" * 23, "ap-southeast-2"
    assert len(bucket_name(Ctx)) <= 63


def test_images_base_url_on_aws_and_in_the_sandbox():
    class Ctx:
        region, endpoint_url = "eu-west-1", None

    assert images_base_url(Ctx, "b") == "https://b.s3.eu-west-1.amazonaws.com/images/"
    Ctx.endpoint_url = "http://127.0.0.1:5123/"
    assert images_base_url(Ctx, "b") == "http://127.0.0.1:5123/b/images/"


def test_bucket_is_private_but_images_and_tls_only(make_stack, strict):
    stack = make_stack()
    results = {r.name: r for r in stack.up(only=["assets-bucket"])}
    assert results["assets-bucket"].outcome == "created", results["assets-bucket"].detail
    assert results["assets-bucket"].resource_id == BUCKET
    calls = ops(stack)
    # Block Public Access is relaxed (policy only) before the policy goes in.
    assert calls.index("PutPublicAccessBlock") < calls.index("PutBucketPolicy")
    assert order_refusals(strict) == []

    client = s3()
    assert client.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    rules = client.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert client.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": False}
    policy = json.loads(client.get_bucket_policy(Bucket=BUCKET)["Policy"])
    public = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert public == [{"Sid": "PublicReadProductImages", "Effect": "Allow", "Principal": "*",
                       "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/images/*"}]
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert len(deny) == 1
    assert deny[0]["Action"] == "s3:*" and deny[0]["Principal"] == "*"
    assert sorted(deny[0]["Resource"]) == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    tags = {t["Key"]: t["Value"] for t in client.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags["provision:stack"] == "stylesphere" and tags["provision:step"] == "assets-bucket"
    assert tags["Name"] == "stylesphere-assets-bucket" and tags["provision:created-at"]

    engine_outputs = stack.engine(only=["assets-bucket"]).state.outputs
    assert engine_outputs["bucket"] == BUCKET
    assert engine_outputs["images_base_url"] == f"https://{BUCKET}.s3.{REGION}.amazonaws.com/images/"

    again = stack.up(only=["assets-bucket"])
    assert outcomes(again) == {"assets-bucket": "kept"}
    assert stack.mutating_calls() == []


def test_bucket_drift_is_put_back_and_planned_first(make_stack, strict):
    stack = make_stack()
    stack.up(only=["assets-bucket"])
    client = s3()
    client.delete_bucket_policy(Bucket=BUCKET)
    client.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    client.delete_bucket_encryption(Bucket=BUCKET)

    planned = {r.name: r for r in stack.plan(only=["assets-bucket"])}["assets-bucket"]
    assert planned.outcome == "update"
    assert stack.mutating_calls() == []
    assert len(planned.changes) == 3, planned.changes

    result = {r.name: r for r in stack.up(only=["assets-bucket"])}["assets-bucket"]
    assert result.outcome == "updated"
    assert any("Block Public Access" in c for c in result.changes)
    assert any("bucket policy" in c for c in result.changes)
    assert any("encryption" in c for c in result.changes)
    assert order_refusals(strict) == []
    assert json.loads(client.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"][0]["Sid"] == \
        "PublicReadProductImages"
    assert outcomes(stack.up(only=["assets-bucket"])) == {"assets-bucket": "kept"}


def test_bucket_found_without_state(make_stack):
    stack = make_stack()
    stack.up(only=["assets-bucket"])
    stack.state_file.remove()
    assert outcomes(stack.up(only=["assets-bucket"])) == {"assets-bucket": "kept"}
    assert stack.mutating_calls() == []


def test_the_bucket_is_tagged_in_the_create_call(make_stack):
    """No crash window: the tags come with CreateBucket, never in a later PutBucketTagging."""
    stack = make_stack()
    stack.up(only=["assets-bucket"])
    assert "PutBucketTagging" not in ops(stack)
    tags = {t["Key"]: t["Value"] for t in s3().get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags["provision:stack"] == "stylesphere" and tags["provision:step"] == "assets-bucket"


def test_without_s3_tag_resource_the_bucket_is_created_then_tagged(make_stack):
    """Tags at CreateBucket also need s3:TagResource: a policy with only PutBucketTagging is
    refused with AccessDenied, and the bucket is then created and tagged at once."""
    from botocore.exceptions import ClientError

    def refuse_tags_at_creation(params, model, **_):
        if model.name == "CreateBucket" and "Tags" in params.get("CreateBucketConfiguration", {}):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "s3:TagResource"}}, "CreateBucket")

    stack = make_stack(hooks=[("before-parameter-build.s3.CreateBucket", refuse_tags_at_creation)])
    assert outcomes(stack.up(only=["assets-bucket"])) == {"assets-bucket": "created"}
    assert ops(stack).count("CreateBucket") == 1 and "PutBucketTagging" in ops(stack)
    tags = {t["Key"]: t["Value"] for t in s3().get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags["provision:step"] == "assets-bucket"


def test_an_untagged_bucket_with_the_derived_name_is_never_adopted(make_stack, strict):
    """Someone's own bucket that merely has the name the stack would derive: `up` stops (exit 2)
    and `down` leaves it and its objects alone."""
    s3().create_bucket(Bucket=BUCKET)
    s3().put_object(Bucket=BUCKET, Key="their-data.csv", Body=b"precious")
    stack = make_stack()
    # Before any step runs: not twenty resources in, when the bucket's turn comes.
    with pytest.raises(ConfigError, match="refusing to adopt") as refused:
        stack.up()
    assert "no stack's" in refused.value.message
    assert stack.mutating_calls() == []
    assert outcomes(stack.down(only=["assets-bucket"])) == {"assets-bucket": "absent"}
    assert stack.mutating_calls() == []
    assert s3().get_object(Bucket=BUCKET, Key="their-data.csv")["Body"].read() == b"precious"
    with pytest.raises(s3().exceptions.ClientError):
        s3().get_bucket_tagging(Bucket=BUCKET)


def test_strict_refuses_a_public_policy_while_public_policies_are_blocked(strict):
    client = make_session(strict).client("s3")
    client.create_bucket(Bucket="some-bucket")
    public = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::some-bucket/*"}]}
    with pytest.raises(client.exceptions.ClientError) as refused:
        client.put_bucket_policy(Bucket="some-bucket", Policy=json.dumps(public))
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert strict.refusals == [("PutBucketPolicy", "AccessDenied", "order")]
    client.put_public_access_block(Bucket="some-bucket", PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": False})
    client.put_bucket_policy(Bucket="some-bucket", Policy=json.dumps(public))


def test_down_empties_a_versioned_bucket_then_deletes_it(make_stack, strict, monkeypatch):
    # Small batches, so that several DeleteObjects calls are needed, as for > 1000 versions.
    monkeypatch.setattr(s3_bucket, "DELETE_BATCH", 4)
    stack = make_stack()
    stack.up(only=["assets-bucket"])
    client = s3()
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for key in ("releases/a.tar.gz", "images/x.svg", "notes.txt"):
        for version in range(3):
            client.put_object(Bucket=BUCKET, Key=key, Body=f"{key} {version}".encode())
    client.delete_object(Bucket=BUCKET, Key="notes.txt")          # a delete marker
    client.delete_object(Bucket=BUCKET, Key="images/x.svg")       # another
    listed = client.list_object_versions(Bucket=BUCKET)
    assert len(listed["Versions"]) == 9 and len(listed["DeleteMarkers"]) == 2

    results = outcomes(stack.down(only=["assets-bucket"]))
    assert results == {"assets-bucket": "deleted"}
    assert BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]
    calls = ops(stack)
    assert calls.count("DeleteObjects") == 3  # 11 entries in batches of 4
    assert "BucketNotEmpty" not in str(strict.refusals)

    assert outcomes(stack.down(only=["assets-bucket"])) == {"assets-bucket": "absent"}
    assert stack.mutating_calls() == []


# -- product images ---------------------------------------------------------------------------

def test_content_types():
    assert content_type("a.svg") == "image/svg+xml"
    assert content_type("a.PNG") == "image/png"
    assert content_type("a.jpg") == "image/jpeg"
    assert content_type("a.webp") == "image/webp"


def test_product_images_uploaded_with_types_and_cache_headers(make_stack, strict):
    local = sorted(p.name for p in (REPO_APP / "images").iterdir() if p.suffix == ".svg")
    assert local
    stack = make_stack()
    results = {r.name: r for r in stack.up(only=["product-images"])}
    result = results["product-images"]
    assert result.outcome == "created", result.detail
    assert result.resource_id == f"s3://{BUCKET}/images/"
    assert result.resources[0].attrs["count"] == len(local)
    assert len(result.resources[0].attrs["digest"]) == 64
    client = s3()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="images/")["Contents"])
    assert keys == [f"images/{n}" for n in local]
    for name in local:
        head = client.head_object(Bucket=BUCKET, Key=f"images/{name}")
        assert head["ContentType"] == "image/svg+xml"
        assert head["CacheControl"] == CACHE_CONTROL == "public, max-age=86400"
        assert head["ETag"].strip('"') == hashlib.md5((REPO_APP / "images" / name).read_bytes()).hexdigest()
    assert order_refusals(strict) == []

    again = stack.up(only=["product-images"])
    assert set(outcomes(again).values()) == {"kept"}
    assert stack.mutating_calls() == []

    # Found again through the bucket without the state file.
    stack.state_file.remove()
    assert outcomes(stack.up(only=["product-images"]))["product-images"] == "kept"
    assert stack.mutating_calls() == []


def test_changed_image_reuploaded_and_extra_one_removed(make_stack, app_copy):
    stack = make_stack()
    stack.up(only=["product-images"])
    client = s3()
    (app_copy / "images" / "linen-slip-dress.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    client.put_object(Bucket=BUCKET, Key="images/stray.svg", Body=b"<svg/>")
    # Someone re-uploaded an image as binary/octet-stream (the browser would not render it).
    body = (app_copy / "images" / "organic-cotton-tee.svg").read_bytes()
    client.put_object(Bucket=BUCKET, Key="images/organic-cotton-tee.svg", Body=body)

    result = {r.name: r for r in stack.up(only=["product-images"])}["product-images"]
    assert result.outcome == "updated"
    assert any("changed" in c and "linen-slip-dress.svg" in c and "organic-cotton-tee.svg" in c
               for c in result.changes), result.changes
    assert any("stray.svg" in c for c in result.changes), result.changes
    puts = [op for op in ops(stack) if op == "PutObject"]
    assert len(puts) == 2
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="images/")["Contents"]}
    assert "images/stray.svg" not in keys
    assert client.get_object(Bucket=BUCKET, Key="images/linen-slip-dress.svg")["Body"].read() == \
        b"<svg xmlns='http://www.w3.org/2000/svg'/>"
    assert client.head_object(Bucket=BUCKET, Key="images/organic-cotton-tee.svg")["ContentType"] == "image/svg+xml"
    assert outcomes(stack.up(only=["product-images"]))["product-images"] == "kept"


def test_product_images_and_bucket_down_twice(make_stack, strict):
    stack = make_stack()
    stack.up(only=["product-images", "app-release"])
    results = outcomes(stack.down(only=["product-images", "app-release"]))
    assert results == {"assets-bucket": "deleted", "product-images": "deleted", "app-release": "deleted"}
    assert order_refusals(strict) == []
    again = outcomes(stack.down(only=["product-images", "app-release"]))
    assert set(again.values()) == {"absent"}
    assert stack.mutating_calls() == []


# -- the app release --------------------------------------------------------------------------

def test_app_dir_defaults_to_the_repository_app():
    assert app_dir() == REPO_APP.resolve()


def test_app_dir_without_compose_file_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVISION_APP_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as error:
        app_dir()
    assert "docker-compose.yml" in error.value.message and error.value.hint


def test_pack_is_deterministic_and_leaves_out_junk(app_copy):
    for junk in ("frontend/node_modules/react/index.js", "frontend/.next/cache/x", "backend/__pycache__/a.pyc",
                 "backend/old.pyc", ".env", "frontend/.env.local", "frontend/.git/HEAD"):
        path = app_copy / junk
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("junk")
    (app_copy / ".env.example").write_text("IMAGES_BASE_URL=\n")
    first = pack_app(app_copy)
    names = tarfile.open(fileobj=io.BytesIO(first)).getnames()
    assert "docker-compose.yml" in names and "backend/wsgi.py" in names and ".env.example" in names
    assert not [n for n in names if any(j in n for j in ("node_modules", ".next", "__pycache__", ".pyc", ".git"))]
    assert ".env" not in names and "frontend/.env.local" not in names
    for member in tarfile.open(fileobj=io.BytesIO(first)).getmembers():
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")

    # Same content, other times and permission bits (but the executable bit): the same bytes.
    import os
    for path in app_copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (app_copy / "docker-compose.yml").chmod(0o600)
    assert pack_app(app_copy) == first

    (app_copy / "backend" / "wsgi.py").write_text("app = 1\n")
    assert pack_app(app_copy) != first


def test_app_release_keyed_by_content_hash(make_stack, strict, app_copy):
    stack = make_stack()
    result = {r.name: r for r in stack.up(only=["app-release"])}["app-release"]
    assert result.outcome == "created"
    key = result.resource_id
    body = s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    sha = hashlib.sha256(body).hexdigest()
    assert key == f"releases/{sha}.tar.gz"
    assert result.resources[0].attrs == {"bucket": BUCKET, "key": key, "sha256": sha, "size": len(body)}
    assert stack.engine(only=["app-release"]).state.outputs["release_key"] == key
    # Private: the only public statement is on images/.
    policy = json.loads(s3().get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert [s["Resource"] for s in policy["Statement"] if s["Effect"] == "Allow"] == [
        f"arn:aws:s3:::{BUCKET}/images/*"]

    again = {r.name: r for r in stack.up(only=["app-release"])}
    assert again["app-release"].outcome == "kept" and again["app-release"].resource_id == key
    assert stack.mutating_calls() == []

    stack.state_file.remove()
    assert outcomes(stack.up(only=["app-release"]))["app-release"] == "kept"
    assert stack.mutating_calls() == []

    (app_copy / "backend" / "wsgi.py").write_text("app = 2\n")
    changed = {r.name: r for r in stack.up(only=["app-release"])}["app-release"]
    assert changed.outcome == "created"
    assert changed.resource_id != key and changed.resource_id.startswith("releases/")
    assert [op for op in ops(stack) if op == "PutObject"] == ["PutObject"]
    assert order_refusals(strict) == []


def test_bucket_name_taken_by_another_account(make_stack):
    """S3 names are global: a 403 on HeadBucket is another account's bucket."""
    from strict_base import _Http

    def forbidden(**_):
        return _Http(403), {"Error": {"Code": "403", "Message": "Forbidden"}, "ResponseMetadata": {"HTTPStatusCode": 403}}

    stack = make_stack(hooks=[("before-call.s3.HeadBucket", forbidden)])
    # Refused before the walk: nothing is built up to the bucket's turn.
    with pytest.raises(ConfigError, match="another AWS account"):
        stack.up(only=["assets-bucket"])
    assert "CreateBucket" not in ops(stack)
    assert stack.mutating_calls() == []
    assert outcomes(stack.down(only=["assets-bucket"])) == {"assets-bucket": "absent"}


def access_denied(**_):
    from strict_base import refuse

    response = refuse("AccessDenied", "Access Denied", status=403)
    response[1].pop("kind")
    return response


def test_an_account_that_blocks_public_policies_is_named_as_the_cause(make_stack):
    """AWS answers only AccessDenied when the account's own Block Public Access forbids public
    bucket policies (moto does not enforce it, so the refusal is made here)."""
    boto3.client("s3control", region_name=REGION).put_public_access_block(
        AccountId=ACCOUNT, PublicAccessBlockConfiguration={"BlockPublicPolicy": True, "BlockPublicAcls": True,
                                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True})

    stack = make_stack(hooks=[("before-call.s3.PutBucketPolicy", access_denied)])
    result = {r.name: r for r in stack.up(only=["assets-bucket"])}["assets-bucket"]
    assert result.outcome == "failed"
    assert isinstance(result.error, ConfigError)
    assert "blocks public bucket policies" in result.error.message and ACCOUNT in result.error.message
    assert "BlockPublicPolicy" in result.error.hint


def test_access_denied_on_the_policy_stays_access_denied_when_the_account_setting_cannot_be_read(make_stack):
    """Without s3:GetAccountPublicAccessBlock the cause cannot be told: the refusal is not retried
    (AccessDenied is never retried blind) and stays the permission error it is."""
    refusal = refused_while_propagating(99)
    stack = make_stack(hooks=[("before-call.s3.PutBucketPolicy", refusal),
                              ("before-call.s3-control.GetPublicAccessBlock", access_denied)])
    result = {r.name: r for r in stack.up(only=["assets-bucket"])}["assets-bucket"]
    assert result.outcome == "failed"
    assert "access denied for s3:PutBucketPolicy" in result.error.message
    assert refusal.calls == 1


def refused_while_propagating(times):
    """AWS applies PutPublicAccessBlock asynchronously: the bucket policy put right after it is
    refused as public (AccessDenied) `times` times, then accepted."""
    def hook(**_):
        hook.calls += 1
        return access_denied() if hook.calls <= times else None

    hook.calls = 0
    return hook


def test_a_policy_refused_while_block_public_access_propagates_is_retried(make_stack):
    """The account allows public policies (no account-level setting), so the refusal is the
    bucket's own new setting not yet in effect: retried, and the first `up` succeeds."""
    refusal = refused_while_propagating(3)
    stack = make_stack(hooks=[("before-call.s3.PutBucketPolicy", refusal)])
    result = {r.name: r for r in stack.up(only=["assets-bucket"])}["assets-bucket"]
    assert result.outcome == "created", result.error
    assert refusal.calls == 4
    policy = json.loads(s3().get_bucket_policy(Bucket=f"stylesphere-assets-{ACCOUNT}-{REGION}")["Policy"])
    assert policy["Statement"]


def test_a_refusal_that_outlasts_the_propagation_deadline_fails_naming_the_wait(make_stack, monkeypatch):
    from provisioner.engine import retries

    monkeypatch.setitem(retries.TIMEOUTS, "public-access-block", 0.3)
    refusal = refused_while_propagating(10_000)
    stack = make_stack(hooks=[("before-call.s3.PutBucketPolicy", refusal)])
    result = {r.name: r for r in stack.up(only=["assets-bucket"])}["assets-bucket"]
    assert result.outcome == "failed"
    assert "AccessDenied for" in result.error.message and "Block Public Access" in result.error.message
    assert refusal.calls > 2