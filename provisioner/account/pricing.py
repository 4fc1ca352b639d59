"""What a stack costs while it is up: the price table, the hourly estimate, and its refresh.

The table (provisioner/account/prices.json, shipped with the package) holds, per region, the figures the
steps' listings declare (provisioner/engine/kinds.py: a listing's `price` rule and its `price_keys`):
NAT gateways, Application Load Balancers, public IPv4 addresses, EBS storage and EC2 instances
today. A refreshed copy, fetched from the AWS Price List API by
`provision prices --refresh`, lives at $PROVISION_PRICES or ~/.config/provision/prices.json and
takes precedence region by region; a broken copy is ignored with a warning, never fatal.

Usage-based charges (NAT data processing, ALB LCUs, S3) depend on traffic the tool cannot see:
they are notes beside the figure, never added to it. Anything billable the table cannot price
lands in `Estimate.unpriced` as a sentence, never as a silent zero.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator

from provisioner.engine.errors import AwsFailure, ConfigError
from provisioner.engine.kinds import Free, PriceKey, Row, UsageNote

# AWS prorates GB-month storage over 730 hours (365 x 24 / 12).
HOURS_PER_MONTH = 730
# The Price List API answers in us-east-1 (and two other regions) for every region's prices.
PRICING_REGION = "us-east-1"
PRICES_ENV = "PROVISION_PRICES"
PACKAGED_NAME = "prices.json"
USAGE_BASED = "usage_based"
DATE_RE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


class PriceTableError(ValueError):
    """A price table that is not of the expected shape (the message says where and what)."""


# -- the table ------------------------------------------------------------------------------------

# -- what the steps declare --------------------------------------------------------------------------

def price_keys() -> tuple[PriceKey, ...]:
    """Every figure the listings' price rules read, once each (registry order)."""
    from provisioner.engine.registry import listings

    found: dict[str, PriceKey] = {}
    for listing in listings():
        for key in listing.price_keys:
            if found.setdefault(key.name, key) is not key:
                raise ValueError(f"price key {key.name!r} is declared twice: declare it once and import it")
    return tuple(found.values())


def usage_notes() -> tuple[UsageNote, ...]:
    from provisioner.engine.registry import listings

    found: dict[str, UsageNote] = {}
    for listing in listings():
        for note in listing.usage_notes:
            found.setdefault(note.name, note)
    return tuple(found.values())


def required_keys() -> tuple[str, ...]:
    """What every region of a table must have: the figures without a default in their step."""
    return tuple(k.name for k in price_keys() if k.default is None) + (USAGE_BASED,)


def __getattr__(name: str):
    # REQUIRED_KEYS as it was: now read from the registry (a step module adds its own keys).
    if name == "REQUIRED_KEYS":
        return required_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RegionPrices:
    """One region's figures, by the keys the listings declare: prices["nat_gateway_hour"], or
    prices.nat_gateway_hour; a {type: figure} map for keys declared `per` a type. usage_based:
    shown as notes, never added to the hourly figure."""

    def __init__(self, values: dict[str, Any], usage_based: dict[str, str]):
        self.values = dict(values)
        self.usage_based = dict(usage_based)

    @classmethod
    def from_dict(cls, data: dict) -> "RegionPrices":
        return cls({k.name: data[k.name] if k.name in data else k.default for k in price_keys()}, data[USAGE_BASED])

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values") or {}
        if name in values:
            return values[name]
        raise AttributeError(name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegionPrices) and (self.values, self.usage_based) == (other.values, other.usage_based)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        for key in price_keys():
            value = self.values[key.name]
            out[key.name] = dict(sorted(value.items()) if key.per == "instance type" else value.items()) \
                if isinstance(value, dict) else value
        out[USAGE_BASED] = dict(self.usage_based)
        return out


@dataclass(frozen=True)
class Origin:
    """Where one region's figures come from."""
    source: str
    as_of: str
    path: str


@dataclass
class PriceBook:
    source: str
    as_of: str                           # YYYY-MM-DD
    path: str                            # where it was read from (the refreshed copy, if one is used)
    regions: dict[str, RegionPrices] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Why a refreshed copy was not used (unreadable, invalid): for the CLI to show.
    warnings: list[str] = field(default_factory=list)
    origins: dict[str, Origin] = field(default_factory=dict)

    def region(self, name: str) -> RegionPrices | None:
        return self.regions.get(name)

    def names(self) -> list[str]:
        return sorted(self.regions)

    def origin(self, name: str) -> Origin:
        return self.origins.get(name) or Origin(self.source, self.as_of, self.path)

    def instance_types(self) -> list[str]:
        keys = [k.name for k in price_keys() if k.per == "instance type"]
        return sorted({t for r in self.regions.values() for k in keys for t in r.get(k, {})})


def packaged_path() -> Path:
    from importlib.resources import files

    return Path(str(files("provisioner.account") / PACKAGED_NAME))


def user_prices_path() -> Path:
    """Where `--refresh` writes and `load_prices` looks: $PROVISION_PRICES, else
    $XDG_CONFIG_HOME/provision/prices.json, else ~/.config/provision/prices.json."""
    if os.environ.get(PRICES_ENV):
        return Path(os.environ[PRICES_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "provision" / PACKAGED_NAME


def _price(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise PriceTableError(f"{where} is {value!r}, not a positive number of dollars")
    return float(value)


def validate_table(data: Any, where: str = "price table") -> dict:
    """The table if it has the expected shape; PriceTableError naming the first fault otherwise."""
    if not isinstance(data, dict):
        raise PriceTableError(f"{where} is not a JSON object")
    for key in ("source", "as_of"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise PriceTableError(f"{where} has no {key!r}")
    if not DATE_RE.fullmatch(data["as_of"]):
        raise PriceTableError(f"{where}: as_of {data['as_of']!r} is not a YYYY-MM-DD date")
    notes = data.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise PriceTableError(f"{where}: notes is not a list of sentences")
    regions = data.get("regions")
    if not isinstance(regions, dict) or not regions:
        raise PriceTableError(f"{where} lists no regions")
    for name, entry in regions.items():
        at = f"{where}, region {name}"
        if not isinstance(entry, dict):
            raise PriceTableError(f"{at} is not an object")
        missing = [key for key in required_keys() if key not in entry]
        if missing:
            raise PriceTableError(f"{at} has no {', '.join(missing)}")
        for key in price_keys():
            if key.name not in entry:
                continue  # a default in its step (required_keys says which may be missing)
            if key.per is None:
                _price(entry[key.name], f"{at}: {key.name}")
                continue
            if not isinstance(entry[key.name], dict):
                raise PriceTableError(f"{at}: {key.name} is not an object")
            for item, value in entry[key.name].items():
                _price(value, f"{at}: {key.name}[{item!r}]")
            for needed in key.required_types:
                if needed not in entry[key.name]:
                    raise PriceTableError(f"{at}: {key.name} has no {needed}")
        usage = entry[USAGE_BASED]
        if not isinstance(usage, dict) or not all(isinstance(v, str) for v in usage.values()):
            raise PriceTableError(f"{at}: usage_based is not an object of sentences")
        for key in ("source", "as_of"):
            if key in entry and not isinstance(entry[key], str):
                raise PriceTableError(f"{at}: {key} is not a string")
    return data


def read_table(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PriceTableError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PriceTableError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    return validate_table(data, str(path))


def _add_layer(book: PriceBook, data: dict, path: str) -> None:
    for name, entry in data["regions"].items():
        book.regions[name] = RegionPrices.from_dict(entry)
        book.origins[name] = Origin(entry.get("source", data["source"]), entry.get("as_of", data["as_of"]), path)


def load_packaged() -> PriceBook:
    """The table shipped with provision, alone."""
    packaged = packaged_path()
    try:
        base = read_table(packaged)
    except PriceTableError as e:
        raise ConfigError(f"the price table shipped with provision is broken: {e}",
                          hint="reinstall provision (`pip install --force-reinstall provision`)") from None
    book = PriceBook(source=base["source"], as_of=base["as_of"], path=str(packaged), notes=list(base.get("notes", [])))
    _add_layer(book, base, str(packaged))
    return book


def load_prices(path: str | os.PathLike | None = None) -> PriceBook:
    """The packaged table, overridden region by region by a refreshed copy (`path`, else
    $PROVISION_PRICES, else ~/.config/provision/prices.json) when it is present and valid. An
    unusable copy leaves the packaged figures in place and says why in `warnings`."""
    book = load_packaged()
    explicit = path is not None or bool(os.environ.get(PRICES_ENV))
    override = Path(path) if path is not None else user_prices_path()
    if not override.exists():
        if explicit:
            book.warnings.append(f"no price table at {override}; using the packaged one ({book.as_of})")
        return book
    try:
        data = read_table(override)
    except PriceTableError as e:
        book.warnings.append(f"ignoring the refreshed price table: {e}; using the packaged one "
                             f"({book.as_of}); `provision prices --refresh` writes a new copy")
        return book
    _add_layer(book, data, str(override))
    book.source, book.as_of, book.path = data["source"], data["as_of"], str(override)
    book.notes = list(data.get("notes", []))
    return book


def write_prices(table: dict, path: str | os.PathLike) -> Path:
    """Write a (validated) table atomically: a reader sees the old copy or the new one, never half."""
    validate_table(table, "the new price table")
    from provisioner.engine.state import write_atomic

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, (json.dumps(table, indent=2) + "\n").encode("utf-8"))
    return target


def merge_tables(existing: dict | None, fresh: dict) -> dict:
    """`fresh` (a refresh of some regions) laid over `existing` (the previous refreshed copy):
    the regions not fetched this time keep their figures and their own date."""
    if not existing:
        return fresh
    regions = {}
    for name, entry in existing["regions"].items():
        kept = dict(entry)
        kept.setdefault("source", existing["source"])
        kept.setdefault("as_of", existing["as_of"])
        regions[name] = kept
    regions.update(fresh["regions"])
    return {**fresh, "regions": dict(sorted(regions.items()))}


# -- the estimate ---------------------------------------------------------------------------------

@dataclass
class Line:
    label: str
    quantity: float
    unit: str
    rate: float          # dollars per unit per hour
    hourly: float        # quantity x rate


@dataclass
class Estimate:
    hourly: float
    lines: list[Line]
    unpriced: list[str]
    spent: float         # sum over items of their hourly rate x the hours since each was created

    @property
    def daily(self) -> float:
        return self.hourly * 24


def _price_rules() -> dict[str, Any]:
    from provisioner.engine.registry import listings

    return {listing.kind: listing.price for listing in listings()}


def _charges(item, prices: RegionPrices, region: str, rules=None) -> tuple[list[Row], list[str]]:
    """What one item bills by the hour: (label, quantity, unit, rate per unit-hour) rows, and
    the sentences for what it bills that the table cannot price; from its kind's listing."""
    rule = (rules if rules is not None else _price_rules()).get(getattr(item, "kind", None))
    if rule is None or isinstance(rule, Free):
        return [], []
    return rule(item, prices, region)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment


def estimate(items: Iterable, region: str, book: PriceBook, now: dt.datetime | None = None) -> Estimate:
    """What `items` (inventory Found or Forgotten objects, or anything with .kind, .detail and
    optionally .created, .region, .id) bill by the hour in `region` (an item's own .region wins)."""
    now = _utc(now or dt.datetime.now(dt.timezone.utc))
    lines: dict[tuple[str, str, float], Line] = {}
    unpriced: list[str] = []
    spent = 0.0
    missing_regions: dict[str, int] = {}
    rules = _price_rules()
    for item in items:
        where = getattr(item, "region", None) or region
        prices = book.region(where)
        if prices is None:
            rule = rules.get(getattr(item, "kind", None))
            if rule is not None and not isinstance(rule, Free):
                missing_regions[where] = missing_regions.get(where, 0) + 1
            continue
        rows, why = _charges(item, prices, where, rules)
        for sentence in why:
            if sentence not in unpriced:
                unpriced.append(sentence)
        item_hourly = 0.0
        for label, quantity, unit, rate in rows:
            line = lines.setdefault((label, unit, rate), Line(label, 0, unit, rate, 0.0))
            line.quantity += quantity
            line.hourly += quantity * rate
            item_hourly += quantity * rate
        created = getattr(item, "created", None)
        if created is not None and item_hourly:
            hours = max(0.0, (now - _utc(created)).total_seconds() / 3600)
            spent += item_hourly * hours
    for where, count in sorted(missing_regions.items()):
        unpriced.append(f"region {where} has no prices in the table ({count} billable resource(s) not counted); "
                        f"`provision prices --refresh --region {where}` fetches them")
    ordered = sorted(lines.values(), key=lambda line: -line.hourly)
    return Estimate(hourly=sum(line.hourly for line in ordered), lines=ordered, unpriced=unpriced, spent=spent)


def money(amount: float) -> str:
    """Dollars for people: two decimals from one cent up ("$0.11", "$1,234.50"); under a cent,
    up to four decimals so that a small rate does not read as free ("$0.0042", "$0.005");
    "$0.00" for nothing or less than $0.00005."""
    if not math.isfinite(amount):
        return "$?"
    value = Decimal(repr(abs(amount)))
    cent = Decimal("0.01")
    if value < cent:
        value = value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
        if value == 0:
            return "$0.00"
    if value >= cent:
        text = f"{value.quantize(cent, rounding=ROUND_HALF_UP):,}"
    else:
        text = f"{value.normalize():f}"
    return f"{'-' if amount < 0 else ''}${text}"


def cost_line(e: Estimate) -> str:
    """'$0.11/hour ($2.58/day)'."""
    return f"{money(e.hourly)}/hour ({money(e.daily)}/day)"


# -- the refresh ----------------------------------------------------------------------------------

# A usage type is "<region prefix>-<base>" (USE2-NatGateway-Hours, EUC1-BoxUsage:t3.micro), or the
# bare base in us-east-1 for EC2 and ELB, though AmazonVPC prefixes it there too (USE1-PublicIPv4:...).
# The prefix always carries a digit, except the legacy "EU" of eu-west-1; a digit-less token such as
# the "TS-" of TS-LoadBalancerUsage (trust-store hours) is another usage, not a region.
REGION_PREFIX_RE = re.compile(r"\A(?:[A-Z]{2,4}[0-9]+|EU)\Z")


def usage_is(usagetype: str, base: str) -> bool:
    if usagetype == base:
        return True
    prefix, sep, rest = usagetype.partition("-")
    return bool(sep) and rest == base and bool(REGION_PREFIX_RE.fullmatch(prefix))


def on_demand_usd(product: dict) -> float | None:
    """The On-Demand USD price of one Price List product (the first tier when it has several)."""
    for term in (product.get("terms", {}).get("OnDemand") or {}).values():
        dims = list((term.get("priceDimensions") or {}).values())
        dims.sort(key=lambda d: float(d.get("beginRange", "0") or 0))
        for dim in dims:
            usd = (dim.get("pricePerUnit") or {}).get("USD")
            try:
                value = float(usd)
            except (TypeError, ValueError):
                continue
            if value > 0:
                return value
    return None


def _pricing_client(source):
    """A Price List client from a RunContext or boto3 Session (anything with .client), or from a
    zero-argument factory."""
    import boto3

    if isinstance(source, boto3.session.Session):
        return source.client("pricing", region_name=PRICING_REGION)
    if callable(getattr(source, "client", None)):
        return source.client("pricing")
    if callable(source):
        return source()
    raise TypeError("refresh needs a RunContext, a boto3 Session or a function returning a pricing client")


def _refused(e: Exception) -> Exception:
    """The ProvisionError for a Price List call that failed: refused credentials or permissions
    are a precondition (exit 2), an unreachable endpoint or an AWS error a failure (exit 1)."""
    from botocore.exceptions import (ClientError, NoCredentialsError, PartialCredentialsError,
                                     ProfileNotFound)

    from provisioner.engine.retries import CREDENTIAL_CODES, PERMISSION_CODES, error_code, error_message, hint_for

    if isinstance(e, ProfileNotFound):
        return ConfigError(f"AWS profile not configured: {e}", hint="check ~/.aws/config, or pass another --profile")
    if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
        return ConfigError("no AWS credentials found: the Price List API needs them (any identity allowed "
                           "pricing:GetProducts)",
                           hint="configure them (`aws configure`, `aws sso login`), or leave out --refresh "
                                "to use the price table shipped with provision")
    if isinstance(e, ClientError):
        code = error_code(e)
        if code in CREDENTIAL_CODES:
            return ConfigError(f"the AWS credentials were refused ({code}): {error_message(e)}", hint=hint_for(code))
        if code in PERMISSION_CODES:
            return ConfigError(f"access denied for pricing:GetProducts: {error_message(e)}",
                               hint="allow pricing:GetProducts to this identity, or leave out --refresh")
        return AwsFailure(f"pricing:GetProducts failed with {code}: {error_message(e)}", hint=hint_for(code), code=code)
    return AwsFailure(f"cannot reach the AWS Price List API ({PRICING_REGION}): {e}",
                      hint="check the network or proxy; without --refresh the shipped price table still works")


def _products(client, service_code: str, **terms: str) -> Iterator[dict]:
    from botocore.exceptions import BotoCoreError, ClientError

    filters = [{"Type": "TERM_MATCH", "Field": key, "Value": value} for key, value in terms.items()]
    try:
        pages = client.get_paginator("get_products").paginate(
            ServiceCode=service_code, Filters=filters, FormatVersion="aws_v1")
        for page in pages:
            for raw in page.get("PriceList", []):
                yield json.loads(raw) if isinstance(raw, str) else raw
    except (ClientError, BotoCoreError) as e:
        raise _refused(e) from None


def _price_of(products: Iterable[dict], base: str) -> float | None:
    for product in products:
        usagetype = product.get("product", {}).get("attributes", {}).get("usagetype", "")
        if usage_is(usagetype, base):
            price = on_demand_usd(product)
            if price is not None:
                return price
    return None


class Products:
    """The Price List reads of one region's refresh, each made once: a NAT gateway's hourly
    figure and its per-GB note come from the same answer. products(service_code, **terms) ->
    the products matching every term (TERM_MATCH, in the order given)."""

    def __init__(self, client):
        self.client = client
        self._seen: dict[tuple, list[dict]] = {}

    def __call__(self, service_code: str, **terms: str) -> list[dict]:
        key = (service_code, tuple(terms.items()))
        if key not in self._seen:
            self._seen[key] = list(_products(self.client, service_code, **terms))
        return self._seen[key]


def price_of(products: Iterable[dict], usage: str) -> float | None:
    """The On-Demand price of the first product whose usage type is `usage` (any region prefix)."""
    return _price_of(products, usage)


def refresh(session_or_client_factory, regions: list[str], instance_types: list[str],
            base: PriceBook | None = None, today: dt.date | None = None) -> dict:
    """The price table (prices.json's schema) for `regions`, fetched from the AWS Price List API
    by each declared price key's own fetch. What the API does not answer keeps the figure of
    `base` (the packaged table by default) and is named in the table's notes; a region missing a
    figure that `base` cannot supply either is left out, with a note. Raises ConfigError
    (credentials, permissions) or AwsFailure."""
    client = _pricing_client(session_or_client_factory)
    base = base or load_packaged()
    notes: list[str] = []
    table_regions: dict[str, dict] = {}
    for region in regions:
        products = Products(client)
        old = base.region(region)
        kept: list[str] = []
        entry: dict[str, Any] = {}
        incomplete = []
        defaulted: list[str] = []
        for key in price_keys():
            got = key.fetch(products, region, list(instance_types))
            if key.per is None:
                value = got
                if value is None and old is not None:
                    value = old[key.name]
                    kept.append(key.name)
                elif value is None and key.default is not None:
                    # A region the packaged table lacks: the step's own figure (us-east-1's).
                    value = key.default
                    defaulted.append(key.name)
                if value is None:
                    incomplete.append(key.name)
                entry[key.name] = value
                continue
            base_values = old.get(key.name, {}) if old else (key.default or {})
            values = {}
            for name, value in (got or {}).items():
                if value is None and name in base_values:
                    value = base_values[name]
                    (kept if old else defaulted).append(name)
                if value is None:
                    if name in key.required_types:
                        incomplete.append(f"{key.label} {name}")
                    else:
                        notes.append(f"{region}: " + key.missing.format(label=key.label, type=name))
                    continue
                values[name] = value
            entry[key.name] = dict(sorted(values.items()))
        if incomplete:
            notes.append(f"{region}: the Price List API has no price for {', '.join(incomplete)} and the "
                         "packaged table has none either; region left out")
            continue
        if kept:
            notes.append(f"{region}: no Price List answer for {', '.join(kept)}; kept the packaged figure(s) "
                         f"of {base.origin(region).as_of}")
        if defaulted:
            notes.append(f"{region}: no Price List answer for {', '.join(defaulted)}; kept the packaged figure(s) "
                         "of us-east-1, the step's default")
        usage = dict(old.usage_based) if old else {}
        for note in usage_notes():
            sentence = note.fetch(products, region)
            if sentence is not None:
                usage[note.name] = sentence
        entry[USAGE_BASED] = usage
        table_regions[region] = entry
    if not table_regions:
        raise AwsFailure(f"the Price List API priced none of {', '.join(regions)}",
                         hint="check the region names; the table is left as it was")
    if any(old is not None for old in (base.region(r) for r in table_regions)):
        fetched = " and ".join(note.name for note in usage_notes())
        notes.append(f"Usage-based notes other than {fetched or 'none'} are the packaged ones.")
    table = {
        "source": "AWS Price List API (pricing:GetProducts): On-Demand, Linux, shared tenancy; USD before taxes, "
                  "free tier and discounts",
        "as_of": (today or dt.date.today()).isoformat(),
        "notes": notes,
        "regions": table_regions,
    }
    return validate_table(table, "the refreshed price table")
