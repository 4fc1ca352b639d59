"""The catalogue, carts and orders in DynamoDB (CATALOG=dynamodb).

The four tables, `<DYNAMODB_TABLE_PREFIX>products|users|orders|cart`, are created
by the infrastructure, not here; this store only seeds the products, each with a
conditional put, so any number of processes can seed at once. The users table is
the infrastructure's (its EmailIndex too); the API identifies a cart and its
orders by the cart cookie, used as `userId`.

The instance role grants exactly DYNAMODB_ACTIONS. A transaction needs the
per-item action of each of its parts (PutItem, DeleteItem, ConditionCheckItem on
their tables); there is no separate permission for TransactWriteItems itself.
"""

from __future__ import annotations

import logging

from . import (MAX_QUANTITY, CartChanged, EmptyCart, ProductUnavailable, QuantityLimit,
               StoreUnavailable, build_order, priced_lines)

log = logging.getLogger(__name__)

# Table suffix -> the DynamoDB actions this module calls on it (no index is queried).
DYNAMODB_ACTIONS = {
    "products": ("dynamodb:Scan", "dynamodb:PutItem", "dynamodb:ConditionCheckItem"),
    "cart": ("dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"),
    "orders": ("dynamodb:GetItem", "dynamodb:PutItem"),
    "users": (),
}

# Tests and local runs only (DYNAMODB_CREATE_TABLES=1): the shape the infrastructure creates.
TABLES = {
    "products": {"keys": [("productId", "HASH", "S")],
                 "indexes": {"CategoryIndex": [("category", "HASH", "S")]}},
    "users": {"keys": [("userId", "HASH", "S")],
              "indexes": {"EmailIndex": [("email", "HASH", "S")]}},
    "orders": {"keys": [("orderId", "HASH", "S")],
               "indexes": {"UserOrdersIndex": [("userId", "HASH", "S"), ("createdAt", "RANGE", "S")]}},
    "cart": {"keys": [("userId", "HASH", "S"), ("productId", "RANGE", "S")], "indexes": {}},
}

# Codes that mean "DynamoDB is not there (yet)": the API answers 503 and start retries.
_UNAVAILABLE_CODES = {"ResourceNotFoundException", "ServiceUnavailable", "InternalServerError",
                      "ProvisionedThroughputExceededException", "ThrottlingException",
                      "RequestLimitExceeded"}

_PRODUCT_ATTRS = {"id": "productId", "name": "name", "price_cents": "priceCents", "currency": "currency",
                  "category": "category", "description": "description", "materials": "materials",
                  "sustainability": "sustainability", "image": "image", "sort_order": "sortOrder"}


class DynamoDBStore:
    name = "dynamodb"
    shared = True

    def __init__(self, settings, seed: list[dict]):
        import boto3
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        self.settings = settings
        self.seed = seed
        self.prefix = settings.dynamodb_table_prefix
        # Standard retry mode absorbs throttling; short timeouts keep a request from
        # hanging on an unreachable endpoint. The endpoint comes from AWS_ENDPOINT_URL
        # in tests, the credentials from the instance role in AWS.
        self.client = boto3.session.Session().client(
            "dynamodb", region_name=settings.aws_region or None,
            config=Config(retries={"mode": "standard", "max_attempts": 4},
                          connect_timeout=3, read_timeout=5))
        self._ser, self._de = TypeSerializer(), TypeDeserializer()
        self._client_error, self._boto_error = ClientError, BotoCoreError

    def table(self, suffix: str) -> str:
        return self.prefix + suffix

    def _item(self, values: dict) -> dict:
        return {k: self._ser.serialize(v) for k, v in values.items()}

    def _plain(self, item: dict) -> dict:
        return {k: self._de.deserialize(v) for k, v in item.items()}

    def _code(self, exc) -> str:
        return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, self._client_error) else ""

    def _call(self, method: str, **params):
        try:
            return getattr(self.client, method)(**params)
        except self._client_error as exc:
            if self._code(exc) in _UNAVAILABLE_CODES:
                raise StoreUnavailable(f"DynamoDB {method}: {self._code(exc)}") from exc
            raise
        except self._boto_error as exc:  # no connection, timeouts, no credentials yet
            raise StoreUnavailable(f"DynamoDB {method}: {exc}") from exc

    # ------------------------------------------------------------------ start

    def ensure_ready(self) -> None:
        if self.settings.dynamodb_create_tables:
            self._create_tables()
        for product in self.seed:
            values = {_PRODUCT_ATTRS[k]: v for k, v in product.items() if k in _PRODUCT_ATTRS}
            try:
                self._call("put_item", TableName=self.table("products"), Item=self._item(values),
                           ConditionExpression="attribute_not_exists(productId)")
            except self._client_error as exc:
                if self._code(exc) != "ConditionalCheckFailedException":
                    raise  # already there: another process seeded it, or an earlier start

    def _create_tables(self) -> None:
        for suffix, spec in TABLES.items():
            attrs = {name: kind for name, _, kind in spec["keys"]}
            for keys in spec["indexes"].values():
                attrs.update({name: kind for name, _, kind in keys})
            params = {
                "TableName": self.table(suffix), "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in attrs.items()],
                "KeySchema": [{"AttributeName": n, "KeyType": k} for n, k, _ in spec["keys"]],
            }
            if spec["indexes"]:
                params["GlobalSecondaryIndexes"] = [
                    {"IndexName": name, "Projection": {"ProjectionType": "ALL"},
                     "KeySchema": [{"AttributeName": n, "KeyType": k} for n, k, _ in keys]}
                    for name, keys in spec["indexes"].items()]
            try:
                self._call("create_table", **params)
            except self._client_error as exc:
                if self._code(exc) != "ResourceInUseException":
                    raise
            self.client.get_waiter("table_exists").wait(TableName=self.table(suffix),
                                                        WaiterConfig={"Delay": 1, "MaxAttempts": 30})

    # ------------------------------------------------------------------ catalogue

    def products(self) -> list[dict]:
        items, start = [], None
        while True:
            params = {"TableName": self.table("products"), "ConsistentRead": True}
            if start:
                params["ExclusiveStartKey"] = start
            page = self._call("scan", **params)
            items += page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        back = {v: k for k, v in _PRODUCT_ATTRS.items()}
        products = []
        for item in items:
            plain = self._plain(item)
            product = {back[k]: v for k, v in plain.items() if k in back}
            product["price_cents"] = int(product["price_cents"])
            product["sort_order"] = int(product.get("sort_order", 0))
            products.append(product)
        return sorted(products, key=lambda p: (p["sort_order"], p["id"]))

    # ------------------------------------------------------------------ carts

    def cart(self, cart_id: str) -> list[tuple[str, int]]:
        lines, start = [], None
        while True:
            params = {"TableName": self.table("cart"), "ConsistentRead": True,
                      "KeyConditionExpression": "userId = :u",
                      "ExpressionAttributeValues": {":u": {"S": cart_id}}}
            if start:
                params["ExclusiveStartKey"] = start
            page = self._call("query", **params)
            lines += [(i["productId"]["S"], int(i["quantity"]["N"])) for i in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                return sorted(lines)

    def _key(self, cart_id: str, product_id: str) -> dict:
        return {"userId": {"S": cart_id}, "productId": {"S": product_id}}

    def add_to_cart(self, cart_id: str, product_id: str, quantity: int) -> int:
        # One conditional update: the limit holds even with two requests at once.
        try:
            out = self._call(
                "update_item", TableName=self.table("cart"), Key=self._key(cart_id, product_id),
                UpdateExpression="ADD quantity :n",
                ConditionExpression="attribute_not_exists(quantity) OR quantity <= :most",
                ExpressionAttributeValues={":n": {"N": str(quantity)}, ":most": {"N": str(MAX_QUANTITY - quantity)}},
                ReturnValues="UPDATED_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except self._client_error as exc:
            if self._code(exc) != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item") or {}
            current = int(old["quantity"]["N"]) if "quantity" in old else None
            raise QuantityLimit(f"at most {MAX_QUANTITY} of one product per order",
                                productId=product_id, quantity=current, max=MAX_QUANTITY) from None
        return int(out["Attributes"]["quantity"]["N"])

    def set_cart_line(self, cart_id: str, product_id: str, quantity: int) -> int:
        self._call("put_item", TableName=self.table("cart"),
                   Item={**self._key(cart_id, product_id), "quantity": {"N": str(quantity)}})
        return quantity

    def remove_cart_line(self, cart_id: str, product_id: str) -> None:
        self._call("delete_item", TableName=self.table("cart"), Key=self._key(cart_id, product_id))

    def clear_cart(self, cart_id: str) -> None:
        # At most one line per product, so a few DeleteItems; no BatchWriteItem to grant.
        for product_id, _ in self.cart(cart_id):
            self.remove_cart_line(cart_id, product_id)

    # ------------------------------------------------------------------ orders

    def _catalogue_for(self, cart: list[tuple[str, int]]) -> dict[str, dict]:
        return {p["id"]: p for p in self.products()}

    def place_order(self, cart_id: str, order_id: str, created_at: str) -> dict:
        """Write the order and delete the cart's lines in one TransactWriteItems.

        Each deleted line must still have the quantity that was priced, and each
        product must still exist at that price: if anything changed in between, the
        whole transaction is cancelled and nothing is written.
        """
        cart = self.cart(cart_id)
        if not cart:
            raise EmptyCart("add something to the cart first")
        products = self._catalogue_for(cart)
        order = build_order(order_id, cart_id, created_at, priced_lines(cart, products))
        item = {"orderId": order_id, "userId": cart_id, "createdAt": created_at,
                "currency": order["currency"], "totalCents": order["totalCents"], "lines": order["lines"]}
        actions = [{"Put": {"TableName": self.table("orders"), "Item": self._item(item),
                            "ConditionExpression": "attribute_not_exists(orderId)"}}]
        for product_id, quantity in cart:
            actions.append({"Delete": {
                "TableName": self.table("cart"), "Key": self._key(cart_id, product_id),
                "ConditionExpression": "quantity = :q",
                "ExpressionAttributeValues": {":q": {"N": str(quantity)}}}})
        for product_id, _ in cart:
            actions.append({"ConditionCheck": {
                "TableName": self.table("products"), "Key": {"productId": {"S": product_id}},
                "ConditionExpression": "priceCents = :p",
                "ExpressionAttributeValues": {":p": {"N": str(products[product_id]["price_cents"])}}}})
        try:
            self._call("transact_write_items", TransactItems=actions, ClientRequestToken=order_id[:36])
        except self._client_error as exc:
            if self._code(exc) != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            failed = [n for n, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
            checks_from = 1 + len(cart)
            gone = [cart[n - checks_from][0] for n in failed if n >= checks_from]
            if gone:
                raise ProductUnavailable(f"{gone[0]} is no longer in the catalogue at that price",
                                         productId=gone[0]) from None
            raise CartChanged("the cart changed during checkout; check it and try again") from None
        return order

    def order(self, order_id: str) -> dict | None:
        out = self._call("get_item", TableName=self.table("orders"), Key={"orderId": {"S": order_id}},
                         ConsistentRead=True)
        if "Item" not in out:
            return None
        plain = self._plain(out["Item"])
        return {"id": plain["orderId"], "owner": plain["userId"], "createdAt": plain["createdAt"],
                "currency": plain["currency"], "totalCents": int(plain["totalCents"]),
                "lines": [{"productId": l["productId"], "name": l["name"],
                           "unitPriceCents": int(l["unitPriceCents"]), "quantity": int(l["quantity"])}
                          for l in plain["lines"]]}
