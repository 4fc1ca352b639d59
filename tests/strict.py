"""A strict stand-in for real AWS on top of moto.

moto accepts orders that AWS refuses (deleting a subnet that still holds a NAT gateway, a security
group still referenced, detaching an internet gateway while public addresses are mapped) and makes
slow things instant. StrictAws hooks the boto3 session's events so that, within a test:

- every refusal AWS makes is made, with AWS's error code (DependencyViolation and friends);
- a NAT gateway is `pending` for a while after creation and `deleting` for a while after deletion,
  and its network interface and Elastic IP association linger after it reads `deleted`.

So a wrong teardown order or a missing wait fails a test, as it would fail a real user.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import LINGERING, ORDER, refuse  # noqa: F401  (re-exported for tests)
from strict_audit import AuditRules
from strict_bastion import BastionRules
from strict_cdn import CdnRules
from strict_compute import ComputeRules
from strict_database import DatabaseRules
from strict_data import DataRules
from strict_edge import EdgeRules
from strict_identity import IdentityRules
from strict_monitoring import MonitoringRules
from strict_kms import KmsRules


@dataclass
class Delays:
    """Seconds; scaled-down versions of AWS's minutes."""
    nat_create: float = 0.3
    nat_delete: float = 0.3
    eni_release: float = 0.3
    # The compute and edge tier.
    alb_create: float = 0.2          # provisioning -> active
    alb_delete: float = 0.2          # still listed (and using its subnets and group) after the delete
    alb_eni_release: float = 0.2     # its interfaces linger this much longer
    instance_terminate: float = 0.2  # shutting-down -> terminated
    profile_propagation: float = 0.2 # a new instance profile is unknown to EC2 / Auto Scaling
    certificate_release: float = 0.1 # ACM still counts a deleted listener as a user
    # The data tier.
    db_create: float = 0.3           # creating -> available (minutes on AWS)
    db_create_multi_az: float = 0.5  # the standby too (15-20 minutes)
    db_delete: float = 0.3           # deleting, still in its subnets and group, then gone
    table_create: float = 0.1        # CREATING -> ACTIVE
    table_delete: float = 0.1        # DELETING, then gone
    cache_create: float = 0.3        # a replication group reads `creating`, without its endpoint
    cache_delete: float = 0.3        # `deleting`, still holding its subnets, group and subnet group
    efs_create: float = 0.1          # a file system reads `creating`
    mount_target_create: float = 0.1
    mount_target_release: float = 0.2  # a deleted mount target's interface lingers
    distribution_deploy: float = 0.2 # a CloudFront distribution's create or update is InProgress
    # The audit tier.
    flow_log_role_propagation: float = 0.2  # a new role is not yet assumable by VPC flow logs


@dataclass
class StrictAws(ComputeRules, EdgeRules, IdentityRules, BastionRules, DatabaseRules, DataRules, CdnRules,
                MonitoringRules, KmsRules, AuditRules):
    region: str = "us-east-1"
    delays: Delays = field(default_factory=Delays)
    # Each refusal made, as (operation, code, kind): tests assert that the tool met and survived
    # the LINGERING ones and never caused an ORDER one.
    refusals: list = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.RLock()
        self.nat_created: dict[str, float] = {}
        # nat id -> (deleted at, subnet id, vpc id, allocation ids)
        self.nat_deleted: dict[str, tuple] = {}
        # What the rule of the call under way on this thread asked to record once AWS accepts it.
        self._request = threading.local()
        for name in sorted(dir(self)):
            if name.startswith("strict_setup_"):
                getattr(self, name)()

    @property
    def backend(self):
        from moto.ec2.models import ec2_backends

        return ec2_backends[DEFAULT_ACCOUNT_ID][self.region]

    def install(self, events) -> "StrictAws":
        """Register every rule set: methods named `strict_rules_*` return {"service.Operation":
        rule(body) -> refusal or None}, methods named `strict_after_*` return
        {"service.Operation": hook(parsed)} that rewrite responses (timing)."""
        for name in sorted(dir(self)):
            if name.startswith("strict_rules_"):
                for key, rule in getattr(self, name)().items():
                    service, operation = key.split(".")
                    events.register(f"before-call.{service}.{operation}", self._guard(operation, rule))
            elif name.startswith("strict_requests_"):
                # REST protocols (CloudFront) carry ids in the path and IfMatch in a header: these
                # rules read the request itself, {"Id": ..., "IfMatch": ...}.
                for key, rule in getattr(self, name)().items():
                    service, operation = key.split(".")
                    events.register(f"before-call.{service}.{operation}",
                                    self._guard(operation, rule, rest=True))
            elif name.startswith("strict_params_"):
                # Protocols whose body is binary (CloudWatch's CBOR): the rule reads the API's
                # parameters, kept in the request context before they are serialized.
                for key, rule in getattr(self, name)().items():
                    service, operation = key.split(".")
                    events.register(f"before-parameter-build.{service}.{operation}", _keep_params)
                    events.register(f"before-call.{service}.{operation}", self._guard_params(operation, rule))
            elif name.startswith("strict_after_"):
                for key, hook in getattr(self, name)().items():
                    events.register(f"after-call.{key}", self._after(hook))
            elif name.startswith("strict_answers_"):
                # What AWS still shows and moto has forgotten (a database still `deleting`):
                # answer(body) -> (http, parsed) in moto's place, or None to let moto answer.
                for key, answer in getattr(self, name)().items():
                    events.register(f"before-call.{key}", self._answer(answer))
        events.register("after-call", self._commit)
        return self

    def later(self, record) -> None:
        """Called by a rule: run `record` (note a deletion, a release) only if the call succeeds.
        A call can stop after the rules looked and before it reaches AWS (a Ctrl-C noticed by the
        tool's own before-call check, a later handler's refusal); AWS then did nothing, and neither
        may the record, or a gateway that was never deleted would read `deleted` from then on."""
        self._request.records.append(record)

    def _commit(self, parsed, context=None, **_):
        records = (context or {}).pop("strict_records", [])
        if records and isinstance(parsed, dict) and "Error" not in parsed:
            with self._lock:
                for record in records:
                    record()

    def strict_rules_network(self):
        return {
            "ec2.DeleteSubnet": self._delete_subnet,
            "ec2.DeleteSecurityGroup": self._delete_security_group,
            "ec2.DetachInternetGateway": self._detach_internet_gateway,
            "ec2.DeleteInternetGateway": self._delete_internet_gateway,
            "ec2.ReleaseAddress": self._release_address,
            "ec2.DeleteVpc": self._delete_vpc,
            "ec2.DeleteRouteTable": self._delete_route_table,
            "ec2.CreateNatGateway": self._create_nat_gateway_precondition,
            "ec2.DeleteNatGateway": self._delete_nat_gateway,
        }

    def strict_after_network(self):
        return {
            "ec2.CreateNatGateway": self._after_create_nat,
            "ec2.DescribeNatGateways": self._after_describe_nats,
            "ec2.DescribeAddresses": self._after_describe_addresses,
            "ec2.CreateVpc": self._after_create_vpc,
        }

    def _guard(self, operation, rule, rest=False):
        def handler(params, context=None, **_):
            body = params.get("body") or {}
            if rest:
                path = params.get("url_path", "").split("?")[0].rstrip("/").split("/")
                body = {"Id": path[-2] if path[-1] == "config" else path[-1],
                        "IfMatch": (params.get("headers") or {}).get("If-Match")}
            elif isinstance(body, (bytes, str)):  # JSON protocols (ACM): the body is the document
                body = json.loads(body or b"{}")
            if not isinstance(params.get("body"), dict):
                # REST protocols (EFS) name the resource in the path: the rule reads it from its
                # own copy of the document (a query protocol's body dict is the request itself).
                body["__url_path"] = params.get("url_path", "")
            with self._lock:
                self._request.records = []
                response = rule(body)
                records, self._request.records = self._request.records, []
            if response is not None:
                self.refusals.append((operation, response[1]["Error"]["Code"], response[1].pop("kind")))
            elif records and context is not None:
                context.setdefault("strict_records", []).extend(records)
            return response
        return handler

    def _guard_params(self, operation, rule):
        def handler(context=None, **_):
            with self._lock:
                response = rule(dict((context or {}).get("strict_params") or {}))
            if response is not None:
                self.refusals.append((operation, response[1]["Error"]["Code"], response[1].pop("kind")))
            return response
        return handler

    def _answer(self, answer):
        def handler(params, **_):
            body = params.get("body") or {}
            if isinstance(body, (bytes, str)):
                body = json.loads(body or b"{}")
            with self._lock:
                return answer(body)
        return handler

    def _after(self, hook):
        def handler(parsed, **_):
            if isinstance(parsed, dict) and "Error" not in parsed:
                with self._lock:
                    hook(parsed)
        return handler

    # -- what AWS makes with a VPC ----------------------------------------------------------------
    def _after_create_vpc(self, parsed, **_):
        """AWS's default security group allows all inbound traffic from itself as well as all
        outbound traffic; moto's has the outbound rule only."""
        vpc_id = (parsed.get("Vpc") or {}).get("VpcId")
        group = self.backend.get_default_security_group(vpc_id) if vpc_id else None
        if group is not None and not group.ingress_rules:
            self.backend.authorize_security_group_ingress(
                group.id, "-1", None, None, [], source_groups=[{"GroupId": group.id}], vpc_id=vpc_id)

    # -- NAT gateway timing ---------------------------------------------------------------------
    def _lingering(self):
        """NAT gateways deleted so recently that AWS still holds their interface and address."""
        now = time.monotonic()
        out = []
        for nat_id, (deleted_at, subnet, vpc, allocations) in list(self.nat_deleted.items()):
            if now < deleted_at + self.delays.nat_delete + self.delays.eni_release:
                out.append((nat_id, subnet, vpc, allocations))
        return out

    def _after_create_nat(self, parsed, **_):
        nat = parsed.get("NatGateway")
        if nat:
            # setdefault: a replayed ClientToken answers the first gateway again (see
            # test_client_tokens.py); that is no new creation.
            self.nat_created.setdefault(nat["NatGatewayId"], time.monotonic())
            nat["State"] = "pending"

    def _nat_state(self, nat_id, moto_state):
        now = time.monotonic()
        if nat_id in self.nat_deleted:
            return "deleting" if now < self.nat_deleted[nat_id][0] + self.delays.nat_delete else "deleted"
        created = self.nat_created.get(nat_id)
        if created is not None and now < created + self.delays.nat_create:
            return "pending"
        return moto_state

    def _after_describe_nats(self, parsed, **_):
        for nat in parsed.get("NatGateways", []):
            nat["State"] = self._nat_state(nat["NatGatewayId"], nat["State"])

    def _after_describe_addresses(self, parsed, **_):
        held = {a for _, _, _, allocations in self._lingering() for a in allocations}
        for address in parsed.get("Addresses", []):
            if address.get("AllocationId") in held and not address.get("AssociationId"):
                address["AssociationId"] = "eipassoc-held-by-deleted-nat"

    def _delete_nat_gateway(self, body):
        nat_id = body.get("NatGatewayId")
        nat = self.backend.nat_gateways.get(nat_id)
        if nat is None or nat_id in self.nat_deleted:
            return None
        # Read before the call: the emulator lets go of the address as it deletes the gateway.
        allocations = [a.allocation_id for a in self.backend.addresses
                       if nat._eni is not None and a.eni is nat._eni]
        self.later(lambda: self.nat_deleted.setdefault(
            nat_id, (time.monotonic(), nat.subnet_id, nat.vpc_id, allocations)))
        return None

    def _create_nat_gateway_precondition(self, body):
        subnet = self.backend.get_subnet(body.get("SubnetId"))
        attached = [g for g in list(self.backend.internet_gateways.values())
                    if g.vpc is not None and g.vpc.id == subnet.vpc_id]
        if body.get("ConnectivityType", "public") == "public" and not attached:
            return refuse("Gateway.NotAttached", f"Network {subnet.vpc_id} has no Internet gateway attached")
        return None

    # -- refusals AWS makes and moto does not ---------------------------------------------------
    def _live_nats(self, **match):
        for nat in list(self.backend.nat_gateways.values()):
            if self._nat_state(nat.id, nat.state) in ("deleted", "failed"):
                continue
            if all(getattr(nat, k) == v for k, v in match.items()):
                yield nat

    def _delete_subnet(self, body):
        subnet_id = body.get("SubnetId")
        for nat in self._live_nats(subnet_id=subnet_id):
            return refuse("DependencyViolation", f"The subnet '{subnet_id}' has dependencies (NAT gateway {nat.id})")
        for nat_id, subnet, _, _ in self._lingering():
            if subnet == subnet_id:
                return refuse("DependencyViolation",
                              f"The subnet '{subnet_id}' has dependencies (interface of deleted NAT gateway {nat_id})",
                              LINGERING)
        enis = [e for e in list(self.backend.enis.values()) if e.subnet.id == subnet_id]
        if enis:
            return refuse("DependencyViolation", f"The subnet '{subnet_id}' has dependencies ({enis[0].id})")
        return None

    def _delete_security_group(self, body):
        group_id = body.get("GroupId")
        for vpc_groups in list(self.backend.groups.values()):
            for group in list(vpc_groups.values()):
                if group.id == group_id:
                    continue
                for rule in list(group.ingress_rules) + list(group.egress_rules):
                    if rule.source_group.get("GroupId") == group_id:
                        return refuse("DependencyViolation",
                                      f"resource {group_id} has a dependent object (rule of {group.id})")
        for eni in list(self.backend.enis.values()):
            if any(g.id == group_id for g in eni._group_set):
                return refuse("DependencyViolation", f"resource {group_id} has a dependent object ({eni.id})")
        return None

    def _mapped_public_addresses(self, vpc_id):
        for address in self.backend.addresses:
            if address.eni is not None and address.eni.subnet.vpc_id == vpc_id:
                return address.public_ip
        return None

    def _detach_internet_gateway(self, body):
        vpc_id = body.get("VpcId")
        message = ("Network {vpc} has some mapped public address(es) ({ip}). "
                   "Please unmap those public address(es) before detaching the gateway.")
        mapped = self._mapped_public_addresses(vpc_id)
        if mapped:
            return refuse("DependencyViolation", message.format(vpc=vpc_id, ip=mapped))
        for _, _, vpc, allocations in self._lingering():
            if vpc == vpc_id and allocations:
                return refuse("DependencyViolation", message.format(vpc=vpc_id, ip=allocations[0]), LINGERING)
        return None

    def _delete_internet_gateway(self, body):
        gateway = self.backend.internet_gateways.get(body.get("InternetGatewayId"))
        if gateway is not None and gateway.vpc is not None:
            return refuse("DependencyViolation", f"The internetGateway '{gateway.id}' has dependencies")
        return None

    def _release_address(self, body):
        allocation = body.get("AllocationId")
        held = {a for _, _, _, allocations in self._lingering() for a in allocations}
        if any(a.allocation_id == allocation and a.eni is not None for a in self.backend.addresses):
            return refuse("InvalidIPAddress.InUse", f"Address {allocation} is in use")
        if allocation in held:
            return refuse("InvalidIPAddress.InUse", f"Address {allocation} is in use", LINGERING)
        return None

    def _delete_vpc(self, body):
        vpc_id = body.get("VpcId")
        if any(s.vpc_id == vpc_id for zone in list(self.backend.subnets.values()) for s in list(zone.values())):
            return refuse("DependencyViolation", f"The vpc '{vpc_id}' has dependencies (subnets)")
        if any(g.vpc is not None and g.vpc.id == vpc_id for g in list(self.backend.internet_gateways.values())):
            return refuse("DependencyViolation", f"The vpc '{vpc_id}' has dependencies (internet gateway)")
        groups = self.backend.groups.get(vpc_id, {})
        if any(g.name != "default" for g in list(groups.values())):
            return refuse("DependencyViolation", f"The vpc '{vpc_id}' has dependencies (security groups)")
        tables = [t for t in list(self.backend.route_tables.values())
                  if t.vpc_id == vpc_id and not t.main_association_id]
        if tables:
            return refuse("DependencyViolation", f"The vpc '{vpc_id}' has dependencies (route tables)")
        return None

    def _delete_route_table(self, body):
        table = self.backend.route_tables.get(body.get("RouteTableId"))
        if table is not None and table._associations:
            return refuse("DependencyViolation", f"The routeTable '{table.id}' has dependencies")
        return None


def _keep_params(params, context=None, **_):
    if context is not None:
        context["strict_params"] = dict(params)
