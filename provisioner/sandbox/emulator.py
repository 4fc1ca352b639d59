"""Where the emulator (moto) is more permissive or less complete than AWS in ways that would make
a correct run wrong, these patches make it behave as AWS does. Used by the sandbox server and by
the tests; nothing here runs against real AWS."""

from __future__ import annotations

import threading

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
    _patch_ubuntu_ami_parameters()
    _patch_instance_launch_template_version()
    _patch_launch_template_version_user_data()
    _patch_primary_interface_deleted_on_termination()
    _patch_launch_template_volume_tags()
    _patch_instance_refresh()
    _patch_balanced_zones()
    _patch_iam_aws_managed_policies()
    _patch_acm_reimport_keeps_tags()
    _patch_policy_conditions()
    _patch_list_instance_profile_tags()
    _patch_launch_template_current_tags()
    _patch_service_quota_defaults()
    _patch_response_transformers_per_request()
    _patch_create_bucket_tags()
    _patch_codebuild_builds()
    _patch_elasticache_deletions()
    _patch_cloudfront_distribution_fields()
    _applied = True


# -- ElastiCache -----------------------------------------------------------------------------------

def _patch_elasticache_deletions() -> None:
    """moto has no DeleteCacheSubnetGroup at all, and a deleted replication group reads
    `deleting` forever: a stack with a cache could never be torn down. Here a cache subnet group
    is deleted as AWS does it (refused with CacheSubnetGroupInUse while a replication group, one
    being deleted included, still uses it), and a replication group's deletion finishes: it is
    gone at the first read after `deletion_seconds` (an attribute of the backend, 0 unless a test
    models AWS's minutes; the answer to DeleteReplicationGroup itself still reads `deleting`). And
    a group of NumCacheClusters nodes has them all, as on AWS; ModifyReplicationGroup changes its
    node type."""
    import time

    from moto.core.responses import ActionResult, EmptyResult
    from moto.elasticache.exceptions import CacheSubnetGroupNotFound, ElastiCacheException
    from moto.elasticache.models import ElastiCacheBackend, ReplicationGroup
    from moto.elasticache.responses import ElastiCacheResponse

    class CacheSubnetGroupInUse(ElastiCacheException):
        code = "CacheSubnetGroupInUse"

        def __init__(self, name: str):
            super().__init__(f"Cache subnet group {name} is currently in use by a cache cluster.")

    def _finish_deletions(self) -> None:
        hold = getattr(self, "deletion_seconds", 0.0)
        now = time.monotonic()
        for group_id, group in list(self.replication_groups.items()):
            since = getattr(group, "deleting_since", None)
            if since is not None and now >= since + hold:
                del self.replication_groups[group_id]

    original_delete = ElastiCacheBackend.delete_replication_group
    original_describe = ElastiCacheBackend.describe_replication_groups

    def delete_replication_group(self, replication_group_id, retain_primary_cluster):
        self._finish_deletions()
        group = original_delete(self, replication_group_id, retain_primary_cluster)
        if getattr(group, "deleting_since", None) is None:
            group.deleting_since = time.monotonic()
        return group

    def describe_replication_groups(self, replication_group_id=None):
        self._finish_deletions()
        return original_describe(self, replication_group_id)

    def delete_cache_subnet_group(self, cache_subnet_group_name):
        self._finish_deletions()
        if cache_subnet_group_name not in self.cache_subnet_groups:
            raise CacheSubnetGroupNotFound(cache_subnet_group_name)
        if any(g.cache_subnet_group_name == cache_subnet_group_name for g in self.replication_groups.values()):
            raise CacheSubnetGroupInUse(cache_subnet_group_name)
        group = self.cache_subnet_groups.pop(cache_subnet_group_name)
        self.tagging_service.delete_all_tags_for_resource(group.arn)
        return group

    def delete_cache_subnet_group_response(self):
        self.elasticache_backend.delete_cache_subnet_group(self._get_param("CacheSubnetGroupName"))
        return EmptyResult()

    # moto makes a group of NumCacheClusters=2 with its primary alone (it counts only
    # ReplicasPerNodeGroup): AWS makes the primary and NumCacheClusters - 1 replicas.
    original_members = ReplicationGroup._set_node_members_clusters_disabled

    def set_node_members_clusters_disabled(self, *, num_cache_clusters, replicas_per_node_group, **kwargs):
        if not replicas_per_node_group and num_cache_clusters and num_cache_clusters > 1:
            replicas_per_node_group = num_cache_clusters - 1
        return original_members(self, num_cache_clusters=num_cache_clusters,
                                replicas_per_node_group=replicas_per_node_group, **kwargs)

    ReplicationGroup._set_node_members_clusters_disabled = set_node_members_clusters_disabled
    def modify_replication_group_response(self):
        # moto has no ModifyReplicationGroup; the tool changes a group's node type with it (AWS
        # scales it online, the endpoint unchanged). Only that is modelled.
        from moto.elasticache.exceptions import ReplicationGroupNotFound

        backend = self.elasticache_backend
        backend._finish_deletions()
        group_id = self._get_param("ReplicationGroupId")
        group = backend.replication_groups.get(group_id)
        if group is None or getattr(group, "deleting_since", None) is not None:
            raise ReplicationGroupNotFound(group_id)
        if self._get_param("CacheNodeType"):
            group.cache_node_type = self._get_param("CacheNodeType")
        return ActionResult({"ReplicationGroup": group})

    ElastiCacheResponse.modify_replication_group = modify_replication_group_response
    ElastiCacheBackend._finish_deletions = _finish_deletions
    ElastiCacheBackend.delete_replication_group = delete_replication_group
    ElastiCacheBackend.describe_replication_groups = describe_replication_groups
    ElastiCacheBackend.delete_cache_subnet_group = delete_cache_subnet_group
    ElastiCacheResponse.delete_cache_subnet_group = delete_cache_subnet_group_response


# -- CloudFront ----------------------------------------------------------------------------------

# What AWS's ListDistributions gives of each distribution (DistributionSummary), from its config.
SUMMARY_FIELDS = ("Comment", "Origins", "Enabled", "PriceClass", "Aliases", "DefaultCacheBehavior", "CacheBehaviors",
                  "CustomErrorResponses", "ViewerCertificate", "Restrictions", "WebACLId", "HttpVersion",
                  "IsIPV6Enabled")


def _patch_cloudfront_distribution_fields() -> None:
    """moto forgets an origin's Origin Access Control and S3OriginConfig (GetDistribution then
    says the bucket is read without one, and `up` would "correct" it on every run), and its
    ListDistributions answers only ids and names, without the Comment, the origins and Enabled
    by which the inventory and `down` recognize a stack's distribution."""
    from moto.cloudfront.models import Distribution, Origin

    original = Origin.__init__

    def __init__(self, origin):
        original(self, origin)
        self.origin_access_control_id = origin.get("OriginAccessControlId") or ""
        if "S3OriginConfig" in origin:
            self.s3_origin_config = {"OriginAccessIdentity": self.s3_access_identity or ""}

    Origin.__init__ = __init__
    for name in SUMMARY_FIELDS:
        if not hasattr(Distribution, name):
            setattr(Distribution, name, property(lambda self, n=name: getattr(self.distribution_config, n, None)))


# -- CodeBuild -----------------------------------------------------------------------------------

def _patch_codebuild_builds() -> None:
    """moto requires a source location even for NO_SOURCE (AWS does not), runs no build, and
    names no log stream. Here a build started with IMAGE_TAG (the tool's image build) pushes
    placeholder images of both services to the project's REPOSITORY_NAME, as the real build spec
    does, so that the next `up` finds them and starts no build; and the build names its log
    group and stream as CodeBuild does."""
    import hashlib
    import json

    import moto.codebuild.responses as responses
    from moto.codebuild.responses import CodeBuildResponse

    original_validate = responses._validate_required_params_source

    def validate_source(source):
        if source.get("type") == "NO_SOURCE":
            return
        original_validate(source)

    responses._validate_required_params_source = validate_source
    original_start = CodeBuildResponse.start_build

    def start_build(self):
        # moto up to 5.2.1 answers with the JSON text, later ones with an ActionResult holding
        # the build itself (then changed in place below).
        raw = original_start(self)
        answer = raw.result if hasattr(raw, "result") else json.loads(raw)
        build = answer["build"]
        project = self.codebuild_backend.codebuild_projects[self._get_param("projectName")]
        variables = {v["name"]: v.get("value") for v in
                     (project.project_metadata.get("environment") or {}).get("environmentVariables") or []}
        variables.update({v["name"]: v.get("value") for v in self._get_param("environmentVariablesOverride") or []})
        build["environment"] = {**(project.project_metadata.get("environment") or {}),
                                "environmentVariables": [{"name": k, "value": v, "type": "PLAINTEXT"}
                                                         for k, v in variables.items()]}
        stream = build["id"].split(":", 1)[1]
        build["logs"] = {**build.get("logs", {}), "groupName": f"/aws/codebuild/{build['projectName']}",
                         "streamName": stream}
        if variables.get("IMAGE_TAG") and variables.get("REPOSITORY_NAME"):
            from moto.ecr.models import ecr_backends

            ecr = ecr_backends[self.current_account][self.region]
            if variables["REPOSITORY_NAME"] in ecr.repositories:
                repository = ecr.repositories[variables["REPOSITORY_NAME"]]
                for service in ("backend", "frontend"):
                    tag = f"{variables['IMAGE_TAG']}-{service}"
                    if any(tag in image.image_tags for image in repository.images):
                        continue  # pushed by an earlier build: the build spec skips it
                    manifest = json.dumps({"schemaVersion": 2, "mediaType":
                                           "application/vnd.docker.distribution.manifest.v2+json",
                                           "config": {"digest": "sha256:" + hashlib.sha256(tag.encode()).hexdigest(),
                                                      "size": 0, "mediaType":
                                                      "application/vnd.docker.container.image.v1+json"},
                                           "layers": []})
                    ecr.put_image(variables["REPOSITORY_NAME"], manifest, tag)
        # The stored build is what BatchGetBuilds answers.
        for stored in self.codebuild_backend.build_metadata_history[build["projectName"]]:
            if stored["id"] == build["id"]:
                stored.update(environment=build["environment"], logs=build["logs"])
        return raw if hasattr(raw, "result") else json.dumps(answer)

    CodeBuildResponse.start_build = start_build

    def update_project(self):
        # moto has no UpdateProject at all; the tool converges a project's settings and tags with it.
        from moto.codebuild.exceptions import ResourceNotFoundException

        name = self._get_param("name")
        project = self.codebuild_backend.codebuild_projects.get(name)
        if project is None:
            raise ResourceNotFoundException(f"Project cannot be found: {name}")
        metadata = project.project_metadata
        for key in ("description", "source", "artifacts", "environment", "serviceRole", "timeoutInMinutes",
                    "queuedTimeoutInMinutes", "logsConfig", "tags"):
            value = self._get_param(key)
            if value is not None:
                metadata[key] = value
        if self._get_param("tags") is not None:
            project.tags = self._get_param("tags")
        return json.dumps({"project": metadata})

    CodeBuildResponse.update_project = update_project


# -- S3 ------------------------------------------------------------------------------------------

def _patch_create_bucket_tags() -> None:
    """AWS tags a general purpose bucket at CreateBucket (CreateBucketConfiguration's Tags, since
    2025); moto reads only the LocationConstraint and makes the bucket untagged, which the tool
    would then refuse to adopt."""
    from xml.parsers.expat import ExpatError

    import xmltodict
    from moto.s3.responses import S3Response

    original = S3Response._bucket_response_put

    def _bucket_response_put(self, request, bucket_name, querystring):
        answer = original(self, request, bucket_name, querystring)
        if not querystring and self.body:
            try:
                config = xmltodict.parse(self.body).get("CreateBucketConfiguration") or {}
            except ExpatError:  # moto's own answer to a malformed body stands
                config = {}
            tags = (config.get("Tags") or {}).get("Tag") or []
            tags = [tags] if isinstance(tags, dict) else tags
            bucket = self.backend.get_bucket(bucket_name)
            if tags and not self.backend.tagger.list_tags_for_resource(bucket.arn)["Tags"]:
                self.backend.put_bucket_tagging(bucket_name, {t["Key"]: t.get("Value") or "" for t in tags})
        return answer

    S3Response._bucket_response_put = _bucket_response_put


# -- answering requests in parallel -------------------------------------------------------------

def _patch_response_transformers_per_request() -> None:
    """moto's DescribeKeyPairs says whether its answer includes PublicKey by writing into a dict
    that every EC2 response shares (a class attribute). With requests answered in parallel (a
    fleet's or a cleanup's stacks, the threaded sandbox server), another response being
    serialized iterates that dict as it grows ("dictionary changed size during iteration"), and
    one request's IncludePublicKey decides what another is answered: the key pair step would
    then miss the public key and replace a good key pair. Each response writes into its own copy."""
    from moto.core.responses import BaseResponse, never_return

    def own(response) -> dict:
        if "RESPONSE_KEY_PATH_TO_TRANSFORMER" not in vars(response):
            response.RESPONSE_KEY_PATH_TO_TRANSFORMER = dict(type(response).RESPONSE_KEY_PATH_TO_TRANSFORMER)
        return response.RESPONSE_KEY_PATH_TO_TRANSFORMER

    def _include_in_response(self, response_key_path: str) -> None:
        own(self)[response_key_path] = lambda x: x

    def _exclude_from_response(self, response_key_path: str) -> None:
        own(self)[response_key_path] = never_return

    BaseResponse._include_in_response = _include_in_response
    BaseResponse._exclude_from_response = _exclude_from_response


# -- the compute tier ---------------------------------------------------------------------------

UBUNTU_PARAMETER_PREFIX = "/aws/service/canonical/ubuntu/server/24.04/stable/current/"
CANONICAL_OWNER = "099720109477"
# Canonical's public parameter names the architecture as Debian does; EC2 as the CPU does.
UBUNTU_ARCHITECTURES = {"amd64": "x86_64", "arm64": "arm64"}


def _patch_ubuntu_ami_parameters() -> None:
    """AWS publishes the latest Ubuntu 24.04 LTS image under a public SSM parameter; moto knows
    only Amazon Linux's, and refuses clients a put under /aws/service/. Answer it with an image
    registered in the same account's and region's EC2 (moto backends are per account and region,
    so lazily, on the first lookup there)."""
    from moto.core.utils import utcnow
    from moto.ssm.models import Parameter, ParameterDict

    original = ParameterDict._check_loading_status
    # The bastion and the launch template look the image up at the same moment: the second
    # lookup must wait for the first to finish loading, not see the flag and find nothing.
    loading = threading.Lock()

    def _check_loading_status(self, key):
        original(self, key)
        if not str(key or "").startswith(UBUNTU_PARAMETER_PREFIX) or getattr(self, "ubuntu_amis_loaded", False):
            return
        with loading:
            if getattr(self, "ubuntu_amis_loaded", False):
                return
            for debian_arch, ec2_arch in UBUNTU_ARCHITECTURES.items():
                name = f"{UBUNTU_PARAMETER_PREFIX}{debian_arch}/hvm/ebs-gp3/ami-id"
                image_id = _register_ubuntu_image(self.account_id, self.region_name, debian_arch, ec2_arch)
                super(ParameterDict, self).__getitem__(name).append(Parameter(
                    account_id=self.account_id, name=name, value=image_id, parameter_type="String",
                    description=None, allowed_pattern=None, keyid=None, last_modified_date=utcnow(),
                    version=1, data_type="aws:ec2:image"))
            self.ubuntu_amis_loaded = True

    ParameterDict._check_loading_status = _check_loading_status


def _register_ubuntu_image(account_id: str, region: str, debian_arch: str, ec2_arch: str) -> str:
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ec2.utils import random_ami_id

    backend = ec2_backends[account_id][region]
    name = f"ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{debian_arch}-server-20250101"
    for ami in backend.amis.values():
        if ami.name == name and ami.owner_id == CANONICAL_OWNER:
            return ami.id
    ami = Ami(backend, random_ami_id(), name=name, owner_id=CANONICAL_OWNER, public=True,
              description=f"Canonical, Ubuntu, 24.04, {debian_arch} noble image",
              virtualization_type="hvm", architecture=ec2_arch, root_device_type="ebs",
              root_device_name="/dev/sda1", hypervisor="xen", region_name=f"{region}a")
    backend.amis[ami.id] = ami
    return ami.id


def _patch_instance_launch_template_version() -> None:
    """An Auto Scaling Group's instance runs the launch template version it was launched from,
    and DescribeAutoScalingGroups says which; moto answers the template's current default for
    every instance, so an instance refresh could never tell old instances from new ones."""
    from moto.autoscaling.models import InstanceState

    original_init = InstanceState.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        group = self.auto_scaling_group
        template = getattr(group, "ec2_launch_template", None)
        self.launched_version = None
        if template is not None:
            version = template.get_version(group.launch_template_version)
            self.launched_version = version.number
            # AWS launches the instance with the version's metadata options (IMDSv2 required);
            # moto gives every instance its defaults (HttpTokens optional).
            options = version.data.get("MetadataOptions")
            if options:
                from moto.ec2.models.instances import MetadataOptions

                self.instance.metadata_options = MetadataOptions(options)

    def launch_template(self):
        group = self.auto_scaling_group
        template = getattr(group, "ec2_launch_template", None)
        if template is None:
            return None
        version = getattr(self, "launched_version", None) or template.default_version_number
        return {"LaunchTemplateId": template.id, "LaunchTemplateName": template.name, "Version": str(version)}

    InstanceState.__init__ = __init__
    InstanceState.launch_template = property(launch_template)


def _patch_launch_template_version_user_data() -> None:
    """moto decodes a template's user data on CreateLaunchTemplate but keeps CreateLaunchTemplateVersion's
    as a plain string, and then fails (an assertion) on the first launch from that version."""
    from moto.core.types import Base64EncodedString
    from moto.ec2.models.launch_templates import LaunchTemplate
    from moto.ec2.utils import parse_user_data

    original = LaunchTemplate.create_version

    def create_version(self, data, description):
        user_data = data.get("UserData")
        if user_data is not None and not isinstance(user_data, Base64EncodedString):
            data = {**data, "UserData": parse_user_data(user_data)}
        return original(self, data, description)

    LaunchTemplate.create_version = create_version


def _patch_primary_interface_deleted_on_termination() -> None:
    """The network interface EC2 creates for an instance at launch is deleted with the instance
    (DeleteOnTermination defaults to true); moto keeps it, "in-use", forever, so the subnet and
    the security group of a terminated instance could never be deleted."""
    from moto.ec2.models.instances import Instance

    original = Instance.prep_nics

    def prep_nics(self, nic_spec, *args, **kwargs):
        original(self, nic_spec, *args, **kwargs)
        primary_spec = next((n for n in nic_spec or [] if int(n.get("DeviceIndex", 0)) == 0), {})
        primary = self.nics.get(0)
        if primary is not None and not primary_spec.get("NetworkInterfaceId") \
                and primary_spec.get("DeleteOnTermination") is None:
            primary.delete_on_termination = True

    Instance.prep_nics = prep_nics


def _patch_launch_template_volume_tags() -> None:
    """An instance launched from a template (an Auto Scaling Group's) gets the template's volume
    TagSpecifications on its volumes; moto applies only the instance tags, so a leftover volume
    would carry no tag to be found by."""
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.utils import convert_tag_spec

    original = InstanceBackend.run_instances

    def run_instances(self, image_id, count, user_data, security_group_names, **kwargs):
        if kwargs.get("launch_template"):
            data = self._get_template_from_args(kwargs["launch_template"]).data
            template_volume_tags = convert_tag_spec(data.get("TagSpecifications", [])).get("volume", {})
            tags = dict(kwargs.get("tags") or {})
            tags["volume"] = {**template_volume_tags, **tags.get("volume", {})}
            kwargs["tags"] = tags
        return original(self, image_id, count, user_data, security_group_names, **kwargs)

    InstanceBackend.run_instances = run_instances


def _patch_instance_refresh() -> None:
    """moto has no instance refresh. This one replaces every instance of the group at once with
    instances of the group's current launch template version, and records the refresh as
    Successful; AWS does it in batches over minutes, keeping MinHealthyPercentage in service."""
    import uuid

    from moto.autoscaling.exceptions import AutoscalingClientError
    from moto.autoscaling.models import AutoScalingBackend
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow

    def start_instance_refresh(self, group_name, preferences):
        group = self.autoscaling_groups.get(group_name)
        if group is None:
            raise AutoscalingClientError("ValidationError", f"AutoScalingGroup name not found - {group_name}")
        refreshes = self.__dict__.setdefault("instance_refreshes", {}).setdefault(group_name, [])
        if any(r["Status"] in ("Pending", "InProgress", "Cancelling") for r in refreshes):
            raise AutoscalingClientError("InstanceRefreshInProgress",
                                         f"An Instance Refresh is already in progress for {group_name}")
        started = utcnow()
        old = list(group.instance_states)
        if old:
            self.ec2_backend.terminate_instances([s.instance.id for s in old])
            group.instance_states = [s for s in group.instance_states if s not in old]
            group.replace_autoscaling_group_instances(len(old), group.get_propagated_tags())
            self.update_attached_target_groups(group_name)
        refresh = {"InstanceRefreshId": str(uuid.uuid4()), "AutoScalingGroupName": group_name,
                   "Status": "Successful", "StatusReason": "", "StartTime": started, "EndTime": utcnow(),
                   "PercentageComplete": 100, "InstancesToUpdate": 0, "Preferences": preferences or {}}
        refreshes.insert(0, refresh)  # AWS lists the newest first
        return refresh["InstanceRefreshId"]

    def describe_instance_refreshes(self, group_name, refresh_ids):
        refreshes = self.__dict__.get("instance_refreshes", {}).get(group_name, [])
        return [r for r in refreshes if not refresh_ids or r["InstanceRefreshId"] in refresh_ids]

    def start_instance_refresh_response(self):
        refresh_id = self.autoscaling_backend.start_instance_refresh(
            self._get_param("AutoScalingGroupName"), self._get_param("Preferences", {}))
        return ActionResult({"InstanceRefreshId": refresh_id})

    def describe_instance_refreshes_response(self):
        refreshes = self.autoscaling_backend.describe_instance_refreshes(
            self._get_param("AutoScalingGroupName"), self._get_param("InstanceRefreshIds", []))
        return ActionResult({"InstanceRefreshes": refreshes})

    AutoScalingBackend.start_instance_refresh = start_instance_refresh
    AutoScalingBackend.describe_instance_refreshes = describe_instance_refreshes
    AutoScalingResponse.start_instance_refresh = start_instance_refresh_response
    AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes_response


def _patch_balanced_zones() -> None:
    """An Auto Scaling Group spreads its instances evenly over its subnets' zones; moto puts them
    all in the first subnet, so the sandbox's `status` would show one zone holding everything.
    Launch one at a time, each in the subnet that holds the fewest of the group's instances."""
    from moto.autoscaling.models import FakeAutoScalingGroup

    original = FakeAutoScalingGroup.replace_autoscaling_group_instances

    def replace_autoscaling_group_instances(self, count_needed, propagated_tags):
        subnets = [s for s in (self.vpc_zone_identifier or "").split(",") if s]
        if len(subnets) < 2:
            return original(self, count_needed, propagated_tags)
        configured = self.vpc_zone_identifier
        try:
            for _ in range(count_needed):
                held = {s: 0 for s in subnets}
                for state in self.instance_states:
                    if state.instance.subnet_id in held:
                        held[state.instance.subnet_id] += 1
                emptiest = min(subnets, key=lambda s: held[s])
                # The original launches in the first subnet of the list.
                self.vpc_zone_identifier = ",".join([emptiest] + [s for s in subnets if s != emptiest])
                original(self, 1, dict(propagated_tags))
        finally:
            self.vpc_zone_identifier = configured

    FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_autoscaling_group_instances


# -- storage, identity and the certificate ------------------------------------------------------

# The AWS managed policies the tool attaches. AWS has them in every account; moto loads its
# 1,400 only with MOTO_IAM_LOAD_MANAGED_POLICIES=true (a quarter of a second per account), so
# without it AttachRolePolicy answers NoSuchEntity for a policy AWS always has.
AWS_MANAGED_POLICIES = ("AmazonSSMManagedInstanceCore",)


def _patch_iam_aws_managed_policies() -> None:
    import json

    from moto.iam.models import AWSManagedPolicy, IAMBackend

    original = IAMBackend._init_aws_policies
    selected: dict = {}

    def _init_aws_policies(self):
        policies = original(self)
        if policies:  # moto loaded them all
            return policies
        if not selected:
            from moto.iam.aws_managed_policies import aws_managed_policies_data

            data = json.loads(aws_managed_policies_data)
            selected.update({name: data[name] for name in AWS_MANAGED_POLICIES})
        return [AWSManagedPolicy.from_data(name, self.account_id, self.region_name, d)
                for name, d in selected.items()]

    IAMBackend._init_aws_policies = _init_aws_policies


def _patch_acm_reimport_keeps_tags() -> None:
    """Re-importing a certificate into its ARN (ImportCertificate with CertificateArn) keeps its
    tags on AWS, which refuses new tags on a re-import; moto drops them, and a stack could then
    no longer find its own certificate."""
    from moto.acm.models import AWSCertificateManagerBackend

    original = AWSCertificateManagerBackend.import_certificate

    def import_certificate(self, certificate, private_key, chain, arn, tags):
        previous = self._certificates.get(arn) if arn is not None else None
        kept = [{"Key": k, "Value": v} for k, v in previous.tags.items()] if previous is not None else []
        new_arn = original(self, certificate, private_key, chain, arn, tags)
        if kept:
            self.add_tags_to_certificate(new_arn, kept)
        return new_arn

    AWSCertificateManagerBackend.import_certificate = import_certificate


def _patch_policy_conditions() -> None:
    """A policy statement whose Condition does not hold does not apply (AWS's evaluation logic),
    and a condition on a key the request lacks does not hold (except ...IfExists and Null).
    moto knows no request context such as aws:SecureTransport and skips such conditions, so the
    assets bucket's "deny unless TLS" statement denied every object call; and it answers DENIED
    for a statement whose condition fails, even an Allow. Here both are neutral, as on AWS."""
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    original = IAMPolicyStatement.is_action_permitted

    def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
        conditions = self._statement.get("Condition") or {}
        known = incoming_condition_values or {}
        lacking = [key for operator, values in conditions.items()
                   if not operator.endswith("IfExists") and operator != "Null"
                   for key in (values or {}) if key not in known]
        if conditions and (lacking or not self._check_conditions(incoming_condition_values)):
            return PermissionResult.NEUTRAL
        return original(self, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement.is_action_permitted = is_action_permitted


def _patch_list_instance_profile_tags() -> None:
    """ListInstanceProfileTags, which moto 5.2.1 lacks (it keeps the tags: GetInstanceProfile
    returns them). Only added where moto has none of its own."""
    from moto.core.responses import ActionResult
    from moto.iam.responses import IamResponse

    if hasattr(IamResponse, "list_instance_profile_tags"):
        return

    def list_instance_profile_tags(self):
        profile = self.backend.get_instance_profile(profile_name=self._get_param("InstanceProfileName"))
        return ActionResult({"Tags": sorted(profile.tags, key=lambda t: t["Key"]), "IsTruncated": False})

    IamResponse.list_instance_profile_tags = list_instance_profile_tags


def _patch_launch_template_current_tags() -> None:
    """DescribeLaunchTemplates with the template's current tags: moto keeps a copy of those it
    was created with, so a CreateTags on it (a new expiry) never showed."""
    from moto.ec2.models.launch_templates import LaunchTemplate

    LaunchTemplate.tags = property(lambda self: self.get_tags(), lambda self, value: None)


# -- service quotas -----------------------------------------------------------------------------

# The emulator's values for the quotas the fleet preflight (quotas.py) reads and moto's Service
# Quotas does not know (it has only `vpc`'s). They are the emulator's, not AWS's defaults for a
# new account: there, Running On-Demand Standard instances can be as low as 5 vCPUs, which is
# why the preflight exists. These let a sandbox fleet of a few students pass it the way a modest
# real account would, and a larger one fail it the way AWS would.
EMULATOR_SERVICE_QUOTAS = {
    ("ec2", "L-0263D0A3"): ("EC2-VPC Elastic IPs", 5.0),
    ("ec2", "L-1216C47A"): ("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", 32.0),
    ("elasticloadbalancing", "L-53DA6B97"): ("Application Load Balancers per Region", 50.0),
}
SERVICE_NAMES = {"ec2": "Amazon Elastic Compute Cloud (Amazon EC2)",
                 "elasticloadbalancing": "Elastic Load Balancing (ELB)"}


def _patch_service_quota_defaults() -> None:
    """GetServiceQuota for the quotas above, and GetAWSDefaultServiceQuota, which moto 5.2.1
    lacks (its GetServiceQuota answers the defaults, so the default is the same answer)."""
    import json

    from moto.servicequotas.models import ServiceQuotasBackend
    from moto.servicequotas.responses import ServiceQuotasResponse

    original = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self, service_code, quota_code):
        known = EMULATOR_SERVICE_QUOTAS.get((service_code, quota_code))
        if known is None:
            return original(self, service_code, quota_code)
        name, value = known
        return {"ServiceCode": service_code, "ServiceName": SERVICE_NAMES[service_code],
                "QuotaArn": f"arn:aws:servicequotas:{self.region_name}:{self.account_id}:{service_code}/{quota_code}",
                "QuotaCode": quota_code, "QuotaName": name, "Value": value, "Unit": "None",
                "Adjustable": True, "GlobalQuota": False}

    ServiceQuotasBackend.get_service_quota = get_service_quota
    if not hasattr(ServiceQuotasResponse, "get_aws_default_service_quota"):
        def get_aws_default_service_quota(self):
            params = json.loads(self.body)
            quota = self.backend.get_service_quota(service_code=str(params.get("ServiceCode")),
                                                   quota_code=str(params.get("QuotaCode")))
            return json.dumps({"Quota": quota})

        ServiceQuotasResponse.get_aws_default_service_quota = get_aws_default_service_quota
