"""The cache's AUTH token, kept in Secrets Manager: made here, read by the cache's create and by
the instances (through their role), and never written anywhere else."""
import secrets

from provisioner.account.pricing import HOURS_PER_MONTH, price_of
from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import Iam, Listing, PriceKey, actions
from provisioner.engine.registry import Step, created, register
from provisioner.engine.retries import error_code, lookup

from steps.storage.s3_bucket import partition

SECRET_PREFIX = "provision/"
SECRET_ARN = "arn:{partition}:secretsmanager:{region}:{account}:secret:provision/{stack}/*"
# ElastiCache takes 16-128 printable characters without @, " or /: token_urlsafe's alphabet is
# letters, digits, - and _, and 48 random bytes make 64 characters.
TOKEN_BYTES = 48


def secret_name(ctx) -> str:
    return f"{SECRET_PREFIX}{ctx.stack}/cache-auth-token"


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def cache_policy_statements(ctx) -> list[dict]:
    """What the instance role needs to reach the cache: the AUTH token, read from this stack's
    secret alone (its ARN ends in a random suffix AWS adds, hence the pattern before it exists)."""
    secret = ctx.dep("cache-auth-token")
    arn = secret.id if secret is not None else (
        f"arn:{partition(ctx.region)}:secretsmanager:{ctx.region}:{ctx.account or '*'}:secret:"
        f"{secret_name(ctx)}-??????")
    return [{"Sid": "ReadCacheAuthToken", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
             "Resource": arn}]


SECRET_MONTH = PriceKey("secret_month", "Secrets Manager secret", "month",
                        # $0.40 per secret-month in every commercial region, until a refresh reads it.
                        lambda products, region, types: _secret_price(products, region), default=0.40)


def _secret_price(products, region):
    return price_of(products("AWSSecretsManager", regionCode=region), "AWSSecretsManager-Secrets")


def secret_charges(item, prices, region):
    if (getattr(item, "detail", None) or {}).get("deleted"):
        return [], []
    return [("Secrets Manager secret", 1, "secret", prices["secret_month"] / HOURS_PER_MONTH)], []


def _key(ctx) -> dict:
    from steps.security.kms_key import stack_key_arn

    key = stack_key_arn(ctx)
    return {"KmsKeyId": key} if key else {}


@register
class CacheAuthToken(Step):
    """A secret the tool makes, so `down` deletes it at once (ForceDeleteWithoutRecovery): with the
    default 7-30 days of recovery it would keep its name (and its bill) after the stack is gone."""

    kind = "secret"
    serves_app = True
    aws_type = "AWS::SecretsManager::Secret"
    gone_codes = frozenset({"ResourceNotFoundException"})
    listing = Listing("secret", "secretsmanager", "list_secrets", "SecretList", "ARN", label="Secrets Manager secrets",
                      created_field="CreatedDate", gone=lambda i: bool(i.get("DeletedDate")),
                      detail=lambda i: {"deleted": bool(i.get("DeletedDate"))},
                      candidate=lambda ctx, i: i.get("Name", "").startswith(SECRET_PREFIX),
                      price=secret_charges, price_keys=(SECRET_MONTH,))
    iam = Iam(create=(actions("secretsmanager:CreateSecret", "secretsmanager:TagResource",
                              "secretsmanager:RestoreSecret", on=SECRET_ARN),),
              read=(actions("secretsmanager:ListSecrets"),
                    actions("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", on=SECRET_ARN)),
              change=(actions("secretsmanager:TagResource", on=SECRET_ARN),),
              delete=(actions("secretsmanager:DeleteSecret", on=SECRET_ARN),))

    def __init__(self, audit: bool = False):
        # --audit: the secret is encrypted with the stack's key, not aws/secretsmanager.
        super().__init__("cache-auth-token", depends_on=(created("kms-key"),) if audit else ())

    @classmethod
    def instances(cls, config):
        return [cls(config.audit)] if config.cache != "none" else []

    def _describe(self, ctx, secret_id):
        return lookup(ctx.client("secretsmanager").describe_secret, SecretId=secret_id, gone=self.gone_codes)

    def find_all(self, ctx, known_id):
        for secret_id in dict.fromkeys(n for n in (known_id, secret_name(ctx)) if n):
            secret = self._describe(ctx, secret_id)
            # Scheduled for deletion: not live (create restores it if it is ours).
            if secret is None or secret.get("DeletedDate"):
                continue
            if secret_id == known_id:
                ctx.claim(self.name, secret["ARN"], secret.get("Tags", []), "secret")
            # The name is the stack's own: with the stack's tag it is ours, its step tag maybe
            # removed (`up` puts it back).
            if ctx.is_ours(secret.get("Tags", []), self.name):
                return [self._resource(secret)]
        return []

    def check_name(self, ctx, known_id):
        secret = self._describe(ctx, secret_name(ctx))
        if secret is not None and not ctx.is_ours(secret.get("Tags", []), self.name):
            raise self._taken(ctx, secret)

    @staticmethod
    def _taken(ctx, secret):
        state = " (scheduled for deletion)" if secret.get("DeletedDate") else ""
        return ConfigError(f"a secret named {secret_name(ctx)} exists{state} but is not this stack's",
                           hint="delete it (with --force-delete-without-recovery), or use another --stack name")

    @staticmethod
    def _resource(secret):
        # The ARN only: the token itself is never in state, outputs or logs.
        return Resource(id=secret["ARN"], attrs={"arn": secret["ARN"], "name": secret["Name"]},
                        raw={k: v for k, v in secret.items() if k != "ResponseMetadata"})

    def create(self, ctx):
        from botocore.exceptions import ClientError

        sm = ctx.client("secretsmanager")
        name = secret_name(ctx)
        try:
            sm.create_secret(Name=name, Description=f"{ctx.stack}: the cache's AUTH token",
                             SecretString=new_token(), Tags=ctx.tags(self.name), **_key(ctx))
        except ClientError as e:
            # A secret deleted with a recovery window keeps its name until the window ends; AWS
            # refuses a new one of that name ("already scheduled for deletion"): ours is restored
            # and kept, token and all.
            if error_code(e) not in ("InvalidRequestException", "ResourceExistsException"):
                raise
            secret = self._describe(ctx, name)
            if secret is None:
                raise
            if not ctx.is_ours(secret.get("Tags", []), self.name):
                raise self._taken(ctx, secret) from None
            if not secret.get("DeletedDate"):
                raise
            sm.restore_secret(SecretId=secret["ARN"])
        return self._resource(ctx.retry("eventual-consistency", sm.describe_secret, SecretId=name))

    def update(self, ctx, resource, apply):
        sm = ctx.client("secretsmanager")
        return ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: sm.tag_resource(
            SecretId=resource.id, Tags=missing))

    def delete(self, ctx, resource):
        ctx.client("secretsmanager").delete_secret(SecretId=resource.id, ForceDeleteWithoutRecovery=True)

    def app_environment(self, ctx, resource):
        return {"REDIS_AUTH_SECRET_ARN": resource.id} if resource is not None else {}

    def app_statements(self, ctx, resource):
        return cache_policy_statements(ctx)

    def outputs(self, resource):
        return {"cache_auth_token_secret_arn": resource.id}

    def describe(self, resource):
        return resource.attrs.get("name", "")
