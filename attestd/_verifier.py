"""
Verification of a Gramine RA-TLS certificate: evidence, DCAP quote and
policy, in that order.

  1. The evidence is read from the certificate (the TCG DICE extension
     when present, else the legacy quote extension) and its binding to
     the certificate's public key is checked (reference 1.1, 1.2).
  2. The quote is verified against the collateral at the given time
     (reference 3.3, steps 1-8), expired collateral being tolerated only
     when the policy allows outdated TCBs.
  3. The policy is applied to the result (reference 1.5 and 3.3 step 9).

Nothing here performs I/O or reads the clock: the collateral and the
verification time are parameters.
"""

from __future__ import annotations

import datetime
from typing import Any

from attrs import frozen

from attestd._collateral import Collateral
from attestd._dcap import QuoteVerdict, TrustRoot, verify_quote
from attestd._evidence import RATLSEvidence
from attestd._policy import Policy
from attestd.errors import Mismatch, PolicyError


@frozen
class RATLSVerdict:
    """
    The outcome of verifying an RA-TLS certificate.

    @ivar evidence: The evidence read from the certificate.
    @ivar quote: The DCAP verification result of its quote.
    @ivar policy: The policy applied.
    @ivar mismatches: What the policy refused; empty for an accepted
        certificate (L{verify_ratls_certificate} only ever returns
        accepted ones).
    """

    evidence: RATLSEvidence
    quote: QuoteVerdict
    policy: Policy
    mismatches: tuple[Mismatch, ...] = ()

    @property
    def accepted(self) -> bool:
        """
        Whether the policy found nothing to refuse.
        """
        return not self.mismatches

    def to_json_dict(self) -> dict[str, Any]:
        """
        The verdict as JSON-ready data, complete enough to audit later
        which certificate, measurements, TCB and collateral it rests on.

        @return: The RA-TLS fields (C{accepted}, C{mismatches},
            C{certificate_sha256}, C{evidence_kind}, C{pubkey_hash_alg},
            C{policy}) and those of C{QuoteVerdict.to_json_dict}
            (C{measurements}, C{status}, C{advisory_ids}, C{collateral},
            ...).
        """
        data: dict[str, Any] = {
            "accepted": self.accepted,
            "mismatches": [
                {"field": m.field, "expected": m.expected, "actual": m.actual}
                for m in self.mismatches
            ],
            "certificate_sha256": self.evidence.certificate.sha256.hex(),
            "evidence_kind": self.evidence.kind,
            "pubkey_hash_alg": self.evidence.pubkey_hash_alg,
            "policy": self.policy.to_json_dict(),
        }
        data.update(self.quote.to_json_dict())
        return data


def evaluate_ratls_certificate(
    der: bytes,
    collateral: Collateral,
    policy: Policy,
    *,
    now: datetime.datetime | int | float,
    trust_root: TrustRoot | None = None,
) -> RATLSVerdict:
    """
    Verify an RA-TLS certificate's evidence and quote, and list what the
    policy refuses without raising for it.

    This is L{verify_ratls_certificate} for callers that report a refusal
    together with the measurements and TCB status (C{attestd verify}).

    @param der: The certificate's DER.
    @param collateral: Collateral for the quote's platform.
    @param policy: The policy to apply.
    @param now: The verification time (aware datetime or Unix seconds).
    @param trust_root: The root CA to chain to; Intel's when C{None}.
    @return: The verdict, whose C{mismatches} may be non-empty.
    @raise attestd.errors.ParseError: If the certificate, its evidence or
        the collateral is malformed.
    @raise attestd.errors.VerificationError: If there is no evidence, the
        binding does not hold, or the quote does not verify (including
        expired collateral when the policy does not allow outdated TCBs).
    """
    evidence = RATLSEvidence.from_certificate(der)
    evidence.check_binding()
    verdict = verify_quote(
        evidence.quote,
        collateral,
        now=now,
        trust_root=trust_root,
        allow_expired_collateral=policy.allow_outdated_tcb_insecure,
    )
    return RATLSVerdict(
        evidence=evidence,
        quote=verdict,
        policy=policy,
        mismatches=policy.mismatches(verdict),
    )


def verify_ratls_certificate(
    der: bytes,
    collateral: Collateral,
    policy: Policy,
    *,
    now: datetime.datetime | int | float,
    trust_root: TrustRoot | None = None,
) -> RATLSVerdict:
    """
    Verify an RA-TLS certificate: evidence and its binding to the key,
    the DCAP quote against the collateral, then the policy.

    @param der: The certificate's DER.
    @param collateral: Collateral for the quote's platform.
    @param policy: The policy to apply.
    @param now: The verification time (aware datetime or Unix seconds).
    @param trust_root: The root CA to chain to; Intel's when C{None}.
    @return: The verdict of an accepted certificate.
    @raise attestd.errors.ParseError: If the certificate, its evidence or
        the collateral is malformed.
    @raise PolicyError: Listing every way the enclave or platform fails
        the policy.
    @raise attestd.errors.VerificationError: If there is no evidence, the
        binding does not hold, or the quote does not verify.
    """
    verdict = evaluate_ratls_certificate(
        der, collateral, policy, now=now, trust_root=trust_root
    )
    if verdict.mismatches:
        raise PolicyError(verdict.mismatches)
    return verdict
