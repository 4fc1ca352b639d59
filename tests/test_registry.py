"""Checks over the whole registry, so a forgotten case in a new step fails here."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from graphlib import TopologicalSorter

import boto3
import pytest

import steps
from provisioner.shape.config import StackConfig
from provisioner.engine.context import TAG_CREATED_AT, TAG_STACK, TAG_STEP
from provisioner.engine.registry import REGISTRY, Step, build_steps, dependency_graph

CONFIGS = {"default": StackConfig(zones=["us-east-1a", "us-east-1b"]),
           "nat-per-az": StackConfig(zones=["us-east-1a", "us-east-1b"], nat_per_az=True)}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_graph_is_whole_and_acyclic(config):
    all_steps = build_steps(config)
    for step in all_steps.values():
        assert set(step.depends_on) <= set(all_steps), step
        assert set(step.may_hold) <= set(all_steps) - {step.name}, step
        assert step.name not in step.depends_on
    list(TopologicalSorter(dependency_graph(all_steps)).static_order())
    list(TopologicalSorter(dependency_graph(all_steps, reverse=True)).static_order())


def test_superset_contains_every_optional_step():
    base = build_steps(CONFIGS["default"])
    full = build_steps(CONFIGS["default"].superset())
    assert set(base) < set(full)
    assert set(build_steps(CONFIGS["nat-per-az"])) <= set(full)


def test_every_step_implements_the_four_moves():
    for cls in REGISTRY.values():
        for move in ("create", "delete", "find_all"):
            implementation = getattr(cls, move)
            assert implementation is not getattr(Step, move), f"{cls.__name__} has no {move}"


def test_every_kind_declares_the_codes_that_mean_it_is_gone():
    """`down` counts a delete that fails with one of these as done: a kind that borrowed another's
    (or a global list) would report a resource deleted that is still there."""
    for cls in REGISTRY.values():
        assert "gone_codes" in vars(cls), f"{cls.__name__} declares no gone_codes of its own"
        assert isinstance(cls.gone_codes, frozenset)
    assert "TargetGroupNotFound" not in REGISTRY["auto_scaling_group"].gone_codes


def test_one_resource_type_per_module():
    modules = {}
    for info in pkgutil.walk_packages(steps.__path__, prefix="steps."):
        module = importlib.import_module(info.name)
        kinds = [c.kind for c in vars(module).values()
                 if inspect.isclass(c) and issubclass(c, Step) and c.__module__ == module.__name__
                 and getattr(c, "kind", None) in REGISTRY]
        modules[info.name] = kinds
        assert len(kinds) <= 1, f"{info.name.replace('.', '/')}.py registers {kinds}"
    assert sorted(k for kinds in modules.values() for k in kinds) == sorted(REGISTRY)


def test_step_modules_sit_in_a_tier_package():
    """The folder list shows the architecture: every step module lives in a tier (steps/network/,
    steps/edge/, ...), never loose at the top, and every tier says in its docstring what it holds."""
    for info in pkgutil.walk_packages(steps.__path__, prefix="steps."):
        module = importlib.import_module(info.name)
        if info.ispkg:
            assert (module.__doc__ or "").strip(), f"{info.name} has no docstring saying what the tier holds"
        else:
            assert info.name.count(".") == 2, f"{info.name}: a step module belongs in a tier package"


def test_derived_names_fit_aws_limits():
    from provisioner.shape.config import AWS_NAME_LIMIT, LONGEST_NAME_SUFFIX, STACK_NAME_MAX

    longest = "a" * STACK_NAME_MAX
    assert len(longest + LONGEST_NAME_SUFFIX) == AWS_NAME_LIMIT
    for step in build_steps(CONFIGS["default"].superset()).values():
        assert len(f"{longest}-{step.name}") <= 255  # EC2 tag values


def test_every_tagged_step_tags_at_creation(make_stack):
    """Tags come with the create call (TagSpecifications), never in a later CreateTags: a crash
    in between would leave an untagged resource that no later run can find."""
    stack = make_stack()
    results = stack.up()
    assert "CreateTags" not in [op for _, op in stack.last_ctx.calls]
    all_steps = build_steps(stack.config)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    tagged = 0
    for result in results:
        step = all_steps[result.name]
        if not step.tagged:
            continue
        resource = step.find(stack.last_ctx, result.resource_id)
        tags = {t["Key"]: t["Value"] for t in resource.raw.get("Tags", [])}
        assert tags.get("Name") == f"stylesphere-{step.name}", step.name
        assert tags.get(TAG_STACK) == "stylesphere" and tags.get(TAG_STEP) == step.name, step.name
        assert tags.get(TAG_CREATED_AT), step.name
        tagged += 1
    assert tagged >= 12
    assert ec2  # the same moto backend


def test_relationship_steps_are_found_through_what_they_join(make_stack):
    """Untagged steps (attachments, associations) must be found again without state."""
    stack = make_stack()
    stack.up()
    stack.state_file.remove()
    results = {r.name: r for r in stack.status()}
    for step in build_steps(stack.config).values():
        if not step.tagged:
            assert results[step.name].outcome == "present", step.name
