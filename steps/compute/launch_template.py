import base64
import datetime
import gzip
import hashlib

import userdata
from provisioner.engine.errors import AwsFailure
from provisioner.engine.kinds import FREE, Iam, PriceKey, actions, ec2_listing
from provisioner.account.pricing import HOURS_PER_MONTH, price_of
from provisioner.engine.registry import Step, created, in_service, register
from provisioner.engine.retries import error_code, lookup

from steps.network.elastic_ip import PUBLIC_IPV4_HOUR
from steps.access.key_pair import key_pair_name

# Canonical publishes the current Ubuntu 24.04 LTS image of each architecture here.
UBUNTU_AMI_PARAMETER = "/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id"
# EC2 names architectures as the CPU does, Canonical's parameter as Debian does.
DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
# Ubuntu's images boot from /dev/sda1; a mapping for another name would add a second volume
# instead of changing the root one.
ROOT_DEVICE = "/dev/sda1"
ROOT_VOLUME = {"VolumeType": "gp3", "VolumeSize": 20, "Encrypted": True, "DeleteOnTermination": True}


def root_volume(ctx) -> dict:
    """The root volume: with --audit encrypted with the stack's key (the key policy lets the Auto
    Scaling role use it, or every launch fails with Client.InvalidKMSKey.InvalidState), else with
    the account's default EBS key."""
    from steps.security.kms_key import stack_key_arn

    key = stack_key_arn(ctx)
    return {**ROOT_VOLUME, "KmsKeyId": key} if key else dict(ROOT_VOLUME)
# IMDSv2 only, hop limit 1. A container's request to the metadata service crosses one more hop
# (the Docker bridge), so with 1 no container can take the instance role's credentials; with 2
# any process in any container could. No container needs them: the boot script on the host
# fetches the release and logs in to the registry, and the app's containers make no AWS call.
# With the data tier, the backend container itself calls AWS, so the hop limit is 2
# (APP_METADATA_OPTIONS): it reads the database's password from Secrets Manager (RDS rotates a
# managed password every 7 days, so a copy the host wrote at boot would stop working within a
# week; the backend re-reads it when a login fails), looks up the database's and the cache's
# endpoints (they exist minutes after the instances boot), and DynamoDB needs the role's
# credentials on every call. The role allows exactly those calls on the stack's own resources;
# the frontend container makes none. The app's logs (--monitoring) need no second hop: Docker's
# awslogs driver runs in the daemon, on the host, and takes the role's credentials from IMDS there.
METADATA_OPTIONS = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"}
APP_METADATA_OPTIONS = {**METADATA_OPTIONS, "HttpPutResponseHopLimit": 2}


def metadata_options(config) -> dict:
    from provisioner.engine.registry import app_steps

    containers_call_aws = any(type(step).containers_call_aws for step in app_steps(config))
    return dict(APP_METADATA_OPTIONS if containers_call_aws else METADATA_OPTIONS)
# A template's CreateTime and the run's clock can differ by this much.
TOKEN_REPLAY_SLACK = datetime.timedelta(seconds=60)


def instance_architecture(ctx, instance_type: str) -> str:
    """The CPU architecture of an instance type as EC2 names it (arm64 where supported)."""
    info = ctx.ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"][0]
    supported = info["ProcessorInfo"]["SupportedArchitectures"]
    return "arm64" if "arm64" in supported else "x86_64"


def check_platform(ctx, architecture: str) -> None:
    """CodeBuild builds the images for linux/amd64 only: an arm64 instance could not run them."""
    from provisioner.engine.errors import ConfigError
    from steps.build.codebuild_project import PLATFORM

    if architecture != "x86_64" and not ctx.config.build_on_instance:
        raise ConfigError(f"instance type {ctx.config.instance_type} is {architecture}, and the images are built "
                          f"for {PLATFORM}",
                          hint="use an x86_64 type (t3.micro, t3a.small, ...), or --build-on-instance to build "
                               "the images on each instance")


def latest_ubuntu(ctx, architecture: str) -> str:
    """The current Ubuntu 24.04 LTS image of an architecture, from Canonical's SSM parameter."""
    name = UBUNTU_AMI_PARAMETER.format(arch=DEBIAN_ARCH[architecture])
    return ctx.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]


def _script_of(encoded: str | None) -> str | None:
    """The script inside launch template user data (base64, maybe gzipped)."""
    if not encoded:
        return None
    raw = base64.b64decode(encoded)
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", "replace")


def image_tag_of_version(data: dict) -> str | None:
    """The image tag a launch template version's instances pull (None: built on the instance)."""
    return userdata.image_tag_of(_script_of(data.get("UserData")))


def user_data_sha256(encoded: str | None) -> str | None:
    """SHA-256 of the script inside launch template user data (base64, maybe gzipped)."""
    if not encoded:
        return None
    raw = base64.b64decode(encoded)
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return hashlib.sha256(raw).hexdigest()


# Instances (and their volumes) are made by the Auto Scaling Group and the bastion from what is
# declared here; they carry the stack's tags, so the inventory lists them, and they bill.
BILLING_INSTANCE_STATES = ("pending", "running")
# A volume bills from creation until it is gone, attached or not.
GONE_VOLUME_STATES = ("deleting", "deleted")
VOLUME_TYPES = ("gp3", "gp2")


def ec2_hourly(products, region, instance_types):
    out = {}
    for instance_type in instance_types:
        offers = products("AmazonEC2", instanceType=instance_type, regionCode=region, operatingSystem="Linux",
                          tenancy="Shared", preInstalledSw="NA", capacitystatus="Used")
        out[instance_type] = price_of(offers, f"BoxUsage:{instance_type}")
    return out


def ebs_monthly(products, region, instance_types):
    return {volume_type: price_of(products("AmazonEC2", productFamily="Storage", volumeApiName=volume_type,
                                           regionCode=region), f"EBS:VolumeUsage.{volume_type}")
            for volume_type in VOLUME_TYPES}


EC2_HOUR = PriceKey("ec2_hour", "EC2", "hour", ec2_hourly, per="instance type",
                    missing="the Price List API has no Linux On-Demand price for {type}; left out")
EBS_GB_MONTH = PriceKey("ebs_gb_month", "EBS", "GB-month", ebs_monthly, per="volume type",
                        required_types=VOLUME_TYPES)


def instance_charges(item, prices, region):
    detail = getattr(item, "detail", None) or {}
    if detail.get("state", "running") not in BILLING_INSTANCE_STATES:
        return [], []
    rows, unpriced = [], []
    instance_type = detail.get("instance_type")
    rate = prices["ec2_hour"].get(instance_type) if instance_type else None
    if rate is None:
        unpriced.append(f"instance type {instance_type or '(unknown)'} has no price in {region}")
    else:
        rows.append((f"EC2 {instance_type}", 1, "instance", rate))
    if detail.get("public_ip"):
        # Auto-assigned public addresses (the bastion's) bill like Elastic IPs since 2024.
        rows.append(("public IPv4 address (instance)", 1, "address", prices["public_ipv4_hour"]))
    return rows, unpriced


def volume_charges(item, prices, region):
    detail = getattr(item, "detail", None) or {}
    if detail.get("state") in GONE_VOLUME_STATES:
        return [], []
    volume_type, size = detail.get("volume_type"), detail.get("size_gb")
    rate = prices["ebs_gb_month"].get(volume_type) if volume_type else None
    if rate is None:
        return [], [f"EBS volume type {volume_type or '(unknown)'} has no price in {region}"]
    if not isinstance(size, (int, float)) or size <= 0:
        return [], [f"EBS volume {getattr(item, 'id', None) or 'volume'}: not counted (size unknown)"]
    return [(f"EBS {volume_type} (${rate:g}/GB-month)", size, "GB", rate / HOURS_PER_MONTH)], []


def instance_detail(item):
    detail = {"instance_type": item.get("InstanceType"), "state": item.get("State", {}).get("Name")}
    if item.get("PublicIpAddress"):
        # A public IPv4 address bills by the hour like an Elastic IP (the bastion has one).
        detail["public_ip"] = item["PublicIpAddress"]
    return detail


def volume_detail(item):
    return {"size_gb": item.get("Size"), "volume_type": item.get("VolumeType"), "state": item.get("State")}


INSTANCES = ec2_listing("instance", "describe_instances", "Reservations[].Instances[]", "InstanceId",
                        label="EC2 instances", created_field="LaunchTime", created_from_api=True,
                        gone=lambda i: i.get("State", {}).get("Name") == "terminated", detail=instance_detail,
                        price=instance_charges, price_keys=(EC2_HOUR, PUBLIC_IPV4_HOUR))
VOLUMES = ec2_listing("volume", "describe_volumes", "Volumes", "VolumeId", label="EBS volumes",
                      created_field="CreateTime", created_from_api=True,
                      gone=lambda i: i.get("State") in GONE_VOLUME_STATES, detail=volume_detail,
                      price=volume_charges, price_keys=(EBS_GB_MONTH,))

# Launching with the stack's instance profile passes its role to EC2: only that role, only to EC2.
PASS_INSTANCE_ROLE = actions("iam:PassRole", on="arn:{partition}:iam::{account}:role/provision/{stack}-{region}-web",
                             condition={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}})


@register
class LaunchTemplate(Step):
    """What every app instance boots from: Ubuntu 24.04 LTS, IMDSv2 only, an encrypted gp3 root
    volume, no public address, the `web` security group, the instance profile, and the boot
    script that fetches and starts the app release; with --bastion, the stack's key pair, so that
    `provision ssh` can reach the instances through the bastion. A change makes a new version,
    which the Auto Scaling Group rolls out with an instance refresh (turning the bastion on or
    off too). Without --bastion the data has no KeyName at all, exactly as before the option
    existed, so existing stacks get no new version."""

    kind = "launch_template"
    gone_codes = frozenset({"InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateName.NotFoundException"})
    not_found_codes = frozenset({"InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateName.NotFoundException"})
    aws_type = "AWS::EC2::LaunchTemplate"
    listing = ec2_listing("launch_template", "describe_launch_templates", "LaunchTemplates", "LaunchTemplateId",
                          created_field="CreateTime", price=FREE)
    iam = Iam(create=(actions("ec2:CreateLaunchTemplate", "ec2:CreateTags"), PASS_INSTANCE_ROLE),
              read=(actions("ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeImages",
                            "ec2:DescribeInstanceTypes"),
                    actions("ssm:GetParameter", on="arn:{partition}:ssm:{region}::parameter/aws/service/canonical/*")),
              change=(actions("ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate", "ec2:CreateTags"),
                      PASS_INSTANCE_ROLE),
              delete=(actions("ec2:DeleteLaunchTemplate"),))

    def __init__(self, bastion: bool = False, pull: bool = False, app=(), audit: bool = False):
        # The instances fetch the release and the images at boot: needed in service, not held (the
        # bucket may be emptied while the instances terminate). Pulling, they need the release's
        # images in the repository before the first one boots.
        super().__init__("launch-template", depends_on=(
            "web-security-group", "instance-profile", "instance-profile-role", in_service("app-release"),
            in_service("product-images"), *(("key-pair",) if bastion else ()),
            *((in_service("image-build"),) if pull else ()), *app,
            # --audit: the root volume is encrypted with the stack's key (its ARN only).
            *((created("kms-key"),) if audit else ())))

    @classmethod
    def instances(cls, config):
        from provisioner.engine.registry import app_needs

        return [cls(bastion=config.bastion, pull=not config.build_on_instance, app=app_needs(config),
                    audit=config.audit)]

    @staticmethod
    def _key_name(ctx):
        return key_pair_name(ctx) if ctx.config.bastion else None

    @staticmethod
    def template_name(ctx):
        return f"{ctx.stack}-web"

    # -- find ------------------------------------------------------------------------------------
    def find_all(self, ctx, known_id):
        if known_id:
            found = lookup(ctx.ec2.describe_launch_templates, LaunchTemplateIds=[known_id])
            items = found["LaunchTemplates"] if found else []
            for item in items:
                ctx.claim(self.name, item["LaunchTemplateId"], item.get("Tags", []), "launch template")
            if items:
                return [self._resource(ctx, items[0])]
        items = []
        for page in ctx.ec2.get_paginator("describe_launch_templates").paginate(Filters=ctx.tag_filters(self.name)):
            items.extend(page["LaunchTemplates"])
        return [self._resource(ctx, t) for t in items if ctx.owns(t.get("Tags", []), self.name)]

    def _resource(self, ctx, template):
        from provisioner.engine.context import Resource

        latest = ctx.ec2.describe_launch_template_versions(
            LaunchTemplateId=template["LaunchTemplateId"], Versions=["$Latest"])["LaunchTemplateVersions"][0]
        data = latest.get("LaunchTemplateData", {})
        return Resource(id=template["LaunchTemplateId"],
                        attrs={"name": template["LaunchTemplateName"], "version": latest["VersionNumber"],
                               "ami": data.get("ImageId"), "user_data_sha256": user_data_sha256(data.get("UserData"))},
                        raw={**template, "LatestVersionData": data})

    # -- what it should be -----------------------------------------------------------------------
    def _script(self, ctx):
        release = ctx.dep("app-release").attrs
        pull = {}
        if not ctx.config.build_on_instance:
            built = ctx.dep("image-build")
            if built is None:
                return None  # `plan` before the images are built: the script is not known yet
            pull = {"image_repository": built.attrs["repository_uri"], "image_tag": built.id}
        from provisioner.engine.registry import app_steps

        environment = {}
        for step in app_steps(ctx.config):
            environment.update(step.app_environment(ctx, ctx.dep(step.name)))
        return userdata.render_bootstrap(
            region=ctx.region, release_bucket=release["bucket"], release_key=release["key"],
            images_base_url=ctx.dep("assets-bucket").attrs["images_base_url"],
            stack=ctx.stack, grace_period_seconds=ctx.config.grace_seconds, app_environment=environment, **pull)

    def _data(self, ctx, ami, script):
        data = {
            "ImageId": ami,
            "InstanceType": ctx.config.instance_type,
            "IamInstanceProfile": {"Arn": ctx.dep("instance-profile").attrs["arn"]},
            # Groups only, no NetworkInterfaces: the instances live in private subnets and get no
            # public address (the subnets do not map one either).
            "SecurityGroupIds": [ctx.dep("web-security-group").id],
            "MetadataOptions": metadata_options(ctx.config),
            "BlockDeviceMappings": [{"DeviceName": ROOT_DEVICE, "Ebs": root_volume(ctx)}],
            "UserData": base64.b64encode(userdata.encode_user_data(script)).decode("ascii"),
            # The instances take their expiry from the group (it propagates the current one);
            # the volumes take it from here. A new expiry alone makes no new version (update
            # does not compare tags, so the instances are not replaced): the group's update
            # stamps it on the running instances and their volumes instead.
            "TagSpecifications": [{"ResourceType": "instance", "Tags": ctx.tags("instance", lasting=True)},
                                  {"ResourceType": "volume", "Tags": ctx.tags("instance")}],
        }
        if self._key_name(ctx):
            data["KeyName"] = self._key_name(ctx)
        return data

    _architecture = staticmethod(instance_architecture)
    _latest_ubuntu = staticmethod(latest_ubuntu)

    # -- create ----------------------------------------------------------------------------------
    def create(self, ctx):
        from provisioner.engine.context import Resource

        architecture = self._architecture(ctx, ctx.config.instance_type)
        check_platform(ctx, architecture)
        ami = ctx.config.ami or self._latest_ubuntu(ctx, architecture)
        script = self._script(ctx)
        template = self._create(ctx, self._data(ctx, ami, script))
        return Resource(id=template["LaunchTemplateId"],
                        attrs={"name": template["LaunchTemplateName"], "version": template["LatestVersionNumber"],
                               "ami": ami, "user_data_sha256": hashlib.sha256(script.encode()).hexdigest()},
                        raw=template)

    def _create(self, ctx, data):
        from botocore.exceptions import ClientError

        for token in ctx.client_tokens(self.name):
            try:
                template = ctx.ec2.create_launch_template(
                    LaunchTemplateName=self.template_name(ctx), LaunchTemplateData=data, ClientToken=token,
                    TagSpecifications=[{"ResourceType": "launch-template", "Tags": ctx.tags(self.name)}],
                )["LaunchTemplate"]
            except ClientError as e:
                # The token made a template from other data (a newer image, another script).
                if error_code(e) == "IdempotentParameterMismatch":
                    continue
                raise
            # A replayed token answers the template it made first, even one deleted by hand
            # since. A live one would have been found by its name before create was called, so
            # a template older than this run is that former one: its id no longer exists.
            created = template.get("CreateTime")
            if created is None or created >= ctx.started - TOKEN_REPLAY_SLACK:
                return template
        raise AwsFailure("CreateLaunchTemplate answered every client token with a former launch template",
                         hint="run `provision up` again")

    # -- update ----------------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        have = resource.raw.get("LatestVersionData", {})
        changes = []
        instance_type = ctx.config.instance_type
        if have.get("InstanceType") != instance_type:
            changes.append(f"instance type {have.get('InstanceType')} -> {instance_type}")
        # The image is resolved once, at create: a new Canonical release must not replace the
        # fleet on the next `up`. Only --ami, or an instance type of another architecture, does.
        ami = have.get("ImageId") or resource.attrs.get("ami")
        if ctx.config.ami and ctx.config.ami != ami:
            changes.append(f"AMI {ami} -> {ctx.config.ami}")
            ami = ctx.config.ami
        elif not ctx.config.ami and have.get("InstanceType") != instance_type:
            architecture = self._architecture(ctx, instance_type)
            check_platform(ctx, architecture)
            if self._image_architecture(ctx, ami) != architecture:
                new_ami = self._latest_ubuntu(ctx, architecture)
                changes.append(f"AMI {ami} -> {new_ami} (Ubuntu 24.04 LTS for {architecture})")
                ami = new_ami
        want_key = self._key_name(ctx)
        if have.get("KeyName") != want_key:
            # Instances launched before keep the key they booted with until the refresh replaces them.
            changes.append(f"key pair {have.get('KeyName') or 'none'} -> {want_key or 'none'}")
        script = self._script(ctx) if ctx.dep("app-release") and ctx.dep("assets-bucket") else None
        have_tag = userdata.image_tag_of(_script_of(have.get("UserData")))
        want_tag = userdata.image_tag_of(script)
        if script is not None and have_tag != want_tag:
            changes.append(f"images {(have_tag or 'built on the instance')[:12]} -> "
                           f"{(want_tag or 'built on the instance')[:12]}")
        want_sha = hashlib.sha256(script.encode()).hexdigest() if script is not None else None
        have_sha = user_data_sha256(have.get("UserData"))
        if want_sha != have_sha:
            changes.append(f"user data sha256 {(have_sha or 'none')[:12]} -> {(want_sha or 'pending')[:12]}")
        if script is None or ctx.dep("instance-profile") is None or ctx.dep("web-security-group") is None:
            return changes  # `plan` before what it refers to exists: nothing more to compare
        want = self._data(ctx, ami, script)
        if sorted(have.get("SecurityGroupIds", [])) != want["SecurityGroupIds"]:
            changes.append(f"security groups {', '.join(have.get('SecurityGroupIds', [])) or 'none'} -> "
                           f"{want['SecurityGroupIds'][0]}")
        have_profile = have.get("IamInstanceProfile", {})
        want_arn = want["IamInstanceProfile"]["Arn"]
        if have_profile.get("Arn") != want_arn and have_profile.get("Name") != want_arn.rsplit("/", 1)[-1]:
            changes.append(f"instance profile {have_profile.get('Arn') or have_profile.get('Name')} -> {want_arn}")
        want_metadata = metadata_options(ctx.config)
        have_metadata = {k: have.get("MetadataOptions", {}).get(k) for k in want_metadata}
        if have_metadata != want_metadata:
            changes.append(f"metadata options {have_metadata} -> {want_metadata}")
        have_root = next((m.get("Ebs", {}) for m in have.get("BlockDeviceMappings", [])
                          if m.get("DeviceName") == ROOT_DEVICE), {})
        want_root = root_volume(ctx)
        have_root = {k: have_root.get(k) for k in (*ROOT_VOLUME, "KmsKeyId") if k in want_root or have_root.get(k)}
        if have_root != want_root or len(have.get("BlockDeviceMappings", [])) != 1:
            # Turning --audit on or off is a new version like any other: the refresh replaces the
            # instances, whose new volumes are encrypted with the key in force.
            changes.append(f"root volume {have_root} -> {want_root}")
        if changes and apply:
            version = ctx.ec2.create_launch_template_version(
                LaunchTemplateId=resource.id, LaunchTemplateData=want, VersionDescription="; ".join(changes)[:255])["LaunchTemplateVersion"]
            number = version["VersionNumber"]
            # The group launches "$Latest"; the default follows so that the console, and anyone
            # launching by hand, see the same version.
            ctx.ec2.modify_launch_template(LaunchTemplateId=resource.id, DefaultVersion=str(number))
            resource.attrs.update(version=number, ami=ami, user_data_sha256=want_sha)
            resource.raw["LatestVersionData"] = want
        if changes and not apply:
            # The group's own line comes only once the version exists; say now what `up` does.
            changes.append("then the Auto Scaling Group replaces its instances (instance refresh)")
        return changes + self._converge_tags(ctx, resource, apply)

    def _converge_tags(self, ctx, resource, apply):
        return ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: ctx.retry(
            "eventual-consistency", ctx.ec2.create_tags, Resources=[resource.id], Tags=missing))

    @staticmethod
    def _image_architecture(ctx, ami):
        images = ctx.ec2.describe_images(ImageIds=[ami])["Images"] if ami else []
        return images[0].get("Architecture") if images else None

    # -- delete ----------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        # AWS lets a template go while a group still names it (the group then fails to launch),
        # so the order comes from the graph alone: the group is deleted first.
        ctx.ec2.delete_launch_template(LaunchTemplateId=resource.id)

    def outputs(self, resource):
        return {"launch_template_id": resource.id}

    def describe(self, resource):
        data = resource.raw.get("LatestVersionData", {})
        return (f"version {resource.attrs.get('version')}, {data.get('InstanceType', '')}, "
                f"{resource.attrs.get('ami')}")
