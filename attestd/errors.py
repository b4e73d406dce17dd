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
