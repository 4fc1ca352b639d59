"""Static checks of the compose file, the Dockerfiles, pins and the product images
(no Docker engine is needed)."""

import json
import re
import xml.etree.ElementTree as ET

import pytest
import yaml

from app_test_support import APP, BACKEND, FRONTEND, IMAGES, docker_hub_pulls, dockerfiles

# Docker's official images as ECR Public mirrors them.
MIRROR = "public.ecr.aws/docker/library/"


def _compose():
    return yaml.safe_load((APP / "docker-compose.yml").read_text())


def test_compose_services_ports_restart_healthchecks():
    services = _compose()["services"]
    assert set(services) == {"frontend", "backend"}
    assert services["frontend"]["ports"] == ["3000:3000"]
    assert services["backend"]["ports"] == ["5000:5000"]
    for name, svc in services.items():
        assert svc["restart"] in ("unless-stopped", "always"), name
        hc = svc["healthcheck"]
        assert hc["test"] and hc["interval"] and hc["retries"] >= 1, name
        assert "build" in svc, name
    assert "/api/health" in " ".join(services["backend"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["frontend"]["healthcheck"]["test"])


def test_compose_passes_images_base_url_to_backend():
    env = _compose()["services"]["backend"]["environment"]
    assert env["IMAGES_BASE_URL"].startswith("${IMAGES_BASE_URL")


def test_backend_dockerfile():
    text = (BACKEND / "Dockerfile").read_text()
    assert re.search(r"^FROM " + re.escape(MIRROR) + r"python:3\.\d+-slim\b", text, re.M)
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "EXPOSE 5000" in text
    assert "gunicorn" in text


def test_backend_requirements_pinned():
    lines = [l.strip() for l in (BACKEND / "requirements.txt").read_text().splitlines()]
    reqs = [l for l in lines if l and not l.startswith("#")]
    assert reqs
    for line in reqs:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.\-]*", line), line
    names = {l.split("==")[0].lower() for l in reqs}
    assert {"flask", "gunicorn"} <= names


def test_frontend_dockerfile_multistage_node_lts_alpine():
    text = (FRONTEND / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) >= 2
    for image in froms:
        assert re.fullmatch(re.escape(MIRROR) + r"node:(20|22|24)-alpine", image), image
    assert "npm ci" in text
    assert ".next/standalone" in text
    assert "NEXT_TELEMETRY_DISABLED=1" in text
    assert re.search(r"^USER (?!root)\S+", text, re.M)


def test_no_base_image_comes_from_docker_hub():
    # Docker Hub's anonymous pull limit is per IP address, and all of a stack's
    # instances pull through the NAT gateway's one address.
    files = dockerfiles()
    assert {BACKEND / "Dockerfile", FRONTEND / "Dockerfile"} <= set(files), files
    for f in files:
        assert docker_hub_pulls(f.read_text()) == [], f


@pytest.mark.parametrize("text, hub", [
    ("FROM node:20-alpine AS deps\nFROM deps AS build\n", ["node:20-alpine"]),
    ("FROM python:3.12-slim\n", ["python:3.12-slim"]),
    ("FROM library/python:3.12-slim\n", ["library/python:3.12-slim"]),
    ("FROM docker.io/library/node:20-alpine\n", ["docker.io/library/node:20-alpine"]),
    ("FROM registry-1.docker.io/library/node:20\n", ["registry-1.docker.io/library/node:20"]),
    ("FROM --platform=linux/amd64 node:20 AS a\n", ["node:20"]),
    ("ARG BASE=node:20-alpine\nFROM ${BASE}\n", ["node:20-alpine"]),
    ("# FROM node:20\nFROM public.ecr.aws/docker/library/node:20-alpine AS Deps\n"
     "FROM deps AS build\nFROM scratch\n", []),
    ("ARG BASE=public.ecr.aws/docker/library/python:3.12-slim\nFROM $BASE\n", []),
    ("FROM localhost:5000/node:20\n", []),
])
def test_docker_hub_pulls_are_recognised(text, hub):
    assert docker_hub_pulls(text) == hub


def test_frontend_pins_and_lockfile():
    pkg = json.loads((FRONTEND / "package.json").read_text())
    deps = {**pkg.get("dependencies", {}), **pkg.get("devDependencies", {})}
    assert "next" in deps
    for name, version in deps.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), (name, version)
    lock = json.loads((FRONTEND / "package-lock.json").read_text())
    assert lock["lockfileVersion"] >= 2
    assert lock["packages"][""]["dependencies"] == pkg["dependencies"]
    assert lock["packages"]["node_modules/next"]["version"] == deps["next"]
    # The Alpine image needs the musl build of the compiler in the lockfile.
    assert "node_modules/@next/swc-linux-x64-musl" in lock["packages"]


def test_frontend_uses_no_external_fonts_or_cdns():
    for f in (FRONTEND / "app").rglob("*"):
        if f.is_file():
            text = f.read_text()
            assert "next/font/google" not in text, f
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), f


def test_dockerignores_exclude_build_output():
    fe = (FRONTEND / ".dockerignore").read_text().split()
    assert "node_modules" in fe and ".next" in fe


def test_every_product_has_an_original_svg_image():
    products = json.loads((BACKEND / "stylesphere_api" / "data" / "products.json").read_text())
    files = {p.name for p in IMAGES.glob("*.svg")}
    for p in products:
        assert p["image"] in files, p["image"]
        root = ET.parse(IMAGES / p["image"]).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.get("viewBox")
        text = (IMAGES / p["image"]).read_text()
        assert "<image" not in text and "href=\"http" not in text
    backgrounds, garments = set(), set()
    for p in products:
        fills = re.findall(r'fill="(#[0-9A-Fa-f]{6})"', (IMAGES / p["image"]).read_text())
        backgrounds.add(fills[0].lower())
        garments.add(fills[1].lower())
    assert len(garments) == len(products), "each garment should have its own colour"
    assert len(backgrounds) == len(products)


def test_compose_passes_every_data_tier_setting_to_backend():
    # The names settings.py reads are the contract with the infrastructure's .env;
    # one the compose file does not pass would silently never reach the container.
    source = (BACKEND / "stylesphere_api" / "settings.py").read_text()
    read = set(re.findall(r'get\("([A-Z][A-Z0-9_]+)"', source)) | set(re.findall(r'env\.get\("([A-Z][A-Z0-9_]+)"', source))
    local_only = {"DYNAMODB_CREATE_TABLES", "AWS_DEFAULT_REGION"}  # tests / boto3's own fallback
    assert {"DATABASE_ENGINE", "DATABASE_SECRET_ARN", "CATALOG", "REDIS_HOST", "SHARED_FILES_DIR"} <= read
    env = _compose()["services"]["backend"]["environment"]
    missing = sorted(read - local_only - set(env))
    assert not missing, f"docker-compose.yml does not pass {missing} to the backend"
    for name in read - local_only:
        assert str(env[name]).startswith("${" + name + ":-"), (name, env[name])
    volumes = _compose()["services"]["backend"]["volumes"]
    assert "${SHARED_FILES_HOST_DIR:-./shared}:/shared" in volumes


def test_backend_requirements_pin_the_data_tier_drivers():
    names = {l.split("==")[0].lower() for l in (BACKEND / "requirements.txt").read_text().splitlines()
             if "==" in l and not l.startswith("#")}
    assert {"boto3", "botocore", "psycopg", "psycopg-binary", "pymysql", "redis"} <= names
