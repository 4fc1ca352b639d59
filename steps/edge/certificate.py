import datetime as dt

from provisioner.engine.context import TAG_STACK, Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import Free, Iam, ItemTags, Listing, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import lookup

# A year, like a public certificate; `up` re-imports into the same ARN once fewer than
# RENEW_BEFORE days are left, so the listener never serves an expired one.
VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
# Clocks of the instance, the browser and ACM differ: a certificate valid from "now" can be
# "not yet valid" to one of them.
CLOCK_SKEW = dt.timedelta(minutes=5)
# ListCertificates returns RSA_2048 (and 1024) certificates unless told otherwise; we ask for
# the types a stack's certificate can have, so a key type never hides it from `down`.
KEY_TYPES = ["RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1"]


def self_signed(domain: str, now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for `domain`, made in memory. The key is returned to
    be imported into ACM at once and never kept: not in state, attrs, logs or files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = now or dt.datetime.now(dt.timezone.utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        # Browsers ignore the Common Name and match the SAN only.
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _utc(value) -> dt.datetime | None:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


# ACM's whole lists of both (botocore's model), so that no status or key type hides one from the
# inventory (by default ACM lists RSA_1024 and RSA_2048 only).
LISTED_STATUSES = ("PENDING_VALIDATION", "ISSUED", "INACTIVE", "EXPIRED", "VALIDATION_TIMED_OUT", "REVOKED", "FAILED")
LISTED_KEY_TYPES = ("RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1")


@register
class Certificate(Step):
    """The HTTPS listener's certificate: self-signed and imported into ACM, or the one given with --certificate-arn."""

    kind = "certificate"
    gone_codes = frozenset({"ResourceNotFoundException"})
    # ELBv2's word for a certificate imported into ACM moments ago, to CreateListener.
    not_found_codes = frozenset({"CertificateNotFound"})
    aws_type = "AWS::CertificateManager::Certificate"
    # Only an imported certificate can be the tool's own.
    listing = Listing("certificate", "acm", "list_certificates", "CertificateSummaryList", "CertificateArn",
                      label="ACM certificates",
                      params={"CertificateStatuses": list(LISTED_STATUSES), "Includes": {"keyTypes": list(LISTED_KEY_TYPES)}},
                      tags=ItemTags("list_tags_for_certificate", "CertificateArn", "Tags"), created_field="CreatedAt",
                      candidate=lambda ctx, i: i.get("Type", "IMPORTED") == "IMPORTED",
                      price=Free("an imported certificate costs nothing"))
    iam = Iam(create=(actions("acm:ImportCertificate", "acm:AddTagsToCertificate"),),
              read=(actions("acm:ListCertificates", "acm:DescribeCertificate", "acm:ListTagsForCertificate"),),
              change=(actions("acm:AddTagsToCertificate"),),
              delete=(actions("acm:DeleteCertificate"),))

    def __init__(self):
        super().__init__("certificate", depends_on=())

    # -- find --------------------------------------------------------------------------------
    def find_all(self, ctx, known_id):
        given = ctx.config.certificate_arn
        if given:
            found = self._describe(ctx, given)
            return [found] if found is not None else []
        if known_id:
            found = self._describe(ctx, known_id)
            if found is not None and not self._was_given(ctx, found):
                ctx.claim(self.name, found.id, found.raw["Tags"], "certificate")
                return [found]
        acm = ctx.client("acm")
        matches = []
        for page in acm.get_paginator("list_certificates").paginate(Includes={"keyTypes": KEY_TYPES}):
            for summary in page["CertificateSummaryList"]:
                # Only imported certificates can be the stack's; skip the rest without a call.
                if summary.get("Type", "IMPORTED") != "IMPORTED":
                    continue
                arn = summary["CertificateArn"]
                tags = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
                if ctx.owns(tags, self.name):
                    found = self._describe(ctx, arn, tags)
                    if found is not None:
                        matches.append(found)
        return matches

    def _was_given(self, ctx, found: Resource) -> bool:
        """The state names the certificate the user gave (--certificate-arn) before: not the
        stack's, never adopted or deleted, and no reason to stop; the stack's own is looked for
        by its tags. A certificate with any stack's tags is judged by them, whatever the state says."""
        known = ctx.resources.get(self.name)
        untagged = not any(t.get("Key") == TAG_STACK for t in found.raw.get("Tags", []))
        return untagged and known is not None and known.id == found.id and known.attrs.get("self_signed") is False

    def _describe(self, ctx, arn, tags=None) -> Resource | None:
        acm = ctx.client("acm")
        described = lookup(acm.describe_certificate, CertificateArn=arn, gone=self.gone_codes)
        if tags is None and described is not None:
            listed = lookup(acm.list_tags_for_certificate, CertificateArn=arn, gone=self.gone_codes)
            described, tags = (described, listed.get("Tags", [])) if listed is not None else (None, None)
        return self._resource(ctx, described["Certificate"], tags) if described is not None else None

    def _resource(self, ctx, certificate, tags) -> Resource:
        not_after = _utc(certificate.get("NotAfter"))
        return Resource(
            id=certificate["CertificateArn"],
            attrs={"arn": certificate["CertificateArn"], "domain": certificate.get("DomainName"),
                   "self_signed": ctx.owns(tags, self.name) and certificate.get("Type") == "IMPORTED",
                   "not_after": not_after.isoformat() if not_after else None},
            raw={**certificate, "Tags": tags})

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        given = ctx.config.certificate_arn
        if given:
            raise ConfigError(f"certificate {given} (--certificate-arn) was not found in ACM in {ctx.region}",
                              hint="check the ARN and the region; an ALB uses a certificate of its own region")
        domain = ctx.config.domain_for(ctx.stack)
        arn = self._import(ctx, domain, tags=ctx.tags(self.name))
        found = self._describe(ctx, arn)
        if found is None:  # ACM has not propagated the import yet: what we know of it
            found = Resource(id=arn, attrs={"arn": arn, "domain": domain, "self_signed": True, "not_after": None})
        return found

    def _import(self, ctx, domain, *, tags=None, arn=None) -> str:
        certificate, key = self_signed(domain)
        params = {"Certificate": certificate, "PrivateKey": key}
        if arn:
            # Re-import into the same ARN: the listeners using it keep working. AWS refuses
            # tags on a re-import; the certificate keeps its own.
            params["CertificateArn"] = arn
        else:
            params["Tags"] = tags
        try:
            return ctx.client("acm").import_certificate(**params)["CertificateArn"]
        finally:
            del key, params

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        if not ctx.owns(resource.raw.get("Tags", []), self.name):
            return []  # the user's certificate (--certificate-arn): used as it is, never changed
        changes = []
        changes += ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: ctx.client(
            "acm").add_tags_to_certificate(CertificateArn=resource.id, Tags=missing))
        domain = ctx.config.domain_for(ctx.stack)
        not_after = _utc(resource.raw.get("NotAfter"))
        reasons = []
        if resource.attrs.get("domain") != domain:
            reasons.append(f"domain {resource.attrs.get('domain')} -> {domain}")
        if not_after is not None and not_after - dt.datetime.now(dt.timezone.utc) < RENEW_BEFORE:
            reasons.append(f"expires {not_after:%Y-%m-%d}")
        if reasons:
            if apply:
                self._import(ctx, domain, arn=resource.id)
                fresh = self._describe(ctx, resource.id)
                if fresh is not None:
                    resource.attrs.update(fresh.attrs)
                    resource.raw = fresh.raw
            changes.append(f"re-import a new self-signed certificate into the same ARN ({'; '.join(reasons)})")
        return changes

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        acm = ctx.client("acm")
        tags = acm.list_tags_for_certificate(CertificateArn=resource.id).get("Tags", [])
        if not ctx.owns(tags, self.name):
            return  # the user's own certificate (--certificate-arn): never the stack's to delete
        # ACM refuses while a listener uses it, and keeps counting a just-deleted listener for
        # a while (ResourceInUseException).
        ctx.retry("dependency", acm.delete_certificate, CertificateArn=resource.id)

    def outputs(self, resource):
        return {"certificate_arn": resource.id, "domain": resource.attrs.get("domain")}

    def describe(self, resource):
        kind = "self-signed" if resource.attrs.get("self_signed") else "given"
        return f"{kind}, {resource.attrs.get('domain')}, valid until {resource.attrs.get('not_after')}"
