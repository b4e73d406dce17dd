"""
Intel SGX DCAP quote verification (quote v3, ECDSA-P256), without I/O.

L{verify_quote} checks a quote against its collateral at a given time and
returns the result as data (L{QuoteVerdict}): the merged TCB status, the
advisory IDs, the measurements and which collateral was used.  Every
failure raises a typed error from L{attestd.errors}; malformed input
raises only L{attestd.errors.ParseError} subclasses.  The verifier never
reads the clock, and it does not judge the enclave (measurements, debug
flag, acceptable TCB statuses): that is the policy's job.

The steps follow Intel's Quote Verification Library as summarised in the
project reference (section 3.3), in the order QVL runs them: signatures
are checked before the data they cover is interpreted.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import importlib.resources
from collections.abc import Sequence
from typing import Any

from attrs import Factory, define, frozen
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
)

from attestd._collateral import (
    MAX_BUNDLE_SIZE,
    Collateral,
    CollateralParseError,
)
from attestd._pck import PCKExtension
from attestd._quote import INTEL_QE_VENDOR_ID, Quote
from attestd._tcb import (
    QEIdentity,
    QELevel,
    TCBInfo,
    TCBLevel,
    TcbStatus,
)
from attestd._x509util import X509_PARSE_ERRORS
from attestd.errors import (
    CertificateChainError,
    CertificateParseError,
    CertificateValidityError,
    CollateralExpiredError,
    CollateralMismatchError,
    CollateralNotYetValidError,
    ConfigurationError,
    CRLError,
    Mismatch,
    QEIdentityMismatchError,
    QEIdentitySignatureError,
    QEReportBindingError,
    QEReportSignatureError,
    QuoteSignatureError,
    QuoteVerificationError,
    RevokedError,
    SimulatedEvidenceError,
    TCBInfoSignatureError,
    TCBLevelNotFoundError,
    UnsupportedQuoteError,
    UntrustedRootError,
)

__all__ = [
    "INTEL_ROOT_SHA256",
    "CollateralUse",
    "QuoteVerdict",
    "TcbStatus",
    "TrustRoot",
    "merge_statuses",
    "verify_quote",
]

#: SHA-256 of the DER of the Intel SGX Root CA certificate (project
#: reference, section 4).
INTEL_ROOT_SHA256 = bytes.fromhex(
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
)
_INTEL_ROOT_FILE = "Intel_SGX_Provisioning_Certification_RootCA.der"

#: Bound on a PEM issuer chain (real ones are about 1.7 KiB).
MAX_CHAIN_SIZE = 64 * 1024
#: Bound on the number of certificates in any chain (real ones have 2
#: or 3).
MAX_CHAIN_CERTIFICATES = 4
#: The PCK chain in a quote: leaf, PCK Platform or Processor CA, root.
PCK_CHAIN_LENGTH = 3


class _Names:
    """
    The collateral piece names used in L{CollateralUse} records.
    """

    TCB_INFO = "tcb_info"
    QE_IDENTITY = "qe_identity"
    PCK_CRL = "pck_crl"
    ROOT_CA_CRL = "root_ca_crl"


def _iso(value: datetime.datetime) -> str:
    """
    An aware datetime as ISO 8601 UTC text ending in C{Z}.
    """
    return value.astimezone(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _load_der_certificate(data: bytes, what: str) -> x509.Certificate:
    """
    Load one DER certificate and make sure its extensions and key parse.

    @param data: The DER.
    @param what: What it is, for messages.
    @return: The certificate.
    @raise CertificateParseError: If it is malformed.
    """
    try:
        cert = x509.load_der_x509_certificate(bytes(data))
        _force_parse(cert)
    except X509_PARSE_ERRORS as e:
        msg = f"{what} is not a well-formed certificate: {e}"
        raise CertificateParseError(msg) from e
    return cert


def _force_parse(cert: x509.Certificate) -> None:
    """
    Parse the lazily decoded parts of a certificate now, so that later
    accesses cannot raise.

    @raise ValueError: If a part is malformed.
    @raise UnsupportedAlgorithm: If the key or signature algorithm is
        unknown.
    """
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()
    cert.extensions  # noqa: B018 (parsed for its side effect)
    cert.public_key()
    cert.signature_hash_algorithm  # noqa: B018 (same)


def _load_pem_chain(text: str | bytes, what: str) -> list[x509.Certificate]:
    """
    Load a bounded chain of PEM certificates, leaf first.

    Parsing is memoised by content: the same collateral chains and PCK
    chains come back for every quote of a platform.  Only parsing is
    shared; every signature, validity and revocation check still runs on
    each verification.

    @param text: The concatenated PEM blocks.
    @param what: The chain's name, for messages.
    @return: The certificates, in order.
    @raise CertificateParseError: If it is malformed or too large.
    @raise CertificateChainError: If it holds too many certificates.
    """
    if len(text) > MAX_CHAIN_SIZE:
        msg = f"{what} is larger than {MAX_CHAIN_SIZE} bytes"
        raise CertificateParseError(msg)
    try:
        data = text.encode("ascii") if isinstance(text, str) else text
    except UnicodeEncodeError as e:
        msg = f"{what} is not a well-formed PEM certificate chain: {e}"
        raise CertificateParseError(msg) from e
    return list(_parse_pem_chain(bytes(data), what))


@functools.lru_cache(maxsize=128)
def _parse_pem_chain(data: bytes, what: str) -> tuple[x509.Certificate, ...]:
    """
    The work of L{_load_pem_chain}; failures are raised, not cached.
    """
    try:
        certs = x509.load_pem_x509_certificates(data)
        for cert in certs:
            _force_parse(cert)
    except X509_PARSE_ERRORS as e:
        msg = f"{what} is not a well-formed PEM certificate chain: {e}"
        raise CertificateParseError(msg) from e
    if len(certs) > MAX_CHAIN_CERTIFICATES:
        msg = f"{what} holds {len(certs)} certificates, too many"
        raise CertificateChainError(msg)
    return tuple(certs)


def _subject(cert: x509.Certificate) -> str:
    """
    The RFC 4514 text of a certificate's subject.
    """
    return cert.subject.rfc4514_string()


def _is_simulated(cert: x509.Certificate) -> bool:
    """
    Whether a certificate's subject says it is simulated.
    """
    return "SIMULATED" in _subject(cert).upper()


@frozen
class TrustRoot:
    """
    A pinned root CA: every chain (PCK chain in the quote, issuer chains
    of the collateral) must end at exactly this certificate.

    @ivar certificate_der: The root certificate, DER.
    @ivar simulated: Whether its subject says "SIMULATED", i.e. it is the
        root of a simulated provisioning infrastructure, not Intel's.
    """

    certificate_der: bytes
    simulated: bool

    @classmethod
    @functools.cache
    def intel(cls) -> TrustRoot:
        """
        The Intel SGX Root CA shipped with attestd, checked against its
        pinned SHA-256 fingerprint (project reference, section 4).

        @return: The Intel root.
        @raise ConfigurationError: If the shipped file is not the Intel
            root.
        """
        der = (
            importlib.resources.files("attestd")
            .joinpath("data")
            .joinpath(_INTEL_ROOT_FILE)
            .read_bytes()
        )
        if not hmac.compare_digest(
            hashlib.sha256(der).digest(), INTEL_ROOT_SHA256
        ):
            msg = (
                f"attestd/data/{_INTEL_ROOT_FILE} is not the Intel SGX "
                "Root CA (SHA-256 fingerprint mismatch)"
            )
            raise ConfigurationError(msg)
        return cls.from_der(der)

    @classmethod
    def from_der(cls, data: bytes) -> TrustRoot:
        """
        A trust root from a DER certificate.

        @param data: The root certificate, DER.
        @return: The trust root.
        @raise CertificateParseError: If C{data} is not a certificate.
        @raise ConfigurationError: If it is not a self-signed CA
            certificate.
        """
        cert = _load_der_certificate(data, "trust root")
        try:
            cert.verify_directly_issued_by(cert)
        except (ValueError, TypeError, InvalidSignature) as e:
            msg = f"trust root {_subject(cert)} is not self-signed: {e}"
            raise ConfigurationError(msg) from e
        try:
            _check_ca(cert, 0, "trust root")
        except CertificateChainError as e:
            raise ConfigurationError(str(e)) from e
        return cls(
            certificate_der=cert.public_bytes(Encoding.DER),
            simulated=_is_simulated(cert),
        )

    @classmethod
    def from_pem(cls, data: bytes) -> TrustRoot:
        """
        A trust root from a PEM file holding exactly one certificate.

        @param data: The PEM text.
        @return: The trust root.
        @raise CertificateParseError: If it is not one PEM certificate.
        @raise ConfigurationError: If it is not a self-signed CA
            certificate.
        """
        certs = _load_pem_chain(data, "trust root")
        if len(certs) != 1:
            msg = f"trust root PEM holds {len(certs)} certificates, not 1"
            raise CertificateParseError(msg)
        return cls.from_der(certs[0].public_bytes(Encoding.DER))

    @property
    def sha256(self) -> bytes:
        """
        SHA-256 of the root certificate's DER (its fingerprint).
        """
        return hashlib.sha256(self.certificate_der).digest()

    def certificate(self) -> x509.Certificate:
        """
        The root certificate.
        """
        return x509.load_der_x509_certificate(self.certificate_der)


@frozen
class CollateralUse:
    """
    Audit record of one piece of collateral a verdict relied on.

    @ivar name: C{"tcb_info"}, C{"qe_identity"}, C{"pck_crl"} or
        C{"root_ca_crl"}.
    @ivar issuer: RFC 4514 subject of the certificate that signed it.
    @ivar issue_date: Its C{issueDate} (TCB Info, QE Identity) or
        C{thisUpdate} (CRL).
    @ivar next_update: Its C{nextUpdate}.
    @ivar sha256: Hex SHA-256 of the exact bytes used: the signed JSON
        text (UTF-8), or the CRL's DER.
    """

    name: str
    issuer: str
    issue_date: datetime.datetime
    next_update: datetime.datetime
    sha256: str

    def to_json_dict(self) -> dict[str, str]:
        """
        The record as JSON-ready data.
        """
        return {
            "name": self.name,
            "issuer": self.issuer,
            "issue_date": _iso(self.issue_date),
            "next_update": _iso(self.next_update),
            "sha256": self.sha256,
        }


@frozen
class QuoteVerdict:
    """
    The result of verifying a quote: what the platform and enclave are,
    as far as Intel's signed collateral says.  It is not a policy
    decision: an OutOfDate or Revoked status, or a debug enclave, are
    reported here and refused (or not) by the policy.

    @ivar quote: The verified quote; its C{report} holds the enclave's
        measurements.
    @ivar status: The merged platform and Quoting Enclave status.
    @ivar advisory_ids: The sorted union of both levels' advisories.
    @ivar platform_status: The status of the platform's TCB level.
    @ivar qe_status: The status of the Quoting Enclave's TCB level.
    @ivar tcb_date: The C{tcbDate} of the platform's TCB level.
    @ivar fmspc: The platform's 6-byte FMSPC (from the PCK certificate).
    @ivar pce_id: The 2-byte PCE-ID (from the PCK certificate).
    @ivar collateral_expires: The earliest C{nextUpdate} of the
        collateral used, or C{notAfter} of a certificate used, whichever
        comes first: the verdict cannot be relied on after it.
    @ivar collateral_expired: Whether some collateral was already past
        its C{nextUpdate}; only ever C{True} when the caller allowed it.
    @ivar collateral: Which collateral was used, in the order used.
    @ivar simulated: Whether the trust root was a simulated one.
    @ivar tcb_evaluation_data_number: The TCB Info's TCB recovery
        counter.
    """

    quote: Quote
    status: TcbStatus
    advisory_ids: tuple[str, ...]
    platform_status: TcbStatus
    qe_status: TcbStatus
    tcb_date: str
    fmspc: bytes
    pce_id: bytes
    collateral_expires: datetime.datetime
    collateral_expired: bool
    collateral: tuple[CollateralUse, ...]
    simulated: bool = False
    tcb_evaluation_data_number: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        """
        The verdict as JSON-ready data: measurements in hex, statuses,
        advisories and the collateral audit records.
        """
        report = self.quote.report
        return {
            "status": self.status.value,
            "platform_status": self.platform_status.value,
            "qe_status": self.qe_status.value,
            "advisory_ids": list(self.advisory_ids),
            "tcb_date": self.tcb_date,
            "tcb_evaluation_data_number": self.tcb_evaluation_data_number,
            "fmspc": self.fmspc.hex(),
            "pce_id": self.pce_id.hex(),
            "measurements": {
                "mrenclave": report.mrenclave.hex(),
                "mrsigner": report.mrsigner.hex(),
                "isv_prod_id": report.isv_prod_id,
                "isv_svn": report.isv_svn,
                "attributes": report.attributes.hex(),
                "flags": f"{report.flags:#x}",
                "xfrm": f"{report.xfrm:#x}",
                "misc_select": f"{report.misc_select:#x}",
                "debug": report.debug,
                "report_data": report.report_data.hex(),
            },
            "quote_sha256": hashlib.sha256(self.quote.raw).hexdigest(),
            "simulated": self.simulated,
            "collateral_expires": _iso(self.collateral_expires),
            "collateral_expired": self.collateral_expired,
            "collateral": [use.to_json_dict() for use in self.collateral],
        }


#: The expiry of a verdict before any validity period was seen.
_FAR_FUTURE = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)


@define
class _Clock:
    """
    The verification time, and what the time checks found so far.

    @ivar now: The verification time.
    @ivar allow_expired: Whether collateral past its next update is
        accepted (and flagged).
    @ivar expired: Whether some collateral was past its next update.
    @ivar expires: The earliest next update or notAfter seen.
    @ivar uses: The collateral records, in the order checked.
    """

    now: datetime.datetime
    allow_expired: bool
    expired: bool = False
    expires: datetime.datetime = _FAR_FUTURE
    uses: list[CollateralUse] = Factory(list)

    def _expiry(self, when: datetime.datetime) -> None:
        """
        Note a time after which the verdict may not be relied on.

        @param when: A nextUpdate or notAfter.
        """
        self.expires = min(self.expires, when)

    def certificate(self, cert: x509.Certificate, what: str) -> None:
        """
        Check a certificate's validity period and note its notAfter.

        @param cert: The certificate.
        @param what: The chain's name, for messages.
        @raise CertificateValidityError: If C{now} is outside it.
        """
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
        if not not_before <= self.now <= not_after:
            msg = (
                f"{what}: certificate {_subject(cert)} is valid from "
                f"{_iso(not_before)} to {_iso(not_after)}, not at "
                f"{_iso(self.now)}"
            )
            raise CertificateValidityError(msg)
        self._expiry(not_after)

    def collateral(self, use: CollateralUse) -> None:
        """
        Check a piece of collateral's window, C{issue <= now <= next},
        and record it (the upper bound is inclusive, as in dcap-qvl).

        @param use: The piece's record.
        @raise CollateralNotYetValidError: If it was issued after C{now}.
        @raise CollateralExpiredError: If it is past its next update and
            that is not allowed.
        """
        if self.now < use.issue_date:
            msg = (
                f"{use.name} was issued at {_iso(use.issue_date)}, after "
                f"the verification time {_iso(self.now)}"
            )
            raise CollateralNotYetValidError(msg)
        if self.now > use.next_update:
            if not self.allow_expired:
                msg = (
                    f"{use.name} expired at {_iso(use.next_update)} "
                    f"(its next update), before the verification time "
                    f"{_iso(self.now)}"
                )
                raise CollateralExpiredError(msg)
            self.expired = True
        self._expiry(use.next_update)
        self.uses.append(use)


@frozen
class _PCKChain:
    """
    The verified PCK chain and the root CA CRL.

    @ivar leaf: The PCK certificate.
    @ivar ca: The PCK Platform or Processor CA.
    @ivar root: The trusted root it ends at.
    @ivar root_crl: The verified root CA CRL.
    """

    leaf: x509.Certificate
    ca: x509.Certificate
    root: TrustRoot
    root_crl: x509.CertificateRevocationList


def verify_quote(
    quote: bytes | Quote,
    collateral: Collateral,
    *,
    now: datetime.datetime | int | float,
    trust_root: TrustRoot | None = None,
    allow_expired_collateral: bool = False,
) -> QuoteVerdict:
    """
    Verify an SGX DCAP quote (v3, ECDSA-P256) against its collateral.

    The steps (project reference 3.3; Intel QVL order, where signatures
    are checked before the data they cover is read):

      1. Parse the quote: version 3, ECDSA-P256 attestation key, Intel's
         QE vendor id.
      2. PCK chain (certification data type 5): leaf, PCK Platform or
         Processor CA, root; the root must be the trusted root; every
         signature, validity period at C{now}, basic constraints and key
         usage; the root CA CRL (signed by the root, window, CA not
         revoked) and the PCK CRL (issued by that CA, window, leaf not
         revoked); the PCK CRL issuer chain ends at the trusted root.
      3. The PCK leaf's SGX extension: FMSPC, PCE-ID, TCB components,
         PCESVN.
      4. TCB Info: issuer chain to the trusted root, signature over the
         exact served text, SGX v2/v3, FMSPC and PCE-ID match, window,
         the platform's TCB level.
      5. QE report: signature by the PCK leaf key, and its report data
         binding the attestation key and the QE authentication data.
      6. QE Identity: issuer chain, signature, id QE version 2, window,
         MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES under their
         masks, the QE's TCB level.
      7. Quote signature by the attestation key over header and body.
      8. Merge the platform and QE statuses; union the advisories.

    @param quote: The quote, raw or parsed.
    @param collateral: TCB Info, QE Identity, CRLs and issuer chains for
        the quote's platform.
    @param now: The verification time: an aware datetime, or Unix
        seconds.
    @param trust_root: The pinned root; the Intel SGX Root CA if
        C{None}.
    @param allow_expired_collateral: Accept collateral past its next
        update (the verdict then says C{collateral_expired}).  Collateral
        issued after C{now} is never accepted.
    @return: The verdict.
    @raise attestd.errors.ParseError: If the quote or the collateral is
        malformed (a L{attestd.errors.QuoteParseError},
        L{attestd.errors.CertificateParseError},
        L{attestd.errors.PCKExtensionParseError} or
        L{CollateralParseError}).
    @raise attestd.errors.QuoteVerificationError: If a step fails; the
        subclass names the step and the message says what failed.
    @raise TypeError: If C{now} is a naive datetime or not a time.
    """
    clock = _Clock(now=_as_utc(now), allow_expired=allow_expired_collateral)
    root = TrustRoot.intel() if trust_root is None else trust_root
    # Step 1: parse the quote.
    parsed = _parse_quote(quote)
    # Step 2: PCK certificate chain and CRLs.
    chain = _verify_pck_chain(parsed, collateral, root, clock)
    # Step 3: the PCK certificate's SGX extension.
    pck = PCKExtension.from_certificate(chain.leaf)
    # Step 4: TCB Info and the platform's TCB level.
    tcb_info, platform_level = _verify_tcb_info(collateral, pck, chain, clock)
    # Step 5: QE report signature and binding.
    _verify_qe_report(parsed, chain.leaf)
    # Step 6: QE Identity and the Quoting Enclave's TCB level.
    qe_level = _verify_qe_identity(collateral, parsed, chain, clock)
    # Step 7: quote signature.
    _verify_quote_signature(parsed)
    # Step 8: merge.
    return QuoteVerdict(
        quote=parsed,
        status=merge_statuses(platform_level.status, qe_level.status),
        advisory_ids=tuple(
            sorted(
                set(platform_level.advisory_ids) | set(qe_level.advisory_ids)
            )
        ),
        platform_status=platform_level.status,
        qe_status=qe_level.status,
        tcb_date=platform_level.tcb_date,
        fmspc=pck.fmspc,
        pce_id=pck.pce_id,
        collateral_expires=clock.expires,
        collateral_expired=clock.expired,
        collateral=tuple(clock.uses),
        simulated=root.simulated,
        tcb_evaluation_data_number=tcb_info.tcb_evaluation_data_number,
    )


def merge_statuses(platform: TcbStatus, qe: TcbStatus) -> TcbStatus:
    """
    Combine the platform and Quoting Enclave statuses (project reference
    3.3 step 8): Revoked anywhere is Revoked; an OutOfDate QE makes
    UpToDate or SWHardeningNeeded OutOfDate, and ConfigurationNeeded or
    ConfigurationAndSWHardeningNeeded OutOfDateConfigurationNeeded;
    otherwise the platform status stands.

    @param platform: The platform's TCB level status.
    @param qe: The Quoting Enclave's TCB level status.
    @return: The merged status.
    """
    if TcbStatus.REVOKED in (platform, qe):
        return TcbStatus.REVOKED
    if qe is TcbStatus.OUT_OF_DATE:
        if platform in (
            TcbStatus.UP_TO_DATE,
            TcbStatus.SW_HARDENING_NEEDED,
        ):
            return TcbStatus.OUT_OF_DATE
        if platform in (
            TcbStatus.CONFIGURATION_NEEDED,
            TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        ):
            return TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
    return platform


def _as_utc(now: datetime.datetime | float) -> datetime.datetime:
    """
    The verification time as an aware UTC datetime.

    @param now: The time: an aware datetime, or Unix seconds.
    @return: The time in UTC.
    @raise TypeError: If C{now} is a naive datetime or not a time.
    @raise ValueError: If C{now} is out of the datetime range.
    """
    if isinstance(now, datetime.datetime):
        if now.tzinfo is None or now.utcoffset() is None:
            msg = "the verification time must be timezone-aware"
            raise TypeError(msg)
        return now.astimezone(datetime.timezone.utc)
    if isinstance(now, bool) or not isinstance(now, (int, float)):
        msg = (
            "the verification time must be a datetime or Unix seconds, "
            f"not {type(now).__name__}"
        )
        raise TypeError(msg)
    try:
        return datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError) as e:
        msg = f"the verification time {now!r} is out of range"
        raise ValueError(msg) from e


# Step 1.


def _parse_quote(quote: bytes | Quote) -> Quote:
    """
    Parse the quote and check it comes from Intel's Quoting Enclave
    (reference 3.3 step 1; version and key type are checked by
    L{Quote.from_bytes}).

    @param quote: The quote, raw or parsed.
    @return: The parsed quote.
    @raise attestd.errors.QuoteParseError: If it is malformed.
    @raise UnsupportedQuoteError: If it is not a v3 ECDSA-P256 quote of
        Intel's QE.
    """
    parsed = quote if isinstance(quote, Quote) else Quote.from_bytes(quote)
    if parsed.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        msg = (
            f"QE vendor id {parsed.header.qe_vendor_id.hex()} is not "
            "Intel's; only Intel's Quoting Enclave is supported"
        )
        raise UnsupportedQuoteError(msg)
    return parsed


# Step 2.


def _verify_pck_chain(
    quote: Quote, collateral: Collateral, root: TrustRoot, clock: _Clock
) -> _PCKChain:
    """
    Verify the PCK chain carried by the quote, with both CRLs (reference
    3.3 step 2).

    @param quote: The parsed quote.
    @param collateral: The collateral (CRLs, PCK CRL issuer chain).
    @param root: The trusted root.
    @param clock: The verification time and its records.
    @return: The verified chain and root CA CRL.
    @raise UntrustedRootError: If the chain does not end at C{root}.
    @raise CertificateChainError: If a link does not verify.
    @raise CertificateValidityError: If a certificate is not valid now.
    @raise CRLError: If a CRL does not verify.
    @raise RevokedError: If the CA or the leaf is revoked.
    @raise CollateralMismatchError: If the PCK CRL issuer chain is for
        another CA.
    """
    what = "PCK certificate chain"
    # XXX: Only certification data type 5 (the whole PCK chain inside the quote) is verified; quotes with type 4 (leaf only) or PPID data (types 1-3) would need the PCK certificate from PCS and are refused.
    pems = quote.pck_chain_pem()
    if len(pems) != PCK_CHAIN_LENGTH:
        msg = (
            f"{what} holds {len(pems)} certificates; expected leaf, PCK "
            "CA and root"
        )
        raise CertificateChainError(msg)
    leaf, ca, quoted_root = (_load_pem_chain(p, what)[0] for p in pems)
    trusted = root.certificate()
    _check_root(quoted_root, root, what)
    _verify_chain([leaf, ca], trusted, what, clock)
    root_crl = _verify_crl(
        collateral.root_ca_crl, trusted, _Names.ROOT_CA_CRL, clock
    )
    _check_not_revoked(root_crl, ca, "PCK CA certificate")
    crl_chain = _verify_issuer_chain(
        collateral.pck_crl_issuer_chain,
        "pck_crl_issuer_chain",
        root,
        root_crl,
        clock,
        signer_is_ca=True,
    )
    if crl_chain.subject != ca.subject or _spki(crl_chain) != _spki(ca):
        raise CollateralMismatchError(
            [
                Mismatch(
                    "pck_crl_issuer_chain", _subject(ca), _subject(crl_chain)
                )
            ]
        )
    pck_crl = _verify_crl(collateral.pck_crl, ca, _Names.PCK_CRL, clock)
    _check_not_revoked(pck_crl, leaf, "PCK certificate")
    return _PCKChain(leaf=leaf, ca=ca, root=root, root_crl=root_crl)


def _spki(cert: x509.Certificate) -> bytes:
    """
    The DER SubjectPublicKeyInfo of a certificate.
    """
    return cert.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )


def _check_root(cert: x509.Certificate, root: TrustRoot, what: str) -> None:
    """
    Require a chain's last certificate to be exactly the trusted root.

    @param cert: The last certificate of a chain.
    @param root: The trusted root.
    @param what: The chain's name, for messages.
    @raise SimulatedEvidenceError: If it is a simulated root that was not
        given as the trust root.
    @raise UntrustedRootError: If it is any other certificate.
    """
    der = cert.public_bytes(Encoding.DER)
    if der == root.certificate_der:
        return
    fingerprint = hashlib.sha256(der).hexdigest()
    if _is_simulated(cert) and not root.simulated:
        msg = (
            f"{what} ends at the simulated root {_subject(cert)} "
            f"(SHA-256 {fingerprint}): the evidence is simulated, not real "
            "SGX attestation; to verify it anyway, give that simulated "
            "root explicitly as the trust root (--trust-root)"
        )
        raise SimulatedEvidenceError(msg)
    msg = (
        f"{what} ends at {_subject(cert)} (SHA-256 {fingerprint}), not at "
        f"the trusted root (SHA-256 {root.sha256.hex()})"
    )
    raise UntrustedRootError(msg)


def _check_ca(cert: x509.Certificate, cas_below: int, what: str) -> None:
    """
    Require a certificate to be allowed to issue certificates, with room
    for C{cas_below} CA certificates under it.

    @param cert: The issuing certificate.
    @param cas_below: How many CA certificates it has under it.
    @param what: The chain's name, for messages.
    @raise CertificateChainError: If its basic constraints or key usage
        say otherwise.
    """
    try:
        constraints = cert.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        msg = f"{what}: {_subject(cert)} issues certificates but is no CA"
        raise CertificateChainError(msg)
    if (
        constraints.path_length is not None
        and cas_below > constraints.path_length
    ):
        msg = (
            f"{what}: {_subject(cert)} has path length "
            f"{constraints.path_length}, but {cas_below} CAs follow"
        )
        raise CertificateChainError(msg)
    usage = _key_usage(cert)
    if usage is not None and not usage.key_cert_sign:
        msg = f"{what}: {_subject(cert)} may not sign certificates"
        raise CertificateChainError(msg)


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    """
    A certificate's key usage, if it has one.
    """
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _check_end_entity(cert: x509.Certificate, what: str) -> None:
    """
    Require a leaf certificate to be a signing end entity.

    @param cert: The leaf.
    @param what: The chain's name, for messages.
    @raise CertificateChainError: If it is a CA or may not sign.
    """
    try:
        constraints = cert.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        msg = f"{what}: leaf {_subject(cert)} is a CA certificate"
        raise CertificateChainError(msg)
    usage = _key_usage(cert)
    if usage is not None and not usage.digital_signature:
        msg = f"{what}: leaf {_subject(cert)} may not sign"
        raise CertificateChainError(msg)


def _verify_link(
    cert: x509.Certificate, issuer: x509.Certificate, what: str
) -> None:
    """
    Verify that C{issuer} issued C{cert}: issuer name and signature.

    @param cert: The issued certificate.
    @param issuer: Its claimed issuer.
    @param what: The chain's name, for messages.
    @raise CertificateChainError: If it did not.
    """
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature as e:
        msg = (
            f"{what}: the signature of {_subject(cert)} by "
            f"{_subject(issuer)} does not verify"
        )
        raise CertificateChainError(msg) from e
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        msg = (
            f"{what}: {_subject(cert)} is not issued by "
            f"{_subject(issuer)}: {e}"
        )
        raise CertificateChainError(msg) from e


def _verify_chain(
    certs: Sequence[x509.Certificate],
    root: x509.Certificate,
    what: str,
    clock: _Clock,
) -> None:
    """
    Verify a chain C{certs} (end-entity leaf first, without the root) up
    to the trusted C{root}: issuer names, signatures, CA constraints and
    the validity of every certificate, the root included.

    @param certs: The chain, leaf first, without the root.
    @param root: The trusted root certificate.
    @param what: The chain's name, for messages.
    @param clock: The verification time and its records.
    @raise CertificateChainError: If a link does not hold.
    @raise CertificateValidityError: If a certificate is not valid now.
    """
    issuers = [*certs[1:], root]
    for depth, (cert, issuer) in enumerate(zip(certs, issuers, strict=True)):
        _verify_link(cert, issuer, what)
        _check_ca(issuer, depth, what)
    _check_end_entity(certs[0], what)
    for cert in [*certs, root]:
        clock.certificate(cert, what)


def _verify_issuer_chain(
    text: str,
    name: str,
    root: TrustRoot,
    root_crl: x509.CertificateRevocationList,
    clock: _Clock,
    *,
    signer_is_ca: bool,
) -> x509.Certificate:
    """
    Verify a collateral issuer chain, C{signer, root} as Intel serves
    it, and return the signer, which the root CA CRL must not list.

    @param text: The PEM chain.
    @param name: Its collateral field name, for messages.
    @param root: The trusted root.
    @param root_crl: The verified root CA CRL.
    @param clock: The verification time and its records.
    @param signer_is_ca: Whether the signer must be a CA (the PCK CRL
        issuer) or an end entity (the TCB Signing certificate).
    @return: The signer's certificate.
    @raise CertificateParseError: If the chain is malformed.
    @raise UntrustedRootError: If it does not end at the trusted root.
    @raise CertificateChainError: If the link or a constraint does not
        hold.
    @raise CertificateValidityError: If a certificate is not valid now.
    @raise RevokedError: If the signer is revoked.
    """
    certs = _load_pem_chain(text, name)
    if len(certs) != 2:
        msg = (
            f"{name} holds {len(certs)} certificates; expected the signer "
            "and the root"
        )
        raise CertificateChainError(msg)
    signer, last = certs
    _check_root(last, root, name)
    trusted = root.certificate()
    _verify_link(signer, trusted, name)
    if signer_is_ca:
        _check_ca(trusted, 1, name)
        _check_ca(signer, 0, name)
    else:
        _check_ca(trusted, 0, name)
        _check_end_entity(signer, name)
    clock.certificate(signer, name)
    clock.certificate(trusted, name)
    _check_not_revoked(root_crl, signer, f"{name} certificate")
    return signer


def _verify_crl(
    der: bytes, issuer: x509.Certificate, name: str, clock: _Clock
) -> x509.CertificateRevocationList:
    """
    Verify a CRL: its issuer name and signature, and its window.

    @param der: The CRL, DER.
    @param issuer: The certificate that must have issued it.
    @param name: Its collateral field name.
    @param clock: The verification time and its records.
    @return: The verified CRL.
    @raise CollateralParseError: If it is malformed.
    @raise CRLError: If it is not issued by C{issuer} or has no next
        update.
    @raise CollateralNotYetValidError: If C{thisUpdate} is after now.
    @raise CollateralExpiredError: If it is past C{nextUpdate}.
    """
    if len(der) > MAX_BUNDLE_SIZE:
        msg = f"{name} is larger than {MAX_BUNDLE_SIZE} bytes"
        raise CollateralParseError(msg)
    try:
        crl = x509.load_der_x509_crl(bytes(der))
        crl.issuer.rfc4514_string()
        crl.extensions  # noqa: B018 (parsed for its side effect)
        crl.signature_hash_algorithm  # noqa: B018 (same)
    except X509_PARSE_ERRORS as e:
        msg = f"{name} is not a well-formed DER CRL: {e}"
        raise CollateralParseError(msg) from e
    if crl.issuer != issuer.subject:
        msg = (
            f"{name} is issued by {crl.issuer.rfc4514_string()}, "
            f"expected {_subject(issuer)}"
        )
        raise CRLError(msg)
    usage = _key_usage(issuer)
    if usage is not None and not usage.crl_sign:
        msg = f"{name}: {_subject(issuer)} may not sign CRLs"
        raise CRLError(msg)
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        msg = f"{name}: issuer key is not an EC key, as Intel's are"
        raise CRLError(msg)
    try:
        valid = crl.is_signature_valid(key)
    except (TypeError, ValueError, UnsupportedAlgorithm) as e:
        msg = f"{name}: signature cannot be checked: {e}"
        raise CRLError(msg) from e
    if not valid:
        msg = f"{name}: signature by {_subject(issuer)} does not verify"
        raise CRLError(msg)
    next_update = crl.next_update_utc
    if next_update is None:
        msg = f"{name} has no next update"
        raise CRLError(msg)
    clock.collateral(
        CollateralUse(
            name=name,
            issuer=_subject(issuer),
            issue_date=crl.last_update_utc,
            next_update=next_update,
            sha256=hashlib.sha256(der).hexdigest(),
        )
    )
    return crl


def _check_not_revoked(
    crl: x509.CertificateRevocationList, cert: x509.Certificate, what: str
) -> None:
    """
    Require a certificate to be absent from its issuer's CRL.

    @param crl: The issuer's verified CRL.
    @param cert: The certificate.
    @param what: What it is, for messages.
    @raise CollateralParseError: If the CRL's entries are malformed.
    @raise RevokedError: If the certificate is listed.
    """
    try:
        entry = crl.get_revoked_certificate_by_serial_number(
            cert.serial_number
        )
    except X509_PARSE_ERRORS as e:
        msg = f"CRL entries are malformed: {e}"
        raise CollateralParseError(msg) from e
    if entry is not None:
        msg = (
            f"{what} {_subject(cert)} (serial {cert.serial_number:x}) was "
            f"revoked at {_iso(entry.revocation_date_utc)}"
        )
        raise RevokedError(msg)


# Steps 4-7: raw signatures.


def _verify_raw_signature(key: object, signature: bytes, data: bytes) -> bool:
    """
    Check an ECDSA-P256/SHA-256 signature in DCAP's raw C{r || s} form.

    @param key: The public key; anything but a P-256 key fails.
    @param signature: 64 bytes, r then s, big-endian.
    @param data: The signed bytes.
    @return: Whether it verifies.
    """
    if (
        not isinstance(key, ec.EllipticCurvePublicKey)
        or not isinstance(key.curve, ec.SECP256R1)
        or len(signature) != 64
    ):
        return False
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:], "big"),
    )
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _signed_text(text: str, name: str) -> bytes:
    """
    The exact bytes of a signed JSON document, as served (UTF-8).

    @param text: The document as text.
    @param name: Its collateral field name.
    @return: Its UTF-8 bytes.
    @raise CollateralParseError: If the text cannot be encoded.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        msg = f"{name} is not valid Unicode text: {e}"
        raise CollateralParseError(msg) from e


# Step 4.


def _verify_signed_json(
    issuer_chain: str,
    text: str,
    signature: bytes,
    *,
    name: str,
    error: type[QuoteVerificationError],
    chain: _PCKChain,
    clock: _Clock,
) -> tuple[x509.Certificate, bytes]:
    """
    Check the signature over a TCB Info or QE Identity object: its issuer
    chain (the TCB Signing certificate, then the root) and the raw
    ECDSA-P256 signature over the exact bytes that were served.

    @param issuer_chain: The PEM issuer chain from the collateral.
    @param text: The signed JSON object, exactly as served.
    @param signature: The 64-byte r || s signature.
    @param name: The piece's name (C{tcb_info} or C{qe_identity}).
    @param error: The error to raise when the signature does not verify.
    @param chain: The verified PCK chain (its root and root CRL).
    @param clock: The verification time and its records.
    @return: The signer's certificate and the signed bytes.
    """
    signer = _verify_issuer_chain(
        issuer_chain,
        f"{name}_issuer_chain",
        chain.root,
        chain.root_crl,
        clock,
        signer_is_ca=False,
    )
    data = _signed_text(text, name)
    if not _verify_raw_signature(signer.public_key(), signature, data):
        msg = f"{name} signature by {_subject(signer)} does not verify"
        raise error(msg)
    return signer, data


def _verify_tcb_info(
    collateral: Collateral,
    pck: PCKExtension,
    chain: _PCKChain,
    clock: _Clock,
) -> tuple[TCBInfo, TCBLevel]:
    """
    Verify the TCB Info and select the platform's level (reference 3.3
    step 4).

    @param collateral: The collateral.
    @param pck: The PCK certificate's SGX extension.
    @param chain: The verified PCK chain.
    @param clock: The verification time and its records.
    @return: The TCB Info and the platform's level.
    @raise TCBInfoSignatureError: If the signature does not verify.
    @raise CollateralMismatchError: If it is for another FMSPC or PCE-ID,
        or not SGX TCB Info v2/v3.
    @raise CollateralNotYetValidError: If it was issued after now.
    @raise CollateralExpiredError: If it is past its next update.
    @raise TCBLevelNotFoundError: If the platform is below every level.
    """
    name = _Names.TCB_INFO
    signer, data = _verify_signed_json(
        collateral.tcb_info_issuer_chain,
        collateral.tcb_info,
        collateral.tcb_info_signature,
        name=name,
        error=TCBInfoSignatureError,
        chain=chain,
        clock=clock,
    )
    info = TCBInfo.from_json(data)
    mismatches = []
    if info.fmspc != pck.fmspc:
        mismatches.append(
            Mismatch("tcb_info.fmspc", pck.fmspc.hex(), info.fmspc.hex())
        )
    if info.pce_id != pck.pce_id:
        mismatches.append(
            Mismatch("tcb_info.pceId", pck.pce_id.hex(), info.pce_id.hex())
        )
    if info.tcb_type != 0:
        # Only type 0 is defined (component SVNs compared one by one);
        # a level list of another type must not be read as if it were.
        mismatches.append(
            Mismatch("tcb_info.tcbType", "0", str(info.tcb_type))
        )
    if mismatches:
        raise CollateralMismatchError(mismatches)
    clock.collateral(
        CollateralUse(
            name=name,
            issuer=_subject(signer),
            issue_date=info.issue_date,
            next_update=info.next_update,
            sha256=hashlib.sha256(data).hexdigest(),
        )
    )
    level = info.select_level(pck.tcb_components, pck.pce_svn)
    if level is None:
        msg = (
            f"no TCB level of FMSPC {pck.fmspc.hex()} is at or below the "
            f"platform's (components {list(pck.tcb_components)}, PCESVN "
            f"{pck.pce_svn})"
        )
        raise TCBLevelNotFoundError(msg)
    return info, level


# Step 5.


def _verify_qe_report(quote: Quote, leaf: x509.Certificate) -> None:
    """
    Verify the QE report signature by the PCK key and the report data
    binding: C{report_data[0:32] == SHA-256(attestation key || QE auth
    data)} and C{report_data[32:64]} zero (reference 3.1 and 3.3 step 6).

    @param quote: The parsed quote.
    @param leaf: The verified PCK leaf.
    @raise QEReportSignatureError: If the signature does not verify.
    @raise QEReportBindingError: If the binding does not hold.
    """
    if not _verify_raw_signature(
        leaf.public_key(), quote.qe_report_signature, quote.qe_report.raw
    ):
        msg = "QE report signature by the PCK key does not verify"
        raise QEReportSignatureError(msg)
    report_data = quote.qe_report.report_data
    expected = hashlib.sha256(
        quote.attestation_key + quote.qe_auth_data
    ).digest()
    if not hmac.compare_digest(report_data[:32], expected):
        msg = (
            "QE report data does not bind the attestation key and the QE "
            "authentication data"
        )
        raise QEReportBindingError(msg)
    if any(report_data[32:]):
        msg = "QE report data is not zero after the key hash"
        raise QEReportBindingError(msg)


# Step 6.


def _verify_qe_identity(
    collateral: Collateral, quote: Quote, chain: _PCKChain, clock: _Clock
) -> QELevel:
    """
    Verify the QE Identity, match the QE report against it and select
    the QE's level (reference 3.3 step 5).

    @param collateral: The collateral.
    @param quote: The parsed quote.
    @param chain: The verified PCK chain.
    @param clock: The verification time and its records.
    @return: The Quoting Enclave's level.
    @raise QEIdentitySignatureError: If the signature does not verify.
    @raise CollateralMismatchError: If it is not a v2 QE identity.
    @raise CollateralNotYetValidError: If it was issued after now.
    @raise CollateralExpiredError: If it is past its next update.
    @raise QEIdentityMismatchError: If the QE report does not match.
    @raise TCBLevelNotFoundError: If the QE is below every level.
    """
    name = _Names.QE_IDENTITY
    signer, data = _verify_signed_json(
        collateral.qe_identity_issuer_chain,
        collateral.qe_identity,
        collateral.qe_identity_signature,
        name=name,
        error=QEIdentitySignatureError,
        chain=chain,
        clock=clock,
    )
    identity = QEIdentity.from_json(data)
    clock.collateral(
        CollateralUse(
            name=name,
            issuer=_subject(signer),
            issue_date=identity.issue_date,
            next_update=identity.next_update,
            sha256=hashlib.sha256(data).hexdigest(),
        )
    )
    check_qe_identity(identity, quote)
    level = identity.select_level(quote.qe_report.isv_svn)
    if level is None:
        msg = (
            f"no QE Identity level is at or below the Quoting Enclave's "
            f"ISVSVN {quote.qe_report.isv_svn}"
        )
        raise TCBLevelNotFoundError(msg)
    return level


def check_qe_identity(identity: QEIdentity, quote: Quote) -> None:
    """
    Match the quote's QE report against a QE Identity, collecting every
    mismatch: MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES under their
    masks.

    @param identity: The verified QE Identity.
    @param quote: The quote whose QE report is checked.
    @raise QEIdentityMismatchError: If anything differs.
    """
    report = quote.qe_report
    mismatches = []
    if report.mrsigner != identity.mrsigner:
        mismatches.append(
            Mismatch(
                "qe.mrsigner", identity.mrsigner.hex(), report.mrsigner.hex()
            )
        )
    if report.isv_prod_id != identity.isv_prod_id:
        mismatches.append(
            Mismatch(
                "qe.isv_prod_id",
                str(identity.isv_prod_id),
                str(report.isv_prod_id),
            )
        )
    if report.misc_select & identity.miscselect_mask != identity.miscselect:
        mismatches.append(
            Mismatch(
                "qe.misc_select",
                f"{identity.miscselect:#010x} under mask "
                f"{identity.miscselect_mask:#010x}",
                f"{report.misc_select:#010x}",
            )
        )
    masked = bytes(
        a & m
        for a, m in zip(
            report.attributes, identity.attributes_mask, strict=True
        )
    )
    if masked != identity.attributes:
        mismatches.append(
            Mismatch(
                "qe.attributes",
                f"{identity.attributes.hex()} under mask "
                f"{identity.attributes_mask.hex()}",
                report.attributes.hex(),
            )
        )
    if mismatches:
        raise QEIdentityMismatchError(mismatches)


# Step 7.


def _verify_quote_signature(quote: Quote) -> None:
    """
    Verify the quote signature by the attestation key over the header
    and the enclave report body (reference 3.3 step 7).

    @param quote: The parsed quote.
    @raise QuoteSignatureError: If the key is not a P-256 point or the
        signature does not verify.
    """
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + quote.attestation_key
        )
    except ValueError as e:
        msg = "the attestation key is not a P-256 point"
        raise QuoteSignatureError(msg) from e
    if not _verify_raw_signature(key, quote.signature, quote.signed_data):
        msg = "quote signature by the attestation key does not verify"
        raise QuoteSignatureError(msg)
