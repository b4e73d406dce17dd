"""
Every error attestd raises.

Two families matter to callers:

  - L{ParseError} (a L{ValueError}): the input is malformed, truncated or
    of a kind attestd does not support.  Nothing about the peer can be
    concluded from it.
  - L{VerificationError}: the input is well-formed but is not acceptable,
    because a signature, a chain, a window or a binding does not hold, or
    because the measured enclave does not satisfy the policy.

Both derive from L{AttestdError}.  Verification always fails closed: any
exception out of a verification call means "do not trust this peer".
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen


class AttestdError(Exception):
    """
    Base class of every error raised by attestd.
    """


class ParseError(AttestdError, ValueError):
    """
    The input is malformed, truncated or unsupported.
    """


class QuoteParseError(ParseError):
    """
    An SGX DCAP quote (or one of its parts) is malformed.
    """


class UnsupportedQuoteError(QuoteParseError):
    """
    The quote is well-formed as far as it was read, but of a version or
    attestation key type attestd does not verify.
    """


class CertificateParseError(ParseError):
    """
    A certificate, key or PEM/DER file is malformed.
    """


class EvidenceParseError(ParseError):
    """
    The RA-TLS evidence inside a certificate (quote extension or DICE
    tagged evidence) is malformed.
    """


class ConfigurationError(AttestdError):
    """
    The daemon or a command was configured in a way that cannot work.
    """


class VerificationError(AttestdError):
    """
    Well-formed evidence that is not acceptable.
    """


class MissingEvidenceError(VerificationError):
    """
    A certificate carries no RA-TLS evidence at all.
    """


class BindingError(VerificationError):
    """
    The quote's report data does not bind the certificate's public key.
    """


@frozen
class Mismatch:
    """
    One reason a well-formed result was refused by a policy.

    @ivar field: What was checked: C{"mrenclave"}, C{"mrsigner"},
        C{"isv_prod_id"}, C{"isv_svn"}, C{"debug"}, C{"attributes"},
        C{"tcb_status"} or C{"collateral_expired"}.
    @ivar expected: What the policy asked for, as text.
    @ivar actual: What the evidence showed, as text.
    """

    field: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.field}: expected {self.expected}, got {self.actual}"


class PolicyError(VerificationError):
    """
    The evidence verified, but the enclave or platform does not satisfy the
    policy.  Every mismatch found is listed, not just the first.

    @ivar mismatches: The reasons, in the order they were checked.
    """

    def __init__(self, mismatches: Sequence[Mismatch]) -> None:
        self.mismatches = tuple(mismatches)
        super().__init__(
            "refused by policy: " + "; ".join(str(m) for m in mismatches)
        )


class SigstructParseError(ParseError):
    """
    A SIGSTRUCT (C{.sig} file) is malformed.
    """


class SigstructSignatureError(VerificationError):
    """
    A well-formed SIGSTRUCT whose signature does not verify with the
    modulus it carries.
    """


class PCKExtensionParseError(ParseError):
    """
    The SGX extension (C{1.2.840.113741.1.13.1}) of a PCK certificate is
    missing or malformed.
    """


class QuoteVerificationError(VerificationError):
    """
    A well-formed DCAP quote, or its collateral, did not verify.
    """


class UntrustedRootError(QuoteVerificationError):
    """
    A certificate chain (in the quote or in the collateral) does not end
    at the pinned trust root.
    """


class SimulatedEvidenceError(UntrustedRootError):
    """
    The evidence chains to a simulated root, not to the pinned one: it is
    not real SGX attestation.  Such evidence verifies only when the
    simulated root is given explicitly as the trust root.
    """


class CertificateChainError(QuoteVerificationError):
    """
    A certificate chain is broken: a signature, an issuer name, a basic
    constraint or a key usage does not hold.
    """


class CertificateValidityError(QuoteVerificationError):
    """
    A certificate is not valid at the verification time.
    """


class RevokedError(QuoteVerificationError):
    """
    A certificate is listed in the CRL of its issuer.
    """


class CRLError(QuoteVerificationError):
    """
    A CRL does not verify: wrong issuer, bad signature or missing
    next update.
    """


class QuoteSignatureError(QuoteVerificationError):
    """
    The quote signature by the attestation key over the header and the
    enclave report body does not verify.
    """


class QEReportSignatureError(QuoteVerificationError):
    """
    The Quoting Enclave report signature by the PCK key does not verify.
    """


class QEReportBindingError(QuoteVerificationError):
    """
    The Quoting Enclave report data does not bind the attestation key
    and the QE authentication data.
    """


class TCBInfoSignatureError(QuoteVerificationError):
    """
    The TCB Info signature does not verify over the served bytes.
    """


class QEIdentitySignatureError(QuoteVerificationError):
    """
    The QE Identity signature does not verify over the served bytes.
    """


class CollateralExpiredError(QuoteVerificationError):
    """
    A piece of collateral (TCB Info, QE Identity or a CRL) is past its
    next update at the verification time.
    """


class CollateralNotYetValidError(QuoteVerificationError):
    """
    A piece of collateral was issued after the verification time.
    """


class CollateralMismatchError(QuoteVerificationError):
    """
    The collateral is well-formed and signed, but not for this quote:
    FMSPC, PCE-ID, CA, identity kind or format version differ.

    @ivar mismatches: Every difference found, in the order checked.
    """

    def __init__(self, mismatches: Sequence[Mismatch]) -> None:
        self.mismatches = tuple(mismatches)
        super().__init__(
            "collateral does not match the quote: "
            + "; ".join(str(m) for m in self.mismatches)
        )


class TCBLevelNotFoundError(QuoteVerificationError):
    """
    No TCB level of the TCB Info (or of the QE Identity) is at or below
    the platform's (or the Quoting Enclave's) security versions.
    """


class QEIdentityMismatchError(QuoteVerificationError):
    """
    The Quoting Enclave report does not match the signed QE Identity.

    @ivar mismatches: Every difference found (MRSIGNER, ISVPRODID,
        MISCSELECT, ATTRIBUTES), in that order.
    """

    def __init__(self, mismatches: Sequence[Mismatch]) -> None:
        self.mismatches = tuple(mismatches)
        super().__init__(
            "Quoting Enclave does not match the QE Identity: "
            + "; ".join(str(m) for m in self.mismatches)
        )


class AttestationSourceError(AttestdError):
    """
    An attestation source could not give the daemon its evidence: the
    attestation device is missing or not set up for DCAP, a quote could
    not be read, or a minted certificate does not hold.
    """


class FreshnessUnavailableError(AttestationSourceError):
    """
    A fresh quote was asked of a source that cannot make one: only an
    in-process source (C{--attestation gramine} or C{simulated}) quotes
    on demand; certificate files carry the one quote they were made with.
    """


class FreshnessError(VerificationError):
    """
    A fresh quote does not prove that the verified enclave holds the
    certificate's key now, for this nonce: it does not verify, or its
    measurements, key binding or nonce differ from what was verified.

    @ivar mismatches: Every difference found, in the order checked.
    """

    def __init__(
        self, reason: str, mismatches: Sequence[Mismatch] = ()
    ) -> None:
        self.mismatches = tuple(mismatches)
        detail = "; ".join(str(m) for m in self.mismatches)
        super().__init__(f"{reason}: {detail}" if detail else reason)


class NonceParseError(ParseError):
    """
    A freshness nonce is not hex, or not 16 to 64 bytes long.
    """


class InsecurePolicyWarning(UserWarning):
    """
    A verification policy was built that accepts more than it should in
    production, such as any enclave at all.
    """


class AttestationTimeoutError(AttestationSourceError):
    """
    An operation on the attestation device (Gramine's
    C{/dev/attestation}) did not finish within the attestation timeout:
    the device, or the quoting service behind it, is stuck.
    """


class AttestationBusyError(AttestationSourceError):
    """
    The attestation device cannot take another operation now: an earlier
    one is stuck, or as many as allowed are already in progress.
    """
