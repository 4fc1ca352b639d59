"""The build tier on moto with the strict fixture: the ECR repository, CodeBuild's role and
project, and the image build. Each step applied twice (the second changes nothing) and deleted
twice (the second is a no-op). moto's CodeBuild runs no build, so the build's phases (queued,
provisioning, building, then success or failure) are answered by a before-call hook, as are the
sequences real AWS makes and moto does not: a new service role refused by CreateProject for a
moment."""

from __future__ import annotations

import json

import boto3
import pytest

from provisioner.engine.context import Reporter, is_mutating
from provisioner.engine.errors import BuildFailed
from provisioner.shape.config import StackConfig
from steps.build.build_role import build_role_name, log_group_name
from steps.build.codebuild_project import BUILD_IMAGE, COMPUTE_TYPE
from steps.build.ecr_repository import KEEP_IMAGES, LIFECYCLE_POLICY

from stacks import REGION, ZONES, outcomes
from strict_base import _Http, refuse
from test_cli import cli, state_dir  # noqa: F401  (fixtures)
from test_fleet import hooks  # noqa: F401  (fixtures)

REPOSITORY = "provision/stylesphere"
PROJECT = "stylesphere-image-build"
BUILD_STEPS = ["image-build"]


def ecr():
    return boto3.client("ecr", region_name=REGION)


def codebuild():
    return boto3.client("codebuild", region_name=REGION)


def manifest(name):
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"digest": f"sha256:{name}", "size": 0,
                                  "mediaType": "application/vnd.docker.container.image.v1+json"}, "layers": []})


def now_ms() -> int:
    # CloudWatch Logs drops events older than 14 days (and moto does too).
    import time

    return int(time.time() * 1000)


def body(params) -> dict:
    """The request of a JSON-protocol call, as a before-call hook sees it."""
    raw = params.get("body") or b"{}"
    return json.loads(raw) if isinstance(raw, (bytes, str)) else raw


def refusal(code, message):
    http, parsed = refuse(code, message)
    parsed.pop("kind", None)
    return http, parsed


def mutating(stack):
    return [op for _, op in stack.last_ctx.calls if is_mutating(op)]


def ops(stack):
    return [op for _, op in stack.last_ctx.calls]


class Recorder(Reporter):
    def __init__(self):
        self.seen: list[tuple[str, str, str]] = []

    def step(self, name, state, detail=""):
        self.seen.append((name, state, detail))


def up(stack, only, reporter=None):
    engine = stack.engine(only=only)
    engine.state.config = engine.ctx.config.to_dict()
    if reporter is not None:
        engine.ctx.reporter = reporter
    return {r.name: r for r in engine.up()}


def build_response(build_id, status, phase, phases=(), logs=None):
    build = {"id": build_id, "arn": f"arn:aws:codebuild:{REGION}:123456789012:build/{build_id}",
             "buildStatus": status, "currentPhase": phase, "projectName": PROJECT,
             "phases": list(phases), "logs": logs or {}}
    return _Http(200), {"builds": [build], "buildsNotFound": [], "ResponseMetadata": {"HTTPStatusCode": 200}}


def scripted_builds(answers):
    """A BatchGetBuilds hook answering the given (status, phase, phases, logs) in turn for the
    build `up` started (the last one stays), and moto for any other call."""
    state = {"n": 0}

    def hook(params, **_):
        ids = body(params).get("ids", [])
        if len(ids) != 1:
            return None  # the look for a build already running: moto answers
        answer = answers[min(state["n"], len(answers) - 1)]
        state["n"] += 1
        return build_response(ids[0], *answer)
    return state, hook


# -- the repository --------------------------------------------------------------------------------

def test_repository_is_private_immutable_kept_small_and_applied_twice(make_stack):
    stack = make_stack()
    first = up(stack, ["image-repository"])
    assert first["image-repository"].outcome == "created"
    repository = ecr().describe_repositories(repositoryNames=[REPOSITORY])["repositories"][0]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"]["scanOnPush"] is True
    policy = json.loads(ecr().get_lifecycle_policy(repositoryName=REPOSITORY)["lifecyclePolicyText"])
    assert policy == LIFECYCLE_POLICY and policy["rules"][0]["selection"]["countNumber"] == KEEP_IMAGES
    tags = {t["Key"]: t["Value"] for t in ecr().list_tags_for_resource(
        resourceArn=repository["repositoryArn"])["tags"]}
    assert tags["provision:stack"] == "stylesphere" and tags["provision:step"] == "image-repository"
    # Tagged in CreateRepository itself, never by a later TagResource.
    assert "TagResource" not in ops(stack)
    second = up(stack, ["image-repository"])
    assert second["image-repository"].outcome == "kept"
    assert mutating(stack) == []


def test_a_removed_lifecycle_policy_is_put_back(make_stack):
    stack = make_stack()
    up(stack, ["image-repository"])
    ecr().delete_lifecycle_policy(repositoryName=REPOSITORY)
    again = up(stack, ["image-repository"])
    assert again["image-repository"].outcome == "updated"
    assert "lifecycle policy" in again["image-repository"].detail
    assert json.loads(ecr().get_lifecycle_policy(repositoryName=REPOSITORY)["lifecyclePolicyText"]) == LIFECYCLE_POLICY


def test_down_deletes_the_repository_with_its_images_and_twice_is_a_no_op(make_stack):
    stack = make_stack()
    up(stack, ["image-repository"])
    # An image that no step knows of (pushed by hand): AWS refuses DeleteRepository without force
    # (RepositoryNotEmptyException), as moto does.
    ecr().put_image(repositoryName=REPOSITORY, imageTag="by-hand",
                    imageManifest=manifest("by-hand"))
    with pytest.raises(ecr().exceptions.RepositoryNotEmptyException):
        ecr().delete_repository(repositoryName=REPOSITORY)
    first = outcomes(stack.down(only=["image-repository"]))
    assert first["image-repository"] == "deleted"
    assert ecr().describe_repositories()["repositories"] == []
    second = outcomes(stack.down(only=["image-repository"]))
    assert second["image-repository"] == "absent"


def test_a_repository_of_the_name_without_the_stacks_tags_is_refused(make_stack):
    ecr().create_repository(repositoryName=REPOSITORY)
    stack = make_stack()
    result = up(stack, ["image-repository"])["image-repository"]
    assert result.outcome == "failed" and "not this stack's" in result.detail
    assert ecr().describe_repositories(repositoryNames=[REPOSITORY])["repositories"]


# -- the project and its role ---------------------------------------------------------------------

def test_project_builds_privileged_on_general1_small_with_its_own_role(make_stack):
    stack = make_stack()
    first = up(stack, ["build-project"])
    assert {first[n].outcome for n in ("build-role", "build-project", "image-repository")} == {"created"}
    project = codebuild().batch_get_projects(names=[PROJECT])["projects"][0]
    assert project["environment"]["privilegedMode"] is True
    assert project["environment"]["computeType"] == COMPUTE_TYPE and project["environment"]["image"] == BUILD_IMAGE
    assert project["serviceRole"].endswith(f"role/provision/{build_role_name(stack.last_ctx)}")
    variables = {v["name"]: v["value"] for v in project["environment"]["environmentVariables"]}
    assert variables["REPOSITORY_NAME"] == REPOSITORY and variables["REPOSITORY_URI"].endswith("/" + REPOSITORY)
    assert "docker build --platform linux/amd64" in project["source"]["buildspec"]
    assert {t["key"]: t["value"] for t in project["tags"]}["provision:step"] == "build-project"
    # The role: assumed by CodeBuild only; reads the releases, pushes to the one repository, logs.
    iam = boto3.client("iam")
    role = iam.get_role(RoleName=build_role_name(stack.last_ctx))["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "codebuild.amazonaws.com"}
    policy = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="build-app-images")["PolicyDocument"]
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadAppReleases"]["Resource"].endswith("/releases/*")
    assert by_sid["PushAppImages"]["Resource"].endswith(f":repository/{REPOSITORY}")
    assert "ecr:PutImage" in by_sid["PushAppImages"]["Action"]
    assert all(log_group_name(stack.last_ctx) in r for r in by_sid["WriteBuildLogs"]["Resource"])
    second = up(stack, ["build-project"])
    assert {r.outcome for r in second.values()} == {"kept"}
    assert mutating(stack) == []


def test_a_new_service_role_refused_by_create_project_once_is_retried(make_stack):
    """Real CodeBuild: a role made seconds ago is not assumable yet, and CreateProject answers
    InvalidInputException "CodeBuild is not authorized to perform: sts:AssumeRole"."""
    refused = []

    def not_yet(params, **_):
        if not refused:
            refused.append(body(params)["name"])
            return refusal("InvalidInputException", "CodeBuild is not authorized to perform: sts:AssumeRole on "
                           f"arn:aws:iam::123456789012:role/provision/stylesphere-{REGION}-build")
        return None

    stack = make_stack(hooks=[("before-call.codebuild.CreateProject", not_yet)])
    result = up(stack, ["build-project"])["build-project"]
    assert result.outcome == "created", result.detail
    assert refused == [PROJECT]
    assert codebuild().batch_get_projects(names=[PROJECT])["projects"]


def test_another_invalid_input_is_not_retried(make_stack):
    def invalid(params, **_):
        invalid.calls += 1
        return refusal("InvalidInputException", "Invalid compute type provided")

    invalid.calls = 0

    stack = make_stack(hooks=[("before-call.codebuild.CreateProject", invalid)])
    result = up(stack, ["build-project"])["build-project"]
    assert result.outcome == "failed" and "Invalid compute type" in result.detail
    assert invalid.calls == 1


def test_down_deletes_project_log_group_and_role_and_twice_is_a_no_op(make_stack):
    stack = make_stack()
    up(stack, ["build-project"])
    logs = boto3.client("logs", region_name=REGION)
    # The tool made the project's group, tagged, before the project.
    assert logs.list_tags_log_group(logGroupName=log_group_name(stack.last_ctx))["tags"]["provision:step"] == \
        "build-log-group"
    first = outcomes(stack.down(only=["build-project"]))
    assert first["build-project"] == "deleted" and first["build-role"] == "deleted"
    assert first["build-log-group"] == "deleted"
    assert codebuild().batch_get_projects(names=[PROJECT])["projects"] == []
    assert logs.describe_log_groups(logGroupNamePrefix="/aws/codebuild/")["logGroups"] == []
    second = outcomes(stack.down(only=["build-project"]))
    assert second["build-project"] == "absent" and second["build-role"] == "absent"


# -- the build ------------------------------------------------------------------------------------

def test_a_build_is_waited_for_through_its_phases_and_a_second_up_makes_none(make_stack):
    state, hook = scripted_builds([
        ("IN_PROGRESS", "QUEUED", ()),
        ("IN_PROGRESS", "PROVISIONING", ()),
        ("IN_PROGRESS", "BUILD", ()),
        ("SUCCEEDED", "COMPLETED", ()),
    ])
    stack = make_stack(hooks=[("before-call.codebuild.BatchGetBuilds", hook)])
    recorder = Recorder()
    first = up(stack, BUILD_STEPS, recorder)
    assert first["image-build"].outcome == "created", first["image-build"].detail
    assert ops(stack).count("StartBuild") == 1
    shown = [detail for name, _, detail in recorder.seen if name == "image-build" and detail.startswith("CodeBuild")]
    phases = [d.split()[1] for d in shown]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [
        "QUEUED", "PROVISIONING", "BUILD", "COMPLETED"]
    assert all("s)" in d and "build stylesphere-image-build:" in d for d in shown)
    sha = stack.last_ctx.resources["app-release"].attrs["sha256"]
    assert first["image-build"].resource_id == sha
    images = ecr().describe_images(repositoryName=REPOSITORY)["imageDetails"]
    assert sorted(t for i in images for t in i["imageTags"]) == [f"{sha}-backend", f"{sha}-frontend"]
    # The release has its images: no build, no change.
    second = up(stack, BUILD_STEPS)
    assert second["image-build"].outcome == "kept"
    assert "StartBuild" not in ops(stack) and mutating(stack) == []


def test_images_already_tagged_with_the_hash_mean_no_build(make_stack):
    stack = make_stack()
    up(stack, ["image-repository", "app-release"])
    sha = stack.last_ctx.resources["app-release"].attrs["sha256"]
    for service in ("backend", "frontend"):
        ecr().put_image(repositoryName=REPOSITORY, imageTag=f"{sha}-{service}", imageManifest=manifest(service))
    result = up(stack, BUILD_STEPS)
    assert result["image-build"].outcome == "kept"
    assert "StartBuild" not in ops(stack)


def test_only_one_image_of_the_release_means_a_build(make_stack):
    stack = make_stack()
    up(stack, ["image-repository", "app-release"])
    sha = stack.last_ctx.resources["app-release"].attrs["sha256"]
    ecr().put_image(repositoryName=REPOSITORY, imageTag=f"{sha}-backend", imageManifest=manifest("backend"))
    result = up(stack, BUILD_STEPS)
    assert result["image-build"].outcome == "created"
    assert ops(stack).count("StartBuild") == 1


def test_a_failed_build_shows_its_last_log_lines(make_stack):
    logs = boto3.client("logs", region_name=REGION)
    group = f"/aws/codebuild/{PROJECT}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="run-1")
    lines = ["[Container] Running command docker build --platform linux/amd64 -t app frontend",
             "npm error code ERESOLVE", "npm error ERESOLVE could not resolve",
             "[Container] Command did not exit successfully docker build exit status 1"]
    logs.put_log_events(logGroupName=group, logStreamName="run-1",
                        logEvents=[{"timestamp": now_ms() + n, "message": m} for n, m in enumerate(lines)])
    failed_phase = {"phaseType": "BUILD", "phaseStatus": "FAILED", "contexts": [
        {"statusCode": "COMMAND_EXECUTION_ERROR",
         "message": "Error while executing command: docker build. Reason: exit status 1"}]}
    _, hook = scripted_builds([
        ("IN_PROGRESS", "BUILD", ()),
        ("FAILED", "COMPLETED", (failed_phase,), {"groupName": group, "streamName": "run-1"}),
    ])
    stack = make_stack(hooks=[("before-call.codebuild.BatchGetBuilds", hook)])
    result = up(stack, BUILD_STEPS)["image-build"]
    assert result.outcome == "failed"
    assert isinstance(result.error, BuildFailed) and result.error.exit_code == 1
    assert "FAILED in phase BUILD" in result.detail and "exit status 1" in result.detail
    for line in lines:
        assert f"| {line}" in result.detail
    assert f"aws logs tail {group}" in result.error.hint


def test_a_build_of_the_release_already_running_is_waited_for_not_started_again(make_stack):
    stack = make_stack()
    up(stack, ["build-project", "app-release"])
    sha = stack.last_ctx.resources["app-release"].attrs["sha256"]
    running = {"id": f"{PROJECT}:earlier", "buildStatus": "IN_PROGRESS", "currentPhase": "BUILD",
               "environment": {"environmentVariables": [{"name": "IMAGE_TAG", "value": sha}]}}

    def listed(params, **_):
        return _Http(200), {"ids": [running["id"]], "ResponseMetadata": {"HTTPStatusCode": 200}}

    def described(params, **_):
        if body(params)["ids"] != [running["id"]]:
            return None
        build = dict(running)
        if described.polls:
            build.update(buildStatus="SUCCEEDED", currentPhase="COMPLETED")
            # The earlier run's build pushed the images meanwhile.
            for service in ("backend", "frontend"):
                ecr().put_image(repositoryName=REPOSITORY, imageTag=f"{sha}-{service}", imageManifest=manifest(service))
        described.polls += 1
        return _Http(200), {"builds": [build], "ResponseMetadata": {"HTTPStatusCode": 200}}

    described.polls = 0
    stack.hooks = [("before-call.codebuild.ListBuildsForProject", listed),
                   ("before-call.codebuild.BatchGetBuilds", described)]
    result = up(stack, BUILD_STEPS)["image-build"]
    assert result.outcome == "created", result.detail
    assert "StartBuild" not in ops(stack)
    assert up(stack, BUILD_STEPS)["image-build"].outcome == "kept"


def test_image_build_down_twice(make_stack):
    stack = make_stack()
    up(stack, BUILD_STEPS)
    first = outcomes(stack.down(only=BUILD_STEPS))
    assert first["image-build"] == "deleted" and first["image-repository"] == "deleted"
    second = outcomes(stack.down(only=BUILD_STEPS))
    assert set(second.values()) == {"absent"}


# -- the boot path the launch template carries ----------------------------------------------------

def _user_data(stack):
    import base64
    import gzip

    ec2 = boto3.client("ec2", region_name=REGION)
    template = stack.last_ctx.resources["launch-template"].id
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template, Versions=["$Latest"])[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    raw = base64.b64decode(data["UserData"])
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


def test_the_instances_pull_the_release_images_and_the_role_may_pull_them(make_stack):
    stack = make_stack()
    results = up(stack, ["launch-template"])
    assert results["launch-template"].outcome == "created", results["launch-template"].detail
    sha = stack.last_ctx.resources["app-release"].attrs["sha256"]
    script = _user_data(stack)
    assert f"IMAGE_TAG={sha}\n" in script and f"/{REPOSITORY}\n" in script
    iam = boto3.client("iam")
    policy = iam.get_role_policy(RoleName=f"stylesphere-{REGION}-web", PolicyName="read-app-releases")["PolicyDocument"]
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["PullAppImages"]["Resource"].endswith(f":repository/{REPOSITORY}")
    assert sorted(by_sid["PullAppImages"]["Action"]) == [
        "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert by_sid["LogInToEcr"] == {"Sid": "LogInToEcr", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken",
                                    "Resource": "*"}


def test_build_on_instance_keeps_the_instance_build_and_makes_no_build_steps(make_stack):
    config = StackConfig(zones=list(ZONES), build_on_instance=True)
    stack = make_stack(config=config)
    results = up(stack, ["launch-template"])
    assert not {"image-repository", "build-role", "build-project", "image-build"} & set(results)
    script = _user_data(stack)
    assert "IMAGE_REPOSITORY=''\n" in script and "IMAGE_TAG=''\n" in script
    assert f"BUDGET={600 - 60}\n" in script
    iam = boto3.client("iam")
    policy = iam.get_role_policy(RoleName=f"stylesphere-{REGION}-web", PolicyName="read-app-releases")["PolicyDocument"]
    assert [s["Sid"] for s in policy["Statement"]] == ["ReadAppReleases"]
    assert ecr().describe_repositories()["repositories"] == []
    assert codebuild().list_projects()["projects"] == []


def test_grace_period_defaults_follow_the_boot_path():
    assert StackConfig().grace_seconds == 360
    assert StackConfig(build_on_instance=True).grace_seconds == 600
    assert StackConfig(grace_period=900).grace_seconds == 900
    from provisioner.engine.errors import ConfigError

    StackConfig(zones=list(ZONES), grace_period=240).validate_compute()
    with pytest.raises(ConfigError, match="300 to 7200 seconds with --build-on-instance"):
        StackConfig(zones=list(ZONES), grace_period=240, build_on_instance=True).validate_compute()


# -- through the CLI ------------------------------------------------------------------------------

def test_up_exits_1_with_the_failed_builds_log_lines(hooks, state_dir):  # noqa: F811
    group = f"/aws/codebuild/{PROJECT}"
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="run-1")
    logs.put_log_events(logGroupName=group, logStreamName="run-1", logEvents=[
        {"timestamp": now_ms(), "message": "Type error: Cannot find module 'next/font'"}])
    _, hook = scripted_builds([("FAILED", "COMPLETED", ({"phaseType": "BUILD", "phaseStatus": "FAILED"},),
                                {"groupName": group, "streamName": "run-1"})])
    hooks.append(("before-call.codebuild.BatchGetBuilds", hook))
    result = cli("up", "--no-wait", state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "Cannot find module 'next/font'" in result.text
    assert "CodeBuild build" in result.text and "FAILED" in result.text
    # Nothing that pulls images was launched without them.
    assert boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups()["AutoScalingGroups"] == []


def test_status_shows_the_image_tag_each_instance_runs(hooks, state_dir):  # noqa: F811
    assert cli("up", "--no-wait", state_dir=state_dir).exit_code == 0
    state = json.loads(open(f"{state_dir}/stylesphere.json").read())
    sha = state["resources"]["image-build"]["id"]
    status = json.loads(cli("status", "--json", state_dir=state_dir).stdout)
    assert len(status["instances"]) == 2
    for instance in status["instances"]:
        assert instance["images"] == sha[:12] and instance["launch_template_version"] == "1", instance
    table = cli("status", state_dir=state_dir).text
    assert f"{sha[:12]} (template v1)" in table


def test_an_arm64_instance_type_is_refused_unless_it_builds_its_own_images(make_stack):
    stack = make_stack(config=StackConfig(zones=list(ZONES), instance_type="t4g.micro"))
    result = up(stack, ["launch-template"])["launch-template"]
    assert result.outcome == "failed" and "linux/amd64" in result.detail and "--build-on-instance" in result.error.hint
    armed = make_stack("armed", config=StackConfig(zones=list(ZONES), instance_type="t4g.micro", build_on_instance=True))
    assert up(armed, ["launch-template"])["launch-template"].outcome == "created"


def test_up_refuses_an_arm64_type_before_anything_is_built(hooks, state_dir):  # noqa: F811
    result = cli("up", "--no-wait", "--instance-type", "t4g.micro", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "linux/amd64" in result.text and "--build-on-instance" in result.text
    assert boto3.client("ec2", region_name=REGION).describe_vpcs(
        Filters=[{"Name": "tag-key", "Values": ["provision:stack"]}])["Vpcs"] == []


def test_a_project_changed_by_hand_is_put_back_and_keeps_others_tags(make_stack):
    stack = make_stack()
    up(stack, ["build-project"])
    # UpdateProject's tags replace the whole set: someone adding one keeps the others.
    tags = codebuild().batch_get_projects(names=[PROJECT])["projects"][0]["tags"]
    codebuild().update_project(name=PROJECT, environment={
        "type": "LINUX_CONTAINER", "image": BUILD_IMAGE, "computeType": "BUILD_GENERAL1_LARGE", "privilegedMode": False},
        tags=tags + [{"key": "team", "value": "web"}])
    planned = {r.name: r for r in stack.plan(only=["build-project"])}["build-project"]
    assert planned.outcome == "update", planned.detail
    assert "environment computeType BUILD_GENERAL1_LARGE -> BUILD_GENERAL1_SMALL" in \
        planned.changes
    result = up(stack, ["build-project"])["build-project"]
    assert result.outcome == "updated", result.detail
    project = codebuild().batch_get_projects(names=[PROJECT])["projects"][0]
    assert project["environment"]["computeType"] == COMPUTE_TYPE and project["environment"]["privilegedMode"] is True
    tags = {t["key"]: t["value"] for t in project["tags"]}
    assert tags["team"] == "web" and tags["provision:step"] == "build-project"
    assert up(stack, ["build-project"])["build-project"].outcome == "kept"


def test_codebuild_is_asked_for_only_where_aws_offers_it():
    from provisioner.account.inventory import offered
    from provisioner.engine.context import RunContext

    def ctx(region):
        return RunContext(stack="t", region=region, config=StackConfig())

    assert offered(ctx("us-east-1"), "codebuild") and offered(ctx("us-east-1"), "ecr")
    # botocore's endpoint data: no CodeBuild in ap-east-2 (ECR is there).
    assert not offered(ctx("ap-east-2"), "codebuild") and offered(ctx("ap-east-2"), "ecr")
    # A region newer than botocore is asked anyway.
    assert offered(ctx("xx-newer-1"), "codebuild")
