"""Small waiter models (botocore's JSON waiter format) for the states AWS has no waiter for.

Each model polls one describe call; the delay and attempt count are set per wait by the run
context from PROVISION_POLL_INTERVAL and the timeouts table, so the numbers here are defaults only.
"""

from __future__ import annotations

MODELS: dict[str, dict] = {
    "version": 2,
    "waiters": {
        # A NAT gateway's Elastic IP stays associated until its network interface is released,
        # which comes some time after the gateway reads "deleted". Releasing it earlier fails.
        "AddressDisassociated": {
            "operation": "DescribeAddresses",
            "delay": 5,
            "maxAttempts": 120,
            "acceptors": [
                {"matcher": "path", "argument": "length(Addresses[?AssociationId]) == `0`",
                 "expected": True, "state": "success"},
                {"matcher": "error", "expected": "InvalidAllocationID.NotFound", "state": "success"},
            ],
        },
    },
}


def custom_waiter(name: str, client):
    from botocore.waiter import WaiterModel, create_waiter_with_client

    return create_waiter_with_client(name, WaiterModel(MODELS), client)


def has_custom_waiter(name: str) -> bool:
    return name in MODELS["waiters"]
