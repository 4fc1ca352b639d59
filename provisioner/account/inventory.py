"""What the tool has made in an account, read from AWS's own tags (never from local state), and
what someone forgot that still bills.

Each kind of resource is one declaration (Cloud Custodian style), made by its step module
(provisioner/engine/kinds.py `Listing`): the service, the describe call and where its items are, the id
field, how its tags are read, which states mean "gone". `scan`
runs every declaration for one region; `forgotten` looks for the untagged things people commonly
leave behind. Both only read.

Reads are kept few, because `up` and `status` scan at the end: EC2 and Auto Scaling filter on
the tag key server-side, ELBv2 tags are asked for 20 ARNs a call (load balancers and target groups
together), IAM roles and S3 buckets of other regions are dropped by name before their tags are
read, and only imported ACM certificates can be the tool's.
"""

from __future__ import annotations

import concurrent.futures as cf
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import jmespath
from botocore.exceptions import ClientError

from provisioner.engine.context import TAG_CREATED_AT, TAG_EXPIRES_AT, TAG_OWNER, TAG_STACK, TAG_STEP
from provisioner.engine.errors import AwsFailure
from provisioner.account.expiry import parse_tag
from provisioner.engine.kinds import ELB_TAGS, BatchTags, InlineTags, ItemTags, Listing
from provisioner.engine.retries import PERMISSION_CODES, error_code, error_message, is_gone

SCAN_WORKERS = 8
# IAM actions whose name is not the API operation's.
IAM_ACTION_NAMES = {("s3", "ListBuckets"): "s3:ListAllMyBuckets"}


@dataclass
class Found:
    """A resource in AWS carrying the tool's provision:stack tag."""

    stack: str
    region: str
    kind: str
    id: str
    tags: dict[str, str]
    created: datetime | None
    detail: dict = field(default_factory=dict)

    @property
    def step(self) -> str | None:
        return self.tags.get(TAG_STEP)

    @property
    def expires_at(self) -> datetime | None:
        return parse_tag(self.tags.get(TAG_EXPIRES_AT))

    @property
    def owner(self) -> str | None:
        return self.tags.get(TAG_OWNER)


@dataclass
class Forgotten:
    """Something untagged that bills while nobody uses it."""

    region: str
    kind: str
    id: str
    why: str
    detail: dict = field(default_factory=dict)


# -- what each kind is: declared by its step (provisioner/engine/kinds.py) -------------------------------------

Kind = Listing


def scanners() -> tuple[Listing, ...]:
    """Every kind the inventory lists, as the step modules declare them."""
    from provisioner.engine.registry import listings

    return listings()


def __getattr__(name: str):
    # The tables as they were, now read from the registry: a new step module adds its kind.
    if name == "SCANNERS":
        return scanners()
    if name == "KINDS":
        return tuple(s.kind for s in scanners())
    if name == "BY_KIND":
        return {s.kind: s for s in scanners()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- reading -----------------------------------------------------------------------------------------

def _iam_action(ctx, service: str, operation: str) -> str:
    # From this service's own model: an operation name alone can be ambiguous (DescribeTags is
    # EC2's, ELBv2's and Auto Scaling's).
    model = ctx.client(service).meta.service_model
    return IAM_ACTION_NAMES.get((service, operation)) or f"{model.signing_name}:{operation}"


@contextmanager
def _reading(ctx, service: str, what: str):
    """A read refused for lack of permission fails the scan naming the IAM action: a kind the
    scan cannot see must never look like a kind with nothing left in it."""
    try:
        yield
    except ClientError as e:
        code = error_code(e)
        if code not in PERMISSION_CODES:
            raise
        action = _iam_action(ctx, service, e.operation_name)
        raise AwsFailure(
            f"cannot list {what} in {ctx.region}: {action} was refused ({code}: {error_message(e)})",
            hint=f"grant {action} to the credentials in use (reading every kind of resource the tool makes "
                 "is how it finds them), or use another --profile",
            code=code) from e


def all_pages(ctx, service: str, operation: str, items: str, **params) -> list[dict]:
    """Every item (a JMESPath into each page) of every page of a read."""
    client = ctx.client(service)
    if client.can_paginate(operation):
        pages = client.get_paginator(operation).paginate(**params)
    else:
        pages = [getattr(client, operation)(**params)]
    found: list[dict] = []
    for page in pages:
        found.extend(jmespath.search(items, page) or [])
    return found


def _tag_dict(pairs, key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {t[key]: t[value] for t in pairs or [] if key in t}


def _list(ctx, spec: Kind, **params) -> list[dict]:
    return _keep(ctx, spec, all_pages(ctx, spec.service, spec.operation, spec.items, **{**spec.params, **params}))


def _keep(ctx, spec: Kind, items: list[dict]) -> list[dict]:
    """What of a list's items may be this kind's (several kinds can share one list)."""
    return [i for i in items if not spec.gone(i) and (spec.candidate is None or spec.candidate(ctx, i))
            and (spec.served_region is None or spec.served_region(i) == ctx.region)]


def _same_list(spec: Kind) -> tuple:
    """Kinds whose listings are the same call (the tool's log groups under `/provision/`) share it."""
    return spec.service, spec.operation, spec.items, tuple(sorted((k, repr(v)) for k, v in spec.params.items()))


def _batch_tags(ctx, service: str, how: BatchTags, ids: list[str]) -> dict[str, dict]:
    client = ctx.client(service)
    call = getattr(client, how.operation)
    tags: dict[str, dict] = {}
    for start in range(0, len(ids), how.limit):
        batch = ids[start:start + how.limit]
        try:
            described = call(**{how.param: batch})[how.result_key]
        except ClientError as e:
            if not is_gone(e):
                raise
            # One of them was deleted meanwhile, and AWS fails the whole call: one at a time.
            described = []
            for one in batch:
                try:
                    described += call(**{how.param: [one]})[how.result_key]
                except ClientError as e1:
                    if not is_gone(e1):
                        raise
        tags.update({d[how.id_key]: _tag_dict(d.get(how.tags_key), how.key_field, how.value_field)
                     for d in described})
    return tags


def _item_tags(ctx, service: str, how: ItemTags, ids: list[str]) -> dict[str, dict]:
    tags: dict[str, dict] = {}
    for one in ids:
        try:
            if how.as_map:
                answer = getattr(ctx.client(service), how.operation)(**{how.param: one})
                tags[one] = dict(jmespath.search(how.result_key, answer) or {})
                continue
            if how.parse is not None:
                tags[one] = how.parse(getattr(ctx.client(service), how.operation)(**{how.param: one}))
                continue
            param = how.arn(ctx, one) if how.arn else one
            tags[one] = _tag_dict(all_pages(ctx, service, how.operation, how.result_key, **{how.param: param}),
                                  how.key_field, how.value_field)
        except ClientError as e:
            if error_code(e) in how.untagged_codes:
                tags[one] = {}
            elif not is_gone(e):  # deleted since it was listed
                raise
    return tags


def _tags(ctx, listed: list[tuple[Kind, list[dict]]], run=map) -> dict[tuple[str, str], dict]:
    """(kind, id) -> tags of every listed item still there. Batched tag calls are shared by the
    kinds of one service (a load balancer and its target groups in one DescribeTags). `run`
    maps the tag reads of each kind (a pool's map runs them at once)."""
    out: dict[tuple[str, str], dict] = {}
    batched: dict[tuple[str, BatchTags], list[tuple[Kind, str]]] = {}
    per_item: list[tuple[Kind, list[str]]] = []
    for spec, items in listed:
        ids = [i[spec.id_field] for i in items]
        if isinstance(spec.tags, InlineTags):
            out.update({(spec.kind, i[spec.id_field]): _tag_dict(i.get("Tags")) for i in items})
        elif isinstance(spec.tags, BatchTags):
            batched.setdefault((spec.service, spec.tags), []).extend((spec, one) for one in ids)
        elif ids:
            per_item.append((spec, ids))

    def item_tags(job):
        spec, ids = job
        with _reading(ctx, spec.service, _plural(spec.kind)):
            return {(spec.kind, k): v for k, v in _item_tags(ctx, spec.service, spec.tags, ids).items()}

    def batch_tags(job):
        (service, how), members = job
        with _reading(ctx, service, " and ".join(sorted({_plural(s.kind) for s, _ in members}))):
            tags = _batch_tags(ctx, service, how, [one for _, one in members])
        return {(spec.kind, one): tags[one] for spec, one in members if one in tags}

    jobs = [(item_tags, job) for job in per_item] + [(batch_tags, job) for job in batched.items()]
    for part in run(lambda pair: pair[0](pair[1]), jobs):
        out.update(part)
    return out


def _plural(kind: str) -> str:
    """For messages: what a kind is called in AWS's words."""
    spec = next((s for s in scanners() if s.kind == kind), None)
    return spec.plural if spec else kind.replace("_", " ") + "s"


def _utc(value) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _created(spec: Kind, item: dict, tags: dict) -> datetime | None:
    from_api = _utc(item.get(spec.created_field)) if spec.created_field else None
    from_tag = parse_tag(tags.get(TAG_CREATED_AT))
    if spec.created_from_api:
        return from_api or from_tag
    return from_tag or from_api


def _found(ctx, spec: Kind, items: list[dict], tags: dict) -> list[Found]:
    found = []
    for item in items:
        rid = item[spec.id_field]
        have = tags.get((spec.kind, rid))
        # Re-checked here whatever the filter said: moto (and any API ignoring a filter) must
        # never make an untagged resource look like the tool's.
        stack = (have or {}).get(TAG_STACK)
        if not stack:
            continue
        if spec.belongs is not None and not spec.belongs(ctx, stack, rid):
            continue  # another region's IAM role or bucket, or one named unlike the tool's
        found.append(Found(stack=stack, region=ctx.region, kind=spec.kind, id=rid, tags=have,
                           created=_created(spec, item, have), detail=spec.detail(item)))
    return found


# -- the public reads ------------------------------------------------------------------------------

def offered(ctx, service: str) -> bool:
    """Whether AWS offers `service` in ctx.region, by botocore's endpoint data (CodeBuild is not in
    every region: its list call there has no endpoint). A region botocore does not know at all
    (newer than it) is asked anyway."""
    session = ctx.session
    partitions = session.get_available_partitions()
    where = {r for p in partitions for r in session.get_available_regions(service, partition_name=p)}
    known = {r for p in partitions for r in session.get_available_regions("ec2", partition_name=p)}
    return not where or ctx.region in where or ctx.region not in known


def scan(ctx) -> list[Found]:
    """Every resource in ctx.region (and this region's IAM roles, instance profiles and bucket,
    by name) that carries a provision:stack tag, of any stack; in the registry's order."""
    specs = scanners()
    top = [s for s in specs if s.parent is None and offered(ctx, s.service)]

    calls: dict[tuple, list[Kind]] = {}
    for spec in top:
        calls.setdefault(_same_list(spec), []).append(spec)

    def listing(sharing):
        first = sharing[0]
        with _reading(ctx, first.service, _plural(first.kind)):
            items = all_pages(ctx, first.service, first.operation, first.items, **first.params)
        return [(spec, _keep(ctx, spec, items)) for spec in sharing]

    # The kinds are independent reads: at once, so that the scan at the end of `up` and in
    # `status` costs a few round trips on AWS, not one per kind (clients are thread-safe).
    with cf.ThreadPoolExecutor(max_workers=SCAN_WORKERS, thread_name_prefix="scan") as pool:
        by_call = dict(zip(calls, pool.map(listing, calls.values())))
        kept = {spec.kind: items for pairs in by_call.values() for spec, items in pairs}
        listed = [(spec, kept[spec.kind]) for spec in top]
        tags = _tags(ctx, listed, run=pool.map)
    found = [f for spec, items in listed for f in _found(ctx, spec, items, tags)]
    # Children after their parents (in the registry's order, a parent's listing comes first).
    for spec in (s for s in specs if s.parent is not None):
        parents = [f.id for f in found if f.kind == spec.parent]
        children: list[dict] = []
        with _reading(ctx, spec.service, _plural(spec.kind)):
            for parent in parents:
                try:
                    children += _list(ctx, spec, **{spec.parent_param: parent})
                except ClientError as e:
                    if not is_gone(e):  # the parent was deleted since it was listed
                        raise
        found += _found(ctx, spec, children, _tags(ctx, [(spec, children)]))
    order = {s.kind: n for n, s in enumerate(specs)}
    return sorted(found, key=lambda f: (order[f.kind], f.stack, f.id))


# What people leave behind that bills by the hour, untagged. Read without the tag-key filter.
RUNNING = ("pending", "running")


def forgotten(ctx) -> list[Forgotten]:
    """Untagged things in ctx.region that bill while nobody uses them: Elastic IPs associated
    with nothing, unattached EBS volumes, and NAT gateways and Application Load Balancers in a
    VPC that runs no instance. Only reported, never deleted."""
    def untagged(item, tags=None):
        return TAG_STACK not in (tags if tags is not None else _tag_dict(item.get("Tags")))

    out: list[Forgotten] = []
    by_kind = {s.kind: s for s in scanners()}
    eip, volume, nat, alb = (by_kind[k] for k in ("elastic_ip", "volume", "nat_gateway", "load_balancer"))
    with _reading(ctx, "ec2", "elastic IPs, volumes and NAT gateways"):
        for item in all_pages(ctx, "ec2", eip.operation, eip.items):
            if untagged(item) and not item.get("AssociationId"):
                out.append(Forgotten(ctx.region, "elastic_ip", item[eip.id_field], "not associated with anything",
                                     eip.detail(item)))
        for item in all_pages(ctx, "ec2", volume.operation, volume.items,
                           Filters=[{"Name": "status", "Values": ["available"]}]):
            if untagged(item) and item.get("State") == "available":
                out.append(Forgotten(ctx.region, "volume", item[volume.id_field], "not attached to any instance",
                                     volume.detail(item)))
        nats = [i for i in all_pages(ctx, "ec2", nat.operation, nat.items,
                                  Filters=[{"Name": "state", "Values": ["available"]}])
                if untagged(i) and i.get("State") == "available"]
    with _reading(ctx, "elbv2", "load balancers"):
        albs = [i for i in all_pages(ctx, "elbv2", alb.operation, alb.items)
                if i.get("Type") == "application" and i.get("State", {}).get("Code") == "active"]
        tags = _batch_tags(ctx, "elbv2", ELB_TAGS, [i[alb.id_field] for i in albs]) if albs else {}
        albs = [i for i in albs if i[alb.id_field] in tags and untagged(i, tags[i[alb.id_field]])]
    vpcs = {i["VpcId"] for i in nats + albs if i.get("VpcId")}
    busy: set[str] = set()
    if vpcs:
        with _reading(ctx, "ec2", "instances"):
            busy = {i.get("VpcId") for i in all_pages(
                ctx, "ec2", "describe_instances", "Reservations[].Instances[]",
                Filters=[{"Name": "vpc-id", "Values": sorted(vpcs)},
                         {"Name": "instance-state-name", "Values": list(RUNNING)}])
                if i.get("State", {}).get("Name") in RUNNING}
    for item in nats:
        if item.get("VpcId") not in busy:
            out.append(Forgotten(ctx.region, "nat_gateway", item[nat.id_field],
                                 f"NAT gateway in {item.get('VpcId')}, which runs no instances", nat.detail(item)))
    for item in albs:
        if item.get("VpcId") not in busy:
            out.append(Forgotten(ctx.region, "load_balancer", item[alb.id_field],
                                 f"load balancer in {item.get('VpcId')}, which runs no instances", alb.detail(item)))
    return out


def regions(ctx) -> list[str]:
    """The account's enabled regions (opted in, or needing no opt-in), sorted."""
    with _reading(ctx, "ec2", "regions"):
        return sorted(r["RegionName"] for r in ctx.client("ec2").describe_regions()["Regions"])
