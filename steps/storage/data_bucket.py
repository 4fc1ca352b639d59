"""The full-stack architecture's data buckets (--audit): product images, user uploads, backups."""

from provisioner.engine.kinds import Free
from provisioner.engine.registry import register

from steps.storage.s3_bucket import PrivateBucket, private_bucket_iam, private_bucket_listing

# purpose -> (step, versioned, lifecycle rules, summary). The e-commerce platform's storage
# classes: images read often at first, then rarely and unpredictably (Intelligent-Tiering moves
# each object itself, no retrieval fee); uploads rarely read after a quarter (Standard-IA);
# backups kept a year, cold after a quarter (Glacier Flexible Retrieval).
NONCURRENT_DAYS = 30
BUCKETS = {
    "images": ("product-images-bucket", True, [{
        "ID": "images-to-intelligent-tiering", "Status": "Enabled", "Filter": {},
        "Transitions": [{"Days": 0, "StorageClass": "INTELLIGENT_TIERING"}],
        "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}],
        f"versioned, Intelligent-Tiering, old versions kept {NONCURRENT_DAYS} days"),
    "uploads": ("user-uploads-bucket", False, [{
        "ID": "uploads-to-infrequent-access", "Status": "Enabled", "Filter": {},
        "Transitions": [{"Days": 90, "StorageClass": "STANDARD_IA"}],
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}],
        "to Infrequent Access after 90 days"),
    "backups": ("backups-bucket", True, [{
        "ID": "backups-to-glacier-then-expire", "Status": "Enabled", "Filter": {},
        "Transitions": [{"Days": 90, "StorageClass": "GLACIER"}],
        "Expiration": {"Days": 365},
        "NoncurrentVersionTransitions": [{"NoncurrentDays": 90, "StorageClass": "GLACIER"}],
        "NoncurrentVersionExpiration": {"NoncurrentDays": 365},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}],
        "versioned, to Glacier after 90 days, deleted after 365"),
}
DATA_BUCKET_ARNS = tuple(f"arn:{{partition}}:s3:::{{stack}}-{p}-*{suffix}" for p in BUCKETS for suffix in ("", "/*"))
DATA_BUCKETS = private_bucket_listing(
    "data_bucket", "S3 buckets (images, uploads, backups)", tuple(BUCKETS),
    Free("storage and requests bill by use (the usage-based notes)"))


@register
class DataBucket(PrivateBucket):
    """One of the three: private, TLS only, its own storage-class lifecycle; `down` empties it
    (every version and delete marker) and deletes it."""

    kind = "data_bucket"
    gone_codes = frozenset({"NoSuchBucket"})
    listing = DATA_BUCKETS
    iam = private_bucket_iam(DATA_BUCKET_ARNS)

    def __init__(self, purpose: str):
        step, self.versioned, self._rules, self.lifecycle_summary = BUCKETS[purpose]
        self.purpose = purpose
        super().__init__(step)

    @classmethod
    def instances(cls, config):
        return [cls(purpose) for purpose in BUCKETS] if config.audit else []

    def lifecycle_rules(self):
        return self._rules

    def outputs(self, resource):
        return {f"{self.purpose}_bucket": resource.id}
