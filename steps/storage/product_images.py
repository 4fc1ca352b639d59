import hashlib
import mimetypes

from provisioner.engine.context import Resource
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import error_code

from steps.storage.app_release import app_dir
from steps.storage.s3_bucket import IMAGES_PREFIX, OBJECT_IAM, delete_objects

# Browsers and the storefront cache the images for a day; a changed image gets new bytes under
# the same name, and a day's staleness is fine for a catalogue demo.
CACHE_CONTROL = "public, max-age=86400"
# mimetypes does not know .svg on every platform, and S3 would otherwise serve it as
# binary/octet-stream, which browsers refuse to render in <img>.
CONTENT_TYPES = {".svg": "image/svg+xml", ".webp": "image/webp", ".avif": "image/avif"}
IMAGE_SUFFIXES = frozenset({".svg", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".ico"})


def content_type(name: str) -> str:
    suffix = name[name.rfind("."):].lower() if "." in name else ""
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def local_images() -> dict[str, dict]:
    """key -> {path, md5, content_type} for the app's images/ directory."""
    directory = app_dir() / "images"
    images = {}
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                body = path.read_bytes()
                images[f"{IMAGES_PREFIX}{path.name}"] = {
                    "path": path, "md5": hashlib.md5(body).hexdigest(), "content_type": content_type(path.name)}
    return images


def digest(images: dict[str, dict]) -> str:
    lines = "".join(f"{key} {i['md5']} {i['content_type']} {CACHE_CONTROL}\n" for key, i in sorted(images.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


@register
class ProductImages(Step):
    """The app's product images under images/ in the assets bucket, with content types and cache headers."""

    kind = "product_images"
    # The images live in the bucket: a missing bucket has none left.
    gone_codes = frozenset({"NoSuchBucket"})
    aws_type = "AWS::S3::Object"
    found_through = "bucket"
    iam = OBJECT_IAM
    tagged = False

    def __init__(self):
        super().__init__("product-images", depends_on=("assets-bucket",))

    def _remote(self, ctx, bucket) -> dict[str, dict]:
        s3 = ctx.client("s3")
        found = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=IMAGES_PREFIX):
            for item in page.get("Contents", []):
                found[item["Key"]] = {"etag": item["ETag"].strip('"'), "size": item["Size"]}
        return found

    def find_all(self, ctx, known_id):
        from botocore.exceptions import ClientError

        bucket = ctx.dep("assets-bucket")
        if bucket is None:
            return []
        try:
            remote = self._remote(ctx, bucket.id)
        except ClientError as e:
            if error_code(e) == "NoSuchBucket":
                return []
            raise
        if not remote:
            return []
        return [Resource(id=f"s3://{bucket.id}/{IMAGES_PREFIX}", raw={"bucket": bucket.id, "objects": remote},
                         attrs={"count": len(remote), "digest": None})]

    def create(self, ctx):
        bucket = ctx.dep("assets-bucket").id
        images = local_images()
        for key, image in images.items():
            self._upload(ctx, bucket, key, image)
        return self._resource(bucket, images)

    def _resource(self, bucket, images):
        return Resource(id=f"s3://{bucket}/{IMAGES_PREFIX}", attrs={"count": len(images), "digest": digest(images)})

    def _upload(self, ctx, bucket, key, image):
        with open(image["path"], "rb") as body:
            ctx.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=image["content_type"],
                                        CacheControl=CACHE_CONTROL)

    def update(self, ctx, resource, apply):
        bucket = resource.raw["bucket"]
        remote = resource.raw["objects"]
        images = local_images()
        changes = []
        upload, stale = [], []
        for key, image in images.items():
            have = remote.get(key)
            if have is None:
                upload.append(key)
            # ETag is the MD5 of a single-part upload without SSE-KMS, which is what _upload makes.
            elif have["etag"] != image["md5"] or not self._headers_match(ctx, bucket, key, image):
                stale.append(key)
        extra = sorted(set(remote) - set(images))
        if apply:
            for key in upload + stale:
                self._upload(ctx, bucket, key, images[key])
            if extra:
                delete_objects(ctx, bucket, [{"Key": key} for key in extra])
        if upload:
            changes.append(f"upload {len(upload)} missing image(s): {', '.join(k[len(IMAGES_PREFIX):] for k in upload)}")
        if stale:
            changes.append(f"upload {len(stale)} changed image(s): {', '.join(k[len(IMAGES_PREFIX):] for k in stale)}")
        if extra:
            changes.append(f"delete {len(extra)} image(s) the app no longer has: "
                           f"{', '.join(k[len(IMAGES_PREFIX):] for k in extra)}")
        resource.attrs.update({"count": len(images), "digest": digest(images)})
        return changes

    def _headers_match(self, ctx, bucket, key, image) -> bool:
        head = ctx.client("s3").head_object(Bucket=bucket, Key=key)
        return head.get("ContentType") == image["content_type"] and head.get("CacheControl") == CACHE_CONTROL

    def delete(self, ctx, resource):
        bucket = resource.raw.get("bucket") or resource.id[len("s3://"):].split("/", 1)[0]
        keys = list(resource.raw.get("objects") or self._remote(ctx, bucket))
        for start in range(0, len(keys), 1000):
            delete_objects(ctx, bucket, [{"Key": key} for key in keys[start:start + 1000]])

    def describe(self, resource):
        return f"{resource.attrs.get('count', 0)} image(s)"
