"""The app's logs (--monitoring) and CodeBuild's log group, on moto: the groups applied twice and
deleted twice, their retention converged, the instance role's statements scoped to the app's
group, the launch template ordered after it, the compose file's logging with and without
monitoring, and `provision logs --app` (lines, --since, pagination, --follow, a stack without it)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import boto3
import pytest
import yaml

from provisioner.commands.applogs import format_event, parse_since, show_app_logs
from provisioner.engine.errors import ConfigError
from provisioner.engine.registry import build_steps
from provisioner.shape.config import StackConfig

from stacks import REGION, ZONES, outcomes, tagged_leftovers
from test_cli import cli, state_dir  # noqa: F401  (fixtures)
from test_fleet import hooks  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
GROUP = "/provision/stylesphere/app"
BUILD_GROUP = "/aws/codebuild/stylesphere-image-build"
LOGS = ["app-log-group", "build-log-group"]


def config(**more):
    return StackConfig(zones=list(ZONES), **{"monitoring": True, **more})


def logs():
    return boto3.client("logs", region_name=REGION)


def group(name):
    [found] = [g for g in logs().describe_log_groups(logGroupNamePrefix=name)["logGroups"] if g["logGroupName"] == name]
    return found, logs().list_tags_log_group(logGroupName=name)["tags"]


def now_ms(**ago):
    return int((dt.datetime.now(dt.timezone.utc) - dt.timedelta(**ago)).timestamp() * 1000)


def put(stream, *messages, at=None, group_name=GROUP):
    """As Docker's awslogs driver writes: one stream per instance and container."""
    client = logs()
    if stream not in [s["logStreamName"] for s in client.describe_log_streams(logGroupName=group_name)["logStreams"]]:
        client.create_log_stream(logGroupName=group_name, logStreamName=stream)
    at = at or now_ms()
    client.put_log_events(logGroupName=group_name, logStreamName=stream,
                          logEvents=[{"timestamp": at + n, "message": m} for n, m in enumerate(messages)])


# -- the groups -----------------------------------------------------------------------------------

def test_both_groups_apply_twice_then_delete_twice(make_stack):
    stack = make_stack(config=config())
    first = outcomes(stack.up(only=LOGS))
    assert first == {"app-log-group": "created", "build-log-group": "created"}, first
    for name in (GROUP, BUILD_GROUP):
        item, tags = group(name)
        assert item["retentionInDays"] == 14
        assert tags["provision:stack"] == "stylesphere"
    assert group(GROUP)[1]["provision:step"] == "app-log-group"

    second = stack.up(only=LOGS)
    assert set(outcomes(second).values()) == {"kept"}, [(r.name, r.outcome, r.detail) for r in second]
    assert stack.mutating_calls() == []

    assert set(outcomes(stack.down(only=LOGS)).values()) == {"deleted"}
    assert logs().describe_log_groups(logGroupNamePrefix="/provision/")["logGroups"] == []
    assert tagged_leftovers("stylesphere") == []
    assert set(outcomes(stack.down(only=LOGS)).values()) == {"absent"}
    assert stack.mutating_calls() == []


def test_a_new_retention_and_a_removed_tag_are_put_back(make_stack):
    stack = make_stack(config=config())
    stack.up(only=["app-log-group"])
    logs().untag_log_group(logGroupName=GROUP, tags=["provision:step"])
    result = stack.up(config=config(log_retention_days=30), only=["app-log-group"])
    assert outcomes(result) == {"app-log-group": "updated"}
    item, tags = group(GROUP)
    assert item["retentionInDays"] == 30 and tags["provision:step"] == "app-log-group"


def test_a_group_of_that_name_that_is_not_the_stacks_is_refused(make_stack):
    logs().create_log_group(logGroupName=GROUP, tags={"owner": "someone"})
    stack = make_stack(config=config())
    with pytest.raises(ConfigError, match="not this stack's"):
        build_steps(config())["app-log-group"].check_name(stack.context(), None)


def test_retention_takes_only_what_cloudwatch_logs_accepts():
    config(log_retention_days=3653).validate_logs()
    for wrong in (0, 15, 10_000, True):
        with pytest.raises(ConfigError, match="retention CloudWatch Logs accepts"):
            config(log_retention_days=wrong).validate_logs()


def test_without_monitoring_there_is_no_app_group_and_the_build_group_stays():
    steps = build_steps(StackConfig(zones=list(ZONES)))
    assert "app-log-group" not in steps and "build-log-group" in steps
    assert "app-log-group" not in steps["launch-template"].depends_on
    assert "build-log-group" not in build_steps(StackConfig(zones=list(ZONES), build_on_instance=True))


# -- the instances ----------------------------------------------------------------------------------

def test_the_instances_wait_for_the_group_and_may_write_only_to_it(make_stack):
    from steps.compute.launch_template import metadata_options

    steps = build_steps(config())
    assert steps["launch-template"].needs["app-log-group"] == "created"
    assert "app-log-group" in steps["instance-role"].depends_on
    # The driver runs in the daemon on the host: no second hop for the containers.
    assert metadata_options(config())["HttpPutResponseHopLimit"] == 1
    assert metadata_options(config(database="postgres"))["HttpPutResponseHopLimit"] == 2

    stack = make_stack(config=config())
    stack.up(only=["instance-role"])
    iam = boto3.client("iam", region_name=REGION)
    role = stack.state_file.read().resources["instance-role"]["id"]
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    statements = [s for n in names for s in iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"]["Statement"]]
    [write] = [s for s in statements if s.get("Sid") == "WriteAppLogs"]
    arn = group(GROUP)[0]["arn"].removesuffix(":*")
    assert sorted(write["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert write["Resource"] == [arn, f"{arn}:log-stream:*"]
    assert not [s for s in statements if any(a.startswith("logs:") for a in _list(s["Action"])) and s is not write]


def _list(value):
    return value if isinstance(value, list) else [value]


def test_the_compose_file_logs_to_the_group_only_with_its_override():
    base = yaml.safe_load((ROOT / "app/docker-compose.yml").read_text())
    override = yaml.safe_load((ROOT / "app/docker-compose.awslogs.yml").read_text())
    for service in ("backend", "frontend"):
        assert base["services"][service]["logging"]["driver"] == "json-file"
        logging = override["services"][service]["logging"]
        assert logging["driver"] == "awslogs"
        options = logging["options"]
        assert options["awslogs-group"].startswith("${AWSLOGS_GROUP")
        assert options["awslogs-region"].startswith("${AWSLOGS_REGION")
        assert options["awslogs-create-group"] == "false"
        assert options["awslogs-stream"] == f"${{AWSLOGS_INSTANCE:?the instance id}}/{service}"
        # Options the awslogs driver refuses (json-file's) are not in the override.
        assert not {"max-size", "max-file"} & set(options)


def test_the_boot_script_names_the_group_only_with_monitoring(make_stack):
    import userdata

    common = dict(region=REGION, release_bucket="stylesphere-assets-1", release_key="releases/app.tar.gz",
                  images_base_url="https://stylesphere-assets-1.s3.us-east-1.amazonaws.com/images/")
    script = userdata.render_bootstrap(**common, app_environment={"AWSLOGS_GROUP": GROUP, "AWSLOGS_REGION": REGION})
    assert f"APP_LOG_GROUP={GROUP}" in script and f"AWSLOGS_GROUP={GROUP}" in script
    assert "APP_LOG_GROUP=''" in userdata.render_bootstrap(**common)


# -- CodeBuild's group ------------------------------------------------------------------------------

def test_the_build_project_logs_to_the_tools_group(make_stack):
    stack = make_stack(config=config())
    result = outcomes(stack.up(only=["build-project"]))
    assert result["build-log-group"] == "created" and result["build-project"] == "created"
    project = boto3.client("codebuild", region_name=REGION).batch_get_projects(
        names=["stylesphere-image-build"])["projects"][0]
    assert project["logsConfig"]["cloudWatchLogs"] == {"status": "ENABLED", "groupName": BUILD_GROUP}
    assert group(BUILD_GROUP)[1]["provision:step"] == "build-log-group"


def test_the_group_codebuild_made_untagged_is_taken_over(make_stack):
    logs().create_log_group(logGroupName=BUILD_GROUP)  # as CodeBuild made it before
    stack = make_stack(config=config())
    build_steps(config())["build-log-group"].check_name(stack.context(), None)
    assert outcomes(stack.up(only=["build-log-group"])) == {"build-log-group": "updated"}
    item, tags = group(BUILD_GROUP)
    assert tags["provision:stack"] == "stylesphere" and item["retentionInDays"] == 14


# -- provision logs --app ---------------------------------------------------------------------------

def test_lines_say_time_instance_and_container():
    line = format_event({"timestamp": 1767225600123, "logStreamName": "i-0abc/backend", "message": "GET /api 200\n"})
    assert line == "2026-01-01T00:00:00.123Z i-0abc backend GET /api 200"


def test_since_reads_durations_and_times():
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
    ms = lambda d: int(d.timestamp() * 1000)  # noqa: E731
    assert parse_since("10m", now) == ms(now - dt.timedelta(minutes=10))
    assert parse_since("2h", now) == ms(now - dt.timedelta(hours=2))
    assert parse_since("1d", now) == ms(now - dt.timedelta(days=1))
    assert parse_since("2026-01-01T09:30", now) == ms(dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone.utc))
    assert parse_since("2026-01-01T10:30+01:00", now) == ms(dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone.utc))
    for wrong in ("yesterday", "0m", "2027-01-01T00:00"):
        with pytest.raises(ConfigError):
            parse_since(wrong, now)


@pytest.fixture
def monitored(hooks, state_dir):  # noqa: F811
    """A stack built with --monitoring, its group made (the rest of the stack is not needed)."""
    from provisioner.engine.state import StackState, StateFile
    from stacks import ACCOUNT

    StateFile(state_dir, "stylesphere").check_dir()
    state = StackState(stack="stylesphere", account=ACCOUNT, region=REGION, config=config().to_dict())
    StateFile(state_dir, "stylesphere").save(state)
    logs().create_log_group(logGroupName=GROUP)
    return state_dir


def test_logs_app_prints_every_instances_lines_in_time_order(monitored):
    put("i-0aaa/backend", "booting gunicorn", at=now_ms(minutes=5))
    put("i-0bbb/frontend", "ready on 3000", at=now_ms(minutes=4))
    put("i-0aaa/backend", "an hour ago", at=now_ms(hours=1))
    result = cli("logs", "--app", state_dir=monitored)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [l.split(" ", 1)[1] for l in lines] == ["i-0aaa backend booting gunicorn", "i-0bbb frontend ready on 3000"]
    longer = cli("logs", "--app", "--since", "2h", state_dir=monitored)
    assert "i-0aaa backend an hour ago" in longer.stdout


def test_every_page_is_read(monitored, hooks):  # noqa: F811
    calls = []

    def small_pages(params, **kwargs):
        params["limit"] = 2
        calls.append(params.get("nextToken"))

    hooks.append(("provide-client-params.logs.FilterLogEvents", small_pages))
    put("i-0aaa/backend", *[f"line {n}" for n in range(5)], at=now_ms(minutes=1))
    result = cli("logs", "--app", state_dir=monitored)
    assert result.exit_code == 0, result.output
    assert [l.rsplit(" ", 2)[-2:] for l in result.stdout.splitlines()] == [["line", str(n)] for n in range(5)]
    assert len(calls) >= 3 and calls[0] is None and all(calls[1:])


def test_follow_shows_new_lines_once_and_ctrl_c_ends_it():
    from moto import mock_aws

    with mock_aws():
        logs().create_log_group(logGroupName=GROUP)
        put("i-0aaa/backend", "first", at=now_ms(seconds=30))
        shown, naps = [], []

        def sleep(seconds):
            naps.append(seconds)
            if len(naps) == 1:
                put("i-0bbb/frontend", "second")  # arrives between two reads
            elif len(naps) == 3:
                raise KeyboardInterrupt

        code = show_app_logs(logs(), GROUP, now_ms(minutes=10), follow=True, write=shown.append,
                             note=shown.append, delay=0.01, sleep=sleep)
    assert code == 130
    assert [l.split(" ", 1)[1] for l in shown] == ["i-0aaa backend first", "i-0bbb frontend second"]
    assert naps == [0.01, 0.01, 0.01]


def test_follow_forgets_the_ids_no_read_can_return_again():
    from provisioner.commands.applogs import forget_before, new_events

    seen = {}
    events = [{"eventId": "old", "timestamp": 1_000, "message": "a"},
              {"eventId": "recent", "timestamp": 90_000, "message": "b"}]
    assert [e["eventId"] for e in new_events(events, seen)] == ["old", "recent"]
    forget_before(seen, 60_000)
    assert seen == {"recent": 90_000}
    # The overlap still keeps the recent line from repeating.
    assert new_events(events[1:], seen) == []


def test_a_group_without_events_says_so(monitored):
    result = cli("logs", "--app", state_dir=monitored)
    assert result.exit_code == 0 and result.stdout.strip() == "" and "no events in" in result.text


def test_a_stack_without_monitoring_says_how_to_turn_it_on(hooks, state_dir):  # noqa: F811
    result = cli("logs", "--app", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "without --monitoring" in result.text and "provision up --monitoring" in result.text


def test_a_missing_group_and_misused_flags_are_refused(monitored):
    logs().delete_log_group(logGroupName=GROUP)
    missing = cli("logs", "--app", state_dir=monitored)
    assert missing.exit_code == 2 and "does not exist" in missing.text
    assert cli("logs", "--since", "10m", state_dir=monitored).exit_code == 2
    assert cli("logs", "--app", "--since", "soon", state_dir=monitored).exit_code == 2
