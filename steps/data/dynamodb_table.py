"""The DynamoDB catalog (--catalog dynamodb): the serverless-style shop's four tables, on-demand,
encrypted, with point-in-time recovery. The app seeds the products and keeps users, orders and
carts in them; the instance role may make exactly the item calls the app makes, on these
tables and their indexes (`table_policy_statements`)."""

from provisioner.engine.context import Resource
from provisioner.engine.errors import DriftConflict
from provisioner.engine.kinds import Free, Iam, ItemTags, Listing, actions
from provisioner.engine.registry import NamedStep, created, register
from provisioner.engine.retries import error_code, lookup

TABLE_ARN = "arn:{partition}:dynamodb:{region}:{account}:table/{stack}-*"
# name -> (key schema [(attribute, HASH|RANGE)], global secondary indexes {name: key schema}).
TABLES = {
    "products": ([("productId", "HASH")], {"CategoryIndex": [("category", "HASH")]}),
    "users": ([("userId", "HASH")], {"EmailIndex": [("email", "HASH")]}),
    "orders": ([("orderId", "HASH")], {"UserOrdersIndex": [("userId", "HASH"), ("createdAt", "RANGE")]}),
    "cart": ([("userId", "HASH"), ("productId", "RANGE")], {}),
}
# What the backend calls on each table (app/backend/stylesphere_api/stores/dynamodb.py says the
# same, and a test holds the two together), and nothing more: it queries no index, and a
# TransactWriteItems needs the actions of its parts, none of its own.
APP_ACTIONS = {
    "products": ("dynamodb:Scan", "dynamodb:PutItem", "dynamodb:ConditionCheckItem"),
    "cart": ("dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"),
    "orders": ("dynamodb:GetItem", "dynamodb:PutItem"),
    "users": (),
}
GONE_STATES = ("DELETING",)


def table_name(stack: str, table: str) -> str:
    return f"{stack}-{table}"


def table_arn(ctx, name: str) -> str:
    return ctx.client("dynamodb").describe_table(TableName=name)["Table"]["TableArn"]


def _attribute_definitions(key, indexes):
    names = dict.fromkeys(a for a, _ in key + [k for schema in indexes.values() for k in schema])
    return [{"AttributeName": a, "AttributeType": "S"} for a in names]


def _schema(pairs):
    return [{"AttributeName": a, "KeyType": t} for a, t in pairs]




def sse_specification(ctx) -> dict:
    from steps.security.kms_key import stack_key_arn

    key = stack_key_arn(ctx)
    return {"Enabled": True, "SSEType": "KMS", **({"KMSMasterKeyId": key} if key else {})}


@register
class CatalogTable(NamedStep):
    """One table, <stack>-<table>. Its keys and indexes are fixed at creation (a different
    schema is a DriftConflict); billing mode, point-in-time recovery and tags converge."""

    kind = "dynamodb_table"
    serves_app = True
    gone_codes = frozenset({"ResourceNotFoundException"})
    # No not_found_codes: DynamoDB's ResourceNotFoundException is every service's generic code,
    # and a new table is described at once (its waiter covers CREATING).
    create_timeout = delete_timeout = 600
    aws_type = "AWS::DynamoDB::Table"
    listing = Listing("dynamodb_table", "dynamodb", "list_tables", "TableNames[].{name: @}", "name",
                      label="DynamoDB tables",
                      tags=ItemTags("list_tags_of_resource", "ResourceArn", "Tags", arn=table_arn),
                      candidate=lambda ctx, i: i["name"].endswith(tuple(f"-{t}" for t in TABLES)),
                      price=Free("on-demand: requests and storage bill by use (the usage-based notes)"))
    iam = Iam(create=(actions("dynamodb:CreateTable", "dynamodb:TagResource", "dynamodb:UpdateContinuousBackups",
                              "dynamodb:DescribeTable", on=TABLE_ARN),),
              read=(actions("dynamodb:DescribeTable", "dynamodb:ListTagsOfResource",
                            "dynamodb:DescribeContinuousBackups", on=TABLE_ARN),
                    actions("dynamodb:ListTables")),
              change=(actions("dynamodb:UpdateTable", "dynamodb:TagResource", "dynamodb:UpdateContinuousBackups",
                              on=TABLE_ARN),),
              delete=(actions("dynamodb:DeleteTable", on=TABLE_ARN),))

    def __init__(self, table: str, audit: bool = False):
        # --audit: encrypted with the stack's key rather than DynamoDB's aws/dynamodb.
        super().__init__(f"{table}-table", depends_on=(created("kms-key"),) if audit else ())
        self.table = table
        self.key, self.indexes = TABLES[table]

    @classmethod
    def instances(cls, config):
        return [cls(t, config.audit) for t in TABLES] if config.catalog == "dynamodb" else []

    # -- find --------------------------------------------------------------------------------
    what = "DynamoDB table"

    def resource_name(self, ctx):
        return table_name(ctx.stack, self.table)

    def read(self, ctx, name):
        dynamodb = ctx.client("dynamodb")
        found = lookup(dynamodb.describe_table, TableName=name, gone=self.gone_codes)
        if not found:
            return None, []
        table = found["Table"]
        tags = dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags", [])
        # Point-in-time recovery is a setting of its own, read with the table.
        backups = lookup(dynamodb.describe_continuous_backups, TableName=name, gone=self.gone_codes) or {}
        pitr = backups.get("ContinuousBackupsDescription", {}).get("PointInTimeRecoveryDescription", {})
        return {**table, "PointInTimeRecovery": pitr.get("PointInTimeRecoveryStatus") == "ENABLED"}, tags

    def is_live(self, item):
        return item.get("TableStatus") not in GONE_STATES

    @staticmethod
    def to_resource(table, tags):
        return Resource(id=table["TableName"],
                        attrs={"arn": table["TableArn"], "status": table.get("TableStatus"),
                               "pitr": bool(table.get("PointInTimeRecovery"))},
                        raw={**table, "Tags": tags})

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        from botocore.exceptions import ClientError

        dynamodb = ctx.client("dynamodb")
        name = table_name(ctx.stack, self.table)
        params = {"TableName": name, "KeySchema": _schema(self.key),
                  "AttributeDefinitions": _attribute_definitions(self.key, self.indexes),
                  "BillingMode": "PAY_PER_REQUEST", "SSESpecification": sse_specification(ctx),
                  "Tags": ctx.tags(self.name)}
        if self.indexes:
            params["GlobalSecondaryIndexes"] = [{"IndexName": index, "KeySchema": _schema(schema),
                                                 "Projection": {"ProjectionType": "ALL"}}
                                                for index, schema in self.indexes.items()]
        try:
            dynamodb.create_table(**params)
        except ClientError as e:
            if error_code(e) == "ResourceInUseException":
                raise self.taken(ctx) from None
            raise
        ctx.wait("dynamodb", "table_exists", TableName=name, timeout=self.create_timeout,
                 what=f"table {name} to become active")
        self._point_in_time_recovery(ctx, name)
        item, _ = self.read(ctx, name)
        return self.to_resource(item, ctx.tags(self.name))

    @staticmethod
    def _point_in_time_recovery(ctx, name):
        # Refused for a table whose backups are not ready yet, right after creation.
        ctx.retry("eventual-consistency", ctx.client("dynamodb").update_continuous_backups, TableName=name,
                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        dynamodb = ctx.client("dynamodb")
        table = resource.raw
        have_key = [(k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])]
        have_indexes = {i["IndexName"]: [(k["AttributeName"], k["KeyType"]) for k in i["KeySchema"]]
                        for i in table.get("GlobalSecondaryIndexes", [])}
        if have_key != self.key or have_indexes != self.indexes:
            raise DriftConflict(f"table {resource.id} has keys {have_key} and indexes {sorted(have_indexes)}, the app "
                                f"needs {self.key} and {sorted(self.indexes)}",
                                hint="delete the table (its items go with it) and run `provision up` again")
        changes = ctx.converge_tags(table.get("Tags", []), self.name, apply, lambda missing: dynamodb.tag_resource(
            ResourceArn=resource.attrs["arn"], Tags=missing))
        mode = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
        if mode != "PAY_PER_REQUEST":
            changes.append(f"billing {mode} -> on-demand")
            if apply:
                dynamodb.update_table(TableName=resource.id, BillingMode="PAY_PER_REQUEST")
        if not resource.attrs.get("pitr"):
            changes.append("turn on point-in-time recovery")
            if apply:
                self._point_in_time_recovery(ctx, resource.id)
                resource.attrs["pitr"] = True
        return changes

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        from botocore.exceptions import ClientError

        try:
            ctx.client("dynamodb").delete_table(TableName=resource.id)
        except ClientError as e:
            # Being deleted already (an interrupted `down`): wait for it as for ours.
            if error_code(e) != "ResourceInUseException":
                raise
        ctx.wait("dynamodb", "table_not_exists", TableName=resource.id, timeout=self.delete_timeout,
                 what=f"table {resource.id} to be deleted")

    # -- what the app takes from it ----------------------------------------------------------
    def app_environment(self, ctx, resource):
        return {"CATALOG": "dynamodb", "DYNAMODB_TABLE_PREFIX": f"{ctx.stack}-", "AWS_REGION": ctx.region}

    def app_statements(self, ctx, resource):
        """The app's item calls on this table."""
        if resource is None or not APP_ACTIONS[self.table]:
            return []
        return [{"Sid": f"Use{self.table.capitalize()}Table", "Effect": "Allow",
                 "Action": list(APP_ACTIONS[self.table]), "Resource": resource.attrs["arn"]}]

    def outputs(self, resource):
        return {f"{self.table}_table": resource.id}

    def describe(self, resource):
        return f"{resource.attrs.get('status', '')}, on-demand, point-in-time recovery " \
               f"{'on' if resource.attrs.get('pitr') else 'off'}"
