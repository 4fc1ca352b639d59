"""The price table, the hourly estimate and its refresh from the AWS Price List API.

Found items are stand-ins (kind, detail, created), so these tests do not depend on the inventory.
The arithmetic of the default stack is written out with the table's own figures: a change to the
packaged table that moves the estimate shows up here as a figure to re-check by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from types import SimpleNamespace

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from provisioner.account import pricing
from provisioner.engine.errors import AwsFailure, ConfigError
from provisioner.account.pricing import (REQUIRED_KEYS, Estimate, cost_line, estimate, load_packaged, load_prices,
                                 merge_tables, money, refresh, usage_is, validate_table, write_prices)
from provisioner.commands.runner import GlobalOptions

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)


def item(kind, detail=None, created=None, **extra):
    return SimpleNamespace(kind=kind, detail=detail or {}, created=created, id=f"{kind}-1", **extra)


def default_stack(nat_gateways=1, instance_type="t3.micro", created=None):
    items = []
    for _ in range(nat_gateways):
        items.append(item("nat_gateway", {"state": "available", "vpc_id": "vpc-1"}, created))
        items.append(item("elastic_ip", {"associated": True}, created))
    items.append(item("load_balancer", {"type": "application", "scheme": "internet-facing", "zones": 2,
                                        "vpc_id": "vpc-1"}, created))
    for _ in range(2):
        items.append(item("instance", {"instance_type": instance_type, "state": "running"}, created))
        items.append(item("volume", {"size_gb": 20, "volume_type": "gp3", "state": "in-use"}, created))
    # What costs nothing by the hour.
    items += [item(kind, {}, created) for kind in ("vpc", "subnet", "internet_gateway", "route_table",
                                                   "security_group", "launch_template", "target_group",
                                                   "listener", "auto_scaling_group", "certificate", "bucket",
                                                   "iam_role", "instance_profile")]
    return items


@pytest.fixture
def book():
    return load_packaged()


# -- the estimate ---------------------------------------------------------------------------------

def test_default_stack_in_us_east_1_by_hand(book):
    # NAT gateway + its Elastic IP + the ALB + the ALB's two public addresses + 2 t3.micro
    # + 2 x 20 GB gp3, with the us-east-1 figures of prices.json.
    by_hand = 0.045 + 0.005 + 0.0225 + 2 * 0.005 + 2 * 0.0104 + 2 * 20 * 0.08 / 730
    e = estimate(default_stack(), "us-east-1", book, now=NOW)
    assert e.hourly == pytest.approx(by_hand)
    assert e.daily == pytest.approx(by_hand * 24)
    assert e.unpriced == []
    assert cost_line(e) == "$0.11/hour ($2.58/day)"
    lines = {line.label: line for line in e.lines}
    assert lines["NAT gateway"].quantity == 1 and lines["NAT gateway"].hourly == pytest.approx(0.045)
    assert lines["public IPv4 address (load balancer)"].quantity == 2
    assert lines["EC2 t3.micro"].quantity == 2 and lines["EC2 t3.micro"].rate == 0.0104
    assert lines["EBS gp3 ($0.08/GB-month)"].quantity == 40
    assert sum(line.hourly for line in e.lines) == pytest.approx(e.hourly)
    for line in e.lines:
        assert line.hourly == pytest.approx(line.quantity * line.rate)


def test_nat_per_az_doubles_the_gateways_and_their_addresses(book):
    by_hand = 2 * 0.045 + 2 * 0.005 + 0.0225 + 2 * 0.005 + 2 * 0.0104 + 2 * 20 * 0.08 / 730
    e = estimate(default_stack(nat_gateways=2), "us-east-1", book, now=NOW)
    assert e.hourly == pytest.approx(by_hand)
    assert cost_line(e) == "$0.16/hour ($3.78/day)"


def test_eu_central_1_uses_its_own_figures(book):
    by_hand = 0.052 + 0.005 + 0.027 + 2 * 0.005 + 2 * 0.012 + 2 * 20 * 0.0952 / 730
    assert estimate(default_stack(), "eu-central-1", book).hourly == pytest.approx(by_hand)


def test_what_does_not_bill_by_the_hour(book):
    items = [item("nat_gateway", {"state": "deleting"}), item("nat_gateway", {"state": "failed"}),
             item("instance", {"instance_type": "t3.micro", "state": "stopped"}),
             item("instance", {"instance_type": "t3.micro", "state": "terminated"}),
             item("volume", {"size_gb": 20, "volume_type": "gp3", "state": "deleting"}),
             item("vpc"), item("bucket"), item("auto_scaling_group")]
    e = estimate(items, "us-east-1", book)
    assert e.hourly == 0 and e.lines == [] and e.unpriced == []


def test_a_stopped_instance_still_pays_for_its_disk(book):
    items = [item("instance", {"instance_type": "t3.micro", "state": "stopped"}),
             item("volume", {"size_gb": 20, "volume_type": "gp2", "state": "in-use"})]
    assert estimate(items, "us-east-1", book).hourly == pytest.approx(20 * 0.10 / 730)


def test_an_internal_load_balancer_has_no_public_addresses(book):
    e = estimate([item("load_balancer", {"type": "application", "scheme": "internal", "zones": 2})], "us-east-1", book)
    assert e.hourly == pytest.approx(0.0225)


def test_an_unassociated_elastic_ip_bills_the_same(book):
    e = estimate([item("elastic_ip", {"associated": False})], "us-east-1", book)
    assert e.hourly == pytest.approx(0.005)


def test_unknown_instance_type_is_unpriced_not_free(book):
    items = default_stack(instance_type="m9.huge")
    e = estimate(items, "us-east-1", book)
    assert e.unpriced == ["instance type m9.huge has no price in us-east-1"]
    # Everything else is still counted.
    assert e.hourly == pytest.approx(0.045 + 0.005 + 0.0225 + 2 * 0.005 + 2 * 20 * 0.08 / 730)


def test_unknown_volume_type_and_load_balancer_type_are_unpriced(book):
    e = estimate([item("volume", {"size_gb": 100, "volume_type": "io2", "state": "available"}),
                  item("load_balancer", {"type": "network", "scheme": "internet-facing", "zones": 2})],
                 "us-east-1", book)
    assert e.hourly == 0
    assert any("io2" in why for why in e.unpriced)
    assert any("network load balancer" in why for why in e.unpriced)


def test_missing_details_are_unpriced_not_guessed(book):
    e = estimate([item("load_balancer", {"type": "application", "scheme": "internet-facing"}),
                  item("volume", {"volume_type": "gp3", "state": "in-use"})], "us-east-1", book)
    assert e.hourly == pytest.approx(0.0225)
    assert e.unpriced == ["load balancer load_balancer-1: its public IPv4 addresses are not counted (number of "
                          "zones unknown)", "EBS volume volume-1: not counted (size unknown)"]


def test_unknown_region_lands_in_unpriced_with_what_to_do(book):
    e = estimate(default_stack(), "ap-south-1", book)
    assert e.hourly == 0 and e.lines == []
    assert len(e.unpriced) == 1
    assert "ap-south-1" in e.unpriced[0] and "7 billable resource(s)" in e.unpriced[0]
    assert "provision prices --refresh --region ap-south-1" in e.unpriced[0]


def test_an_items_own_region_wins(book):
    items = [item("nat_gateway", {"state": "available"}, region="eu-west-1"),
             item("nat_gateway", {"state": "available"}, region="ap-south-1")]
    e = estimate(items, "us-east-1", book)
    assert e.hourly == pytest.approx(0.048)
    assert len(e.unpriced) == 1 and "ap-south-1" in e.unpriced[0]


def test_nothing_billable_in_an_unknown_region_is_not_a_warning(book):
    assert estimate([item("vpc"), item("bucket")], "ap-south-1", book).unpriced == []


def test_spent_is_rate_times_hours_since_creation(book):
    ten_hours_ago = NOW - dt.timedelta(hours=10)
    e = estimate(default_stack(created=ten_hours_ago), "us-east-1", book, now=NOW)
    assert e.spent == pytest.approx(e.hourly * 10)


def test_spent_per_item_and_items_without_creation_time(book):
    items = [item("nat_gateway", {"state": "available"}, NOW - dt.timedelta(hours=3)),
             item("instance", {"instance_type": "t3.micro", "state": "running"}, NOW - dt.timedelta(minutes=30)),
             # A naive timestamp is UTC.
             item("elastic_ip", {}, (NOW - dt.timedelta(hours=2)).replace(tzinfo=None)),
             item("load_balancer", {"type": "application", "scheme": "internal"}, None),
             # Created "in the future" (clock skew) costs nothing yet.
             item("nat_gateway", {"state": "available"}, NOW + dt.timedelta(hours=1))]
    e = estimate(items, "us-east-1", book, now=NOW)
    assert e.spent == pytest.approx(3 * 0.045 + 0.5 * 0.0104 + 2 * 0.005)
    assert e.hourly == pytest.approx(2 * 0.045 + 0.0104 + 0.005 + 0.0225)


def test_forgotten_items_have_no_creation_time(book):
    forgotten = SimpleNamespace(region="us-east-1", kind="elastic_ip", id="eipalloc-1",
                                why="not associated with anything", detail={"associated": False})
    e = estimate([forgotten], forgotten.region, book)
    assert e.hourly == pytest.approx(0.005) and e.spent == 0


@pytest.mark.parametrize("amount, text", [
    (0, "$0.00"), (0.107683, "$0.11"), (2.584392, "$2.58"), (0.0042, "$0.0042"), (0.005, "$0.005"),
    (0.0052, "$0.0052"), (0.00996, "$0.01"), (0.00004, "$0.00"), (0.015, "$0.02"), (0.105, "$0.11"),
    (1234.5, "$1,234.50"), (-0.25, "-$0.25"), (-1e-12, "$0.00"), (float("nan"), "$?"),
])
def test_money(amount, text):
    assert money(amount) == text


def test_cost_line():
    assert cost_line(Estimate(hourly=0.0042, lines=[], unpriced=[], spent=0)) == "$0.0042/hour ($0.10/day)"
    assert cost_line(Estimate(hourly=1.5, lines=[], unpriced=[], spent=0)) == "$1.50/hour ($36.00/day)"


# -- the packaged table ---------------------------------------------------------------------------

def test_packaged_table_schema():
    data = json.loads(pricing.packaged_path().read_text())
    validate_table(data, "packaged")
    assert data["source"] and "refresh" in data["source"]
    dt.date.fromisoformat(data["as_of"])
    assert {"us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1"} == set(data["regions"])
    for name, entry in data["regions"].items():
        assert set(REQUIRED_KEYS) <= set(entry), name
        prices = [entry["nat_gateway_hour"], entry["alb_hour"], entry["public_ipv4_hour"],
                  *entry["ebs_gb_month"].values(), *entry["ec2_hour"].values()]
        assert all(isinstance(p, float) and math.isfinite(p) and 0 < p < 1 for p in prices), name
        assert {"gp3", "gp2"} <= set(entry["ebs_gb_month"]), name
        # The default stack's instance type is priced everywhere.
        assert "t3.micro" in entry["ec2_hour"], name
        assert "NAT data processing" in entry["usage_based"] and "ALB LCU" in entry["usage_based"], name


def test_packaged_us_east_1_figures(book):
    """The verified us-east-1 list prices, pinned: a typo in prices.json fails here."""
    us = book.region("us-east-1")
    assert (us.nat_gateway_hour, us.alb_hour, us.public_ipv4_hour) == (0.045, 0.0225, 0.005)
    assert us.ebs_gb_month == {"gp3": 0.08, "gp2": 0.10}
    assert us.ec2_hour == {
        "t2.micro": 0.0116, "t3.nano": 0.0052, "t3.micro": 0.0104, "t3.small": 0.0208, "t3.medium": 0.0416,
        "t3.large": 0.0832, "t3a.nano": 0.0047, "t3a.micro": 0.0094, "t3a.small": 0.0188, "t3a.medium": 0.0376,
        "t4g.nano": 0.0042, "t4g.micro": 0.0084, "t4g.small": 0.0168, "t4g.medium": 0.0336,
        "m6i.large": 0.096, "m7i.large": 0.1008, "c7i.large": 0.08925}


def test_t_family_prices_double_with_each_size(book):
    for name in book.names():
        ec2 = book.region(name).ec2_hour
        for family in ("t3", "t3a", "t4g"):
            sizes = [ec2.get(f"{family}.{size}") for size in ("nano", "micro", "small", "medium", "large")]
            for smaller, larger in zip(sizes, sizes[1:]):
                if smaller is not None and larger is not None:
                    assert larger == pytest.approx(2 * smaller), (name, family)


# -- the refreshed copy ---------------------------------------------------------------------------

def refreshed_table(**regions):
    return {"source": "AWS Price List API (test)", "as_of": "2026-11-20", "notes": [],
            "regions": {name: {"nat_gateway_hour": 0.056, "alb_hour": 0.0239, "public_ipv4_hour": 0.005,
                               "ebs_gb_month": {"gp3": 0.0912, "gp2": 0.114},
                               "ec2_hour": {"t3.micro": 0.0112}, "usage_based": {}, **entry}
                        for name, entry in regions.items()}}


def test_no_refreshed_copy_means_the_packaged_table(book):
    loaded = load_prices()
    assert loaded.warnings == []
    assert loaded.path == str(pricing.packaged_path()) and loaded.source == book.source
    assert loaded.origin("us-east-1").as_of == book.as_of


def test_a_valid_refreshed_copy_overrides_region_by_region(tmp_path, monkeypatch):
    path = tmp_path / "xdg-config" / "provision" / "prices.json"
    write_prices(refreshed_table(**{"ap-south-1": {}, "us-east-1": {"ec2_hour": {"t3.micro": 0.02}}}), path)
    loaded = load_prices()
    assert loaded.warnings == []
    assert loaded.path == str(path) and loaded.as_of == "2026-11-20"
    assert loaded.region("us-east-1").ec2_hour == {"t3.micro": 0.02}
    assert loaded.region("ap-south-1").nat_gateway_hour == 0.056
    # Regions the copy does not have keep the packaged figures, and say so.
    assert loaded.region("eu-west-1").nat_gateway_hour == 0.048
    assert loaded.origin("eu-west-1").path == str(pricing.packaged_path())
    assert loaded.origin("ap-south-1") == pricing.Origin("AWS Price List API (test)", "2026-11-20", str(path))


def test_provision_prices_variable_points_at_the_copy(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.json"
    write_prices(refreshed_table(**{"ap-south-1": {}}), path)
    monkeypatch.setenv("PROVISION_PRICES", str(path))
    assert pricing.user_prices_path() == path
    assert load_prices().region("ap-south-1") is not None


@pytest.mark.parametrize("content, why", [
    ("{not json", "not valid JSON"),
    (json.dumps({"source": "x", "as_of": "2026-11-20", "regions": {"us-east-1": {"alb_hour": 0.0225}}}),
     "nat_gateway_hour"),
    (json.dumps(refreshed_table(**{"us-east-1": {"nat_gateway_hour": -1}})), "not a positive number"),
    (json.dumps(refreshed_table(**{"us-east-1": {"ec2_hour": {"t3.micro": "cheap"}}})), "not a positive number"),
    (json.dumps({**refreshed_table(**{"us-east-1": {}}), "as_of": "yesterday"}), "not a YYYY-MM-DD date"),
    (json.dumps([]), "not a JSON object"),
])
def test_an_invalid_copy_falls_back_to_the_packaged_table_with_a_warning(tmp_path, monkeypatch, content, why):
    path = tmp_path / "prices.json"
    path.write_text(content)
    loaded = load_prices(path)
    assert loaded.region("us-east-1").ec2_hour["t3.micro"] == 0.0104
    assert loaded.path == str(pricing.packaged_path())
    assert len(loaded.warnings) == 1
    assert why in loaded.warnings[0] and str(path) in loaded.warnings[0]


def test_a_missing_copy_named_explicitly_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVISION_PRICES", str(tmp_path / "nope.json"))
    loaded = load_prices()
    assert loaded.region("us-east-1") is not None
    assert loaded.warnings and "nope.json" in loaded.warnings[0]


def test_write_prices_is_atomic_and_refuses_a_bad_table(tmp_path):
    path = tmp_path / "a" / "prices.json"
    write_prices(refreshed_table(**{"ap-south-1": {}}), path)
    before = path.read_text()
    with pytest.raises(pricing.PriceTableError):
        write_prices({"source": "x", "as_of": "2026-11-20", "regions": {}}, path)
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == ["prices.json"]


def test_merge_keeps_the_regions_not_fetched_with_their_own_date():
    old = refreshed_table(**{"ap-south-1": {}, "us-east-1": {}})
    fresh = {**refreshed_table(**{"us-east-1": {"alb_hour": 0.03}}), "as_of": "2026-11-22"}
    merged = merge_tables(old, fresh)
    assert set(merged["regions"]) == {"ap-south-1", "us-east-1"}
    assert merged["as_of"] == "2026-11-22" and merged["regions"]["us-east-1"]["alb_hour"] == 0.03
    assert merged["regions"]["ap-south-1"]["as_of"] == "2026-11-20"
    validate_table(merged)
    assert merge_tables(None, fresh) is fresh


# -- the refresh from the Price List API ----------------------------------------------------------

def product(service, family, usagetype, usd, unit="Hrs", region="us-east-2", sku="SKU", **attributes):
    """A Price List entry as get_products returns it: a JSON string."""
    term = f"{sku}.JRTCKXETXF"
    return json.dumps({
        "product": {"productFamily": family, "sku": sku,
                    "attributes": {"servicecode": service, "usagetype": usagetype, "regionCode": region,
                                   "locationType": "AWS Region", **attributes}},
        "serviceCode": service,
        "terms": {
            "OnDemand": {term: {
                "priceDimensions": {f"{term}.6YS6EN2CT7": {
                    "unit": unit, "endRange": "Inf", "beginRange": "0", "appliesTo": [],
                    "rateCode": f"{term}.6YS6EN2CT7", "description": f"${usd} per {unit}",
                    "pricePerUnit": {"USD": f"{float(usd):.10f}"}}},
                "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z", "offerTermCode": "JRTCKXETXF",
                "termAttributes": {}}},
            "Reserved": {f"{sku}.4NA7Y494T4": {
                "priceDimensions": {f"{sku}.4NA7Y494T4.6YS6EN2CT7": {
                    "unit": unit, "beginRange": "0", "endRange": "Inf", "pricePerUnit": {"USD": "0.0010000000"}}},
                "termAttributes": {"LeaseContractLength": "1yr", "PurchaseOption": "No Upfront"}}},
        },
        "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z"})


def filters(**terms):
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in terms.items()]


def expect(stubber, service, price_list, next_token=None, token=None, **terms):
    params = {"ServiceCode": service, "Filters": filters(**terms), "FormatVersion": "aws_v1"}
    if token:
        params["NextToken"] = token
    response = {"FormatVersion": "aws_v1", "PriceList": price_list}
    if next_token:
        response["NextToken"] = next_token
    stubber.add_response("get_products", response, params)


def stub_region(stubber, region, prefix, figures, instance_types):
    """The calls refresh makes for one region, in order (the price keys in the registry's order, each
    Price List read once), answered with `figures`."""
    p = f"{prefix}-" if prefix else ""
    ec2 = "AmazonEC2"
    # The cache's secret and ECR's storage first: their steps have no dependencies, so they come
    # first in plan order.
    secrets = f"{prefix or 'USE1'}-AWSSecretsManager-Secrets"
    expect(stubber, "AWSSecretsManager", [product("AWSSecretsManager", "Secret", secrets, figures.get("secret", 0.40),
                                                  unit="Secrets", region=region, sku="SECRET")], regionCode=region)
    expect(stubber, "AmazonECR", [product("AmazonECR", "", f"{prefix or 'USE1'}-TimedStorage-ByteHrs",
                                          figures.get("ecr", 0.10), unit="GB-Mo", region=region, sku="ECRS")],
           regionCode=region)
    # AmazonVPC answers over two pages; the public IPv4 charge is on the second.
    ipv4 = f"{prefix or 'USE1'}-PublicIPv4:InUseAddress"
    expect(stubber, "AmazonVPC", [
        product("AmazonVPC", "VpcEndpoint", f"{prefix or 'USE1'}-VpcEndpoint-Hours", 0.01, region=region, sku="VPCE"),
        product("AmazonVPC", "", f"{prefix or 'USE1'}-PublicIPv4:IdleAddress", 0.005, region=region, sku="IDLE"),
    ], next_token="page-2", regionCode=region)
    expect(stubber, "AmazonVPC", [product("AmazonVPC", "", ipv4, figures["ipv4"], region=region, sku="IPV4")],
           token="page-2", regionCode=region)
    expect(stubber, "AmazonEFS", [product("AmazonEFS", "Storage", f"{prefix or 'USE1'}-TimedStorage-ByteHrs",
                                          figures.get("efs", 0.30), unit="GB-Mo", region=region, sku="EFS",
                                          storageClass="General Purpose")],
           regionCode=region, storageClass="General Purpose")
    # The WAF's log group's storage, then the web ACL and its rules (one read for both, and for
    # the requests' usage note).
    expect(stubber, "AmazonCloudWatch", [product("AmazonCloudWatch", "Storage Snapshot",
                                                 f"{prefix or 'USE1'}-TimedStorage-ByteHrs", figures.get("logs", 0.03),
                                                 unit="GB-Mo", region=region, sku="CWLS")],
           regionCode=region, productFamily="Storage Snapshot")
    expect(stubber, "awswaf", [
        product("awswaf", "Web Application Firewall", f"{prefix or 'USE1'}-WebACL", figures.get("web_acl", 5.0),
                unit="WebACL-Mo", region=region, sku="WACL"),
        product("awswaf", "Web Application Firewall", f"{prefix or 'USE1'}-Rule", figures.get("rule", 1.0),
                unit="Rule-Mo", region=region, sku="WRUL"),
        product("awswaf", "Web Application Firewall", f"{prefix or 'USE1'}-Request", 0.0000006, unit="Request",
                region=region, sku="WREQ"),
    ], regionCode=region)
    expect(stubber, ec2, [
        product(ec2, "NAT Gateway", f"{p}NatGateway-Hours", figures["nat"], region=region, sku="NATH"),
        product(ec2, "NAT Gateway", f"{p}NatGateway-Bytes", figures["nat_gb"], unit="GB", region=region, sku="NATB"),
    ], productFamily="NAT Gateway", regionCode=region)
    expect(stubber, "AWSELB", [
        # The trust-store hours also end in LoadBalancerUsage: not the ALB's own price.
        product("AWSELB", "Load Balancer-Application", f"{p}TS-LoadBalancerUsage", 0.0055, region=region, sku="TS",
                operation="LoadBalancing:Application"),
        product("AWSELB", "Load Balancer-Application", f"{p}LoadBalancerUsage", figures["alb"], region=region,
                sku="ALB", operation="LoadBalancing:Application"),
        product("AWSELB", "Load Balancer-Application", f"{p}LCUUsage", figures["lcu"], unit="LCU-Hrs",
                region=region, sku="LCU", operation="LoadBalancing:Application"),
    ], productFamily="Load Balancer-Application", regionCode=region)
    for instance_type in instance_types:
        price = figures["ec2"].get(instance_type)
        listed = [] if price is None else [
            product(ec2, "Compute Instance", f"{p}BoxUsage:{instance_type}", price, region=region,
                    sku=instance_type, instanceType=instance_type, operatingSystem="Linux", tenancy="Shared",
                    preInstalledSw="NA", capacitystatus="Used", licenseModel="No License required")]
        expect(stubber, ec2, listed, instanceType=instance_type, regionCode=region, operatingSystem="Linux",
               tenancy="Shared", preInstalledSw="NA", capacitystatus="Used")
    for volume_type in ("gp3", "gp2"):
        expect(stubber, ec2, [product(ec2, "Storage", f"{p}EBS:VolumeUsage.{volume_type}", figures[volume_type],
                                      unit="GB-Mo", region=region, sku=volume_type, volumeApiName=volume_type)],
               productFamily="Storage", volumeApiName=volume_type, regionCode=region)
    node = "cache.t4g.micro"
    expect(stubber, "AmazonElastiCache", [product("AmazonElastiCache", "Cache Instance", f"{p}NodeUsage:{node}",
                                                  figures.get("cache", 0.016), region=region, sku="NODE",
                                                  instanceType=node, cacheEngine="Redis")],
           instanceType=node, regionCode=region, cacheEngine="Redis")
    # The usage notes' reads that no price key made: CloudFront's data out.
    expect(stubber, "AmazonCloudFront", [product("AmazonCloudFront", "Data Transfer", "US-DataTransfer-Out-Bytes",
                                                 0.085, unit="GB", region=region, sku="CFDT")],
           fromLocation="United States")


def pricing_client():
    return boto3.client("pricing", region_name="us-east-1")


class PriceList:
    """The Price List API for refresh tests, answering each GetProducts by its parameters in
    whatever order the price keys ask (a new kind's key adds calls anywhere in the registry's
    order): the expected answers as `expect` gives them to a Stubber; anything else an empty
    page, recorded in `unexpected`, so the figure's default or packaged value is kept."""

    def __init__(self):
        self.answers: dict[str, dict] = {}
        self.unexpected: list[dict] = []

    @staticmethod
    def _key(params):
        return json.dumps(params, sort_keys=True)

    def add_response(self, operation, response, params):
        assert operation == "get_products"
        self.answers[self._key(params)] = response

    def assert_no_pending_responses(self):
        assert not self.answers, f"not asked: {list(self.answers)}"

    def get_paginator(self, operation):
        assert operation == "get_products"
        fake = self

        class Paginator:
            def paginate(self, **params):
                while True:
                    response = fake.answers.pop(fake._key(params), None)
                    if response is None:
                        fake.unexpected.append(params)
                        response = {"FormatVersion": "aws_v1", "PriceList": []}
                    yield response
                    if "NextToken" not in response:
                        return
                    params = {**params, "NextToken": response["NextToken"]}

        return Paginator()


AP_SOUTH_1 = {"nat": 0.056, "nat_gb": 0.056, "alb": 0.0239, "lcu": 0.0084, "ipv4": 0.005, "gp3": 0.0912,
              "gp2": 0.114, "ec2": {"t3.micro": 0.0112, "t4g.micro": 0.0092}}


def test_refresh_parses_the_price_list(book):
    client = stubber = PriceList()
    if True:
        stub_region(stubber, "ap-south-1", "APS3", AP_SOUTH_1, ["t3.micro", "t4g.micro", "x9.tiny"])
        table = refresh(lambda: client, ["ap-south-1"], ["t3.micro", "t4g.micro", "x9.tiny"], base=book,
                        today=dt.date(2026, 11, 22))
        stubber.assert_no_pending_responses()
    assert table["as_of"] == "2026-11-22" and table["source"].startswith("AWS Price List API")
    entry = table["regions"]["ap-south-1"]
    assert entry["nat_gateway_hour"] == 0.056 and entry["alb_hour"] == 0.0239
    assert entry["public_ipv4_hour"] == 0.005
    assert entry["ebs_gb_month"] == {"gp3": 0.0912, "gp2": 0.114}
    assert entry["ecr_storage_gb_month"] == 0.10
    assert entry["secret_month"] == 0.40 and entry["efs_storage_gb_month"] == 0.30
    assert entry["cache_node_hour"] == {"cache.t4g.micro": 0.016}
    assert entry["ec2_hour"] == {"t3.micro": 0.0112, "t4g.micro": 0.0092}
    assert entry["usage_based"]["NAT data processing"].startswith("$0.056 per GB")
    assert entry["usage_based"]["ALB LCU"].startswith("$0.0084 per LCU-hour")
    assert (entry["waf_web_acl_month"], entry["waf_rule_month"], entry["logs_storage_gb_month"]) == (5.0, 1.0, 0.03)
    assert entry["usage_based"]["WAF requests"] == "$0.6 per million requests (WAF)"
    assert entry["usage_based"]["CloudFront"].startswith("$0.085 per GB out")
    # The figures this test does not answer (other kinds') keep their packaged or default values.
    assert [n for n in table["notes"] if "kept the packaged" not in n] == [
        "ap-south-1: the Price List API has no Linux On-Demand price for x9.tiny; left out"]
    validate_table(table)
    # The refreshed table prices a stack there.
    path_book = pricing.PriceBook("t", "2026-11-22", "t")
    pricing._add_layer(path_book, table, "t")
    e = estimate(default_stack(), "ap-south-1", path_book)
    assert e.hourly == pytest.approx(0.056 + 0.005 + 0.0239 + 2 * 0.005 + 2 * 0.0112 + 2 * 20 * 0.0912 / 730)


def test_refresh_keeps_the_packaged_figure_for_what_the_api_does_not_answer(book):
    client = stubber = PriceList()
    us_east_1 = {"nat": 0.045, "nat_gb": 0.045, "alb": 0.0225, "lcu": 0.008, "ipv4": 0.005, "gp3": 0.08,
                 "gp2": 0.10, "ec2": {"t3.micro": 0.0105}}
    if True:
        # us-east-1 usage types carry no region prefix for EC2 and ELB.
        stub_region(stubber, "us-east-1", "", us_east_1, ["t3.micro", "t3.nano"])
        table = refresh(lambda: client, ["us-east-1"], ["t3.micro", "t3.nano"], base=book)
        stubber.assert_no_pending_responses()
    entry = table["regions"]["us-east-1"]
    assert entry["ec2_hour"] == {"t3.micro": 0.0105, "t3.nano": 0.0052}
    assert entry["nat_gateway_hour"] == 0.045 and entry["alb_hour"] == 0.0225
    assert any("kept the packaged figure" in n and "t3.nano" in n for n in table["notes"])
    # The S3 notes cannot be fetched this way and stay the packaged ones.
    assert entry["usage_based"]["S3 storage"] == book.region("us-east-1").usage_based["S3 storage"]


def test_refresh_leaves_out_a_region_it_cannot_complete(book):
    client = PriceList()  # nothing at all answered
    if True:
        with pytest.raises(AwsFailure, match="priced none of xx-nowhere-1"):
            refresh(lambda: client, ["xx-nowhere-1"], ["t3.micro"], base=book)


@pytest.mark.parametrize("code, status, error", [
    ("AccessDeniedException", 400, ConfigError), ("UnrecognizedClientException", 400, ConfigError),
    ("InternalErrorException", 500, AwsFailure),
])
def test_refresh_errors_are_classified(book, code, status, error):
    client = pricing_client()
    with Stubber(client) as stubber:
        stubber.add_client_error("get_products", code, "nope", http_status_code=status)
        with pytest.raises(error) as raised:
            refresh(lambda: client, ["us-east-1"], ["t3.micro"], base=book)
    assert raised.value.exit_code == (2 if error is ConfigError else 1)
    if code == "AccessDeniedException":
        assert "pricing:GetProducts" in raised.value.message


def test_refresh_without_credentials(book, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var in ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(var, raising=False)
    session = boto3.session.Session(region_name="eu-west-1")
    with pytest.raises(ConfigError, match="no AWS credentials"):
        refresh(session, ["us-east-1"], ["t3.micro"], base=book)


def test_refresh_with_an_unreachable_endpoint(book):
    client = boto3.client("pricing", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                          config=Config(retries={"total_max_attempts": 1}, connect_timeout=2))
    with pytest.raises(AwsFailure, match="cannot reach the AWS Price List API") as raised:
        refresh(lambda: client, ["us-east-1"], ["t3.micro"], base=book)
    assert raised.value.exit_code == 1


@pytest.mark.parametrize("usagetype, base, match", [
    ("NatGateway-Hours", "NatGateway-Hours", True), ("USE2-NatGateway-Hours", "NatGateway-Hours", True),
    ("EU-NatGateway-Hours", "NatGateway-Hours", True), ("EUC1-BoxUsage:t3.micro", "BoxUsage:t3.micro", True),
    ("TS-LoadBalancerUsage", "LoadBalancerUsage", False), ("CAN1-TS-LoadBalancerUsage", "LoadBalancerUsage", False),
    ("USE1-PublicIPv4:IdleAddress", "PublicIPv4:InUseAddress", False),
    ("BoxUsage:t3.micro", "BoxUsage:t3.microx", False),
])
def test_usage_type_matching(usagetype, base, match):
    assert usage_is(usagetype, base) is match


# -- `provision prices` ---------------------------------------------------------------------------

def options(tmp_path, **overrides):
    values = dict(stack="prices", region=None, profile=None, state_dir=str(tmp_path / "state"), sandbox=False,
                  verbose=False, yes=False, timeout_scale=1.0)
    values.update(overrides)
    return GlobalOptions(**values)


def run_prices(tmp_path, *args, **kwargs):
    from provisioner.commands.prices import cmd_prices

    opts = options(tmp_path, **kwargs.pop("opts", {}))
    with pytest.raises(SystemExit) as exited:
        cmd_prices(opts, *args, **kwargs)
    return exited.value.code


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")


def test_prices_defaults_to_us_east_1_without_credentials(tmp_path, monkeypatch, capsys):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert run_prices(tmp_path) == 0
    out = capsys.readouterr().out
    assert "Prices in us-east-1" in out
    assert "$0.045/hour" in out and "$0.0225/hour" in out and "$0.08/GB-month" in out and "$0.0104/hour" in out
    assert "NAT data processing: $0.045 per GB" in out
    assert "costs about $0.11/hour ($2.58/day) here" in out
    assert "As of 2026-11-22" in out and "prices.json" in out


def test_prices_region_from_the_environment_then_the_option(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert run_prices(tmp_path) == 0
    assert "Prices in eu-west-1" in capsys.readouterr().out
    assert run_prices(tmp_path, "eu-central-1") == 0
    assert "Prices in eu-central-1" in capsys.readouterr().out
    assert run_prices(tmp_path, opts={"region": "us-west-2"}) == 0
    assert "Prices in us-west-2" in capsys.readouterr().out


def test_prices_json(tmp_path, capsys):
    assert run_prices(tmp_path, "us-east-2", as_json=True) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["region"] == "us-east-2" and shown["as_of"] == "2026-11-22"
    assert shown["prices"]["nat_gateway_hour"] == 0.045 and shown["path"].endswith("prices.json")


def test_prices_for_a_region_the_table_lacks(tmp_path, capsys):
    assert run_prices(tmp_path, "ap-south-1") == 2
    err = capsys.readouterr().err
    assert "no prices for ap-south-1" in err and "--refresh --region ap-south-1" in err


def test_prices_for_a_misspelt_region(tmp_path, capsys):
    assert run_prices(tmp_path, "us-east-9") == 2
    assert "unknown AWS region 'us-east-9'" in capsys.readouterr().err


def test_prices_shows_the_warning_of_a_broken_copy(tmp_path, monkeypatch, capsys):
    path = tmp_path / "broken.json"
    path.write_text("{")
    monkeypatch.setenv("PROVISION_PRICES", str(path))
    assert run_prices(tmp_path) == 0
    captured = capsys.readouterr()
    assert "ignoring the refreshed price table" in captured.err and "Prices in us-east-1" in captured.out


def test_refresh_is_refused_in_the_sandbox(tmp_path, capsys):
    assert run_prices(tmp_path, refresh=True, opts={"sandbox": True}) == 2
    assert "sandbox has no Price List API" in capsys.readouterr().err


def test_refresh_writes_the_user_copy(tmp_path, monkeypatch, capsys):
    asked = {}

    def fake_refresh(ctx, regions, instance_types):
        asked.update(regions=regions, types=instance_types, region=ctx.region)
        return {**refreshed_table(**{"eu-west-1": {"ec2_hour": {"t3.micro": 0.0115}}}), "as_of": "2026-11-22"}

    monkeypatch.setattr("provisioner.commands.prices.refresh", fake_refresh)
    assert run_prices(tmp_path, "eu-west-1", refresh=True, instance_types=("m5.large",)) == 0
    assert asked["regions"] == ["eu-west-1"] and asked["region"] == "us-east-1"
    assert "m5.large" in asked["types"] and "t3.micro" in asked["types"]
    path = tmp_path / "xdg-config" / "provision" / "prices.json"
    written = json.loads(path.read_text())
    assert written["regions"]["eu-west-1"]["ec2_hour"] == {"t3.micro": 0.0115}
    out = capsys.readouterr().out
    assert f"wrote {path}" in out and "eu-west-1: EC2 t3.micro $0.0114 -> $0.0115" in out
    assert load_prices().region("eu-west-1").ec2_hour == {"t3.micro": 0.0115}

    # Without --region it refreshes every region the table has, and keeps what it wrote before.
    monkeypatch.setattr("provisioner.commands.prices.refresh", lambda ctx, regions, types: (
        asked.update(regions=regions) or {**refreshed_table(**{"us-east-1": {}}), "as_of": "2026-11-23"}))
    assert run_prices(tmp_path, refresh=True, as_json=True) == 0
    assert asked["regions"] == ["eu-central-1", "eu-west-1", "us-east-1", "us-east-2", "us-west-2"]
    written = json.loads(path.read_text())
    assert set(written["regions"]) == {"eu-west-1", "us-east-1"}
    assert written["regions"]["eu-west-1"]["as_of"] == "2026-11-22"


def test_refresh_access_denied_is_a_clear_error(tmp_path, monkeypatch, capsys):
    client = pricing_client()
    stubber = Stubber(client)
    stubber.add_client_error("get_products", "AccessDeniedException", "User is not authorized to perform "
                             "pricing:GetProducts", http_status_code=400)
    stubber.activate()
    monkeypatch.setattr("provisioner.engine.context.RunContext.client", lambda self, service: client)
    assert run_prices(tmp_path, refresh=True) == 2
    err = capsys.readouterr().err
    assert "access denied for pricing:GetProducts" in err and "Traceback" not in err
    assert not (tmp_path / "xdg-config" / "provision" / "prices.json").exists()


def test_refresh_through_the_run_context(tmp_path, monkeypatch, capsys):
    """The CLI's own RunContext path, with a Stubber behind ctx.client("pricing")."""
    client = stubber = PriceList()
    types = load_packaged().instance_types()
    figures = {**AP_SOUTH_1, "ec2": {"t3.micro": 0.0112}}
    stub_region(stubber, "ap-south-1", "APS3", figures, types)
    monkeypatch.setattr("provisioner.engine.context.RunContext.client", lambda self, service: client)
    assert run_prices(tmp_path, "ap-south-1", refresh=True) == 0
    stubber.assert_no_pending_responses()
    out = capsys.readouterr().out
    assert "Prices in ap-south-1" in out and "$0.056/hour" in out
    assert load_prices().region("ap-south-1").ec2_hour == {"t3.micro": 0.0112}
