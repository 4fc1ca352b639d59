import base64
import hashlib

from botocore.exceptions import ClientError

from provisioner.engine.errors import ConfigError, DriftConflict
from provisioner.engine.kinds import FREE, Iam, actions, ec2_listing
from provisioner.engine.registry import Ec2Step, register
from provisioner.engine.retries import error_code


def key_pair_name(ctx) -> str:
    """The stack's SSH key pair: the bastion boots with it, and with --bastion the app instances too."""
    return f"{ctx.stack}-ssh"


def _key_blob(public_key: str | None) -> str | None:
    """"ssh-ed25519 AAAA..." without the comment (EC2 may append the key pair's name)."""
    parts = (public_key or "").split()
    return " ".join(parts[:2]) if len(parts) >= 2 else None


def fingerprints(public_key: str) -> set[str]:
    """Every form EC2 shows an imported key's fingerprint in: the MD5 of the public key blob in
    colon hex (RSA), its SHA-256 in base64 with and without padding (ED25519), and the SHA-256
    in colon hex (moto)."""
    blob = base64.b64decode(public_key.split()[1])
    md5 = hashlib.md5(blob).hexdigest()  # noqa: S324 (EC2's format, not a security check)
    sha256 = hashlib.sha256(blob)
    b64 = base64.b64encode(sha256.digest()).decode("ascii")
    return {":".join(md5[i:i + 2] for i in range(0, len(md5), 2)), b64, b64.rstrip("="),
            ":".join(sha256.hexdigest()[i:i + 2] for i in range(0, 64, 2))}


KEY_PAIR_ARN = "arn:{partition}:ec2:{region}:{account}:key-pair/{stack}-*"


@register
class KeyPair(Ec2Step):
    """The stack's SSH key pair, with --bastion. The private key is made locally (ctx.keys, in the
    state directory, mode 0600) and only its public half is imported: the private key is on disk
    before EC2 knows the key pair, so an interruption never leaves a key pair whose private half
    is lost, and no private key ever crosses the network.

    If the local private key is lost or is another one, `up` replaces the key pair under the same
    name. Instances keep the key they booted with: the bastion is replaced with it (it holds
    nothing), the app instances keep the old key until an instance refresh replaces them."""

    kind = "key_pair"
    gone_codes = frozenset({"InvalidKeyPair.NotFound"})
    not_found_codes = frozenset({"InvalidKeyPair.NotFound"})
    aws_type = "AWS::EC2::KeyPair"
    # The bastion's SSH key pair.
    listing = ec2_listing("key_pair", "describe_key_pairs", "KeyPairs", "KeyPairId", label="EC2 key pairs",
                          created_field="CreateTime", price=FREE)
    iam = Iam(create=(actions("ec2:ImportKeyPair", "ec2:CreateTags", on=KEY_PAIR_ARN),),
              read=(actions("ec2:DescribeKeyPairs"),), change=(actions("ec2:CreateTags", on=KEY_PAIR_ARN),),
              delete=(actions("ec2:DeleteKeyPair", on=KEY_PAIR_ARN),))
    describe_operation, result_key = "describe_key_pairs", "KeyPairs"
    id_field, id_filter, tag_resource_type = "KeyPairId", "key-pair-id", "key-pair"

    @classmethod
    def instances(cls, config):
        return [cls()] if config.bastion else []

    def attrs(self, item):
        return {"name": item["KeyName"], "fingerprint": item.get("KeyFingerprint")}

    def _describe(self, ctx, filters):
        # The public key itself, to compare with the local private key's: EC2's fingerprint of
        # an imported key depends on its type (MD5 for RSA, SHA-256 for ED25519).
        return ctx.ec2.describe_key_pairs(Filters=filters, IncludePublicKey=True)["KeyPairs"]

    # -- create ----------------------------------------------------------------------------------
    @staticmethod
    def _keys(ctx):
        if ctx.keys is None:
            raise ConfigError("the bastion's key pair needs a state directory to keep its private key in",
                              hint="run it through the `provision` command, or set ctx.keys to a KeyStore")
        return ctx.keys

    def create(self, ctx):
        keys = self._keys(ctx)
        # A private key already there (a former run stopped between the two moves, or a key pair
        # deleted by hand) is imported again rather than replaced.
        public_key = keys.public_key() if keys.exists() else keys.generate()
        return self._import(ctx, public_key)

    def _import(self, ctx, public_key):
        name = key_pair_name(ctx)
        try:
            created = ctx.ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public_key.encode("ascii"),
                                              TagSpecifications=ctx.tag_specifications("key-pair", self.name))
        except ClientError as e:
            if error_code(e) != "InvalidKeyPair.Duplicate":
                raise
            # Not found by id or by this stack's tags, so not the stack's: never delete it.
            raise DriftConflict(f"a key pair named {name} exists and is not this stack's",
                                hint=f"delete it (`aws ec2 delete-key-pair --key-name {name}`) if it is a "
                                     "leftover, or use another stack name") from None
        return self.to_resource({**created, "PublicKey": public_key})

    # -- update ----------------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        changes = super().update(ctx, resource, apply)
        keys = ctx.keys
        if keys is None:  # library use without a state directory: nothing local to compare
            return changes
        why = self._local_key_problem(keys, resource.raw)
        if why is None:
            return changes
        changes.append(f"replace key pair {resource.attrs['name']}: the private key in {keys.private_key_path} {why}")
        # For the steps that boot with it (the bastion), in this run: their instance has the old key.
        resource.raw["ReplacedKey"] = True
        if apply:
            public_key = keys.generate()   # first, so that the new private half is never lost
            ctx.ec2.delete_key_pair(KeyName=resource.attrs["name"])
            new = self._import(ctx, public_key)
            resource.id, resource.attrs = new.id, new.attrs
            resource.raw = {**new.raw, "ReplacedKey": True}
        return changes

    @staticmethod
    def _local_key_problem(keys, item) -> str | None:
        if not keys.exists():
            return "is missing"
        try:
            local = keys.public_key()
        except ConfigError:
            return "cannot be read"
        if item.get("PublicKey"):
            return None if _key_blob(item["PublicKey"]) == _key_blob(local) else "does not match"
        return None if item.get("KeyFingerprint") in fingerprints(local) else "does not match"

    # -- delete ----------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        # By name, which is unique in a region and was read from the key pair found: moto ignores
        # KeyPairId (and would delete nothing). Deleting a missing key pair is a success in EC2.
        ctx.ec2.delete_key_pair(KeyName=resource.attrs["name"])
        if ctx.keys is not None:
            ctx.keys.remove()   # the private key and the bastion's remembered host keys

    def outputs(self, resource):
        return {"key_pair_name": resource.attrs.get("name")}

    def describe(self, resource):
        return f"{resource.attrs.get('name')} ({resource.raw.get('KeyType', 'ed25519')})"
