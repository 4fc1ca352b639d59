"""What a step class declares about its kind of resource, besides find/create/update/delete.

Each step module says, next to the code that makes the resource:

- ``listing``: how the account-wide inventory (`list`, `cleanup`, `reap`, the scan that ends
  `down`) finds it by its tags: the service, the list call, the id field, how its tags are read,
  what it costs by the hour (``price``) or that it is free;
- ``also_makes``: the listings of what it causes to exist with the stack's tags (an Auto Scaling
  Group's instances and their volumes);
- ``found_through``: for a relationship without tags of its own (an attachment), the kind it is
  found through;
- ``quotas``: the Service Quotas it takes from;
- ``iam``: the IAM actions it needs to create, read, change and delete, and on which resources.

The inventory, the price line, the quota preflight and `provision policy` read these through the
registry; no table of kinds is kept anywhere else. A kind the inventory cannot see would keep
billing after a "clean" cleanup: tests/test_registry.py fails for a tagged step without a listing,
a listing without a price (or an explicit FREE), and a step without IAM actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

TAG_STACK_KEY = "provision:stack"


# -- how tags are read -----------------------------------------------------------------------------

@dataclass(frozen=True)
class InlineTags:
    """The describe result carries the tags (EC2, Auto Scaling)."""


@dataclass(frozen=True)
class BatchTags:
    """One call for many ids (ELBv2 DescribeTags, CodeBuild BatchGetProjects)."""

    operation: str
    param: str
    result_key: str
    id_key: str
    limit: int
    # Where each described item keeps its tags, and the tag's key and value fields: ELBv2 says
    # Tags/Key/Value, CodeBuild tags/key/value.
    tags_key: str = "Tags"
    key_field: str = "Key"
    value_field: str = "Value"


@dataclass(frozen=True)
class ItemTags:
    """One call per item (ACM, S3, IAM). `untagged_codes`: the error that means "no tags"."""

    operation: str
    param: str
    result_key: str
    untagged_codes: frozenset = frozenset()
    # What the tag call takes from the listed id, when not the id itself (DynamoDB lists table
    # names and tags by ARN): arn(ctx, id).
    arn: Callable[[Any, str], str] | None = None
    # The answer is a {key: value} map, not a list of Key/Value pairs (CloudWatch Logs).
    as_map: bool = False
    # The tags are written into the item itself, for a kind the API gives no tags (a CloudWatch
    # dashboard's body): parse(answer) -> {key: value}, {} for an item that carries none.
    parse: Callable[[dict], dict] | None = None
    # The tag's key and value fields: KMS says TagKey/TagValue.
    key_field: str = "Key"
    value_field: str = "Value"


INLINE = InlineTags()
# ELBv2 DescribeTags takes at most 20 ARNs, of any of its resource types mixed.
ELB_TAGS = BatchTags("describe_tags", "ResourceArns", "TagDescriptions", "ResourceArn", 20)
TAG_KEY_FILTER = ({"Name": "tag-key", "Values": [TAG_STACK_KEY]},)


# -- what it costs ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Free:
    """Declared free: no hourly charge of its own (what it holds is priced by its own kind)."""

    why: str = ""


FREE = Free()

# One row of a price: (label, quantity, unit, dollars per unit-hour).
Row = tuple[str, float, str, float]
# price(item, prices, region) -> (rows, sentences about what it bills that cannot be priced).
# `item` has .kind, .id and .detail (the listing's detail); `prices` is the region's
# pricing.RegionPrices, read by key (prices["nat_gateway_hour"]).
PriceRule = Callable[[Any, Any, str], tuple[list[Row], list[str]]]


@dataclass(frozen=True)
class PriceKey:
    """A figure of the price table (prices.json), per region, and how `provision prices
    --refresh` reads it from the AWS Price List API: fetch(client, region, instance_types) ->
    the figure, a {type: figure} map when `per` is set (None for a type the API has no price
    for), or None when the API has none. `label` and `unit` are for `provision prices`."""

    name: str
    label: str
    unit: str                  # "hour", "GB-month"
    fetch: Callable[[Any, str, list[str]], Any]
    per: str | None = None     # "volume type", "instance type": the figure is a {type: figure} map
    # Types a region's map must have (a region without them is left out of a refresh); a type
    # outside these that the API does not price is only left out, with `missing` as the note.
    required_types: tuple[str, ...] = ()
    missing: str = "the Price List API has no price for {label} {type}; left out"
    # The figure for a region whose table has none (a kind newer than the table): its step
    # module then carries the price, and `provision prices --refresh` writes the real one.
    default: Any = None


@dataclass(frozen=True)
class UsageNote:
    """A usage-based charge, shown beside the hourly figure and never added to it: its name in
    the table's usage_based notes, and fetch(client, region) -> the sentence, or None."""

    name: str
    fetch: Callable[[Any, str], str | None]


# -- how the inventory lists it --------------------------------------------------------------------

def _no_detail(item: dict) -> dict:
    return {}


def _never_gone(item: dict) -> bool:
    return False


@dataclass(frozen=True)
class Listing:
    kind: str
    service: str
    operation: str                   # the list/describe call; paginated where the API allows
    items: str                       # JMESPath to the items of one response page
    id_field: str
    price: PriceRule | Free | None = None     # None: not declared (a registry test fails)
    price_keys: tuple[PriceKey, ...] = ()     # the figures `price` reads
    usage_notes: tuple[UsageNote, ...] = ()   # what it bills by use (traffic, capacity units)
    label: str | None = None         # in AWS's words, plural ("NAT gateways"); else from kind
    tags: Any = INLINE
    params: dict = field(default_factory=dict)
    created_field: str | None = None  # the API's own creation time
    # The API's time wins over the tag: instances and their volumes carry the launch template's
    # tags, so their created-at is when the template was made, not when they were launched.
    created_from_api: bool = False
    gone: Callable[[dict], bool] = _never_gone    # listed, but deleted or on its way out
    detail: Callable[[dict], dict] = _no_detail
    # Worth reading the tags of at all (a name pattern, a type): keeps per-item tag calls few.
    candidate: Callable[[Any, dict], bool] | None = None
    # IAM and S3 are not regional: whether the name is the one the stack's resource of this
    # region has (the stack is the tag's).
    belongs: Callable[[Any, str, str], bool] | None = None
    # Listed per tagged resource of another kind (listeners per load balancer).
    parent: str | None = None
    parent_param: str | None = None
    # A global kind (a CloudFront distribution), the same list in every region: the region of
    # the stack an item serves, read from the item; a region's scan keeps only its own, so that
    # `list --all-regions` counts it once, with its stack.
    served_region: Callable[[dict], str | None] | None = None

    @property
    def plural(self) -> str:
        return self.label or self.kind.replace("_", " ") + "s"


def ec2_listing(kind: str, operation: str, items: str, id_field: str, **more) -> Listing:
    """An EC2 kind: the describe call filtered on the stack tag's key server-side."""
    return Listing(kind, "ec2", operation, items, id_field, params={"Filters": list(TAG_KEY_FILTER)}, **more)


# -- what it may do --------------------------------------------------------------------------------

PHASES = ("create", "read", "change", "delete")


@dataclass(frozen=True)
class Grant:
    """IAM actions on resources. A resource is an ARN pattern with {partition}, {region},
    {account} and {stack} filled in for the stack (its name prefix, where AWS names resources by
    name), or "*" where the action takes no resource-level permission or ids are AWS's own."""

    actions: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)
    # Extra condition of the statement (iam:PassRole's iam:PassedToService).
    condition: dict | None = None


@dataclass(frozen=True)
class Iam:
    """The IAM actions a step needs, by phase: `create` (and tag), `read` (find, plan, status),
    `change` (update in place) and `delete`. Each phase is a tuple of Grants."""

    create: tuple[Grant, ...] = ()
    read: tuple[Grant, ...] = ()
    change: tuple[Grant, ...] = ()
    delete: tuple[Grant, ...] = ()

    def grants(self, phases=PHASES) -> list[tuple[str, Grant]]:
        return [(phase, g) for phase in phases for g in getattr(self, phase)]

    @property
    def empty(self) -> bool:
        return not any(getattr(self, p) for p in PHASES)


def actions(*names: str, on: tuple[str, ...] | str = "*", condition: dict | None = None) -> Grant:
    return Grant(tuple(names), (on,) if isinstance(on, str) else tuple(on), condition)


# -- what it takes from the Service Quotas ----------------------------------------------------------

@dataclass(frozen=True)
class Quota:
    key: str
    name: str                  # Service Quotas' own name for it
    service_code: str
    quota_code: str
    usage: Callable[[Any], dict[str, float]]    # in use, by scope (reads -> counts)
    need: Callable[[Any], dict[str, float]]     # taken by one new stack, by scope
    # still(reads, holdings, need): what a stack that exists still takes, by scope
    still: Callable[[Any, Any, Callable[[], dict[str, float]]], dict[str, float]]
    unit: str = ""
