"""
X.509 building blocks of the simulated Intel SGX provisioning
infrastructure: names, certificates, CRLs, raw ECDSA signatures and the
PCK certificate's SGX extension.

Everything mirrors what Intel's Provisioning Certification Service
issues (checked on the PCK chains of the real quotes in C{tests/vectors}):
P-256 keys, ecdsa-with-SHA256, the authority key identifier first, a
critical key usage and basic constraints, CRLs with a CRL number and an
authority key identifier, and the SGX extension
C{1.2.840.113741.1.13.1} laid out as in Intel's "SGX PCK Certificate and
Certificate Revocation List Profile Specification" (section 1.3.5).  What
differs is the names, which say "SIMULATED", and the absence of CRL
distribution points, so nothing ever points at Intel.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
)
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import namedtype, univ

#: The SGX extension of a PCK certificate.
OID_SGX_EXTENSIONS = "1.2.840.113741.1.13.1"

#: The organisation of every simulated certificate: it says what it is.
SIMULATED_ORGANIZATION = "attestd (simulated, not Intel)"
ROOT_CA_CN = "attestd SIMULATED SGX Root CA"
PLATFORM_CA_CN = "attestd SIMULATED SGX PCK Platform CA"
PROCESSOR_CA_CN = "attestd SIMULATED SGX PCK Processor CA"
PCK_CN = "attestd SIMULATED SGX PCK Certificate"
TCB_SIGNING_CN = "attestd SIMULATED SGX TCB Signing"

#: SGX Type values of the PCK extension (ENUMERATED).
SGX_TYPE_STANDARD = 0
SGX_TYPE_SCALABLE = 1
SGX_TYPE_SCALABLE_WITH_INTEGRITY = 2


def simulated_name(common_name: str) -> x509.Name:
    """
    A certificate name in Intel's attribute order (CN first), with the
    simulated organisation.

    @param common_name: The CN.
    @return: The name.
    """
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(
                NameOID.ORGANIZATION_NAME, SIMULATED_ORGANIZATION
            ),
        ]
    )


def new_key() -> ec.EllipticCurvePrivateKey:
    """
    A fresh P-256 key, the curve of every key in Intel's chain.

    @return: The private key.
    """
    return ec.generate_private_key(ec.SECP256R1())


def raw_public_key(key: ec.EllipticCurvePublicKey) -> bytes:
    """
    A P-256 public key as DCAP carries it: X || Y, 64 bytes.

    @param key: The public key.
    @return: The 64 raw bytes.
    """
    point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return point[1:]


def sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """
    ECDSA-P256/SHA-256 signature in DCAP's raw form: r || s, each 32
    bytes big-endian.

    @param key: The signing key.
    @param data: The signed bytes.
    @return: The 64-byte signature.
    """
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def build_certificate(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    ca: bool,
    path_length: int | None = None,
    extra: Iterable[x509.ExtensionType] = (),
    serial: int | None = None,
) -> x509.Certificate:
    """
    Issue a certificate with the extensions of Intel's SGX PKI profile.

    CA certificates get key usage keyCertSign and cRLSign; end-entity
    certificates (PCK, TCB signing) digitalSignature and nonRepudiation.

    @param subject: The subject name.
    @param public_key: The subject's key.
    @param issuer: The issuer's certificate, or C{None} for a self-signed
        root.
    @param issuer_key: The key that signs.
    @param not_before: Start of validity.
    @param not_after: End of validity.
    @param ca: Whether the subject is a CA.
    @param path_length: The CA's path length constraint.
    @param extra: Extensions added after the standard ones (non-critical).
    @param serial: The serial number; random (159 bits) if C{None}.
    @return: The certificate.
    """
    if issuer is None:
        issuer_name = subject
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(
            public_key
        )
    else:
        issuer_name = issuer.subject
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()
        )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(
            x509.random_serial_number() if serial is None else serial
        )
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(authority, critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.BasicConstraints(
                ca=ca, path_length=path_length if ca else None
            ),
            critical=True,
        )
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def build_crl(
    *,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    this_update: datetime.datetime,
    next_update: datetime.datetime,
    revoked_serials: Sequence[int] = (),
    crl_number: int = 1,
) -> bytes:
    """
    Issue a CRL as Intel's PCS does: CRL number and authority key
    identifier extensions, each revoked entry with reason keyCompromise.

    @param issuer: The issuing CA's certificate.
    @param issuer_key: Its key.
    @param this_update: thisUpdate.
    @param next_update: nextUpdate.
    @param revoked_serials: Serial numbers to list as revoked (revoked at
        C{this_update}).
    @param crl_number: The CRL number.
    @return: The CRL's DER.
    """
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()
            ),
            critical=False,
        )
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(this_update)
            .add_extension(
                x509.CRLReason(x509.ReasonFlags.key_compromise),
                critical=False,
            )
            .build()
        )
    crl = builder.sign(issuer_key, hashes.SHA256())
    return crl.public_bytes(Encoding.DER)


class _Entry(univ.Sequence):
    """
    One entry of the SGX extension: C{SEQUENCE { OID, value }}.
    """

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("id", univ.ObjectIdentifier()),
        namedtype.NamedType("value", univ.Any()),
    )


class _Entries(univ.SequenceOf):
    """
    A C{SEQUENCE OF} entries: the extension itself, the TCB and the
    configuration.
    """

    componentType = _Entry()


def _entries(items: Sequence[tuple[str, object]]) -> _Entries:
    entries = _Entries()
    for position, (oid, value) in enumerate(items):
        entry = _Entry()
        entry["id"] = univ.ObjectIdentifier(oid)
        entry["value"] = univ.Any(der_encoder.encode(value))
        entries.setComponentByPosition(position, entry)
    return entries


def encode_sgx_extension(
    *,
    ppid: bytes,
    components: Sequence[int],
    pcesvn: int,
    cpusvn: bytes,
    pce_id: bytes,
    fmspc: bytes,
    sgx_type: int,
    platform_instance_id: bytes | None = None,
    configuration: tuple[bool, bool, bool] | None = None,
) -> bytes:
    """
    Encode the value of the PCK certificate's SGX extension
    (C{1.2.840.113741.1.13.1}) as Intel lays it out.

    Sub-OIDs: C{.1} PPID (OCTET STRING, 16), C{.2} TCB (C{.2.1}-C{.2.16}
    the component SVNs, C{.2.17} PCESVN, as INTEGERs, C{.2.18} CPUSVN as
    an OCTET STRING of 16), C{.3} PCE-ID (OCTET STRING, 2), C{.4} FMSPC
    (OCTET STRING, 6), C{.5} SGX Type (ENUMERATED), and for certificates
    of the Platform CA C{.6} PlatformInstanceID (OCTET STRING, 16) and
    C{.7} configuration (C{.7.1} dynamicPlatform, C{.7.2} cachedKeys,
    C{.7.3} SMTEnabled, BOOLEANs).

    @param ppid: 16-byte PPID.
    @param components: The 16 TCB component SVNs.
    @param pcesvn: The PCE SVN.
    @param cpusvn: 16-byte CPUSVN.
    @param pce_id: 2-byte PCE-ID.
    @param fmspc: 6-byte FMSPC.
    @param sgx_type: 0 Standard, 1 Scalable, 2 Scalable with integrity.
    @param platform_instance_id: 16 bytes, or C{None} to leave out (as
        the Processor CA does).
    @param configuration: The three configuration flags, or C{None} to
        leave them out.
    @return: The DER of the extension value.
    """
    base = OID_SGX_EXTENSIONS
    tcb: list[tuple[str, object]] = [
        (f"{base}.2.{n}", univ.Integer(svn))
        for n, svn in enumerate(components, start=1)
    ]
    tcb.append((f"{base}.2.17", univ.Integer(pcesvn)))
    tcb.append((f"{base}.2.18", univ.OctetString(cpusvn)))
    items: list[tuple[str, object]] = [
        (f"{base}.1", univ.OctetString(ppid)),
        (f"{base}.2", _entries(tcb)),
        (f"{base}.3", univ.OctetString(pce_id)),
        (f"{base}.4", univ.OctetString(fmspc)),
        (f"{base}.5", univ.Enumerated(sgx_type)),
    ]
    if platform_instance_id is not None:
        items.append((f"{base}.6", univ.OctetString(platform_instance_id)))
    if configuration is not None:
        items.append(
            (
                f"{base}.7",
                _entries(
                    [
                        (f"{base}.7.{n}", univ.Boolean(flag))
                        for n, flag in enumerate(configuration, start=1)
                    ]
                ),
            )
        )
    return bytes(der_encoder.encode(_entries(items)))
