"""The managed database (RDS): PostgreSQL, MySQL or MariaDB in the data subnets, reachable from
the app instances only, with its master password managed by Secrets Manager.

The password is never the tool's to know: RDS makes it, keeps it in a secret of its own
(`rds!db-...`, rotated every 7 days) and deletes that secret with the instance. The app's backend
reads it with the instance role, which may read that one secret only (steps/identity/iam_role.py).

Creating takes 5-10 minutes, 15-20 with a Multi-AZ standby. Nothing else of the stack waits for
that: the launch template and the role need only the instance's identifier and the secret's ARN,
which CreateDBInstance answers at once (a `created` dependency); the backend looks the endpoint
up itself and answers its health check while the database is still being made (app/README.md),
so the instances turn healthy and are kept while the database finishes. `up` ends once it is
available.
"""

import datetime

from provisioner.account.pricing import HOURS_PER_MONTH, price_of
from provisioner.account.quotas import REGION_SCOPE, still_by_kind
from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError, DriftConflict
from provisioner.engine.kinds import Iam, ItemTags, Listing, PriceKey, Quota, actions
from provisioner.engine.registry import NamedStep, created, register
from provisioner.engine.retries import error_code, lookup

from steps.data.database_subnet_group import SUBNET_GROUP_ARN, rds_tags

DB_ARN = "arn:{partition}:rds:{region}:{account}:db:{stack}-database"
DATABASE_NAME = "stylesphere"
MASTER_USERNAME = "stylesphere"
STORAGE = {"AllocatedStorage": 20, "StorageType": "gp3", "StorageEncrypted": True}
BACKUP_RETENTION_DAYS = 7
# The logs each engine publishes to CloudWatch Logs (/aws/rds/instance/<name>/<log>): the ones
# AWS Security Hub's RDS.9 expects, so that failures and connections are on record off the
# instance. MySQL's and MariaDB's general and slow query logs stay empty until their parameter
# group turns them on; exporting them costs nothing until they do.
LOG_GROUP_PREFIX = "/aws/rds/instance/{identifier}/"
LOG_EXPORTS = {"postgres": ["postgresql"], "mysql": ["audit", "error", "general", "slowquery"],
               "mariadb": ["audit", "error", "general", "slowquery"]}
ENGINE_LABEL = {"postgres": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB"}
# Being deleted, or gone: not the stack's database any more (a new one may be made under the name
# once it is gone).
GONE_STATES = ("deleting",)
# Billed while it exists, stopped ones for their storage only.
STOPPED_STATES = ("stopped", "stopping")
# The classes `provision prices --refresh` asks the Price List API for; others are left out.
PRICED_CLASSES = ("db.t4g.micro", "db.t4g.small", "db.t4g.medium", "db.t3.micro", "db.t3.small", "db.t3.medium")


def database_name(stack: str) -> str:
    return f"{stack}-database"


def _hourly(products, region, instance_types):
    # PostgreSQL, MySQL and MariaDB cost the same at these classes; PostgreSQL's figure is kept.
    return {cls: price_of(products("AmazonRDS", instanceType=cls, regionCode=region, databaseEngine="PostgreSQL",
                                   deploymentOption="Single-AZ"), f"InstanceUsage:{cls}")
            for cls in PRICED_CLASSES}


def _storage(products, region, instance_types):
    return price_of(products("AmazonRDS", productFamily="Database Storage", volumeType="General Purpose-GP3",
                             deploymentOption="Single-AZ", regionCode=region), "RDS:GP3-Storage")


RDS_HOUR = PriceKey("rds_hour", "RDS", "hour", _hourly, per="database class", required_types=("db.t4g.micro",),
                    # us-east-1's figures until `provision prices --refresh` has the region's.
                    default={"db.t4g.micro": 0.016, "db.t4g.small": 0.032, "db.t4g.medium": 0.065,
                             "db.t3.micro": 0.018, "db.t3.small": 0.036, "db.t3.medium": 0.072})
RDS_GP3_GB_MONTH = PriceKey("rds_gp3_gb_month", "RDS gp3 storage", "GB-month", _storage, default=0.115)


def database_charges(item, prices, region):
    """The instance by the hour (twice with a Multi-AZ standby) and its storage; backups up to
    the database's size are free."""
    detail = getattr(item, "detail", None) or {}
    copies = 2 if detail.get("multi_az") else 1
    rows, unpriced = [], []
    storage = detail.get("storage_gb") or 0
    if storage:
        rate = prices["rds_gp3_gb_month"]
        rows.append((f"RDS storage ({rate:g}/GB-month{', x2 Multi-AZ' if copies == 2 else ''})", storage * copies,
                     "GB", rate / HOURS_PER_MONTH))
    if detail.get("status") in STOPPED_STATES:
        return rows, unpriced
    db_class = detail.get("db_class")
    rate = prices["rds_hour"].get(db_class) if db_class else None
    if rate is None:
        unpriced.append(f"database class {db_class or '(unknown)'} has no price in {region}")
    else:
        rows.append((f"RDS {db_class}{' Multi-AZ' if copies == 2 else ''}", copies, "instance", rate))
    return rows, unpriced


def databases_in_use(reads):
    return {REGION_SCOPE: len(reads.pages("rds", "describe_db_instances", "DBInstances"))}


def databases_needed(reads):
    return {REGION_SCOPE: 1} if reads.config.database != "none" else {}


DB_INSTANCES = Quota("db_instances", "DB instances", "rds", "L-7B6409FD", databases_in_use, databases_needed,
                     still_by_kind("db_instance", lambda c: 1 if c.database != "none" else 0))


def _detail(item):
    return {"db_class": item.get("DBInstanceClass"), "multi_az": bool(item.get("MultiAZ")),
            "storage_gb": item.get("AllocatedStorage"), "status": item.get("DBInstanceStatus"),
            "engine": item.get("Engine")}


def _keys(ctx) -> dict:
    """With --audit, the stack's key for the storage and for the master password's secret (RDS
    makes that secret with Secrets Manager's aws/secretsmanager key otherwise)."""
    from steps.security.kms_key import stack_key_arn

    key = stack_key_arn(ctx)
    return {"KmsKeyId": key, "MasterUserSecretKmsKeyId": key} if key else {}


@register
class Database(NamedStep):
    """RDS, named <stack>-database: 20 GB of encrypted gp3, 7 days of automated backups, not
    publicly accessible, in the database subnet group and security group, the database
    `stylesphere` made at creation. Class, Multi-AZ, deletion protection and backups converge in
    place (ApplyImmediately); the engine does not: another engine is another database."""

    kind = "db_instance"
    serves_app = True
    gone_codes = frozenset({"DBInstanceNotFound", "DBInstanceNotFoundFault"})
    not_found_codes = frozenset({"DBInstanceNotFound", "DBInstanceNotFoundFault"})
    # Creating: 5-10 minutes, 15-20 with Multi-AZ; deleting: 5-10 minutes.
    create_timeout = 3600
    delete_timeout = 1800
    aws_type = "AWS::RDS::DBInstance"
    listing = Listing("db_instance", "rds", "describe_db_instances", "DBInstances", "DBInstanceArn",
                      label="RDS DB instances", created_field="InstanceCreateTime",
                      tags=ItemTags("list_tags_for_resource", "ResourceName", "TagList"),
                      gone=lambda i: i.get("DBInstanceStatus") in GONE_STATES, detail=_detail,
                      price=database_charges, price_keys=(RDS_HOUR, RDS_GP3_GB_MONTH))
    quotas = (DB_INSTANCES,)
    iam = Iam(create=(actions("rds:CreateDBInstance", "rds:AddTagsToResource",
                              on=(DB_ARN, SUBNET_GROUP_ARN, "arn:{partition}:rds:{region}:{account}:pg:*",
                                  "arn:{partition}:rds:{region}:{account}:og:*",
                                  "arn:{partition}:rds:{region}:{account}:secgrp:*")),
                      # ManageMasterUserPassword: RDS makes the secret in the caller's name.
                      actions("secretsmanager:CreateSecret", "secretsmanager:TagResource",
                              on="arn:{partition}:secretsmanager:{region}:{account}:secret:rds!*"),
                      actions("kms:DescribeKey")),
              read=(actions("rds:DescribeDBInstances", "rds:ListTagsForResource"),),
              change=(actions("rds:ModifyDBInstance", "rds:AddTagsToResource", on=DB_ARN),),
              delete=(actions("rds:DeleteDBInstance", "rds:CreateDBSnapshot", "rds:DeleteDBInstanceAutomatedBackup",
                              on=(DB_ARN, "arn:{partition}:rds:{region}:{account}:snapshot:{stack}-database-final-*",
                                  "arn:{partition}:rds:{region}:{account}:auto-backup:*")),
                      actions("secretsmanager:DeleteSecret",
                              on="arn:{partition}:secretsmanager:{region}:{account}:secret:rds!*"),
                      # The log groups RDS made for the exports (see _delete_log_groups).
                      actions("logs:DescribeLogGroups"),
                      actions("logs:DeleteLogGroup",
                              on="arn:{partition}:logs:{region}:{account}:log-group:/aws/rds/instance/{stack}-database/*")))

    def __init__(self, audit: bool = False):
        # --audit: storage and the managed master secret are encrypted with the stack's key.
        super().__init__("database", depends_on=("database-subnet-group", "database-security-group",
                                                 *((created("kms-key"),) if audit else ())))

    @classmethod
    def instances(cls, config):
        return [cls(config.audit)] if config.database != "none" else []

    # -- find --------------------------------------------------------------------------------
    what = "DB instance"

    def resource_name(self, ctx):
        return database_name(ctx.stack)

    def read(self, ctx, name):
        rds = ctx.client("rds")
        found = lookup(rds.describe_db_instances, DBInstanceIdentifier=name, gone=self.gone_codes)
        if not found or not found["DBInstances"]:
            return None, []
        item = found["DBInstances"][0]
        return item, rds_tags(rds, item["DBInstanceArn"])

    @staticmethod
    def to_resource(item, tags):
        endpoint = item.get("Endpoint") or {}
        secret = item.get("MasterUserSecret") or {}
        return Resource(id=item["DBInstanceIdentifier"],
                        attrs={"arn": item["DBInstanceArn"], "engine": item["Engine"],
                               "status": item.get("DBInstanceStatus"), "address": endpoint.get("Address"),
                               "port": endpoint.get("Port") or item.get("DbInstancePort"),
                               "secret_arn": secret.get("SecretArn"), "db_class": item.get("DBInstanceClass"),
                               "multi_az": bool(item.get("MultiAZ"))},
                        raw={**item, "Tags": tags})

    # -- create ------------------------------------------------------------------------------
    def _settings(self, ctx):
        config = ctx.config
        return {"DBInstanceClass": config.db_class, "MultiAZ": config.db_multi_az,
                "BackupRetentionPeriod": BACKUP_RETENTION_DAYS, "DeletionProtection": config.db_deletion_protection}

    def create(self, ctx):
        from botocore.exceptions import ClientError

        rds = ctx.client("rds")
        name = database_name(ctx.stack)
        try:
            item = ctx.retry(
                "eventual-consistency", rds.create_db_instance,
                DBInstanceIdentifier=name, Engine=ctx.config.database, DBName=DATABASE_NAME,
                MasterUsername=MASTER_USERNAME, ManageMasterUserPassword=True,
                DBSubnetGroupName=ctx.dep("database-subnet-group").id,
                VpcSecurityGroupIds=[ctx.dep("database-security-group").id], PubliclyAccessible=False,
                # The stack's tags are not copied to snapshots: a final snapshot is kept on purpose,
                # and must not look like a piece of the stack to `list` and `cleanup`.
                CopyTagsToSnapshot=False, AutoMinorVersionUpgrade=True,
                EnableCloudwatchLogsExports=list(LOG_EXPORTS[ctx.config.database]),
                Tags=ctx.tags(self.name), **STORAGE, **self._settings(ctx), **_keys(ctx))["DBInstance"]
        except ClientError as e:
            if error_code(e) == "DBInstanceAlreadyExists":
                raise self.taken(ctx) from None
            raise
        return self.to_resource(item, ctx.tags(self.name))

    def ready(self, ctx, resource):
        if resource.attrs.get("status") == "available" and resource.attrs.get("address"):
            return
        ctx.wait("rds", "db_instance_available", DBInstanceIdentifier=resource.id, timeout=self.create_timeout,
                 what=f"database to become available (5-10 minutes on AWS{', 15-20 with Multi-AZ' if ctx.config.db_multi_az else ''})")
        item = ctx.client("rds").describe_db_instances(DBInstanceIdentifier=resource.id)["DBInstances"][0]
        fresh = self.to_resource(item, resource.raw.get("Tags", []))
        resource.attrs.update(fresh.attrs)
        resource.raw.update(fresh.raw)

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        rds = ctx.client("rds")
        item = resource.raw
        status = item.get("DBInstanceStatus")
        if status in GONE_STATES:
            raise DriftConflict(f"database {resource.id} is being deleted",
                                hint="wait for it to go (minutes), then run `provision up` again")
        if item.get("Engine") != ctx.config.database:
            raise DriftConflict(f"database {resource.id} runs {item.get('Engine')}, the configuration says "
                                f"{ctx.config.database}; an engine cannot be changed in place",
                                hint=f"keep --database {item.get('Engine')}, or `provision down` and build again")
        changes = ctx.converge_tags(item.get("Tags", []), self.name, apply, lambda missing: rds.add_tags_to_resource(
            ResourceName=resource.attrs["arn"], Tags=missing))
        have = {"DBInstanceClass": item.get("DBInstanceClass"), "MultiAZ": bool(item.get("MultiAZ")),
                "BackupRetentionPeriod": item.get("BackupRetentionPeriod"),
                "DeletionProtection": bool(item.get("DeletionProtection"))}
        want = self._settings(ctx)
        modify = {k: v for k, v in want.items() if have[k] != v}
        changes += [f"{k} {have[k]} -> {v}" for k, v in modify.items()]
        if item.get("PubliclyAccessible"):
            modify["PubliclyAccessible"] = False
            changes.append("no longer publicly accessible")
        if not item.get("MasterUserSecret"):
            modify["ManageMasterUserPassword"] = True
            changes.append("master password managed by Secrets Manager")
        exported = set(item.get("EnabledCloudwatchLogsExports") or [])
        missing_logs = [log for log in LOG_EXPORTS.get(item.get("Engine"), []) if log not in exported]
        if missing_logs:
            modify["CloudwatchLogsExportConfiguration"] = {"EnableLogTypes": missing_logs}
            changes.append(f"publish the {', '.join(missing_logs)} log(s) to CloudWatch Logs")
        if modify and apply:
            if status not in ("available", "storage-optimization", "backing-up"):
                raise DriftConflict(f"database {resource.id} is {status}; RDS changes an instance only when it "
                                    "is available", hint="run `provision up` again in a few minutes")
            rds.modify_db_instance(DBInstanceIdentifier=resource.id, ApplyImmediately=True, **modify)
            item = rds.describe_db_instances(DBInstanceIdentifier=resource.id)["DBInstances"][0]
            fresh = self.to_resource(item, resource.raw.get("Tags", []))
            resource.attrs.update(fresh.attrs)
            resource.raw.update(fresh.raw)
        return changes

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        from botocore.exceptions import ClientError

        rds = ctx.client("rds")
        if resource.raw.get("DeletionProtection"):
            raise ConfigError(f"database {resource.id} has deletion protection on; RDS refuses to delete it",
                              hint="`provision up --no-db-deletion-protection`, then `provision down` again")
        final = {"SkipFinalSnapshot": True}
        snapshot = None
        if ctx.config.final_snapshot:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S")
            snapshot = f"{resource.id}-final-{stamp}"
            final = {"SkipFinalSnapshot": False, "FinalDBSnapshotIdentifier": snapshot}
        if resource.raw.get("DBInstanceStatus") not in GONE_STATES:
            try:
                # Automated backups go with it: kept, they bill for their storage.
                ctx.retry("dependency", rds.delete_db_instance, DBInstanceIdentifier=resource.id,
                          DeleteAutomatedBackups=True, **final)
            except ClientError as e:
                if error_code(e) != "InvalidDBInstanceState" or "already being deleted" not in str(e):
                    raise
        ctx.wait("rds", "db_instance_deleted", DBInstanceIdentifier=resource.id, timeout=self.delete_timeout,
                 what="database to be deleted (5-10 minutes on AWS)")
        self._delete_log_groups(ctx, resource.id)
        if snapshot:
            ctx.reporter.warn(f"kept the database's final snapshot {snapshot} ({resource.raw.get('AllocatedStorage')} "
                              "GB): it bills for its storage until you delete it "
                              f"(`aws rds delete-db-snapshot --db-snapshot-identifier {snapshot}`)")

    @staticmethod
    def _delete_log_groups(ctx, identifier):
        """RDS makes /aws/rds/instance/<id>/<log> for each exported log and never deletes them:
        untagged and never expiring, they would bill for their storage after the stack is gone,
        and a later database of the same name would write into them."""
        logs = ctx.client("logs")
        prefix = LOG_GROUP_PREFIX.format(identifier=identifier)
        for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=prefix):
            for group in page.get("logGroups", []):
                lookup(logs.delete_log_group, logGroupName=group["logGroupName"],
                       gone=frozenset({"ResourceNotFoundException"}))

    # -- what the app takes from it ----------------------------------------------------------
    def app_environment(self, ctx, resource):
        from steps.access.security_group import DATABASE_PORTS

        if resource is None:
            return {}
        # No host: the endpoint exists only once the database is available, minutes after the
        # instances boot. The backend looks it up by the identifier (DescribeDBInstances).
        return {"DATABASE_ENGINE": ctx.config.database, "DATABASE_INSTANCE_ID": resource.id,
                "DATABASE_PORT": str(resource.attrs.get("port") or DATABASE_PORTS[ctx.config.database]),
                "DATABASE_NAME": DATABASE_NAME, "DATABASE_USER": MASTER_USERNAME,
                "DATABASE_SECRET_ARN": resource.attrs.get("secret_arn") or "", "DATABASE_TLS": "require",
                "AWS_REGION": ctx.region}

    def app_statements(self, ctx, resource):
        if resource is None:
            return []
        statements = [{"Sid": "FindDatabase", "Effect": "Allow", "Action": "rds:DescribeDBInstances",
                       "Resource": resource.attrs["arn"]}]
        if resource.attrs.get("secret_arn"):
            statements.append({"Sid": "ReadDatabasePassword", "Effect": "Allow",
                               "Action": "secretsmanager:GetSecretValue", "Resource": resource.attrs["secret_arn"]})
        return statements

    def outputs(self, resource):
        out = {"database": resource.id, "database_engine": resource.attrs.get("engine")}
        if resource.attrs.get("address"):
            out["database_endpoint"] = f"{resource.attrs['address']}:{resource.attrs.get('port')}"
        return out

    def describe(self, resource):
        attrs = resource.attrs
        return (f"{ENGINE_LABEL.get(attrs.get('engine'), attrs.get('engine'))} {attrs.get('db_class')}"
                f"{' Multi-AZ' if attrs.get('multi_az') else ''}, {attrs.get('status')}")
