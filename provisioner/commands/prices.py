"""`provision prices`: the price table for a region (no AWS call, no credentials), and
`--refresh`, which fetches it from the AWS Price List API and writes the user's copy."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

from provisioner.shape.config import DEFAULT_INSTANCE_TYPE, ZONE_COUNT, StackConfig
from provisioner.engine.errors import EXIT_OK, ConfigError
from provisioner.account.pricing import (PRICING_REGION, PriceBook, PriceTableError, RegionPrices, cost_line, estimate, load_prices,
                      merge_tables, price_keys, read_table, refresh, user_prices_path, write_prices)
from provisioner.commands.connection import GlobalOptions, guarded
from provisioner.ui.console import ConsoleReporter

DEFAULT_REGION = "us-east-1"


def prices_region(region: str | None, profile: str | None) -> str:
    """--region, else AWS_REGION / AWS_DEFAULT_REGION, else the profile's region, else us-east-1:
    showing prices needs no credentials, so there is always an answer."""
    from provisioner.account.preflight import resolve_region

    chosen = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not chosen:
        import botocore.session
        from botocore.exceptions import ProfileNotFound

        try:
            chosen = botocore.session.Session(profile=profile).get_config_variable("region")
        except ProfileNotFound:
            chosen = None
    # With a name given, resolve_region only checks it (and suggests the closest on a typo).
    return resolve_region(chosen or DEFAULT_REGION, profile, sandbox=False)


def rate(amount: float) -> str:
    """A unit price exactly as AWS lists it, at least to the cent: $0.0104, $0.10, $0.08925."""
    text = f"{amount:.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"${whole}.{decimals.ljust(2, '0')}"


def default_stack_items(instance_type: str = DEFAULT_INSTANCE_TYPE) -> list:
    """The default stack's billable resources, as the inventory would report them."""
    from steps.compute.launch_template import ROOT_VOLUME

    config = StackConfig(instance_type=instance_type)
    items = [SimpleNamespace(kind="nat_gateway", detail={"state": "available"}, created=None)
             for _ in range(config.nat_count)]
    items += [SimpleNamespace(kind="elastic_ip", detail={"associated": True}, created=None)
              for _ in range(config.nat_count)]
    items.append(SimpleNamespace(kind="load_balancer", created=None,
                                 detail={"type": "application", "scheme": "internet-facing", "zones": ZONE_COUNT}))
    for _ in range(config.desired_capacity):
        items.append(SimpleNamespace(kind="instance", created=None,
                                     detail={"instance_type": instance_type, "state": "running"}))
        items.append(SimpleNamespace(kind="volume", created=None,
                                     detail={"size_gb": ROOT_VOLUME["VolumeSize"],
                                             "volume_type": ROOT_VOLUME["VolumeType"], "state": "in-use"}))
    return items


def print_region(reporter: ConsoleReporter, book: PriceBook, name: str, prices: RegionPrices) -> None:
    from rich.table import Table

    origin = book.origin(name)
    table = Table(title=f"Prices in {name} (On-Demand, USD)", title_justify="left")
    table.add_column("billed by the hour", style="bold")
    table.add_column("price", justify="right")
    for key in price_keys():
        value = prices[key.name]
        if key.per is None:
            table.add_row(key.label, f"{rate(value)}/{key.unit}")
            continue
        if key.per == "instance type":
            rows = sorted(value.items(), key=lambda kv: (kv[0].split(".")[0], kv[1]))
            for instance_type, price in rows:
                table.add_row(f"{key.label} {instance_type} (Linux)", f"{rate(price)}/{key.unit}")
        else:
            for name_, price in sorted(value.items()):
                table.add_row(f"{key.label} {name_}", f"{rate(price)}/{key.unit}")
    reporter.out.print(table)
    if prices.usage_based:
        reporter.out.print("Billed by use, so never in the hourly figure:")
        for what, price in prices.usage_based.items():
            reporter.out.print(f"  {what}: {price}", highlight=False)
    if DEFAULT_INSTANCE_TYPE in prices.get("ec2_hour", {}):
        stack = estimate(default_stack_items(), name, book)
        reporter.out.print(f"The default stack (a NAT gateway and its Elastic IP, an internet-facing load balancer "
                           f"in {ZONE_COUNT} zones, {StackConfig().desired_capacity} {DEFAULT_INSTANCE_TYPE} "
                           f"with 20 GB gp3 each) costs about {cost_line(stack)} here.")
    reporter.out.print(f"As of {origin.as_of}, read from {origin.path}.", highlight=False)
    reporter.out.print(f"Source: {origin.source}.", style="dim", highlight=False)
    for note in book.notes:
        reporter.out.print(f"  {note}", style="dim", highlight=False)


def _previous_copy(path) -> dict | None:
    """The refreshed copy already there, to lay this refresh over; None if absent or unusable
    (an unusable one is replaced)."""
    try:
        return read_table(path) if path.exists() else None
    except PriceTableError:
        return None


def _changes(book: PriceBook, table: dict) -> list[str]:
    changed = []
    for name, entry in table["regions"].items():
        old = book.region(name)
        if old is None:
            changed.append(f"{name}: new region in the table")
            continue
        pairs = [(key.replace("_", " "), getattr(old, key), entry[key])
                 for key in ("nat_gateway_hour", "alb_hour", "public_ipv4_hour")]
        pairs += [(f"EBS {k}", old.ebs_gb_month.get(k), v) for k, v in entry["ebs_gb_month"].items()]
        pairs += [(f"EC2 {k}", old.ec2_hour.get(k), v) for k, v in entry["ec2_hour"].items()]
        for what, before, after in pairs:
            if before is None:
                changed.append(f"{name}: {what} {rate(after)} (new)")
            elif abs(before - after) > 1e-9:
                changed.append(f"{name}: {what} {rate(before)} -> {rate(after)}")
    return changed


def do_refresh(opts: GlobalOptions, reporter: ConsoleReporter, book: PriceBook, regions: list[str],
               instance_types: list[str], as_json: bool) -> int:
    from provisioner.engine.context import RunContext

    # The Price List API answers in us-east-1 for every region; the credentials are the user's,
    # resolved the way every other command resolves them (profile, SSO, environment).
    ctx = RunContext(stack="prices", region=PRICING_REGION, config=StackConfig(), profile=opts.profile,
                     reporter=reporter)
    ctx.read_only = True
    with reporter.console.status(f"asking the AWS Price List API about {', '.join(regions)}"):
        table = refresh(ctx, regions, instance_types)
    path = user_prices_path()
    merged = merge_tables(_previous_copy(path), table)
    write_prices(merged, path)
    if as_json:
        print(json.dumps({"path": str(path), **merged}, indent=2))
        return EXIT_OK
    for note in table["notes"]:
        reporter.out.print(f"note: {note}", highlight=False)
    changes = _changes(book, table)
    reporter.out.print(f"Fetched {', '.join(table['regions'])} from the AWS Price List API "
                       f"({len(changes)} figure(s) differ from the table used so far); wrote {path}.",
                       highlight=False)
    for line in changes:
        reporter.out.print(f"  {line}", highlight=False)
    refreshed = load_prices()
    for warning in refreshed.warnings:
        reporter.warn(warning)
    if len(regions) == 1 and refreshed.region(regions[0]) is not None:
        print_region(reporter, refreshed, regions[0], refreshed.region(regions[0]))
    return EXIT_OK


@guarded
def cmd_prices(opts: GlobalOptions, reporter: ConsoleReporter, region: str | None = None, refresh: bool = False,
               as_json: bool = False, instance_types: tuple[str, ...] = ()) -> int:
    """Show the price table for a region; with `refresh`, fetch it from the AWS Price List API
    for the table's regions (or only `region`) and write the user's copy."""
    asked = region or opts.region
    if refresh and opts.sandbox:
        raise ConfigError("the sandbox has no Price List API, so --refresh cannot run there",
                          hint="run `provision prices --refresh` without --sandbox (it needs AWS credentials "
                               "allowed pricing:GetProducts), or leave out --refresh to see the table")
    book = load_prices()
    for warning in book.warnings:
        reporter.warn(warning)
    if refresh:
        regions = [prices_region(asked, opts.profile)] if asked else book.names()
        types = sorted(set(book.instance_types()) | set(instance_types))
        return do_refresh(opts, reporter, book, regions, types, as_json)

    name = prices_region(asked, opts.profile)
    prices = book.region(name)
    if prices is None:
        raise ConfigError(f"the price table has no prices for {name} (it has {', '.join(book.names())})",
                          hint=f"`provision prices --refresh --region {name}` fetches them from the AWS Price "
                               "List API")
    missing = [t for t in instance_types if t not in prices.ec2_hour]
    if as_json:
        origin = book.origin(name)
        print(json.dumps({"region": name, "source": origin.source, "as_of": origin.as_of, "path": origin.path,
                          "notes": book.notes, "prices": prices.to_dict(), "missing_instance_types": missing,
                          "warnings": book.warnings}, indent=2))
        return EXIT_OK
    print_region(reporter, book, name, prices)
    for instance_type in missing:
        reporter.warn(f"instance type {instance_type} has no price in {name}; `provision prices --refresh "
                      f"--region {name} --instance-type {instance_type}` fetches it")
    return EXIT_OK
