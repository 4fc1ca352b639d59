"""Options declared once, and stack files: `provision init`, `-f FILE` on up, plan, status and
down, precedence, and every kind of bad file refused with its line before any AWS call."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from provisioner.shape.config import StackConfig
from provisioner.engine.context import RunContext, is_mutating
from provisioner.shape.options import OPTIONS, markdown_table
from provisioner.shape.stackfile import presets, preset_values, render

from stacks import REGION
from test_cli import cli, run, state_dir  # noqa: F401  (fixtures)
from test_fleet import calls, hooks  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
# The shape flags as they were before they were declared in one place: a contract scripts use.
FLAGS = ["--vpc-cidr", "--public-subnets", "--private-subnets", "--zones", "--nat-per-az", "--single-nat", "--instance-type",
         "--ami", "--min", "--desired", "--max", "--grace-period", "--domain", "--certificate-arn", "--ttl",
         "--expires-at", "--bastion", "--no-bastion", "--ssh-cidr", "--allow-wide-ssh", "--build-on-instance",
         "--build-in-aws"]
# The data tier's.
FLAGS += ["--database", "--db-class", "--db-multi-az", "--db-single-az", "--db-deletion-protection",
          "--no-db-deletion-protection", "--final-snapshot", "--no-final-snapshot", "--data-subnets", "--catalog",
          "--cache", "--cache-node-type", "--shared-files", "--no-shared-files"]
# The edge tier's.
FLAGS += ["--waf", "--no-waf", "--rate-limit", "--block-countries", "--cdn", "--no-cdn"]
# The audit tier's.
FLAGS += ["--audit", "--no-audit"]


def test_the_click_options_are_exactly_the_declared_flags():
    from provisioner.cli.main import main

    for command in ("up", "plan", "policy"):
        params = main.commands[command].params
        shape = [o for p in params for o in p.opts + p.secondary_opts if o in FLAGS or p.name in {x.key for x in OPTIONS}]
        assert sorted(shape) == sorted(FLAGS), command
    fleet_up = main.commands["fleet"].commands["up"]
    assert sorted(o for p in fleet_up.params for o in p.opts + p.secondary_opts if o in FLAGS) == sorted(FLAGS)


def test_every_user_field_of_the_config_has_one_declaration():
    fields = {f.name for f in dataclasses.fields(StackConfig)} - {"roster", "student"}
    declared = {o.field for o in OPTIONS if o.field} | {"expires_at"}
    assert fields == declared
    assert len({o.key for o in OPTIONS}) == len(OPTIONS)


def test_the_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- options table: generated -->\n(.*?)<!-- end of options table -->", readme, re.S)
    assert table and table.group(1) == markdown_table(), "README's options table: run python3 -m provisioner.shape.options"


@pytest.mark.parametrize("preset", sorted(presets()))
def test_each_preset_renders_to_a_file_that_validates(tmp_path, state_dir, preset):  # noqa: F811
    path = tmp_path / "stack.toml"
    result = run("init", "--preset", preset, str(path))
    assert result.exit_code == 0, result.output
    from provisioner.shape.stackfile import file_overrides, load

    loaded = load(str(path))
    assert loaded.values == preset_values(preset)
    StackConfig().merged(file_overrides(loaded)).validate()
    # Every option is in the file, commented out unless the preset sets it.
    text = path.read_text()
    for option in OPTIONS:
        assert re.search(rf"^(# )?{option.key} =", text, re.M), option.key


def test_init_refuses_to_overwrite_and_names_unknown_presets(tmp_path):
    path = tmp_path / "stack.toml"
    assert run("init", str(path)).exit_code == 0
    again = run("init", str(path))
    assert again.exit_code == 2 and "exists" in again.text and "--force" in again.text
    assert run("init", "--force", str(path)).exit_code == 0
    unknown = run("init", "--preset", "stylesphre", str(tmp_path / "x.toml"))
    assert unknown.exit_code == 2 and "did you mean 'stylesphere'" in unknown.text
    listed = run("init", "--preset", "list")
    assert "stylesphere-ha" in listed.text
    printed = run("init", "-")
    assert printed.stdout == render("stylesphere")


def no_calls(monkeypatch):
    seen = []
    original = RunContext._before_call

    def before_call(self, model, context, **kwargs):
        seen.append(model.name)
        return original(self, model, context, **kwargs)

    monkeypatch.setattr(RunContext, "_before_call", before_call)
    return seen


@pytest.mark.parametrize("content, message", [
    ('stack = "demo"\ndesird = 3\n', "line 2: unknown key 'desird'; did you mean 'desired'?"),
    ('stack = "demo"\n\ndesired = "3"\n', 'line 3: desired is "3"; expected a whole number'),
    ('nat_per_az = "yes"\n', "line 1: nat_per_az is \"yes\"; expected true or false"),
    ('vpc_cidr = "10.0.0.0/33"\n', "line 1: vpc_cidr: invalid VPC CIDR '10.0.0.0/33'"),
    ('public_subnets = ["10.0.1.0/24"]\n', "line 1: public_subnets: --public-subnets takes 2 comma-separated CIDRs"),
    ('min = 1\n# a comment\ndesired = 9\n', "line 3: desired: --desired 9 is outside --min 1 .. --max 4"),
    ('desired = [\n', "is not valid TOML"),
    ('[network]\nvpc_cidr = "10.0.0.0/16"\n', "line 1: unknown key 'network'"),
])
def test_a_bad_stack_file_exits_2_with_its_line_and_calls_nothing(tmp_path, state_dir, monkeypatch, content,  # noqa: F811
                                                                    message):
    seen = no_calls(monkeypatch)
    path = tmp_path / "stack.toml"
    path.write_text(content)
    for command in ("up", "plan", "status", "down"):
        result = cli(command, "-f", path, "--yes", state_dir=state_dir) if command == "down" else \
            cli(command, "-f", path, state_dir=state_dir)
        assert result.exit_code == 2, (command, result.output)
        assert message in result.text, (command, result.text)
    assert seen == []
    assert not Path(state_dir, "demo.json").exists() and not Path(state_dir, "stylesphere.json").exists()


def test_a_stack_file_builds_what_its_flags_build_and_flags_override_it(tmp_path, hooks, state_dir, calls):  # noqa: F811
    path = tmp_path / "stack.toml"
    assert run("init", str(path)).exit_code == 0
    text = path.read_text().replace('stack = "stylesphere"', 'stack = "filed"').replace("# desired = 2", "desired = 3")
    text = text.replace("# max = 4", "max = 5")
    path.write_text(text)
    planned = cli("plan", "-f", path, "--desired", "4", state_dir=state_dir)
    assert planned.exit_code == 0, planned.output
    assert "--desired overrides desired = 3 from" in planned.text and "line" in planned.text
    built = cli("up", "-f", path, "--no-wait", state_dir=state_dir)
    assert built.exit_code == 0, built.output
    saved = json.loads((Path(state_dir) / "filed.json").read_text())
    assert (saved["config"]["desired_capacity"], saved["config"]["max_size"]) == (3, 5)
    # The same shape with flags alone: no change at all.
    calls.clear()
    same = cli("up", "--stack", "filed", "--desired", "3", "--max", "5", "--no-wait", state_dir=state_dir)
    assert same.exit_code == 0, same.output
    assert not [op for stack, op in calls if stack == "filed" and is_mutating(op)]
    # The file changed since: plan shows the shape's change; --stack wins over the file's name.
    path.write_text(text.replace("desired = 3", "desired = 2"))
    changed = cli("plan", "-f", path, state_dir=state_dir)
    assert "Shape changes since the stack was last built: desired: 3 -> 2" in changed.text
    elsewhere = cli("plan", "-f", path, "--stack", "other", state_dir=state_dir)
    assert "stack 'other'" in elsewhere.text
    status = cli("status", "-f", path, state_dir=state_dir)
    assert status.exit_code == 0 and "filed" in status.text
    gone = cli("down", "-f", path, "--yes", state_dir=state_dir)
    assert gone.exit_code == 0, gone.output
    assert "Stack 'filed' is gone" in gone.text
