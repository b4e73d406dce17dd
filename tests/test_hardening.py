"""
Regression tests for inputs found by attacking the verifier: each must be
refused with one of attestd's typed errors, never a foreign exception.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import cbor2
import pytest

from attestd._collateral import Collateral
from attestd._dcap import TrustRoot, verify_quote
from attestd._evidence import RATLSEvidence, _parse_claims
from attestd._simulated import (
    CollateralOptions,
    SimulatedPKI,
    mint_ratls_certificate,
)
from attestd.errors import (
    CertificateParseError,
    CollateralMismatchError,
    EvidenceParseError,
    ParseError,
)

from ._vectors import AUTOMATA_BUNDLE, KONVERA_QUOTE

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
AUTOMATA_NOW = 1755236700


@pytest.fixture(scope="module")
def pki() -> SimulatedPKI:
    return SimulatedPKI.generate(now=NOW)


class TestForeignExceptions:
    def test_duplicate_extension_in_pck_chain(self) -> None:
        """
        A PCK certificate with a duplicated extension (one flipped byte of
        the PEM in the konvera quote) is a parse error; cryptography's
        DuplicateExtension does not escape.
        """
        quote = bytearray(KONVERA_QUOTE.read_bytes())
        quote[1637] ^= 1
        collateral = Collateral.from_json(AUTOMATA_BUNDLE.read_text())
        with pytest.raises(CertificateParseError, match="Duplicate"):
            verify_quote(bytes(quote), collateral, now=AUTOMATA_NOW)

    @pytest.mark.parametrize(
        ("field", "offset"), [("root_ca_crl", 9), ("pck_crl", 10)]
    )
    def test_bad_crl_version(self, field: str, offset: int) -> None:
        """
        A CRL whose version byte is altered is a parse error; cryptography's
        InvalidVersion does not escape.
        """
        data = json.loads(AUTOMATA_BUNDLE.read_text())
        crl = bytearray.fromhex(data[field])
        crl[offset] ^= 1
        data[field] = crl.hex()
        collateral = Collateral.from_dict(data)
        with pytest.raises(ParseError, match="version"):
            verify_quote(
                KONVERA_QUOTE.read_bytes(), collateral, now=AUTOMATA_NOW
            )


class TestStrictCollateral:
    def test_unknown_tcb_type(self, pki: SimulatedPKI) -> None:
        """
        TCB Info of a type other than 0 is refused, even when signed.
        """
        quote = pki.quoting_enclave().quote_for(b"")
        collateral = pki.issue_collateral(
            NOW, CollateralOptions(tcb_type=1)
        ).collateral()
        with pytest.raises(CollateralMismatchError, match="tcbType"):
            verify_quote(
                quote,
                collateral,
                now=NOW,
                trust_root=TrustRoot.from_pem(pki.root_certificate_pem()),
            )


class TestDICEClaims:
    def test_repeated_pubkey_hash(self, pki: SimulatedPKI) -> None:
        """
        A claims map naming pubkey-hash twice is refused, whichever of the
        two would be the right one.
        """
        qe = pki.quoting_enclave()
        der, _ = mint_ratls_certificate(qe.quote_for)
        evidence = RATLSEvidence.from_certificate(der)
        assert evidence.claims is not None
        good = cbor2.loads(evidence.claims)["pubkey-hash"]
        bogus = cbor2.dumps([1, bytes(32)])
        # Two pairs with the same key, encoded by hand: a2 = map of two.
        pair = cbor2.dumps("pubkey-hash")
        twice = b"\xa2" + pair + cbor2.dumps(bogus) + pair + cbor2.dumps(good)
        with pytest.raises(EvidenceParseError, match="repeats"):
            _parse_claims(twice)
        # The well-formed claims of the same certificate still parse.
        assert ("sha256", cbor2.loads(good)[1]) == _parse_claims(
            evidence.claims
        )
