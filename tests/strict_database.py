"""Strict rules for the database (RDS) and the catalog's tables (DynamoDB): see strict.py.

What AWS does and moto does not:
- a new DB instance is `creating` for minutes (a Multi-AZ one longer), with no endpoint yet;
- a deleted one is `deleting` for minutes, and until it is gone it still holds its subnet group,
  its security group and its network interfaces in the data subnets: DeleteDBSubnetGroup answers
  InvalidDBSubnetGroupStateFault, DeleteSecurityGroup and DeleteSubnet DependencyViolation;
- so does a live one, which moto lets go at once;
- a new table is CREATING for a while and a deleted one DELETING, then ResourceNotFoundException.
"""

from __future__ import annotations

import copy
import time

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import ORDER, _Http, refuse


def _members(body: dict, prefix: str) -> list[str]:
    """A query-protocol list (SubnetIds.member.1 ...) or a JSON one."""
    if isinstance(body.get(prefix), list):
        return body[prefix]
    return [v for k, v in sorted(body.items()) if k.startswith(prefix + ".")]


class DatabaseRules:
    def strict_setup_database(self):
        # identifier -> (created at, Multi-AZ)
        self.db_created: dict[str, tuple[float, bool]] = {}
        # identifier -> (deleted at, the instance as AWS still describes it, subnet ids, group ids)
        self.db_deleting: dict[str, tuple] = {}
        self.table_created: dict[str, float] = {}
        self.table_deleting: dict[str, tuple[float, dict]] = {}

    @property
    def rds_backend(self):
        from moto.rds.models import rds_backends

        return rds_backends[DEFAULT_ACCOUNT_ID][self.region]

    def strict_rules_database(self):
        return {
            "rds.DeleteDBSubnetGroup": self._delete_db_subnet_group,
            "rds.DeleteDBInstance": self._delete_db_instance,
            "ec2.DeleteSecurityGroup": self._delete_group_with_database,
            "ec2.DeleteSubnet": self._delete_subnet_with_database,
            "dynamodb.DeleteTable": self._delete_table,
        }

    def strict_after_database(self):
        return {
            "rds.CreateDBInstance": self._after_create_db,
            "rds.DescribeDBInstances": self._after_describe_dbs,
            "dynamodb.CreateTable": self._after_create_table,
            "dynamodb.DescribeTable": self._after_describe_table,
        }

    def strict_answers_database(self):
        return {"rds.DescribeDBInstances": self._answer_deleting_db,
                "dynamodb.DescribeTable": self._answer_deleting_table}

    # -- what holds what ---------------------------------------------------------------------------
    def _databases(self):
        """(identifier, subnet group, subnet ids, security group ids) of every instance AWS still has:
        moto's live ones and those still deleting."""
        out = []
        for db in self.rds_backend.databases.values():
            group = getattr(db, "db_subnet_group", None)
            subnets = [s.id for s in group._subnets] if group else []
            out.append((db.db_instance_identifier, group.name if group else None, subnets,
                        list(db.vpc_security_group_ids)))
        now = time.monotonic()
        for identifier, (deleted_at, item, subnets, groups) in list(self.db_deleting.items()):
            if now < deleted_at + self.delays.db_delete:
                out.append((identifier, item.get("DBSubnetGroup", {}).get("DBSubnetGroupName"), subnets, groups))
        return out

    def _delete_db_subnet_group(self, body):
        name = body.get("DBSubnetGroupName")
        users = [db for db, group, _, _ in self._databases() if group == name]
        if users:
            return refuse("InvalidDBSubnetGroupStateFault",
                          f"Cannot delete the subnet group '{name}' because at least one database instance: "
                          f"{users[0]} is still using it.", kind=ORDER if any(
                              u in self.rds_backend.databases for u in users) else "lingering")
        return None

    def _delete_group_with_database(self, body):
        group = body.get("GroupId")
        users = [db for db, _, _, groups in self._databases() if group in groups]
        if users:
            live = any(u in self.rds_backend.databases for u in users)
            return refuse("DependencyViolation", f"resource {group} has a dependent object (database {users[0]})",
                          kind=ORDER if live else "lingering")
        return None

    def _delete_subnet_with_database(self, body):
        subnet = body.get("SubnetId")
        users = [db for db, _, subnets, _ in self._databases() if subnet in subnets]
        if users:
            live = any(u in self.rds_backend.databases for u in users)
            return refuse("DependencyViolation", f"The subnet '{subnet}' has dependencies and cannot be deleted "
                          f"(database {users[0]})", kind=ORDER if live else "lingering")
        return None

    # -- creating ----------------------------------------------------------------------------------
    def _db_status(self, identifier, moto_status):
        created = self.db_created.get(identifier)
        if created is None or moto_status != "available":
            return moto_status
        at, multi_az = created
        delay = self.delays.db_create_multi_az if multi_az else self.delays.db_create
        return "creating" if time.monotonic() < at + delay else moto_status

    def _after_create_db(self, parsed):
        item = parsed.get("DBInstance")
        if item:
            self.db_created.setdefault(item["DBInstanceIdentifier"], (time.monotonic(), bool(item.get("MultiAZ"))))
            item["DBInstanceStatus"] = "creating"
            item.pop("Endpoint", None)

    def _after_describe_dbs(self, parsed):
        for item in parsed.get("DBInstances", []):
            status = self._db_status(item["DBInstanceIdentifier"], item.get("DBInstanceStatus"))
            if status == "creating":
                item["DBInstanceStatus"] = status
                item.pop("Endpoint", None)

    # -- deleting ----------------------------------------------------------------------------------
    def _delete_db_instance(self, body):
        identifier = body.get("DBInstanceIdentifier")
        db = self.rds_backend.databases.get(identifier)
        if db is None:
            if identifier in self.db_deleting and self._still_deleting(identifier):
                return refuse("InvalidDBInstanceState", f"Instance {identifier} is already being deleted.")
            return None
        # AWS deletes one still creating too; it then reads `deleting` as any other.
        group = getattr(db, "db_subnet_group", None)
        subnets = [s.id for s in group._subnets] if group else []
        item = {"DBInstanceIdentifier": identifier, "DBInstanceArn": db.db_instance_arn, "Engine": db.engine,
                "DBInstanceClass": db.db_instance_class, "DBInstanceStatus": "deleting",
                "MultiAZ": bool(db.multi_az), "AllocatedStorage": db.allocated_storage,
                "DBSubnetGroup": {"DBSubnetGroupName": group.name} if group else {},
                "VpcSecurityGroups": [{"VpcSecurityGroupId": g, "Status": "active"} for g in db.vpc_security_group_ids],
                "TagList": copy.deepcopy(db.tags)}
        snapshot = (time.monotonic(), item, subnets, list(db.vpc_security_group_ids))
        self.later(lambda: self.db_deleting.__setitem__(identifier, snapshot))
        return None

    def _still_deleting(self, identifier):
        return time.monotonic() < self.db_deleting[identifier][0] + self.delays.db_delete

    def _answer_deleting_db(self, body):
        identifier = body.get("DBInstanceIdentifier")
        if identifier in self.db_deleting and identifier not in self.rds_backend.databases \
                and self._still_deleting(identifier):
            return _Http(200), {"DBInstances": [copy.deepcopy(self.db_deleting[identifier][1])],
                                "ResponseMetadata": {"HTTPStatusCode": 200}}
        return None

    # -- tables ------------------------------------------------------------------------------------
    def _after_create_table(self, parsed):
        table = parsed.get("TableDescription")
        if table:
            self.table_created.setdefault(table["TableName"], time.monotonic())
            table["TableStatus"] = "CREATING"

    def _after_describe_table(self, parsed):
        table = parsed.get("Table") or {}
        at = self.table_created.get(table.get("TableName"))
        if at is not None and time.monotonic() < at + self.delays.table_create:
            table["TableStatus"] = "CREATING"

    def _delete_table(self, body):
        name = body.get("TableName")
        if name in self.table_deleting and time.monotonic() < self.table_deleting[name][0] + self.delays.table_delete:
            return refuse("ResourceInUseException", f"Attempt to change a resource which is still in use: Table is "
                          f"being deleted: {name}", kind="lingering")
        from moto.dynamodb.models import dynamodb_backends

        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][self.region].tables.get(name)
        if table is not None:
            item = {"TableName": name, "TableArn": table.table_arn, "TableStatus": "DELETING",
                    "KeySchema": table.schema, "AttributeDefinitions": table.attr}
            self.later(lambda: self.table_deleting.__setitem__(name, (time.monotonic(), item)))
        return None

    def _answer_deleting_table(self, body):
        name = body.get("TableName")
        if name in self.table_deleting and time.monotonic() < self.table_deleting[name][0] + self.delays.table_delete:
            return _Http(200), {"Table": copy.deepcopy(self.table_deleting[name][1]),
                                "ResponseMetadata": {"HTTPStatusCode": 200}}
        return None
