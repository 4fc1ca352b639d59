"""Steps and their registry.

A step is one AWS resource (or one relationship, such as an internet gateway attachment) with a
name, the steps it depends on, and find / create / update / delete. Step classes register with
``@register``; a class may stand for several steps (two subnets per tier, a NAT gateway per zone)
through ``instances(config)``. The plan is the graph of all instances' ``depends_on``; `down`
walks it reversed. Steps never print and never touch the state file: they return resources and
the list of changes they made, and the engine does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Iterable

from provisioner.engine.errors import AmbiguousResource, ConfigError
from provisioner.engine.kinds import Iam, Listing, Quota

if TYPE_CHECKING:
    from provisioner.shape.config import StackConfig
    from provisioner.engine.context import RunContext
    from provisioner.engine.resource import Resource

REGISTRY: dict[str, type["Step"]] = {}

# How a step needs a dependency:
READY = "ready"            # in service (a NAT gateway available), and held: `down` deletes this first
CREATED = "created"        # its id or DNS name only (it may still be provisioning), and held
IN_SERVICE = "in-service"  # in service when this starts, but holds nothing of it: `down` is not ordered by it
CREATED_ONLY = "created-only"  # its id or DNS name only, and holds nothing of it: `down` is not ordered by it


@dataclass(frozen=True)
class Dep:
    step: str
    needs: str = READY


def created(step: str, held: bool = True) -> Dep:
    """A dependency on the other step's creation: this one starts as soon as its id (or DNS
    name) exists, before it is ready (a distribution on a load balancer still provisioning).
    `held=False`: this one only copies the id (a bucket policy naming a distribution's ARN) and
    AWS lets either go first, so `down` deletes them in any order, at once."""
    return Dep(step, CREATED if held else CREATED_ONLY)


def in_service(step: str) -> Dep:
    """A dependency on the other step's readiness that holds nothing of it: `up` starts this
    one once that one is in service (instances need the NAT route at boot); `down` deletes them
    in any order (a route table association may go while the instances terminate)."""
    return Dep(step, IN_SERVICE)


def register(cls: type["Step"]) -> type["Step"]:
    if cls.kind in REGISTRY:
        raise ValueError(f"step kind {cls.kind!r} registered twice")
    REGISTRY[cls.kind] = cls
    return cls


class Step:
    kind: ClassVar[str]            # the resource type in AWS's words, e.g. "nat_gateway"
    aws_type: ClassVar[str] = ""   # for display, e.g. "AWS::EC2::NatGateway"
    # Relationships (attachments, associations) have no tags of their own: they are found
    # through the resources they join.
    tagged: ClassVar[bool] = True
    # The error codes with which this kind's delete says that the resource itself is already
    # gone, and only those: a "not found" about something else (a target group the Auto Scaling
    # Group still names) is a failure, never "deleted". Every kind declares its own.
    gone_codes: ClassVar[frozenset[str]]
    # The codes with which AWS says a resource of this kind, made moments ago, is not visible yet
    # to another call (a subnet to CreateNatGateway): retried as eventual consistency by every
    # step, and "already gone" to a delete.
    not_found_codes: ClassVar[frozenset[str]] = frozenset()
    # A kind the app's instances use (the data tier's): the launch template and the instance role
    # depend on it (created, or as `app_needs` says), the backend's environment comes from its
    # `app_environment` and the role's statements from its `app_statements`.
    serves_app: ClassVar[bool] = False
    app_needs: ClassVar[str] = CREATED
    # Whether the app's containers themselves call AWS for it (the instance role through IMDS,
    # one hop more than the host: the launch template's hop limit 2). False for what only the
    # host's Docker daemon uses (the awslogs driver writing the app's logs).
    containers_call_aws: ClassVar[bool] = True
    # What its delete is answered while something still uses it (a subnet group holding a
    # database): retried for as long as the "dependency" case allows.
    in_use_codes: ClassVar[frozenset[str]] = frozenset()
    # Seconds (before --timeout-scale) that its own waits may take: turning available, going.
    create_timeout: ClassVar[float] = 300
    delete_timeout: ClassVar[float] = 300
    # What the rest of the tool knows of this kind, declared here (see provisioner/engine/kinds.py):
    # how the inventory lists it, what else it makes with the stack's tags, or (a relationship)
    # the kind it is found through; the quotas it takes from; the IAM actions it needs.
    listing: ClassVar[Listing | None] = None
    also_makes: ClassVar[tuple[Listing, ...]] = ()
    found_through: ClassVar[str | None] = None
    quotas: ClassVar[tuple[Quota, ...]] = ()
    iam: ClassVar[Iam] = Iam()

    def __init__(self, name: str | None = None, depends_on: Iterable["str | Dep"] = (), may_hold: Iterable[str] = ()):
        self.name = name or self.kind.replace("_", "-")
        deps = [d if isinstance(d, Dep) else Dep(d) for d in depends_on]
        self.depends_on = tuple(d.step for d in deps)
        # How each dependency is needed (see Dep): by default ready, and held.
        self.needs = {d.step: d.needs for d in deps}
        # Steps besides its dependencies whose resource this one's may hold in AWS, so that
        # teardown deletes this one first: found by tags (no state, another configuration), a
        # private subnet's association may point at any private route table.
        self.may_hold = tuple(may_hold)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @classmethod
    def instances(cls, config: "StackConfig") -> list["Step"]:
        return [cls()]

    # -- the four moves ------------------------------------------------------------------------
    def find_all(self, ctx: "RunContext", known_id: str | None) -> list["Resource"]:
        """Every live resource that is this step's: the one whose id the state knows, else the
        ones carrying this stack's and step's tags."""
        raise NotImplementedError

    def find(self, ctx: "RunContext", known_id: str | None) -> "Resource | None":
        found = self.find_all(ctx, known_id)
        if len(found) > 1:
            ids = ", ".join(r.id for r in found)
            raise AmbiguousResource(
                f"step {self.name}: {len(found)} resources carry this stack's tags ({ids}); "
                "refusing to guess which one is the stack's",
                hint="delete the extra one(s), or run `provision down` to remove them all")
        return found[0] if found else None

    def check_name(self, ctx: "RunContext", known_id: str | None) -> None:
        """Before `up` or `plan` changes anything: raise ConfigError if the name this step would
        create is held by a resource that is not this stack's. Only reads. The default: nothing
        to check (EC2 ids are AWS's to choose)."""

    def create(self, ctx: "RunContext") -> "Resource":
        raise NotImplementedError

    def ready(self, ctx: "RunContext", resource: "Resource") -> None:
        """After create or update on `up`: wait until the resource is in service (a load
        balancer active). What depends on its creation only has started already. The default:
        ready when created."""

    def update(self, ctx: "RunContext", resource: "Resource", apply: bool) -> list[str]:
        """Compare the live resource with the configuration; return one line per difference,
        and change it in AWS when `apply`. The default: nothing to converge."""
        return []

    def delete(self, ctx: "RunContext", resource: "Resource") -> "str | None":
        """Delete it (or, for a kind AWS never deletes at once, start its deletion). May return
        one line saying what that means, shown as the outcome's reason (a KMS key: scheduled)."""
        raise NotImplementedError

    # -- what the app's instances take from it (serves_app) --------------------------------------
    def app_environment(self, ctx: "RunContext", resource: "Resource | None") -> dict[str, str]:
        """Settings of the backend container (written to the compose file's .env at boot)."""
        return {}

    def app_statements(self, ctx: "RunContext", resource: "Resource | None") -> list[dict]:
        """The instance role's statements for what the app does with it, and nothing more."""
        return []

    # -- what others see -----------------------------------------------------------------------
    def outputs(self, resource: "Resource") -> dict:
        return {}

    def describe(self, resource: "Resource") -> str:
        """One line for `status`."""
        return ""

    def plan_note(self, resource: "Resource") -> str:
        """What `plan` says of a resource found with nothing to change, when that is worth
        saying (the account's GuardDuty detector, used and never deleted)."""
        return ""


class NamedStep(Step):
    """A resource whose name the tool derives from the stack (a database, a subnet group, a
    table): found by the name the state file knows, then by the derived one, and the stack's only
    with the stack's tag (its step tag maybe removed: `up` puts it back). One of that name without
    it is someone else's: never adopted, and `up` refuses to start (check_name)."""

    what: ClassVar[str]   # in AWS's words, for messages: "DB subnet group"

    def resource_name(self, ctx: "RunContext") -> str:
        raise NotImplementedError

    def read(self, ctx: "RunContext", name: str) -> "tuple[dict | None, list[dict]]":
        """The live item of that name and its tags, or (None, [])."""
        raise NotImplementedError

    def is_live(self, item: dict) -> bool:
        """False for what AWS still lists on its way out (a table DELETING)."""
        return True

    def to_resource(self, item: dict, tags: list[dict]) -> "Resource":
        raise NotImplementedError

    def find_all(self, ctx, known_id):
        for name in dict.fromkeys(n for n in (known_id, self.resource_name(ctx)) if n):
            item, tags = self.read(ctx, name)
            if item is None or not self.is_live(item):
                continue
            if name == known_id:
                ctx.claim(self.name, name, tags, self.what)
            if ctx.is_ours(tags, self.name):
                return [self.to_resource(item, tags)]
        return []

    def check_name(self, ctx, known_id):
        if known_id == self.resource_name(ctx):
            return  # the state knows it by that name: find_all claims it (no second read)
        item, tags = self.read(ctx, self.resource_name(ctx))
        if item is not None and not ctx.is_ours(tags, self.name):
            raise self.taken(ctx)

    def taken(self, ctx: "RunContext") -> ConfigError:
        return ConfigError(f"a {self.what} named {self.resource_name(ctx)} exists but is not this stack's",
                           hint="delete or rename it, or use another --stack name")


class Ec2Step(Step):
    """An EC2 resource described declaratively, as Cloud Custodian does: the describe call, its
    result key, the id field and filter, and the TagSpecifications resource type."""

    describe_operation: ClassVar[str]   # e.g. "describe_vpcs"
    result_key: ClassVar[str]           # e.g. "Vpcs"
    id_field: ClassVar[str]             # e.g. "VpcId"
    id_filter: ClassVar[str]            # e.g. "vpc-id"; a filter, unlike VpcIds=, never errors when gone
    tag_resource_type: ClassVar[str]    # e.g. "vpc"

    def is_live(self, item: dict) -> bool:
        """False for the remains AWS keeps listing for a while (a deleted NAT gateway)."""
        return True

    def to_resource(self, item: dict) -> "Resource":
        from provisioner.engine.resource import Resource

        return Resource(id=item[self.id_field], attrs=self.attrs(item), raw=item)

    def attrs(self, item: dict) -> dict:
        return {}

    def update(self, ctx, resource, apply):
        """Put back the tool's tags if someone removed them (they are how `down` finds things)."""
        return ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: ctx.retry(
            "eventual-consistency", ctx.ec2.create_tags, Resources=[resource.id], Tags=missing))

    def _describe(self, ctx: "RunContext", filters: list[dict]) -> list[dict]:
        paginator_ok = ctx.ec2.can_paginate(self.describe_operation)
        if paginator_ok:
            items = []
            for page in ctx.ec2.get_paginator(self.describe_operation).paginate(Filters=filters):
                items.extend(page[self.result_key])
        else:
            items = getattr(ctx.ec2, self.describe_operation)(Filters=filters)[self.result_key]
        return [i for i in items if self.is_live(i)]

    def find_all(self, ctx, known_id):
        if known_id:
            items = self._describe(ctx, [{"Name": self.id_filter, "Values": [known_id]}])
            for item in items:
                ctx.claim(self.name, item[self.id_field], item.get("Tags", []), self.kind)
            if items:
                return [self.to_resource(i) for i in items]
        # The tags are checked here too: a filter that an API (or an emulator) ignores must never
        # make another stack's resource look like ours.
        return [self.to_resource(i) for i in self._describe(ctx, ctx.tag_filters(self.name))
                if ctx.owns(i.get("Tags", []), self.name)]


def load_steps() -> dict[str, type[Step]]:
    """Every registered step class (importing the package registers every step module)."""
    import steps  # noqa: F401

    return REGISTRY


_ORDER: dict[tuple, list] = {}


def _in_plan_order() -> list[type[Step]]:
    """The step classes in the order a stack with every option builds them (the VPC first), so
    that `list` and the scans show a stack's resources from the network up."""
    key = tuple(load_steps())
    if key not in _ORDER:
        from provisioner.shape.config import StackConfig

        first: dict[type, int] = {}
        for n, step in enumerate(build_steps(StackConfig().superset()).values()):
            first.setdefault(type(step), n)
        _ORDER[key] = sorted(REGISTRY.values(), key=lambda cls: first.get(cls, len(first)))
    return _ORDER[key]


def listings() -> tuple[Listing, ...]:
    """Every kind the inventory lists, once each: in plan order, each class's own listing before
    what it also makes."""
    found: dict[str, Listing] = {}
    for cls in _in_plan_order():
        for listing in ((cls.listing,) if cls.listing else ()) + tuple(cls.also_makes):
            if found.setdefault(listing.kind, listing) is not listing:
                raise ValueError(f"two listings declare the inventory kind {listing.kind!r} "
                                 f"({cls.__name__} and another step): declare it once and import it")
    return tuple(found.values())


def declaration_problems(classes=None) -> list[str]:
    """What a step class leaves out that the rest of the tool needs (empty when all is
    declared): a kind `list` and `cleanup` cannot see keeps billing after a "clean" cleanup."""
    from provisioner.engine.kinds import Free

    classes = list(load_steps().values()) if classes is None else list(classes)
    listed = {listing.kind for listing in listings()}
    for cls in classes:
        listed.update(l.kind for l in ((cls.listing,) if cls.listing else ()) + tuple(cls.also_makes))
    problems = []
    for cls in classes:
        where = f"step {cls.__name__} (kind {cls.kind}, {cls.__module__})"
        if cls.listing is None and cls.found_through is None:
            problems.append(f"{where} declares no inventory listing (`listing = Listing(...)`) and no "
                            "`found_through`: `list`, `cleanup` and `reap` would never see its resources")
        elif cls.listing is None and cls.found_through not in listed:
            problems.append(f"{where} is found through {cls.found_through!r}, which no step lists")
        for listing in ((cls.listing,) if cls.listing else ()) + tuple(cls.also_makes):
            if listing.price is None:
                problems.append(f"{where}: listing {listing.kind!r} declares no price (a rule, or FREE)")
            elif not isinstance(listing.price, Free) and not listing.price_keys:
                problems.append(f"{where}: listing {listing.kind!r} is priced but names no price keys")
        if cls.iam.empty:
            problems.append(f"{where} declares no IAM actions (`iam = Iam(create=..., read=..., delete=...)`)")
        elif not cls.iam.delete and not cls.iam.read:
            problems.append(f"{where} declares no IAM actions to read and delete its resource")
        if not hasattr(cls, "gone_codes"):
            problems.append(f"{where} declares no gone_codes")
    return problems


def quotas() -> tuple[Quota, ...]:
    """Every Service Quota a step takes from, once each."""
    found: dict[str, Quota] = {}
    for cls in _in_plan_order():
        for quota in cls.quotas:
            found.setdefault(quota.key, quota)
    return tuple(found.values())


def _by_module(classes) -> list[type[Step]]:
    """By module name, not import order: moving a module to another tier changes no order."""
    return sorted(classes, key=lambda c: c.__module__.rsplit(".", 1)[-1])


def build_steps(config: "StackConfig") -> dict[str, Step]:
    """Every step instance for this config, by name; checks that the graph is whole."""
    load_steps()
    found: dict[str, Step] = {}
    # By module name, not by import order, so that the order of independent steps (and so of the
    # plan, `list` and the price refresh) does not change when a module moves to another tier.
    for cls in _by_module(REGISTRY.values()):
        for step in cls.instances(config):
            if step.name in found:
                raise ValueError(f"two steps are named {step.name!r}")
            found[step.name] = step
    for step in found.values():
        missing = [d for d in step.depends_on if d not in found]
        if missing:
            raise ConfigError(f"step {step.name} depends on unknown step(s): {', '.join(missing)}")
    from graphlib import TopologicalSorter

    order = TopologicalSorter(dependency_graph(found)).static_order()  # raises CycleError
    return {name: found[name] for name in order}


def app_steps(config: "StackConfig") -> list[Step]:
    """The steps of this config whose resources the app's instances use (serves_app), in module
    order: each step of the data tier the config turns on."""
    return [step for cls in _by_module(load_steps().values()) if cls.serves_app for step in cls.instances(config)]


def app_needs(config: "StackConfig") -> tuple[Dep, ...]:
    """The launch template's and the instance role's dependencies on those steps."""
    return tuple(Dep(step.name, type(step).app_needs) for step in app_steps(config))


def plan_steps(config: "StackConfig") -> tuple[dict[str, Step], dict[str, Step]]:
    """The steps of this config, and the steps of options it does not have (the second NAT
    gateway without --nat-per-az), which `up` removes if a former run made them."""
    steps = build_steps(config)
    retired = {n: s for n, s in build_steps(config.superset()).items() if n not in steps}
    return steps, retired


def dependency_graph(all_steps: dict[str, Step], reverse: bool = False) -> dict[str, set[str]]:
    """graphlib's form {node: predecessors}. Reversed for teardown: a step is deleted only after
    every step that depends on it and holds it (an in-service need holds nothing)."""
    graph: dict[str, set[str]] = {name: set() for name in all_steps}
    for step in all_steps.values():
        # Dependencies outside the set (a subset being torn down) are already settled.
        for dep in (d for d in step.depends_on if d in all_steps):
            if reverse:
                if step.needs.get(dep, READY) not in (IN_SERVICE, CREATED_ONLY):
                    graph[dep].add(step.name)
            else:
                graph[step.name].add(dep)
        if reverse:
            for held in (h for h in step.may_hold if h in all_steps):
                graph[held].add(step.name)
    return graph


READY_NODE = "{}@ready"


def has_ready(step: Step) -> bool:
    return type(step).ready is not Step.ready


def up_graph(all_steps: dict[str, Step]) -> dict[str, set[str]]:
    """The graph `up` walks: a step whose readiness is a wait of its own (`ready`) is two nodes,
    "<name>" (created) and "<name>@ready"; a dependency on its creation waits for the first,
    any other for the second."""
    graph: dict[str, set[str]] = {}
    for step in all_steps.values():
        preds = set()
        for dep in (d for d in step.depends_on if d in all_steps):
            other = all_steps[dep]
            preds.add(dep if step.needs.get(dep) in (CREATED, CREATED_ONLY) or not has_ready(other)
                      else READY_NODE.format(dep))
        graph[step.name] = preds
        if has_ready(step):
            graph[READY_NODE.format(step.name)] = {step.name}
    return graph


def lookup_graph(all_steps: dict[str, Step]) -> dict[str, set[str]]:
    """The order in which steps can be *found*: a tagged step by its own tags, at once; a
    relationship only after what it joins (a route table association needs its subnet's id)."""
    graph = dependency_graph(all_steps)
    return {name: (preds if not all_steps[name].tagged else set()) for name, preds in graph.items()}
