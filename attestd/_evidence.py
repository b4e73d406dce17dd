"""
RA-TLS evidence carried by a Gramine certificate, and its key binding.

Gramine's C{ra_tls_attest} puts an SGX DCAP quote into the self-signed
certificate it makes, in one or both of two extensions:

  - the legacy extension, whose OID Gramine mis-encodes so that it reads
    as C{0.6.9.42.840.113741.1337.6}; the correctly encoded
    C{1.2.840.113741.1337.6} is accepted too.  Its value is the raw quote,
    whose report data starts with SHA-256 of the certificate's
    SubjectPublicKeyInfo DER;
  - from Gramine 1.8 on, the TCG DICE tagged-evidence extension
    C{2.23.133.5.4.9}: CBOR tag 60000 around C{[quote, claims]}, where the
    quote's report data starts with SHA-256 of the claims and the claims
    map holds a C{pubkey-hash} entry over the SubjectPublicKeyInfo DER.

When the DICE extension is present it is the evidence, and it must hold;
there is no fallback to the legacy extension (as in Gramine's verifier).
Unlike Gramine, the C{pubkey-hash} claim is required, as the CCC
interoperable RA-TLS specification says it must be.

Certificates are read with a plain ASN.1 decoder because those made by
Gramine up to 1.5 carry explicit NULL parameters in their ECDSA signature
algorithm, which current pyca/cryptography refuses to load.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import re
from typing import Literal

import cbor2
from attrs import frozen
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, univ
from pyasn1_modules import rfc5280

from attestd._quote import Quote
from attestd.errors import (
    BindingError,
    CertificateParseError,
    EvidenceParseError,
    MissingEvidenceError,
    QuoteParseError,
)

#: Gramine's legacy quote extension, as its mis-encoded OID decodes.
OID_LEGACY_GRAMINE = "0.6.9.42.840.113741.1337.6"
#: The same extension with the OID encoded as intended.
OID_LEGACY_INTEL = "1.2.840.113741.1337.6"
#: TCG DICE conceptual message wrapper ("tagged evidence").
OID_DICE_TAGGED_EVIDENCE = "2.23.133.5.4.9"

#: CBOR tag registered for an Intel TEE quote.
CBOR_TAG_INTEL_QUOTE = 60000

#: Hash algorithms of the IANA Named Information registry that a DICE
#: C{pubkey-hash} claim may use.
_NAMED_INFO_HASHES = {1: "sha256", 7: "sha384", 8: "sha512"}

#: Bound on a certificate file.  Gramine's dual-quote certificates are
#: about 10 KiB.
MAX_CERTIFICATE_SIZE = 256 * 1024

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (TRUSTED CERTIFICATE|CERTIFICATE)-----\s*\n"
    rb"(?P<body>[A-Za-z0-9+/=\s]+?)"
    rb"-----END \1-----"
)

EvidenceKind = Literal["legacy", "dice"]


def certificate_der(data: bytes) -> bytes:
    """
    The DER of a certificate given in any form C{gramine-ratls} writes.

    Accepted: DER (C{gramine-ratls -D}); PEM with the C{TRUSTED
    CERTIFICATE} label and a trailing NUL byte (C{-P}, the default); and
    ordinary C{CERTIFICATE} PEM.  Only the first PEM block is used.

    @param data: The file's bytes.
    @return: The certificate's DER encoding, exactly one TLV.
    @raise CertificateParseError: If no certificate can be read.
    """
    if len(data) > MAX_CERTIFICATE_SIZE:
        msg = (
            f"certificate file is {len(data)} bytes, more than "
            f"{MAX_CERTIFICATE_SIZE}"
        )
        raise CertificateParseError(msg)
    if not data.strip(b"\0 \t\r\n"):
        msg = "certificate file is empty"
        raise CertificateParseError(msg)
    if data[:1] == b"\x30":
        der = data
        trusted = False
    else:
        match = _PEM_BLOCK.search(data)
        if match is None:
            msg = "no DER certificate and no PEM certificate block found"
            raise CertificateParseError(msg)
        body = b"".join(match.group("body").split())
        try:
            der = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as e:
            msg = f"PEM certificate block is not valid base64: {e}"
            raise CertificateParseError(msg) from e
        trusted = match.group(1) == b"TRUSTED CERTIFICATE"
    rest = _tlv_rest(der)
    if rest and not trusted:
        msg = f"{len(rest)} trailing bytes after the certificate"
        raise CertificateParseError(msg)
    # OpenSSL's TRUSTED CERTIFICATE may append trust settings after the
    # certificate; they are not ours to honour, so they are dropped.
    return der[: len(der) - len(rest)]


def _tlv_rest(der: bytes) -> bytes:
    """
    What follows the first DER TLV of C{der}.

    @raise CertificateParseError: If C{der} does not start with a
        complete, definite-length SEQUENCE.
    """
    if len(der) < 2 or der[0] != 0x30:
        msg = "certificate DER does not start with a SEQUENCE"
        raise CertificateParseError(msg)
    first = der[1]
    if first < 0x80:
        header, length = 2, first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            msg = "certificate DER has a bad length encoding"
            raise CertificateParseError(msg)
        header = 2 + count
        length = int.from_bytes(der[2:header], "big")
    end = header + length
    if end > len(der):
        msg = (
            f"certificate is truncated: {end} bytes announced, "
            f"{len(der)} present"
        )
        raise CertificateParseError(msg)
    return der[end:]


def _skim(spec: type[univ.Sequence], skipped: set[str]) -> univ.Sequence:
    """
    A copy of the ASN.1 SEQUENCE C{spec} whose C{skipped} components are
    kept as undecoded DER (ANY).

    Names, validity and algorithm identifiers mean nothing to RA-TLS (the
    certificate is self-signed and its identity is the quote), and fully
    decoding them is most of the cost of reading a certificate.
    """
    components = [
        namedtype.NamedType(nt.name, univ.Any()) if nt.name in skipped else nt
        for nt in spec.componentType.namedTypes
    ]

    class Skimmed(univ.Sequence):
        componentType = namedtype.NamedTypes(*components)

    return Skimmed()


_TBS_SPEC = _skim(
    rfc5280.TBSCertificate, {"signature", "issuer", "validity", "subject"}
)


class _SkimmedCertificate(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("tbsCertificate", _TBS_SPEC),
        namedtype.NamedType("signatureAlgorithm", univ.Any()),
        namedtype.NamedType("signature", univ.BitString()),
    )


@frozen
class CertificateInfo:
    """
    The parts of an X.509 certificate that RA-TLS needs.

    @ivar der: The certificate's DER.
    @ivar spki_der: Its SubjectPublicKeyInfo DER, byte for byte as it
        appears in the certificate.
    @ivar extensions: Each extension's OID (dotted) mapped to its value
        (the contents of the extnValue OCTET STRING).
    """

    der: bytes
    spki_der: bytes
    extensions: dict[str, bytes]

    @property
    def sha256(self) -> bytes:
        """
        SHA-256 of the certificate DER (its fingerprint).
        """
        return hashlib.sha256(self.der).digest()

    @classmethod
    def from_der(cls, der: bytes) -> CertificateInfo:
        """
        Decode a certificate.

        @param der: Exactly one DER certificate.
        @return: Its RA-TLS-relevant parts.
        @raise CertificateParseError: If it is not a well-formed X.509
            certificate, or lists an extension twice.
        """
        if len(der) > MAX_CERTIFICATE_SIZE:
            msg = f"certificate is {len(der)} bytes, too large"
            raise CertificateParseError(msg)
        try:
            cert, rest = der_decoder.decode(
                der, asn1Spec=_SkimmedCertificate()
            )
            tbs = cert["tbsCertificate"]
            spki = der_encoder.encode(tbs["subjectPublicKeyInfo"])
            extensions: dict[str, bytes] = {}
            if tbs["extensions"].isValue:
                for ext in tbs["extensions"]:
                    oid = str(ext["extnID"])
                    if oid in extensions:
                        msg = f"extension {oid} appears twice"
                        raise CertificateParseError(msg)
                    extensions[oid] = bytes(ext["extnValue"])
        except (PyAsn1Error, TypeError, ValueError, OverflowError) as e:
            # pyasn1 raises OverflowError for a length that does not fit
            # in a machine word (e.g. an 8-byte long-form length).
            if isinstance(e, CertificateParseError):
                raise
            msg = f"not a well-formed X.509 certificate: {e}"
            raise CertificateParseError(msg) from e
        if rest:
            msg = f"{len(rest)} trailing bytes after the certificate"
            raise CertificateParseError(msg)
        # A re-encoding that is not found verbatim means the input was
        # BER, not DER: the hash would then not be the one the enclave
        # computed, so refuse rather than guess.
        if spki not in der:
            msg = "certificate is not DER-encoded (SubjectPublicKeyInfo)"
            raise CertificateParseError(msg)
        return cls(der=bytes(der), spki_der=spki, extensions=extensions)


@frozen
class RATLSEvidence:
    """
    The SGX quote of an RA-TLS certificate and what binds it to the key.

    @ivar kind: C{"dice"} when the TCG DICE extension is present,
        otherwise C{"legacy"}.
    @ivar quote: The quote that carries the evidence.
    @ivar certificate: The certificate it came from.
    @ivar claims: For DICE, the serialised claims map; otherwise C{None}.
    @ivar pubkey_hash_alg: For DICE, the hash algorithm named by the
        C{pubkey-hash} claim; for legacy, C{"sha256"}.
    @ivar pubkey_hash: The key hash the evidence claims: the DICE
        C{pubkey-hash} value, or the legacy report data's first 32 bytes.
    """

    kind: EvidenceKind
    quote: Quote
    certificate: CertificateInfo
    claims: bytes | None
    pubkey_hash_alg: str
    pubkey_hash: bytes

    @classmethod
    def from_certificate(cls, der: bytes) -> RATLSEvidence:
        """
        Extract the evidence from a certificate, without checking it.

        @param der: The certificate DER (see L{certificate_der} for files).
        @return: The evidence.
        @raise CertificateParseError: If the certificate is malformed.
        @raise EvidenceParseError: If an evidence extension is malformed.
        @raise MissingEvidenceError: If there is no evidence extension.
        """
        info = CertificateInfo.from_der(der)
        dice = info.extensions.get(OID_DICE_TAGGED_EVIDENCE)
        if dice is not None:
            quote_bytes, claims = _parse_dice(dice)
            quote = _parse_quote(quote_bytes, "DICE evidence")
            alg, digest = _parse_claims(claims)
            return cls(
                kind="dice",
                quote=quote,
                certificate=info,
                claims=claims,
                pubkey_hash_alg=alg,
                pubkey_hash=digest,
            )
        legacy = [
            info.extensions[oid]
            for oid in (OID_LEGACY_GRAMINE, OID_LEGACY_INTEL)
            if oid in info.extensions
        ]
        if len(legacy) > 1:
            msg = "certificate carries both spellings of the quote extension"
            raise EvidenceParseError(msg)
        if not legacy:
            msg = (
                "certificate carries no RA-TLS evidence (neither the SGX "
                "quote extension nor TCG DICE tagged evidence)"
            )
            raise MissingEvidenceError(msg)
        quote = _parse_quote(legacy[0], "quote extension")
        return cls(
            kind="legacy",
            quote=quote,
            certificate=info,
            claims=None,
            pubkey_hash_alg="sha256",
            pubkey_hash=quote.report.report_data[:32],
        )

    def check_binding(self) -> None:
        """
        Check that the quote binds the certificate's public key.

        Legacy: report_data[0:32] == SHA-256(SPKI DER).  DICE:
        report_data[0:32] == SHA-256(claims), and the C{pubkey-hash} claim
        equals the hash of the SPKI DER.  As in Gramine, report_data[32:64]
        is not compared.

        @raise BindingError: If the binding does not hold.
        """
        spki_hash = hashlib.new(
            self.pubkey_hash_alg, self.certificate.spki_der
        ).digest()
        report_data = self.quote.report.report_data
        if self.kind == "dice":
            assert self.claims is not None
            claims_hash = hashlib.sha256(self.claims).digest()
            if not hmac.compare_digest(claims_hash, report_data[:32]):
                msg = (
                    "DICE quote's report data does not match the hash "
                    "of its claims"
                )
                raise BindingError(msg)
            if not hmac.compare_digest(spki_hash, self.pubkey_hash):
                msg = (
                    "DICE pubkey-hash claim does not match the "
                    "certificate's public key"
                )
                raise BindingError(msg)
            return
        if not hmac.compare_digest(spki_hash, report_data[:32]):
            msg = (
                "quote's report data does not match the certificate's "
                "public key (SHA-256 of its SubjectPublicKeyInfo)"
            )
            raise BindingError(msg)


def _parse_quote(data: bytes, where: str) -> Quote:
    try:
        return Quote.from_bytes(data)
    except QuoteParseError as e:
        msg = f"{where}: {e}"
        raise EvidenceParseError(msg) from e


def _cbor_loads(data: bytes, what: str) -> object:
    """
    Decode one CBOR item that must span all of C{data}.
    """
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as e:
        msg = f"{what} is not valid CBOR: {e}"
        raise EvidenceParseError(msg) from e
    if stream.tell() != len(data):
        msg = f"{len(data) - stream.tell()} trailing bytes after the {what}"
        raise EvidenceParseError(msg)
    return item


def _parse_dice(value: bytes) -> tuple[bytes, bytes]:
    """
    Split DICE tagged evidence into the quote and the serialised claims.
    """
    item = _cbor_loads(value, "DICE tagged evidence")
    if not isinstance(item, cbor2.CBORTag) or item.tag != (
        CBOR_TAG_INTEL_QUOTE
    ):
        msg = f"DICE tagged evidence is not CBOR tag {CBOR_TAG_INTEL_QUOTE}"
        raise EvidenceParseError(msg)
    body = item.value
    if (
        not isinstance(body, (list, tuple))
        or len(body) != 2
        or not all(isinstance(x, bytes) for x in body)
    ):
        msg = "DICE tagged evidence is not an array [quote, claims]"
        raise EvidenceParseError(msg)
    quote, claims = body
    if not claims:
        msg = "DICE tagged evidence has empty claims"
        raise EvidenceParseError(msg)
    return bytes(quote), bytes(claims)


def _declared_map_size(data: bytes) -> int | None:
    """
    The number of pairs a CBOR map announces in its first byte(s) (RFC
    8949, section 3), or C{None} if C{data} does not start with a
    definite-length map.
    """
    if not data or data[0] >> 5 != 5:
        return None
    info = data[0] & 0x1F
    if info < 24:
        return info
    if 24 <= info <= 27:
        size = 1 << (info - 24)
        if len(data) < 1 + size:
            return None
        return int.from_bytes(data[1 : 1 + size], "big")
    return None


def _parse_claims(claims: bytes) -> tuple[str, bytes]:
    """
    Read the C{pubkey-hash} claim of a DICE claims map.

    @return: The hash algorithm name and the hash.
    """
    item = _cbor_loads(claims, "DICE claims")
    if not isinstance(item, dict) or not item:
        msg = "DICE claims are not a non-empty map"
        raise EvidenceParseError(msg)
    if not all(isinstance(k, str) for k in item):
        msg = "DICE claims map has a key that is not a text string"
        raise EvidenceParseError(msg)
    if _declared_map_size(claims) != len(item):
        # The decoder keeps the last of repeated keys; a claims map that
        # says one thing twice is refused rather than read either way.
        msg = "DICE claims map repeats a key or has an indefinite length"
        raise EvidenceParseError(msg)
    entry = item.get("pubkey-hash")
    if entry is None:
        msg = "DICE claims lack the required pubkey-hash claim"
        raise EvidenceParseError(msg)
    if not isinstance(entry, bytes):
        msg = "DICE pubkey-hash claim is not a byte string"
        raise EvidenceParseError(msg)
    hash_entry = _cbor_loads(entry, "DICE pubkey-hash entry")
    if (
        not isinstance(hash_entry, (list, tuple))
        or len(hash_entry) != 2
        or not isinstance(hash_entry[0], int)
        or isinstance(hash_entry[0], bool)
        or not isinstance(hash_entry[1], bytes)
    ):
        msg = "DICE pubkey-hash entry is not [algorithm, hash]"
        raise EvidenceParseError(msg)
    alg_id, digest = hash_entry
    alg = _NAMED_INFO_HASHES.get(alg_id)
    if alg is None:
        msg = f"DICE pubkey-hash uses unsupported hash algorithm {alg_id}"
        raise EvidenceParseError(msg)
    if len(digest) != hashlib.new(alg).digest_size:
        msg = f"DICE pubkey-hash has {len(digest)} bytes, wrong for {alg}"
        raise EvidenceParseError(msg)
    return alg, bytes(digest)
