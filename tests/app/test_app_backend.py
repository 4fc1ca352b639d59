"""The StyleSphere API, through Flask's test client."""

import pytest

from stylesphere_api import create_app, load_products

IMAGES = "https://assets.example.test/images/"


def test_health_is_cheap_json(api_client):
    r = api_client.get("/api/health")
    assert r.status_code == 200
    assert r.is_json
    assert r.json["status"] == "ok"
    assert r.headers["Cache-Control"] == "no-store"


def test_health_reports_release(monkeypatch):
    monkeypatch.setenv("APP_RELEASE", "releases/abc.tar.gz")
    client = create_app(images_base_url=IMAGES).test_client()
    assert client.get("/api/health").json["release"] == "releases/abc.tar.gz"


def test_list_products(api_client):
    r = api_client.get("/api/products")
    assert r.status_code == 200
    body = r.json
    products = body["products"]
    assert len(products) >= 8
    assert body["count"] == len(products)
    assert body["categories"] == sorted({p["category"] for p in products})
    for p in products:
        for field in ("id", "name", "price", "currency", "category", "description",
                      "materials", "sustainability", "image", "image_url"):
            assert p[field] not in (None, ""), (p["id"], field)
        assert isinstance(p["price"], (int, float)) and p["price"] > 0
        assert p["currency"] == "EUR"
        assert p["image_url"] == IMAGES + p["image"]
    assert len({p["id"] for p in products}) == len(products)


@pytest.mark.parametrize("category", ["tops", "bottoms", "dresses", "outerwear", "accessories"])
def test_filter_by_category(api_client, category):
    r = api_client.get(f"/api/products?category={category}")
    assert r.status_code == 200
    products = r.json["products"]
    assert products, category
    assert all(p["category"] == category for p in products)
    assert r.json["count"] == len(products)


def test_filter_is_case_insensitive(api_client):
    r = api_client.get("/api/products?category=Outerwear")
    assert r.status_code == 200
    assert {p["category"] for p in r.json["products"]} == {"outerwear"}


def test_empty_category_means_all(api_client):
    all_count = api_client.get("/api/products").json["count"]
    assert api_client.get("/api/products?category=").json["count"] == all_count


@pytest.mark.parametrize("category", ["shoes", "tops;drop", "%00", "x" * 500, "<script>"])
def test_unknown_category_is_400_json(api_client, category):
    r = api_client.get("/api/products", query_string={"category": category})
    assert r.status_code == 400
    assert r.is_json
    assert r.json["error"] == "unknown category"
    assert "tops" in r.json["categories"]
    assert len(r.json["category"]) <= 64


def test_get_product(api_client):
    first = api_client.get("/api/products").json["products"][0]
    r = api_client.get(f"/api/products/{first['id']}")
    assert r.status_code == 200
    assert r.json == first


@pytest.mark.parametrize("bad_id", ["does-not-exist", "0", "-1", "ORGANIC-COTTON-TEE", "a%20b", "x" * 300])
def test_unknown_product_is_404_json(api_client, bad_id):
    r = api_client.get(f"/api/products/{bad_id}")
    assert r.status_code == 404
    assert r.is_json
    assert r.json["error"] == "product not found"


def test_unknown_api_path_is_404_json(api_client):
    r = api_client.get("/api/nothing-here")
    assert r.status_code == 404
    assert r.is_json


def test_wrong_method_is_405_json(api_client):
    r = api_client.post("/api/products")
    assert r.status_code == 405
    assert r.is_json


def test_images_base_url_from_environment(monkeypatch):
    monkeypatch.setenv("IMAGES_BASE_URL", "https://bucket.s3.eu-west-1.amazonaws.com/images")
    client = create_app().test_client()
    p = client.get("/api/products").json["products"][0]
    assert p["image_url"] == f"https://bucket.s3.eu-west-1.amazonaws.com/images/{p['image']}"


def test_images_base_url_default(monkeypatch):
    monkeypatch.delenv("IMAGES_BASE_URL", raising=False)
    p = create_app().test_client().get("/api/products").json["products"][0]
    assert p["image_url"] == f"/images/{p['image']}"


def test_catalogue_has_at_least_two_categories_with_two_items():
    products = load_products()
    counts = {}
    for p in products:
        counts[p["category"]] = counts.get(p["category"], 0) + 1
    assert sum(1 for c in counts.values() if c >= 2) >= 3
