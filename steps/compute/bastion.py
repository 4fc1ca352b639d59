from provisioner.shape.config import BASTION_INSTANCE_TYPE
from provisioner.engine.context import Resource
from provisioner.engine.errors import AwsFailure
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import error_code

from steps.access.key_pair import key_pair_name
from steps.compute.launch_template import (INSTANCES, METADATA_OPTIONS, PASS_INSTANCE_ROLE, ROOT_DEVICE, VOLUMES,
                              instance_architecture, latest_ubuntu)

# Canonical's Ubuntu 24.04 snapshot is 8 GiB; a root volume may not be smaller than its snapshot,
# and a jump host needs no more.
BASTION_ROOT_VOLUME = {"VolumeType": "gp3", "VolumeSize": 8, "Encrypted": True, "DeleteOnTermination": True}
# IMDSv2 only with hop limit 1, as the app instances: a request from anything but the host itself
# never gets credentials (the bastion has no role anyway).
BASTION_METADATA_OPTIONS = {**METADATA_OPTIONS, "HttpPutResponseHopLimit": 1}
# Listed by EC2 but gone or going: a new bastion is made rather than one of these adopted.
GONE_STATES = ("shutting-down", "terminated")
# A replayed ClientToken answers the instance it made the first time, even terminated; a few
# tokens more, each derived from the last, find a fresh one deterministically.
MAX_TOKEN_REPLAYS = 5


@register
class Bastion(Step):
    """A small Ubuntu instance in public subnet 1 with a public IPv4 address, reachable on SSH from
    --ssh-cidr only (the `bastion` security group), booted with the stack's key pair: the one
    way in to the app instances, which have no public address. IMDSv2 only, an encrypted gp3 root
    volume, no instance profile. It holds nothing, so a change to what it was launched with
    (key pair, subnet, security group, instance type) replaces it."""

    kind = "instance"
    gone_codes = frozenset({"InvalidInstanceID.NotFound"})
    not_found_codes = frozenset({"InvalidInstanceID.NotFound"})
    delete_timeout = 900
    aws_type = "AWS::EC2::Instance"
    # An EC2 instance with its root volume, listed (and priced) as every instance of the stack.
    listing = INSTANCES
    also_makes = (VOLUMES,)
    iam = Iam(create=(actions("ec2:RunInstances", "ec2:CreateTags"), PASS_INSTANCE_ROLE),
              read=(actions("ec2:DescribeInstances", "ec2:DescribeImages", "ec2:DescribeInstanceTypes"),
                    actions("ssm:GetParameter", on="arn:{partition}:ssm:{region}::parameter/aws/service/canonical/*")),
              change=(actions("ec2:StartInstances", "ec2:StopInstances", "ec2:CreateTags"),),
              delete=(actions("ec2:TerminateInstances"),))

    def __init__(self):
        # The subnet's association with the public route table (and through it the internet
        # gateway's attachment) first: launched before, it would have no way out or in. `down`
        # terminates it before those go, and the internet gateway cannot be detached while its
        # public address is mapped.
        super().__init__("bastion", depends_on=("public-subnet-1", "public-subnet-1-association",
                                                "bastion-security-group", "key-pair"))

    @classmethod
    def instances(cls, config):
        return [cls()] if config.bastion else []

    # -- find ------------------------------------------------------------------------------------
    @staticmethod
    def _describe(ctx, filters, live=True):
        items = []
        for page in ctx.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            items += [i for r in page["Reservations"] for i in r["Instances"]]
        return [i for i in items if not live or i["State"]["Name"] not in GONE_STATES]

    def find_all(self, ctx, known_id):
        if known_id:
            items = self._describe(ctx, [{"Name": "instance-id", "Values": [known_id]}])
            for item in items:
                ctx.claim(self.name, item["InstanceId"], item.get("Tags", []), "instance")
            if items:
                return [self._resource(i) for i in items]
        return [self._resource(i) for i in self._describe(ctx, ctx.tag_filters(self.name))
                if ctx.owns(i.get("Tags", []), self.name)]

    @staticmethod
    def _resource(item):
        return Resource(id=item["InstanceId"],
                        attrs={"public_ip": item.get("PublicIpAddress"), "private_ip": item.get("PrivateIpAddress"),
                               "instance_type": item.get("InstanceType"), "key_name": item.get("KeyName")},
                        raw=item)

    # -- what it should be -----------------------------------------------------------------------
    @staticmethod
    def _groups(item):
        """The groups of its primary interface (where --bastion puts them; moto lists none on
        the instance itself for groups given per interface)."""
        primary = next((n for n in item.get("NetworkInterfaces", [])
                        if n.get("Attachment", {}).get("DeviceIndex") == 0), None)
        groups = primary.get("Groups", []) if primary else item.get("SecurityGroups", [])
        return sorted(g["GroupId"] for g in groups)

    def _differences(self, ctx, item):
        """Why the running bastion is not the one this configuration launches."""
        subnet, group = ctx.dep("public-subnet-1").id, ctx.dep("bastion-security-group").id
        key_pair = ctx.dep("key-pair")
        out = []
        if item.get("KeyName") != key_pair_name(ctx):
            out.append(f"key pair {item.get('KeyName') or 'none'} -> {key_pair_name(ctx)}")
        elif key_pair.raw.get("ReplacedKey") or _newer(key_pair.raw.get("CreateTime"), item.get("LaunchTime")):
            out.append(f"key pair {key_pair_name(ctx)} was replaced after the bastion booted with the old key")
        if item.get("SubnetId") != subnet:
            out.append(f"subnet {item.get('SubnetId')} -> {subnet}")
        if self._groups(item) != [group]:
            out.append(f"security groups {', '.join(self._groups(item)) or 'none'} -> {group}")
        if item.get("InstanceType") != BASTION_INSTANCE_TYPE:
            out.append(f"instance type {item.get('InstanceType')} -> {BASTION_INSTANCE_TYPE}")
        return out

    # -- create ----------------------------------------------------------------------------------
    def create(self, ctx):
        return self._launch(ctx, ctx.client_token(self.name))

    def _launch(self, ctx, token):
        ami = latest_ubuntu(ctx, instance_architecture(ctx, BASTION_INSTANCE_TYPE))
        launch = dict(
            ImageId=ami, InstanceType=BASTION_INSTANCE_TYPE, MinCount=1, MaxCount=1, KeyName=key_pair_name(ctx),
            # The address is asked for here, per launch: the public subnets do not map one
            # (only the load balancer and the NAT gateway live there otherwise).
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": ctx.dep("public-subnet-1").id,
                                "Groups": [ctx.dep("bastion-security-group").id],
                                "AssociatePublicIpAddress": True, "DeleteOnTermination": True}],
            MetadataOptions=dict(BASTION_METADATA_OPTIONS),
            BlockDeviceMappings=[{"DeviceName": ROOT_DEVICE, "Ebs": dict(BASTION_ROOT_VOLUME)}],
            TagSpecifications=[{"ResourceType": "instance", "Tags": ctx.tags(self.name)},
                               {"ResourceType": "volume", "Tags": ctx.tags(self.name)}])
        for _ in range(MAX_TOKEN_REPLAYS):
            instance_id = self._run(ctx, token, launch)
            if instance_id is not None:
                break
            # The token was used before, by a bastion since terminated (removed by hand, or
            # --bastion turned off and on within one stack generation) or with other parameters
            # (a newer Ubuntu image): the next token follows from this one, so a retry finds it.
            token = ctx.client_token(f"{self.name}:after:{token}")
        else:
            raise AwsFailure(f"RunInstances answered {MAX_TOKEN_REPLAYS} client tokens with former instances",
                             hint="run `provision up` again")
        ctx.wait("ec2", "instance_running", InstanceIds=[instance_id], what="bastion to be running")
        return self._resource(self._describe(ctx, [{"Name": "instance-id", "Values": [instance_id]}])[0])

    def _run(self, ctx, token, launch):
        """The new instance's id, or None if the token belongs to a former launch."""
        from botocore.exceptions import ClientError

        try:
            # A retried launch with the same token is the same instance, never a second one; a key
            # pair or group created moments ago may be unknown to RunInstances for a while.
            instance = ctx.retry("eventual-consistency", ctx.ec2.run_instances, ClientToken=token,
                                 **launch)["Instances"][0]
        except ClientError as e:
            if error_code(e) == "IdempotentParameterMismatch":
                return None
            raise
        # A replayed token answers the first launch's instance, whatever it has become since.
        now = self._describe(ctx, [{"Name": "instance-id", "Values": [instance["InstanceId"]]}], live=False)
        if any(i["State"]["Name"] in GONE_STATES for i in now + [instance]):
            return None
        return instance["InstanceId"]

    # -- update ----------------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        item = resource.raw
        changes = ctx.converge_tags(item.get("Tags", []), self.name, apply, lambda missing: ctx.retry(
            "eventual-consistency", ctx.ec2.create_tags, Resources=[resource.id], Tags=missing))
        missing = [d for d in self.depends_on if ctx.dep(d) is None]
        if missing:  # `plan` only: what it is launched with is to be created first
            return changes + [f"replace the bastion: launched with the new {', '.join(missing)}"]
        differences = self._differences(ctx, item)
        if differences:
            changes.append(f"replace the bastion ({'; '.join(differences)})")
            if apply:
                self._terminate(ctx, resource.id)
                # A token of its own: the stack's token would answer the instance just terminated.
                new = self._launch(ctx, ctx.client_token(f"{self.name}:after:{resource.id}"))
                resource.id, resource.attrs, resource.raw = new.id, new.attrs, new.raw
            return changes
        state = item["State"]["Name"]
        if state in ("stopping", "stopped"):
            changes.append(f"start the bastion ({state})")
            if apply:
                ctx.wait("ec2", "instance_stopped", InstanceIds=[resource.id], what="bastion to stop")
                ctx.ec2.start_instances(InstanceIds=[resource.id])
                ctx.wait("ec2", "instance_running", InstanceIds=[resource.id], what="bastion to be running")
                new = self._describe(ctx, [{"Name": "instance-id", "Values": [resource.id]}])[0]
                resource.attrs, resource.raw = self._resource(new).attrs, new
        return changes

    # -- delete ----------------------------------------------------------------------------------
    def _terminate(self, ctx, instance_id):
        ctx.ec2.terminate_instances(InstanceIds=[instance_id])
        # Its security group and subnet are refused, and the internet gateway cannot be detached,
        # until the instance (and its interface, with the public address) is gone.
        ctx.wait("ec2", "InstancesTerminated", timeout=self.delete_timeout,
                 Filters=[{"Name": "instance-id", "Values": [instance_id]}],
                 what=f"bastion {instance_id} to terminate")

    def delete(self, ctx, resource):
        self._terminate(ctx, resource.id)

    # -- what others see -------------------------------------------------------------------------
    def outputs(self, resource):
        return {"bastion_instance_id": resource.id, "bastion_public_ip": resource.attrs.get("public_ip"),
                "bastion_private_ip": resource.attrs.get("private_ip")}

    def describe(self, resource):
        state = resource.raw.get("State", {}).get("Name")
        return (f"{resource.id} {resource.attrs.get('public_ip') or 'no public IP'} "
                f"({resource.attrs.get('instance_type')}{', ' + state if state and state != 'running' else ''})")


def _newer(created, launched) -> bool:
    """Whether the key pair was made after the instance booted (so the instance has an older key).
    EC2 gives both to the second; equal seconds is not "after" (the first launch follows its key
    pair's creation within the same second)."""
    if created is None or launched is None:
        return False
    return created.replace(microsecond=0) > launched.replace(microsecond=0)
