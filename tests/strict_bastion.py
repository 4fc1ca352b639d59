"""Strict rules for the bastion (an instance launched with RunInstances) and its key pair: see
strict.py. A mixin of StrictAws, like strict_compute.py; rules run under the StrictAws lock.

What AWS does and moto does not:
- RunInstances refuses a KeyName that does not exist (InvalidKeyPair.NotFound); moto launches it;
- RunInstances refuses network interfaces together with instance-level SubnetId or security
  groups (InvalidParameterCombination);
- an internet gateway cannot be detached while an instance in its VPC has a public IPv4 address
  mapped ("Network vpc-... has some mapped public address(es)"), also while that instance is
  shutting down; moto only knows of Elastic IPs.
(A running or shutting-down instance holding its subnet and its security groups, those of its
interfaces included, is strict_compute.py's.)
"""

from __future__ import annotations

from strict_base import LINGERING, ORDER, refuse


def _members(body, prefix):
    """The values of a query-protocol list ("InstanceId.1", "InstanceId.2", ...)."""
    return [v for k, v in sorted(body.items()) if k.startswith(f"{prefix}.") and k.count(".") == 1]


class BastionRules:
    def strict_setup_bastion(self):
        # instance id -> VPC id, for each instance terminated while it had a public address
        self.public_address_terminated: dict[str, str] = {}

    def strict_rules_bastion(self):
        return {
            "ec2.RunInstances": self._run_instances,
            "ec2.TerminateInstances": self._note_public_address,
            "ec2.DetachInternetGateway": self._instance_public_address_mapped,
        }

    def _run_instances(self, body):
        key_name = body.get("KeyName")
        if key_name and key_name not in self.backend.key_pairs:
            return refuse("InvalidKeyPair.NotFound", f"The key pair '{key_name}' does not exist")
        interfaces = any(k.startswith("NetworkInterface.") for k in body)
        instance_level = body.get("SubnetId") or _members(body, "SecurityGroupId") or _members(body, "SecurityGroup")
        if interfaces and instance_level:
            return refuse("InvalidParameterCombination",
                          "Network interfaces and an instance-level security groups may not be specified on the "
                          "same request")
        return None

    def _note_public_address(self, body):
        mapped = {instance.id: self.backend.get_subnet(instance.subnet_id).vpc_id
                  for instance in self._instances()
                  if instance.id in _members(body, "InstanceId") and instance.state != "terminated"
                  and instance.public_ip}
        if mapped:
            self.later(lambda: self.public_address_terminated.update(mapped))
        return None

    def _instance_public_address_mapped(self, body):
        vpc_id = body.get("VpcId")
        message = ("Network {vpc} has some mapped public address(es) ({ip}). "
                   "Please unmap those public address(es) before detaching the gateway.")
        for instance in self._instances():
            if instance.state != "terminated" and instance.public_ip and \
                    self.backend.get_subnet(instance.subnet_id).vpc_id == vpc_id:
                return refuse("DependencyViolation", message.format(vpc=vpc_id, ip=instance.public_ip), ORDER)
        shutting_down = self._shutting_down()
        for instance_id, vpc in list(self.public_address_terminated.items()):
            if vpc == vpc_id and instance_id in shutting_down:
                return refuse("DependencyViolation", message.format(vpc=vpc_id, ip=f"of {instance_id}"), LINGERING)
        return None
