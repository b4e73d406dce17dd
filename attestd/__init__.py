"""
attestd: serve HTTPS from a Gramine SGX enclave with RA-TLS, and verify
RA-TLS servers from Python.

The verifier is pure: parsing, DCAP quote verification and the policy
take the time as a parameter and do no I/O.  The Twisted parts (the
attested agent and its C{IPolicyForHTTPS}) are imported on first use, so
that C{import attestd} does not load Twisted.  Collateral sources live in
L{attestd.collateral}; errors in L{attestd.errors}.  Every other module is
private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attestd._collateral import Collateral
from attestd._dcap import (
    CollateralUse,
    QuoteVerdict,
    TcbStatus,
    TrustRoot,
    verify_quote,
)
from attestd._evidence import CertificateInfo, RATLSEvidence, certificate_der
from attestd._policy import Policy
from attestd._quote import Quote, ReportBody
from attestd._sigstruct import Sigstruct
from attestd._verifier import (
    RATLSVerdict,
    evaluate_ratls_certificate,
    verify_ratls_certificate,
)

if TYPE_CHECKING:
    from attestd._client import (
        AttestedAgent,
        AttestedPolicyForHTTPS,
        CollateralUnavailableError,
        RATLSVerifier,
    )

_TWISTED_NAMES = {
    "AttestedAgent",
    "AttestedPolicyForHTTPS",
    "CollateralUnavailableError",
    "RATLSVerifier",
}

__all__ = [
    "AttestedAgent",
    "AttestedPolicyForHTTPS",
    "CertificateInfo",
    "Collateral",
    "CollateralUnavailableError",
    "CollateralUse",
    "Policy",
    "Quote",
    "QuoteVerdict",
    "RATLSEvidence",
    "RATLSVerdict",
    "RATLSVerifier",
    "ReportBody",
    "Sigstruct",
    "TcbStatus",
    "TrustRoot",
    "certificate_der",
    "evaluate_ratls_certificate",
    "verify_quote",
    "verify_ratls_certificate",
]


def __getattr__(name: str) -> Any:
    if name in _TWISTED_NAMES:
        from attestd import _client

        return getattr(_client, name)
    msg = f"module 'attestd' has no attribute {name!r}"
    raise AttributeError(msg)
