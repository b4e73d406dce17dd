"""
Minting RA-TLS certificates the way Gramine 1.8 and later write them.

C{ra_tls_attest.c} makes a fresh EC P-384 key and a self-signed X.509 v3
certificate (subject and issuer C{CN=RATLS,O=GramineDevelopers,C=US},
serial 1, valid 2001-01-01 to 2030-12-31, ecdsa-with-SHA256) with basic
constraints CA:FALSE, a subject key identifier, an authority key
identifier naming it, and two quotes:

  - the legacy extension, under Gramine's mis-encoded OID (whose content
    bytes are C{06 09 2A 86 48 86 F8 4D 8A 39 06}, read back as
    C{0.6.9.42.840.113741.1337.6}), holding a quote whose report data is
    SHA-256 of the SubjectPublicKeyInfo DER followed by 32 zero bytes;
  - the TCG DICE tagged-evidence extension C{2.23.133.5.4.9}: CBOR tag
    60000 around C{[quote, claims]}, where the claims are the map
    C{{"pubkey-hash": bstr([1, bstr SHA-256(SPKI DER)])}} and the second
    quote's report data is SHA-256 of the claims followed by 32 zero
    bytes.

Unlike Gramine up to 1.5 (mbedTLS before 3.5), the signature algorithm
carries no NULL parameters, as with Gramine 1.8's mbedTLS 3.6.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
)
from cryptography.x509.oid import NameOID

from attestd._evidence import (
    CBOR_TAG_INTEL_QUOTE,
    OID_DICE_TAGGED_EVIDENCE,
    OID_LEGACY_GRAMINE,
)
from attestd.errors import ConfigurationError

#: Gramine's default validity (C{RA_TLS_CERT_TIMESTAMP_NOT_BEFORE} and
#: C{..._NOT_AFTER} unset).
GRAMINE_NOT_BEFORE = datetime.datetime(
    2001, 1, 1, tzinfo=datetime.timezone.utc
)
GRAMINE_NOT_AFTER = datetime.datetime(
    2030, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc
)

#: IANA Named Information hash algorithm identifier of SHA-256.
_NAMED_INFO_SHA256 = 1

#: A function that returns a quote for 64 bytes of report data.
QuoteFunction = Callable[[bytes], bytes]


def ratls_subject() -> x509.Name:
    """
    Gramine's RA-TLS subject and issuer, C{CN=RATLS,O=GramineDevelopers,
    C=US}, in Gramine's attribute order.

    @return: The name.
    """
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "RATLS"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "GramineDevelopers"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def dice_claims(spki_der: bytes) -> bytes:
    """
    The serialised DICE claims map Gramine writes: only C{pubkey-hash},
    SHA-256 of the SubjectPublicKeyInfo DER.

    @param spki_der: The certificate key's SubjectPublicKeyInfo DER.
    @return: The CBOR bytes (51 for SHA-256).
    """
    entry = cbor2.dumps(
        [_NAMED_INFO_SHA256, hashlib.sha256(spki_der).digest()]
    )
    return bytes(cbor2.dumps({"pubkey-hash": entry}))


def mint_ratls_certificate(
    quote_fn: QuoteFunction,
    key: ec.EllipticCurvePrivateKey | None = None,
    *,
    legacy: bool = True,
    dice: bool = True,
    not_before: datetime.datetime = GRAMINE_NOT_BEFORE,
    not_after: datetime.datetime = GRAMINE_NOT_AFTER,
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """
    Make an RA-TLS certificate as Gramine 1.8 or later does.

    @param quote_fn: Called with 64 bytes of report data, once per quote
        (legacy first, then DICE); returns the quote bytes.
    @param key: The certificate key; a fresh P-384 key if C{None}.
    @param legacy: Whether to add the legacy quote extension.
    @param dice: Whether to add the TCG DICE tagged-evidence extension.
    @param not_before: Start of validity (Gramine's default if omitted).
    @param not_after: End of validity (Gramine's default if omitted).
    @return: The certificate DER and its private key.
    @raise ConfigurationError: If neither extension is asked for.
    """
    if not (legacy or dice):
        msg = "an RA-TLS certificate needs at least one quote extension"
        raise ConfigurationError(msg)
    if key is None:
        key = ec.generate_private_key(ec.SECP384R1())
    public_key = key.public_key()
    spki_der = public_key.public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    spki_hash = hashlib.sha256(spki_der).digest()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    subject = ratls_subject()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=False
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(
                key_identifier=ski.digest,
                authority_cert_issuer=None,
                authority_cert_serial_number=None,
            ),
            critical=False,
        )
    )
    if legacy:
        quote = quote_fn(spki_hash + bytes(32))
        builder = builder.add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(OID_LEGACY_GRAMINE), quote
            ),
            critical=False,
        )
    if dice:
        claims = dice_claims(spki_der)
        quote = quote_fn(hashlib.sha256(claims).digest() + bytes(32))
        evidence = cbor2.dumps(
            cbor2.CBORTag(CBOR_TAG_INTEL_QUOTE, [quote, claims])
        )
        builder = builder.add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(OID_DICE_TAGGED_EVIDENCE), evidence
            ),
            critical=False,
        )
    certificate = builder.sign(key, hashes.SHA256())
    return certificate.public_bytes(Encoding.DER), key
