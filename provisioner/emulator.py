"""Where the emulator (moto) is more permissive or less complete than AWS in ways that would make
a correct run wrong, these patches make it behave as AWS does. Used by the sandbox server and by
the tests; nothing here runs against real AWS."""

from __future__ import annotations

_applied = False


def apply() -> None:
    """Idempotent. AWS releases a deleted NAT gateway's network interface, and with it the
    Elastic IP's association; moto keeps both forever, so an Elastic IP could never be released
    the right way (after the gateway let go of it)."""
    global _applied
    if _applied:
        return
    from moto.ec2.models.nat_gateways import NatGatewayBackend

    original = NatGatewayBackend.delete_nat_gateway

    def delete_nat_gateway(self, nat_gateway_id):
        nat = original(self, nat_gateway_id)
        eni = getattr(nat, "_eni", None)
        if eni is not None:
            for address in list(self.addresses):
                if address.eni is eni and address.association_id:
                    self.disassociate_address(association_id=address.association_id)
            if eni.id in self.enis:
                self.delete_network_interface(eni.id)
            nat._eni = None
        return nat

    NatGatewayBackend.delete_nat_gateway = delete_nat_gateway
    _applied = True
