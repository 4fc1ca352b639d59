"""Strict rules for the data tier (ElastiCache, EFS, Secrets Manager): see strict.py. A mixin of
StrictAws, like strict_compute.py; rules run under the StrictAws lock.

What AWS does and moto does not:
- a replication group is `creating` for minutes (without a primary endpoint yet), and AWS refuses
  to delete it meanwhile (InvalidReplicationGroupState); its deletion takes minutes too, and until
  it is gone its nodes' network interfaces hold the data subnets and the cache security group
  (DependencyViolation) and its subnet group is in use (CacheSubnetGroupInUse). moto makes it
  available at once; the emulator patch (provisioner/sandbox/emulator.py) makes its deletion
  finish, after the backend's `deletion_seconds`, set here to Delays.cache_delete;
- a file system and a mount target are `creating` for a while; AWS refuses a mount target or an
  access point on a file system that is not available yet (IncorrectFileSystemLifeCycleState);
- a deleted mount target's network interface lingers: it holds its subnet and its security groups
  (DependencyViolation), and the file system counts it and refuses to be deleted (FileSystemInUse)
  until it is released. moto deletes both at once (it already refuses FileSystemInUse for a live
  mount target; repeated here so that it is recorded as an ORDER refusal);
- Secrets Manager refuses to create a secret under the name of one scheduled for deletion
  (InvalidRequestException); moto answers ResourceExistsException.
"""

from __future__ import annotations

import time

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import LINGERING, ORDER, refuse


def _members(body, prefix):
    """The values of a query-protocol list ("SecurityGroupIds.SecurityGroupId.1", ...)."""
    return [v for k, v in sorted(body.items()) if k.startswith(f"{prefix}.")]


def _path_id(body):
    """The last segment of a REST call's path (EFS names the resource there)."""
    return (body.get("__url_path") or "").rstrip("/").rsplit("/", 1)[-1]


class DataRules:
    def strict_setup_data(self):
        self.cache_created: dict[str, float] = {}
        self.file_systems_created: dict[str, float] = {}
        self.mount_targets_created: dict[str, float] = {}
        # mount target id -> (deleted at, file system id, subnet id, security group ids)
        self.mount_targets_deleted: dict[str, tuple] = {}
        self._elasticache.deletion_seconds = self.delays.cache_delete

    @property
    def _elasticache(self):
        from moto.elasticache.models import elasticache_backends

        return elasticache_backends[DEFAULT_ACCOUNT_ID][self.region]

    @property
    def _efs(self):
        from moto.efs.models import efs_backends

        return efs_backends[DEFAULT_ACCOUNT_ID][self.region]

    @property
    def _secrets(self):
        from moto.secretsmanager.models import secretsmanager_backends

        return secretsmanager_backends[DEFAULT_ACCOUNT_ID][self.region]

    def strict_rules_data(self):
        return {
            "elasticache.DeleteReplicationGroup": self._delete_replication_group,
            "elasticache.DeleteCacheSubnetGroup": self._delete_cache_subnet_group,
            "ec2.DeleteSubnet": self._subnet_held_by_data_tier,
            "ec2.DeleteSecurityGroup": self._group_held_by_data_tier,
            "efs.CreateMountTarget": self._file_system_available,
            "efs.CreateAccessPoint": self._file_system_available,
            "efs.DeleteMountTarget": self._note_mount_target_deleted,
            "efs.DeleteFileSystem": self._delete_file_system,
            "secrets-manager.CreateSecret": self._create_secret,
        }

    def strict_after_data(self):
        return {
            "elasticache.CreateReplicationGroup": self._after_create_replication_group,
            "elasticache.DescribeReplicationGroups": self._after_describe_replication_groups,
            "efs.CreateFileSystem": self._after_create_file_system,
            "efs.DescribeFileSystems": self._after_describe_file_systems,
            "efs.CreateMountTarget": self._after_create_mount_target,
            "efs.DescribeMountTargets": self._after_describe_mount_targets,
        }

    # -- timing -------------------------------------------------------------------------------------
    @staticmethod
    def _within(started: float | None, seconds: float) -> bool:
        return started is not None and time.monotonic() < started + seconds

    def _cache_creating(self, group_id):
        return self._within(self.cache_created.get(group_id), self.delays.cache_create)

    def _as_creating(self, group):
        group["Status"] = "creating"
        for node_group in group.get("NodeGroups") or []:
            node_group.pop("PrimaryEndpoint", None)
            node_group.pop("ReaderEndpoint", None)

    def _after_create_replication_group(self, parsed):
        group = parsed.get("ReplicationGroup") or {}
        if group.get("ReplicationGroupId"):
            self.cache_created.setdefault(group["ReplicationGroupId"], time.monotonic())
            self._as_creating(group)

    def _after_describe_replication_groups(self, parsed):
        for group in parsed.get("ReplicationGroups", []):
            if group.get("Status") == "available" and self._cache_creating(group["ReplicationGroupId"]):
                self._as_creating(group)

    def _fs_creating(self, fs_id):
        return self._within(self.file_systems_created.get(fs_id), self.delays.efs_create)

    def _lingering_mount_targets(self):
        """Mount targets deleted so recently that their interfaces are not released yet."""
        return [(mt, *rest) for mt, (deleted_at, *rest) in list(self.mount_targets_deleted.items())
                if self._within(deleted_at, self.delays.mount_target_release)]

    def _after_create_file_system(self, parsed):
        if parsed.get("FileSystemId"):
            self.file_systems_created.setdefault(parsed["FileSystemId"], time.monotonic())
            parsed["LifeCycleState"] = "creating"

    def _after_describe_file_systems(self, parsed):
        lingering = [fs for _, fs, _, _ in self._lingering_mount_targets()]
        for item in parsed.get("FileSystems", []):
            if item.get("LifeCycleState") == "available" and self._fs_creating(item["FileSystemId"]):
                item["LifeCycleState"] = "creating"
            item["NumberOfMountTargets"] = item.get("NumberOfMountTargets", 0) + lingering.count(item["FileSystemId"])

    def _after_create_mount_target(self, parsed):
        if parsed.get("MountTargetId"):
            self.mount_targets_created.setdefault(parsed["MountTargetId"], time.monotonic())
            parsed["LifeCycleState"] = "creating"

    def _after_describe_mount_targets(self, parsed):
        for item in parsed.get("MountTargets", []):
            created = self.mount_targets_created.get(item["MountTargetId"])
            if item.get("LifeCycleState") == "available" and self._within(created, self.delays.mount_target_create):
                item["LifeCycleState"] = "creating"

    # -- refusals -----------------------------------------------------------------------------------
    def _delete_replication_group(self, body):
        group_id = body.get("ReplicationGroupId")
        if group_id in self._elasticache.replication_groups and self._cache_creating(group_id):
            return refuse("InvalidReplicationGroupState",
                          f"Replication group {group_id} is not in available state (creating)")
        return None

    def _replication_groups(self):
        """(group, its subnet ids, whether it is being deleted) of every group moto still has."""
        backend = self._elasticache
        for group in list(backend.replication_groups.values()):
            subnet_group = backend.cache_subnet_groups.get(group.cache_subnet_group_name or "")
            yield group, set(subnet_group.subnet_ids if subnet_group else []), group.status == "deleting"

    def _delete_cache_subnet_group(self, body):
        name = body.get("CacheSubnetGroupName")
        for group, _, deleting in self._replication_groups():
            if group.cache_subnet_group_name == name:
                return refuse("CacheSubnetGroupInUse", f"Cache subnet group {name} is currently in use by a cache "
                              f"cluster ({group.replication_group_id})", LINGERING if deleting else ORDER)
        return None

    def _subnet_held_by_data_tier(self, body):
        subnet_id = body.get("SubnetId")
        for group, subnets, deleting in self._replication_groups():
            if subnet_id in subnets:
                return refuse("DependencyViolation", f"The subnet '{subnet_id}' has dependencies (interface of "
                              f"ElastiCache node of {group.replication_group_id})", LINGERING if deleting else ORDER)
        for mount_target, _, subnet, _ in self._lingering_mount_targets():
            if subnet == subnet_id:
                return refuse("DependencyViolation", f"The subnet '{subnet_id}' has dependencies (interface of "
                              f"deleted mount target {mount_target})", LINGERING)
        return None

    def _group_held_by_data_tier(self, body):
        group_id = body.get("GroupId")
        for group, _, deleting in self._replication_groups():
            if group_id in (group.security_group_ids or []):
                return refuse("DependencyViolation", f"resource {group_id} has a dependent object (ElastiCache "
                              f"{group.replication_group_id})", LINGERING if deleting else ORDER)
        for mount_target, _, _, groups in self._lingering_mount_targets():
            if group_id in groups:
                return refuse("DependencyViolation", f"resource {group_id} has a dependent object (interface of "
                              f"deleted mount target {mount_target})", LINGERING)
        return None

    def _file_system_available(self, body):
        fs_id = body.get("FileSystemId")
        if self._fs_creating(fs_id):
            return refuse("IncorrectFileSystemLifeCycleState", f"File system '{fs_id}' is not available (creating)",
                          status=409)
        return None

    def _note_mount_target_deleted(self, body):
        mount_target = self._efs.mount_targets_by_id.get(_path_id(body))
        if mount_target is not None:
            record = (mount_target.file_system_id, mount_target.subnet_id, list(mount_target.security_groups or []))
            self.later(lambda: self.mount_targets_deleted.setdefault(
                mount_target.mount_target_id, (time.monotonic(), *record)))
        return None

    def _delete_file_system(self, body):
        fs_id = _path_id(body)
        file_system = self._efs.file_systems_by_id.get(fs_id)
        if file_system is not None and file_system.number_of_mount_targets > 0:
            return refuse("FileSystemInUse", "Must delete all mount targets before deleting file system.", status=409)
        if any(fs == fs_id for _, fs, _, _ in self._lingering_mount_targets()):
            return refuse("FileSystemInUse", f"File system '{fs_id}' has mount targets being deleted", LINGERING, 409)
        return None

    def _create_secret(self, body):
        name = body.get("Name")
        secret = self._secrets.secrets.get(name)
        if secret is not None and getattr(secret, "is_deleted", lambda: False)():
            return refuse("InvalidRequestException", "You can't create this secret because a secret with this name "
                          "is already scheduled for deletion.")
        return None
