"""Strict rules for the load balancer, its listeners and target groups: see strict.py.

A mixin of StrictAws: `strict_setup_edge` sets up its bookkeeping, `strict_rules_edge` returns
{"service.Operation": rule(body) -> refusal or None}, `strict_after_edge` returns
{"service.Operation": hook(parsed)}. Rules run under the StrictAws lock.

What moto lacks and these rules add:
- an ALB is `provisioning` for a while after CreateLoadBalancer (moto: `active` at the first describe);
- an ALB has network interfaces, one per subnet, described "ELB app/<name>/<id>" (moto: none), and
  they outlive a deleted ALB by delays.alb_delete + delays.alb_eni_release; until then AWS refuses to
  delete its subnets and security group (DependencyViolation, LINGERING; ORDER while the ALB itself
  is there). moto forgets the ALB itself at DeleteLoadBalancer, so it is not listed during
  alb_delete as AWS may list it: the tool's wait for the interfaces covers both;
- an internet-facing ALB needs an internet gateway attached to its VPC (InvalidSubnet);
- a load balancer has one listener per port (DuplicateListener; moto keys them by ARN only);
- ACM refuses to delete a certificate a listener uses, and for a while after the last such listener
  was deleted (ResourceInUseException); moto deletes it, and its InUseBy never shrinks.
moto already refuses DeleteTargetGroup while a listener or rule forwards to the group; the rule
here makes the same refusal so that it is counted (and tests can assert it never happens).
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import threading
import time

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import LINGERING, ORDER, refuse


def _members(body: dict, name: str) -> list[str]:
    """A query-protocol list parameter (Subnets.member.1, ...) from a request body."""
    values, i = [], 1
    while f"{name}.member.{i}" in body:
        values.append(body[f"{name}.member.{i}"])
        i += 1
    return values


def _ec2_filters(body: dict) -> dict[str, list[str]]:
    """EC2's Filter.N.Name / Filter.N.Value.M parameters as {name: values}."""
    filters, i = {}, 1
    while f"Filter.{i}.Name" in body:
        values, j = [], 1
        while f"Filter.{i}.Value.{j}" in body:
            values.append(body[f"Filter.{i}.Value.{j}"])
            j += 1
        filters[body[f"Filter.{i}.Name"]] = values
        i += 1
    return filters


def _eni_fields(eni: dict, name: str) -> list[str] | None:
    """The values of a DescribeNetworkInterfaces filter for one interface (None: unknown filter)."""
    simple = {"description": "Description", "subnet-id": "SubnetId", "vpc-id": "VpcId",
              "availability-zone": "AvailabilityZone", "interface-type": "InterfaceType", "status": "Status",
              "network-interface-id": "NetworkInterfaceId", "requester-id": "RequesterId",
              "owner-id": "OwnerId", "private-ip-address": "PrivateIpAddress"}
    if name in simple:
        return [str(eni.get(simple[name], ""))]
    if name == "group-id":
        return [g["GroupId"] for g in eni["Groups"]]
    if name == "group-name":
        return [g["GroupName"] for g in eni["Groups"]]
    if name == "requester-managed":
        return [str(eni["RequesterManaged"]).lower()]
    if name.startswith("attachment."):
        key = {"attachment.status": "Status", "attachment.instance-owner-id": "InstanceOwnerId"}.get(name)
        return [eni["Attachment"][key]] if key else None
    return None


def _matches(eni: dict, filters: dict[str, list[str]], ids: list[str]) -> bool:
    if ids and eni["NetworkInterfaceId"] not in ids:
        return False
    for name, patterns in filters.items():
        values = _eni_fields(eni, name)
        if values is None or not any(fnmatch.fnmatchcase(v, p) for v in values for p in patterns):
            return False
    return True


class EdgeRules:
    def strict_setup_edge(self):
        self.alb_created: dict[str, float] = {}
        # alb arn -> (deleted at, interfaces it held)
        self.alb_deleted: dict[str, tuple[float, list[dict]]] = {}
        # certificate arn -> (when the last listener using it was deleted, its load balancer's arn)
        self.certificate_released: dict[str, tuple[float, str]] = {}
        # The filters of the DescribeNetworkInterfaces call in flight, per thread: the after-call
        # hook sees only the response.
        self._eni_request = threading.local()

    @property
    def elbv2(self):
        from moto.elbv2.models import elbv2_backends

        return elbv2_backends[DEFAULT_ACCOUNT_ID][self.region]

    def strict_rules_edge(self):
        return {
            "ec2.DeleteSubnet": self._alb_holds_subnet,
            "ec2.DeleteSecurityGroup": self._alb_holds_security_group,
            "ec2.DescribeNetworkInterfaces": self._remember_eni_request,
            "elbv2.CreateLoadBalancer": self._create_load_balancer_precondition,
            "elbv2.CreateListener": self._create_listener_precondition,
            "elbv2.DeleteLoadBalancer": self._delete_load_balancer,
            "elbv2.DeleteListener": self._delete_listener,
            "elbv2.DeleteTargetGroup": self._delete_target_group,
            "acm.DeleteCertificate": self._delete_certificate,
        }

    def strict_after_edge(self):
        return {
            "elbv2.CreateLoadBalancer": self._after_create_load_balancer,
            "elbv2.DescribeLoadBalancers": self._after_describe_load_balancers,
            "ec2.DescribeNetworkInterfaces": self._after_describe_network_interfaces,
            "acm.DescribeCertificate": self._after_describe_certificate,
        }

    # -- the load balancer's timing and interfaces ---------------------------------------------
    def _after_create_load_balancer(self, parsed):
        for balancer in parsed.get("LoadBalancers", []):
            self.alb_created.setdefault(balancer["LoadBalancerArn"], time.monotonic())
            balancer["State"] = {"Code": "provisioning"}

    def _after_describe_load_balancers(self, parsed):
        now = time.monotonic()
        for balancer in parsed.get("LoadBalancers", []):
            created = self.alb_created.get(balancer["LoadBalancerArn"])
            if created is not None and now < created + self.delays.alb_create:
                balancer["State"] = {"Code": "provisioning"}

    def _interfaces(self, balancer) -> list[dict]:
        """The network interfaces AWS gives an ALB: one per subnet, in its security groups."""
        suffix = balancer.arn.split(":loadbalancer/", 1)[1]
        groups = []
        for group_id in balancer.security_groups:
            group = self.backend.get_security_group_from_id(group_id)
            groups.append({"GroupId": group_id, "GroupName": group.name if group is not None else ""})
        interfaces = []
        for subnet in balancer.subnets:
            digest = hashlib.sha256(f"{balancer.arn}/{subnet.id}".encode()).hexdigest()
            address = str(ipaddress.ip_network(subnet.cidr_block)[int(digest[:4], 16) % 200 + 10])
            interfaces.append({
                "NetworkInterfaceId": f"eni-{digest[:17]}", "Description": f"ELB {suffix}",
                "InterfaceType": "interface", "SubnetId": subnet.id, "VpcId": subnet.vpc_id,
                "AvailabilityZone": subnet.availability_zone, "Groups": groups, "Status": "in-use",
                "RequesterId": "amazon-elb", "RequesterManaged": True, "OwnerId": DEFAULT_ACCOUNT_ID,
                "PrivateIpAddress": address, "PrivateIpAddresses": [{"PrivateIpAddress": address, "Primary": True}],
                "Attachment": {"Status": "attached", "InstanceOwnerId": "amazon-elb", "DeviceIndex": 1},
                "SourceDestCheck": True, "TagSet": [],
            })
        return interfaces

    def _lingering_interfaces(self) -> list[tuple[str, dict]]:
        """(alb arn, interface) of ALBs deleted so recently that AWS still holds their interfaces."""
        now = time.monotonic()
        return [(arn, eni) for arn, (deleted_at, interfaces) in list(self.alb_deleted.items())
                if now < deleted_at + self.delays.alb_delete + self.delays.alb_eni_release
                for eni in interfaces]

    def _live_interfaces(self) -> list[tuple[str, dict]]:
        return [(balancer.arn, eni) for balancer in list(self.elbv2.load_balancers.values())
                for eni in self._interfaces(balancer)]

    def _remember_eni_request(self, body):
        self._eni_request.body = body
        return None

    def _after_describe_network_interfaces(self, parsed):
        body = getattr(self._eni_request, "body", None) or {}
        self._eni_request.body = None
        if parsed.get("NextToken"):  # added to the last page only
            return
        filters = _ec2_filters(body)
        ids = [v for k, v in body.items() if k.startswith("NetworkInterfaceId.")]
        parsed.setdefault("NetworkInterfaces", []).extend(
            eni for _, eni in self._live_interfaces() + self._lingering_interfaces() if _matches(eni, filters, ids))

    def _alb_holds(self, what: str, resource_id: str, holds) -> tuple | None:
        for arn, eni in self._live_interfaces():
            if holds(eni):
                return refuse("DependencyViolation",
                              f"The {what} '{resource_id}' has dependencies ({eni['NetworkInterfaceId']}, "
                              f"{eni['Description']}: load balancer {arn.rsplit('/', 2)[-2]} still exists)", ORDER)
        for arn, eni in self._lingering_interfaces():
            if holds(eni):
                return refuse("DependencyViolation",
                              f"The {what} '{resource_id}' has dependencies ({eni['NetworkInterfaceId']}, "
                              f"{eni['Description']}: interface of a deleted load balancer)", LINGERING)
        return None

    def _alb_holds_subnet(self, body):
        subnet_id = body.get("SubnetId")
        return self._alb_holds("subnet", subnet_id, lambda eni: eni["SubnetId"] == subnet_id)

    def _alb_holds_security_group(self, body):
        group_id = body.get("GroupId")
        return self._alb_holds("security group", group_id,
                               lambda eni: any(g["GroupId"] == group_id for g in eni["Groups"]))

    def _create_load_balancer_precondition(self, body):
        if body.get("Scheme", "internet-facing") != "internet-facing":
            return None
        subnet_ids = _members(body, "Subnets") + [
            v for k, v in body.items() if k.startswith("SubnetMappings.member.") and k.endswith(".SubnetId")]
        for subnet_id in subnet_ids:
            subnets = [s for zone in list(self.backend.subnets.values()) for s in list(zone.values())]
            subnet = next((s for s in subnets if s.id == subnet_id), None)
            if subnet is None:  # moto answers that one itself
                continue
            gateways = list(self.backend.internet_gateways.values())
            if not any(g.vpc is not None and g.vpc.id == subnet.vpc_id for g in gateways):
                return refuse("InvalidSubnet", f"VPC {subnet.vpc_id} has no internet gateway")
        return None

    def _create_listener_precondition(self, body):
        balancer = self.elbv2.load_balancers.get(body.get("LoadBalancerArn"))
        port = body.get("Port")
        listeners = list(balancer.listeners.values()) if balancer is not None else []
        if any(str(listener.port) == str(port) for listener in listeners):
            return refuse("DuplicateListener", f"A listener already exists on port {port}")
        return None

    def _delete_load_balancer(self, body):
        arn = body.get("LoadBalancerArn")
        balancer = self.elbv2.load_balancers.get(arn)
        if balancer is None or arn in self.alb_deleted:
            return None
        listeners, interfaces = list(balancer.listeners.values()), self._interfaces(balancer)

        def deleted():
            # AWS deletes its listeners with it: their certificates are released from now on.
            for listener in listeners:
                self._release_certificates(listener, arn)
            self.alb_deleted.setdefault(arn, (time.monotonic(), interfaces))

        self.later(deleted)
        return None

    # -- target groups and certificates --------------------------------------------------------
    def _delete_target_group(self, body):
        arn = body.get("TargetGroupArn")
        if arn in self.elbv2.target_groups and self.elbv2._any_listener_using(arn):
            return refuse("ResourceInUse", f"Target group '{arn}' is currently in use by a listener or a rule")
        return None

    def _listeners(self):
        for balancer in list(self.elbv2.load_balancers.values()):
            for listener in list(balancer.listeners.values()):
                yield balancer, listener

    @staticmethod
    def _certificates_of(listener) -> set[str]:
        return {c for c in [listener.certificate, *listener.certificates] if c}

    def _release_certificates(self, listener, balancer_arn):
        for certificate in self._certificates_of(listener):
            self.certificate_released[certificate] = (time.monotonic(), balancer_arn)

    def _delete_listener(self, body):
        arn = body.get("ListenerArn")
        for balancer, listener in self._listeners():
            if listener.arn == arn:
                self.later(lambda listener=listener, owner=balancer.arn: self._release_certificates(listener, owner))
        return None

    def _certificate_users(self, certificate_arn) -> tuple[list[str], list[str]]:
        """(load balancers whose listeners use it, load balancers that let go of it so recently
        that ACM still counts them)."""
        live = sorted({b.arn for b, listener in self._listeners() if certificate_arn in self._certificates_of(listener)})
        released = self.certificate_released.get(certificate_arn)
        lingering = []
        if released and time.monotonic() < released[0] + self.delays.certificate_release and released[1] not in live:
            lingering = [released[1]]
        return live, lingering

    def _delete_certificate(self, body):
        arn = body.get("CertificateArn")
        live, lingering = self._certificate_users(arn)
        if live:
            return refuse("ResourceInUseException", f"Certificate {arn} in use by {', '.join(live)}", ORDER)
        if lingering:
            return refuse("ResourceInUseException", f"Certificate {arn} in use by {lingering[0]}", LINGERING)
        return None

    def _after_describe_certificate(self, parsed):
        certificate = parsed.get("Certificate")
        if certificate:
            live, lingering = self._certificate_users(certificate["CertificateArn"])
            certificate["InUseBy"] = live + lingering
