"""The cart and order API on the default store (process memory), through Flask's test client,
and the receipts on a shared directory that a second instance serves."""

import pytest

from stylesphere_api import CART_COOKIE, create_app
from stylesphere_api.settings import Settings

IMAGES = "https://assets.example.test/images/"


def _client(env=None):
    app = create_app(images_base_url=IMAGES, settings=Settings.from_env(env or {}), background_start=False)
    return app.test_client()


@pytest.fixture()
def client():
    return _client()


def _cookie(client):
    cookie = client.get_cookie(CART_COOKIE, path="/api")
    return cookie.value if cookie else None


def test_the_first_change_sets_a_random_httponly_lax_cookie(client):
    assert client.get("/api/cart").json["lines"] == []
    r = client.post("/api/cart", json={"productId": "organic-cotton-tee"})
    assert r.status_code == 200
    header = r.headers["Set-Cookie"]
    assert header.startswith(CART_COOKIE + "=")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/api" in header
    assert "Secure" not in header  # plain http here; behind the HTTPS listener it is set
    assert r.headers["Cache-Control"] == "no-store"
    other = _client()
    other.post("/api/cart", json={"productId": "organic-cotton-tee"})
    assert len(_cookie(client)) == 32 and _cookie(client) != _cookie(other)


def test_cookie_is_secure_behind_https(client):
    r = client.post("/api/cart", json={"productId": "organic-cotton-tee"}, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in r.headers["Set-Cookie"]


def test_add_set_remove_and_empty(client):
    r = client.post("/api/cart", json={"productId": "organic-cotton-tee", "add": 2})
    assert r.json["itemCount"] == 2 and r.json["total"] == 58.0
    r = client.post("/api/cart", json={"productId": "organic-cotton-tee", "add": 1})
    assert r.json["lines"][0]["quantity"] == 3
    r = client.post("/api/cart", json={"productId": "linen-camp-shirt", "quantity": 2})
    lines = {l["productId"]: l for l in r.json["lines"]}
    assert lines["linen-camp-shirt"] == {
        "productId": "linen-camp-shirt", "quantity": 2, "available": True, "name": "Linen Camp Shirt",
        "unitPrice": 64.0, "lineTotal": 128.0, "currency": "EUR", "image_url": IMAGES + "linen-camp-shirt.svg"}
    assert r.json["total"] == 3 * 29.0 + 128.0 and r.json["currency"] == "EUR"
    assert [l["productId"] for l in r.json["lines"]] == ["organic-cotton-tee", "linen-camp-shirt"]  # catalogue order
    r = client.post("/api/cart", json={"productId": "linen-camp-shirt", "quantity": 1})
    assert {l["productId"]: l["quantity"] for l in r.json["lines"]}["linen-camp-shirt"] == 1
    r = client.delete("/api/cart", json={"productId": "organic-cotton-tee"})
    assert [l["productId"] for l in r.json["lines"]] == ["linen-camp-shirt"]
    r = client.delete("/api/cart")
    assert r.status_code == 200 and r.json["lines"] == [] and r.json["total"] == 0


@pytest.mark.parametrize("body", [
    {"productId": "organic-cotton-tee", "quantity": 0},
    {"productId": "organic-cotton-tee", "quantity": 11},
    {"productId": "organic-cotton-tee", "quantity": -1},
    {"productId": "organic-cotton-tee", "quantity": "2"},
    {"productId": "organic-cotton-tee", "quantity": 2.5},
    {"productId": "organic-cotton-tee", "quantity": True},
    {"productId": "organic-cotton-tee", "add": 11},
    {"productId": "organic-cotton-tee", "add": 1, "quantity": 1},
    {"quantity": 1},
    {"productId": 7},
])
def test_bad_cart_bodies_are_400_json(client, body):
    r = client.post("/api/cart", json=body)
    assert r.status_code == 400, r.json
    assert r.json["error"] == "bad request" and r.json["detail"]


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'"text"', b""])
def test_malformed_json_is_400(client, data):
    r = client.post("/api/cart", data=data, content_type="application/json")
    assert r.status_code == 400 and r.is_json
    assert "JSON object" in r.json["detail"]


def test_adding_past_the_limit_is_409_and_keeps_the_line(client):
    client.post("/api/cart", json={"productId": "organic-cotton-tee", "quantity": 9})
    r = client.post("/api/cart", json={"productId": "organic-cotton-tee", "add": 2})
    assert r.status_code == 409
    assert r.json == {"error": "quantity limit", "detail": "at most 10 of one product per order",
                      "productId": "organic-cotton-tee", "quantity": 9, "max": 10}
    assert client.get("/api/cart").json["lines"][0]["quantity"] == 9


def test_unknown_product_is_404(client):
    r = client.post("/api/cart", json={"productId": "velvet-cape"})
    assert r.status_code == 404 and r.json["error"] == "product not found"
    assert client.get("/api/cart").json["lines"] == []


def test_empty_cart_cannot_be_ordered(client):
    r = client.post("/api/orders")
    assert r.status_code == 409 and r.json["error"] == "cart is empty"
    client.post("/api/cart", json={"productId": "organic-cotton-tee"})
    client.delete("/api/cart")
    assert client.post("/api/orders").status_code == 409


def test_order_empties_the_cart_and_only_its_cart_sees_it(client):
    client.post("/api/cart", json={"productId": "organic-cotton-tee", "quantity": 2})
    client.post("/api/cart", json={"productId": "merino-rib-beanie", "quantity": 1})
    r = client.post("/api/orders")
    assert r.status_code == 201
    order = r.json
    assert set(order) >= {"id", "lines", "total", "currency", "createdAt"}
    assert order["currency"] == "EUR" and order["itemCount"] == 3
    assert order["total"] == sum(l["lineTotal"] for l in order["lines"])
    assert order["createdAt"].endswith("Z")
    assert client.get("/api/cart").json["lines"] == []
    assert client.get(f"/api/orders/{order['id']}").json == order
    receipt = client.get(order["receiptUrl"])
    assert receipt.status_code == 200 and receipt.mimetype == "text/plain"
    assert order["id"] in receipt.text and "Organic Cotton Crew Tee" in receipt.text
    assert f"{order['total']:,.2f} EUR" in receipt.text

    stranger = client.application.test_client()
    stranger.post("/api/cart", json={"productId": "organic-cotton-tee"})
    for path in (f"/api/orders/{order['id']}", order["receiptUrl"]):
        assert stranger.get(path).status_code == 404
        assert client.application.test_client().get(path).status_code == 404  # no cookie at all
    assert client.get("/api/orders/ffffffffffffffffffff").status_code == 404
    assert client.get("/api/orders/../../etc/passwd/receipt").status_code == 404


def test_receipt_on_the_shared_dir_is_served_by_another_instance(tmp_path):
    env = {"SHARED_FILES_DIR": str(tmp_path)}
    first, second = _client(env), _client(env)  # two processes' memory stores, one shared directory
    first.post("/api/cart", json={"productId": "tencel-wrap-dress", "quantity": 1})
    order = first.post("/api/orders").json
    receipt = tmp_path / "receipts" / f"{order['id']}.txt"
    assert receipt.is_file() and "Tencel Wrap Dress" in receipt.read_text()
    assert not list((tmp_path / "receipts").glob(".*.tmp"))
    assert _cookie(first) not in (tmp_path / "receipts" / f"{order['id']}.owner").read_text()

    second.set_cookie(CART_COOKIE, _cookie(first), path="/api")
    r = second.get(order["receiptUrl"])
    assert r.status_code == 200 and r.text == receipt.read_text()
    # The order itself is in the first process's memory only: the documented limit of the default store.
    assert second.get(f"/api/orders/{order['id']}").status_code == 404
    third = _client(env)
    third.post("/api/cart", json={"productId": "tencel-wrap-dress"})
    assert third.get(order["receiptUrl"]).status_code == 404


def test_health_names_the_store(client):
    body = client.get("/api/health").json
    assert body["store"] == "memory" and body["store_ready"] is True


def test_products_stay_cacheable_and_carts_do_not(client):
    assert client.get("/api/products").headers["Cache-Control"] == "public, max-age=60"
    assert client.get("/api/cart").headers["Cache-Control"] == "no-store"
