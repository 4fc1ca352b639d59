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
        # botocore's InstanceTerminated takes InstanceIds, and fails on an instance AWS has
        # already forgotten (terminated ones are listed for about an hour): a `down` resumed
        # later would wait out the whole deadline. The instance-id filter never errors, and no
        # live instance left is success.
        "InstancesTerminated": {
            "operation": "DescribeInstances",
            "delay": 15,
            "maxAttempts": 60,
            "acceptors": [
                {"matcher": "path",
                 "argument": "length(Reservations[].Instances[?State.Name != 'terminated'][]) == `0`",
                 "expected": True, "state": "success"},
            ],
        },
        # Auto Scaling has no waiters at all. A group deleted with ForceDelete reads "Delete in
        # progress" until its instances are terminated, and only then disappears.
        "AutoScalingGroupDeleted": {
            "operation": "DescribeAutoScalingGroups",
            "delay": 15,
            "maxAttempts": 60,
            "acceptors": [
                {"matcher": "path", "argument": "length(AutoScalingGroups) == `0`",
                 "expected": True, "state": "success"},
            ],
        },
        # A deleted load balancer keeps its network interfaces (description "ELB app/<name>/<id>")
        # for minutes; its subnets and security group cannot be deleted before they are released.
        # Success when no interface matches the filters given.
        "NetworkInterfacesReleased": {
            "operation": "DescribeNetworkInterfaces",
            "delay": 5,
            "maxAttempts": 240,
            "acceptors": [
                {"matcher": "path", "argument": "length(NetworkInterfaces) == `0`",
                 "expected": True, "state": "success"},
            ],
        },
        # EFS has no waiters at all. A file system and a mount target read "creating" for seconds
        # to minutes; AWS refuses a mount target or an access point on a file system not yet
        # available (IncorrectFileSystemLifeCycleState).
        "FileSystemAvailable": {
            "operation": "DescribeFileSystems",
            "delay": 5,
            "maxAttempts": 120,
            "acceptors": [
                {"matcher": "pathAll", "argument": "FileSystems[].LifeCycleState", "expected": "available",
                 "state": "success"},
                {"matcher": "pathAny", "argument": "FileSystems[].LifeCycleState", "expected": "error",
                 "state": "failure"},
            ],
        },
        # AWS refuses to delete a file system while it has mount targets, those being deleted
        # included (FileSystemInUse); NumberOfMountTargets counts them until they are gone.
        "FileSystemMountTargetsGone": {
            "operation": "DescribeFileSystems",
            "delay": 5,
            "maxAttempts": 120,
            "acceptors": [
                {"matcher": "path", "argument": "length(FileSystems[?NumberOfMountTargets > `0`]) == `0`",
                 "expected": True, "state": "success"},
                {"matcher": "error", "expected": "FileSystemNotFound", "state": "success"},
            ],
        },
        "FileSystemDeleted": {
            "operation": "DescribeFileSystems",
            "delay": 5,
            "maxAttempts": 120,
            "acceptors": [
                {"matcher": "path", "argument": "length(FileSystems[?LifeCycleState != 'deleted']) == `0`",
                 "expected": True, "state": "success"},
                {"matcher": "error", "expected": "FileSystemNotFound", "state": "success"},
            ],
        },
        "MountTargetAvailable": {
            "operation": "DescribeMountTargets",
            "delay": 5,
            "maxAttempts": 120,
            "acceptors": [
                {"matcher": "pathAll", "argument": "MountTargets[].LifeCycleState", "expected": "available",
                 "state": "success"},
                {"matcher": "pathAny", "argument": "MountTargets[].LifeCycleState", "expected": "error",
                 "state": "failure"},
            ],
        },
        # A deleted mount target reads "deleting" for a minute or so, and its network interface
        # holds the subnet and the files group until it is released.
        "MountTargetDeleted": {
            "operation": "DescribeMountTargets",
            "delay": 5,
            "maxAttempts": 120,
            "acceptors": [
                {"matcher": "path", "argument": "length(MountTargets[?LifeCycleState != 'deleted']) == `0`",
                 "expected": True, "state": "success"},
                {"matcher": "error", "expected": "MountTargetNotFound", "state": "success"},
            ],
        },
    },
}


def custom_waiter(name: str, client):
    from botocore.waiter import WaiterModel, create_waiter_with_client

    return create_waiter_with_client(name, WaiterModel(MODELS), client)


def has_custom_waiter(name: str) -> bool:
    return name in MODELS["waiters"]
