"""
Tests for the DCAP quote verifier, on the real quotes and collateral in
C{tests/vectors}: expected verdicts, collateral windows, a differential
check against dcap-qvl, and a mutation matrix over every signed field and
signature.

Deliberate departures from dcap-qvl 0.7.0 (the differential oracle),
each shown by a test below:

  - the PCK CRL's thisUpdate is enforced (dcap-qvl does not check it), so
    the automata bundle's window starts at 1755236486, not 1755234498
    (L{TestWindows.test_pck_crl_this_update_enforced});
  - debug enclaves are verified, not refused: refusing them is the
    policy's job (L{TestVectors.test_ccc_debug_quotes});
  - the quote's root certificate must be byte-for-byte the pinned root,
    and every collateral issuer chain must end at it too
    (L{TestMutations}).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import attrs
import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from attestd._collateral import Collateral, CollateralParseError
from attestd._dcap import (
    INTEL_ROOT_SHA256,
    QuoteVerdict,
    TcbStatus,
    TrustRoot,
    check_qe_identity,
    merge_statuses,
    verify_quote,
)
from attestd._quote import Quote
from attestd._simulated import (
    CollateralOptions,
    QETCBLevel,
    SimulatedPKI,
    TCBLevel,
    qe_levels_with_status,
    tcb_levels_with_status,
)
from attestd._tcb import QEIdentity, TCBInfo
from attestd.errors import (
    AttestdError,
    CertificateChainError,
    CertificateParseError,
    CertificateValidityError,
    CollateralExpiredError,
    CollateralMismatchError,
    CollateralNotYetValidError,
    ConfigurationError,
    CRLError,
    ParseError,
    QEIdentityMismatchError,
    QEIdentitySignatureError,
    QEReportBindingError,
    QEReportSignatureError,
    QuoteParseError,
    QuoteSignatureError,
    QuoteVerificationError,
    RevokedError,
    SimulatedEvidenceError,
    TCBInfoSignatureError,
    TCBLevelNotFoundError,
    UnsupportedQuoteError,
    UntrustedRootError,
)

from ._vectors import (
    AUTOMATA_BUNDLE,
    CCC_DICE_QUOTE,
    CCC_LEGACY_QUOTE,
    DCAP_QVL_COLLATERAL,
    DCAP_QVL_QUOTE,
    INTEL_ROOT_DER,
    KONVERA_QUOTE,
    VECTORS,
    expected,
)

#: The dcap-qvl sample's own verification time (min nextUpdate - 1).
T_DCAP = 1752919277
#: The automata bundle's verification time.
T_AUTOMATA = 1755236700


def _collateral(path: Path) -> Collateral:
    """
    Read an offline collateral bundle.
    """
    return Collateral.from_json(path.read_text())


def _window(collateral: Collateral) -> tuple[int, int]:
    """
    The collateral's validity window, worked out independently of the
    verifier: the latest issue date or thisUpdate, and the earliest
    nextUpdate, as Unix seconds.
    """

    def ts(text: str) -> int:
        return int(
            datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
            .replace(tzinfo=datetime.timezone.utc)
            .timestamp()
        )

    tcb = json.loads(collateral.tcb_info)
    qe = json.loads(collateral.qe_identity)
    starts = [ts(tcb["issueDate"]), ts(qe["issueDate"])]
    ends = [ts(tcb["nextUpdate"]), ts(qe["nextUpdate"])]
    for der in (collateral.pck_crl, collateral.root_ca_crl):
        crl = x509.load_der_x509_crl(der)
        assert crl.next_update_utc is not None
        starts.append(int(crl.last_update_utc.timestamp()))
        ends.append(int(crl.next_update_utc.timestamp()))
    return max(starts), min(ends)


class TestVectors:
    def test_dcap_qvl_sample(self) -> None:
        """
        The dcap-qvl sample verifies as ConfigurationAndSWHardeningNeeded
        with the two advisories its source asserts.
        """
        want = expected()["dcap_qvl_sgx_sample"]["source_asserts"]
        verdict = verify_quote(
            DCAP_QVL_QUOTE.read_bytes(),
            _collateral(DCAP_QVL_COLLATERAL),
            now=want["now"],
        )
        assert TcbStatus(want["status"]) is verdict.status
        assert tuple(want["advisory_ids"]) == verdict.advisory_ids
        assert TcbStatus.UP_TO_DATE is verdict.qe_status
        assert verdict.platform_status is verdict.status
        assert "00a067110000" == verdict.fmspc.hex()
        assert b"\0\0" == verdict.pce_id
        assert not verdict.collateral_expired
        assert not verdict.simulated
        fields = expected()["dcap_qvl_sgx_sample"]["quote_fields"]
        assert fields["mrenclave"] == verdict.quote.report.mrenclave.hex()
        assert fields["mrsigner"] == verdict.quote.report.mrsigner.hex()

    def test_konvera(self) -> None:
        """
        The konvera RA-TLS quote with the automata bundle is OutOfDate
        with six advisories, and carries the measurements its source
        states.
        """
        want = expected()["automata_0825_bundle"]["vectors"][
            "gramine-ratls-certs/konvera_gramine_legacy_quote.bin"
        ]
        measured = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
        verdict = verify_quote(
            KONVERA_QUOTE.read_bytes(),
            _collateral(AUTOMATA_BUNDLE),
            now=T_AUTOMATA,
        )
        assert TcbStatus(want["computed_status"]) is verdict.status
        assert tuple(want["computed_advisory_ids"]) == verdict.advisory_ids
        assert 6 == len(verdict.advisory_ids)
        report = verdict.quote.report
        assert measured["mrenclave"] == report.mrenclave.hex()
        assert measured["mrsigner"] == report.mrsigner.hex()
        assert measured["isv_prod_id"] == report.isv_prod_id
        assert measured["isv_svn"] == report.isv_svn
        assert not report.debug
        assert "00606a000000" == verdict.fmspc.hex()

    @pytest.mark.parametrize(
        "path", [CCC_LEGACY_QUOTE, CCC_DICE_QUOTE], ids=lambda p: p.name
    )
    def test_ccc_debug_quotes(self, path: Path) -> None:
        """
        Both CCC quotes (debug enclaves) verify as OutOfDate with ten
        advisories: the verifier reports debug, the policy refuses it.
        """
        want = expected()["automata_0825_bundle"]["vectors"][
            "gramine-ratls-certs/ccc_gramine_legacy_ext_quote.bin"
        ]
        verdict = verify_quote(
            path.read_bytes(), _collateral(AUTOMATA_BUNDLE), now=T_AUTOMATA
        )
        assert TcbStatus.OUT_OF_DATE is verdict.status
        assert TcbStatus.OUT_OF_DATE is verdict.platform_status
        assert TcbStatus.UP_TO_DATE is verdict.qe_status
        assert "2021-11-10T00:00:00Z" == verdict.tcb_date
        assert tuple(want["computed_advisory_ids"]) == verdict.advisory_ids
        assert 10 == len(verdict.advisory_ids)
        assert verdict.quote.report.debug
        ccc = expected()["ccc_gramine_dualoid_cert"]["computed"]
        assert ccc["mrenclave"] == verdict.quote.report.mrenclave.hex()

    def test_parsed_quote_and_datetime(self) -> None:
        """
        A parsed quote and an aware datetime give the same verdict as raw
        bytes and Unix seconds.
        """
        collateral = _collateral(DCAP_QVL_COLLATERAL)
        raw = verify_quote(DCAP_QVL_QUOTE.read_bytes(), collateral, now=T_DCAP)
        parsed = verify_quote(
            Quote.from_bytes(DCAP_QVL_QUOTE.read_bytes()),
            collateral,
            now=datetime.datetime.fromtimestamp(
                T_DCAP, datetime.timezone(datetime.timedelta(hours=2))
            ),
        )
        assert raw == parsed

    def test_naive_datetime_refused(self) -> None:
        """
        A naive datetime is refused rather than guessed to be UTC.
        """
        with pytest.raises(TypeError, match="timezone-aware"):
            verify_quote(
                DCAP_QVL_QUOTE.read_bytes(),
                _collateral(DCAP_QVL_COLLATERAL),
                now=datetime.datetime(2025, 7, 1),
            )

    def test_out_of_range_time(self) -> None:
        """
        A time in seconds beyond the calendar is a ValueError.
        """
        with pytest.raises(ValueError, match="out of range"):
            verify_quote(
                DCAP_QVL_QUOTE.read_bytes(),
                _collateral(DCAP_QVL_COLLATERAL),
                now=1e20,
            )

    def test_collateral_for_another_platform(self) -> None:
        """
        The konvera quote (Platform CA) with the dcap-qvl sample's
        collateral (Processor CA) is refused: the PCK CRL issuer chain is
        for another CA.
        """
        with pytest.raises(CollateralMismatchError) as info:
            verify_quote(
                KONVERA_QUOTE.read_bytes(),
                _collateral(DCAP_QVL_COLLATERAL),
                now=T_DCAP,
            )
        assert ["pck_crl_issuer_chain"] == [
            m.field for m in info.value.mismatches
        ]

    def test_pck_crl_of_another_ca(self) -> None:
        """
        A PCK CRL issued by another CA than the one in the quote is a CRL
        error, even with a matching issuer chain.
        """
        collateral = attrs.evolve(
            _collateral(DCAP_QVL_COLLATERAL),
            pck_crl=_collateral(AUTOMATA_BUNDLE).pck_crl,
        )
        with pytest.raises(CRLError, match="PCK Platform CA"):
            verify_quote(
                DCAP_QVL_QUOTE.read_bytes(),
                collateral,
                now=T_DCAP,
                allow_expired_collateral=True,
            )

    def test_tcb_info_of_another_fmspc(self) -> None:
        """
        TCB Info for another FMSPC (correctly signed by Intel) is refused
        with a mismatch naming the FMSPC.
        """
        collateral = attrs.evolve(
            _collateral(AUTOMATA_BUNDLE),
            tcb_info=_collateral(DCAP_QVL_COLLATERAL).tcb_info,
            tcb_info_signature=_collateral(
                DCAP_QVL_COLLATERAL
            ).tcb_info_signature,
        )
        with pytest.raises(CollateralMismatchError) as info:
            verify_quote(
                KONVERA_QUOTE.read_bytes(),
                collateral,
                now=T_AUTOMATA,
                allow_expired_collateral=True,
            )
        [mismatch] = info.value.mismatches
        assert "tcb_info.fmspc" == mismatch.field
        assert "00606a000000" == mismatch.expected
        assert "00a067110000" == mismatch.actual

    def test_ca_as_tcb_signer(self) -> None:
        """
        A CA certificate (the PCK CA) offered as the TCB Info signer is
        refused: only an end entity under the root signs TCB Info.
        """
        collateral = _collateral(DCAP_QVL_COLLATERAL)
        collateral = attrs.evolve(
            collateral, tcb_info_issuer_chain=collateral.pck_crl_issuer_chain
        )
        with pytest.raises(CertificateChainError, match="is a CA"):
            verify_quote(DCAP_QVL_QUOTE.read_bytes(), collateral, now=T_DCAP)

    def test_tcb_signer_as_crl_issuer(self) -> None:
        """
        The TCB Signing certificate offered as the PCK CRL issuer is
        refused: it is no CA.
        """
        collateral = _collateral(DCAP_QVL_COLLATERAL)
        collateral = attrs.evolve(
            collateral, pck_crl_issuer_chain=collateral.tcb_info_issuer_chain
        )
        with pytest.raises(CertificateChainError, match="no CA"):
            verify_quote(DCAP_QVL_QUOTE.read_bytes(), collateral, now=T_DCAP)


class TestWindows:
    @pytest.mark.parametrize(
        ("bundle", "want"),
        [
            (DCAP_QVL_COLLATERAL, (1750330571, 1752919278)),
            (AUTOMATA_BUNDLE, (1755236486, 1757824606)),
        ],
        ids=["dcap-qvl", "automata"],
    )
    def test_derived_window_is_expected(
        self, bundle: Path, want: tuple[int, int]
    ) -> None:
        """
        The window worked out from the collateral is the one EXPECTED.json
        records for it.
        """
        assert want == _window(_collateral(bundle))

    @pytest.mark.parametrize(
        ("quote", "bundle"),
        [
            (DCAP_QVL_QUOTE, DCAP_QVL_COLLATERAL),
            (KONVERA_QUOTE, AUTOMATA_BUNDLE),
        ],
        ids=["dcap-qvl", "konvera"],
    )
    def test_boundaries(self, quote: Path, bundle: Path) -> None:
        """
        The quote verifies from the first to the last second of the
        collateral window, both inclusive, and not one second outside.
        """
        collateral = _collateral(bundle)
        start, end = _window(collateral)
        data = quote.read_bytes()
        with pytest.raises(CollateralNotYetValidError, match="issued at"):
            verify_quote(data, collateral, now=start - 1)
        first = verify_quote(data, collateral, now=start)
        last = verify_quote(data, collateral, now=end)
        assert first.status is last.status
        assert not last.collateral_expired
        assert end == int(last.collateral_expires.timestamp())
        with pytest.raises(CollateralExpiredError, match="expired at"):
            verify_quote(data, collateral, now=end + 1)

    def test_dcap_qvl_edges_name_the_piece(self) -> None:
        """
        Before its window the dcap-qvl sample fails on the TCB Info issue
        date, after it on the QE Identity, as dcap-qvl reports.
        """
        collateral = _collateral(DCAP_QVL_COLLATERAL)
        data = DCAP_QVL_QUOTE.read_bytes()
        with pytest.raises(CollateralNotYetValidError, match=r"^tcb_info"):
            verify_quote(data, collateral, now=1750330570)
        with pytest.raises(CollateralExpiredError, match=r"^qe_identity"):
            verify_quote(data, collateral, now=1752919279)

    def test_allow_expired(self) -> None:
        """
        With expired collateral allowed, a quote verifies after the
        window and the verdict says so.
        """
        verdict = verify_quote(
            DCAP_QVL_QUOTE.read_bytes(),
            _collateral(DCAP_QVL_COLLATERAL),
            now=T_DCAP + 86400 * 30,
            allow_expired_collateral=True,
        )
        assert verdict.collateral_expired
        assert TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED is (
            verdict.status
        )
        assert verdict.to_json_dict()["collateral_expired"] is True

    def test_allow_expired_not_before_issue(self) -> None:
        """
        Allowing expired collateral never admits collateral issued after
        the verification time.
        """
        with pytest.raises(CollateralNotYetValidError):
            verify_quote(
                DCAP_QVL_QUOTE.read_bytes(),
                _collateral(DCAP_QVL_COLLATERAL),
                now=1750330570,
                allow_expired_collateral=True,
            )

    def test_pck_crl_this_update_enforced(self) -> None:
        """
        Unlike dcap-qvl, a PCK CRL issued after the verification time is
        refused (the automata bundle's TCB Info is older than its CRL).
        """
        collateral = _collateral(AUTOMATA_BUNDLE)
        with pytest.raises(CollateralNotYetValidError, match=r"^pck_crl"):
            verify_quote(
                KONVERA_QUOTE.read_bytes(), collateral, now=1755234498
            )
        oracle = dcap_qvl.verify(
            KONVERA_QUOTE.read_bytes(),
            dcap_qvl.QuoteCollateralV3.from_json(AUTOMATA_BUNDLE.read_text()),
            1755234498,
        )
        assert "OutOfDate" == oracle.status

    def test_expired_pck_certificate(self) -> None:
        """
        After the PCK leaf's notAfter the chain is refused, even when
        expired collateral is allowed.
        """
        with pytest.raises(CertificateValidityError, match="PCK Certificate"):
            verify_quote(
                DCAP_QVL_QUOTE.read_bytes(),
                _collateral(DCAP_QVL_COLLATERAL),
                now=datetime.datetime(
                    2030, 9, 21, tzinfo=datetime.timezone.utc
                ),
                allow_expired_collateral=True,
            )

    def test_pck_certificate_not_yet_valid(self) -> None:
        """
        Before the PCK leaf's notBefore the chain is refused.
        """
        with pytest.raises(CertificateValidityError, match="valid from"):
            verify_quote(
                DCAP_QVL_QUOTE.read_bytes(),
                _collateral(DCAP_QVL_COLLATERAL),
                now=datetime.datetime(
                    2023, 9, 20, 21, 53, 42, tzinfo=datetime.timezone.utc
                ),
            )

    def test_collateral_expires_is_earliest(self) -> None:
        """
        The verdict expires at the earliest nextUpdate (or certificate
        notAfter) among what it used.
        """
        verdict = verify_quote(
            KONVERA_QUOTE.read_bytes(),
            _collateral(AUTOMATA_BUNDLE),
            now=T_AUTOMATA,
        )
        assert verdict.collateral_expires == min(
            use.next_update for use in verdict.collateral
        )


class TestDifferential:
    @pytest.mark.parametrize(
        ("quote", "bundle", "offset"),
        [
            (q, b, offset)
            for q, b in (
                (DCAP_QVL_QUOTE, DCAP_QVL_COLLATERAL),
                (KONVERA_QUOTE, AUTOMATA_BUNDLE),
            )
            for offset in (0.0, 0.25, 0.5, 0.9, 1.0)
        ],
        ids=lambda v: v.name if isinstance(v, Path) else str(v),
    )
    def test_agrees_with_dcap_qvl(
        self, quote: Path, bundle: Path, offset: float
    ) -> None:
        """
        Across the collateral window, status and advisories equal what
        dcap-qvl returns for the same quote, collateral and time.
        """
        collateral = _collateral(bundle)
        start, end = _window(collateral)
        now = start + int((end - start) * offset)
        ours = verify_quote(quote.read_bytes(), collateral, now=now)
        theirs = dcap_qvl.verify(
            quote.read_bytes(),
            dcap_qvl.QuoteCollateralV3.from_json(bundle.read_text()),
            now,
        )
        assert theirs.status == ours.status.value
        assert sorted(theirs.advisory_ids) == list(ours.advisory_ids)

    @pytest.mark.parametrize(
        ("quote", "bundle"),
        [
            (DCAP_QVL_QUOTE, DCAP_QVL_COLLATERAL),
            (KONVERA_QUOTE, AUTOMATA_BUNDLE),
        ],
        ids=["dcap-qvl", "konvera"],
    )
    def test_both_refuse_after_window(self, quote: Path, bundle: Path) -> None:
        """
        One second after the window, both verifiers refuse.
        """
        collateral = _collateral(bundle)
        _, end = _window(collateral)
        with pytest.raises(CollateralExpiredError):
            verify_quote(quote.read_bytes(), collateral, now=end + 1)
        with pytest.raises(ValueError, match="expired"):
            dcap_qvl.verify(
                quote.read_bytes(),
                dcap_qvl.QuoteCollateralV3.from_json(bundle.read_text()),
                end + 1,
            )


class TestVerdictJSON:
    def test_collateral_records(self) -> None:
        """
        The JSON verdict names every collateral piece used, with its
        issuer, dates and the digest of the exact bytes.
        """
        collateral = _collateral(AUTOMATA_BUNDLE)
        verdict = verify_quote(
            KONVERA_QUOTE.read_bytes(), collateral, now=T_AUTOMATA
        )
        data = json.loads(json.dumps(verdict.to_json_dict()))
        records = {r["name"]: r for r in data["collateral"]}
        assert {"root_ca_crl", "pck_crl", "tcb_info", "qe_identity"} == set(
            records
        )
        digests = collateral.digests()
        for name, record in records.items():
            assert digests[name] == record["sha256"]
        assert records["pck_crl"]["issuer"].endswith(
            "CN=Intel SGX PCK Platform CA"
        )
        assert records["tcb_info"]["issuer"].endswith(
            "CN=Intel SGX TCB Signing"
        )
        assert records["root_ca_crl"]["issuer"].endswith(
            "CN=Intel SGX Root CA"
        )
        assert "2025-08-15T05:08:18Z" == records["tcb_info"]["issue_date"]
        assert "2025-09-14T04:36:46Z" == records["qe_identity"]["next_update"]
        assert "2025-09-14T04:36:46Z" == data["collateral_expires"]

    def test_measurements_and_status(self) -> None:
        """
        The JSON verdict carries the measurements in hex and the statuses
        and advisories as strings.
        """
        verdict = verify_quote(
            KONVERA_QUOTE.read_bytes(),
            _collateral(AUTOMATA_BUNDLE),
            now=T_AUTOMATA,
        )
        data = verdict.to_json_dict()
        want = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
        assert want["mrenclave"] == data["measurements"]["mrenclave"]
        assert want["mrsigner"] == data["measurements"]["mrsigner"]
        assert "0x5" == data["measurements"]["flags"]
        assert data["measurements"]["debug"] is False
        assert "OutOfDate" == data["status"]
        assert "UpToDate" == data["qe_status"]
        assert list(verdict.advisory_ids) == data["advisory_ids"]
        assert "00606a000000" == data["fmspc"]
        assert data["simulated"] is False


class TestTrustRoot:
    def test_intel(self) -> None:
        """
        The shipped Intel root has the pinned fingerprint and is not
        simulated.
        """
        root = TrustRoot.intel()
        assert INTEL_ROOT_SHA256 == root.sha256
        assert (
            expected()["intel_root_ca"]["sha256_fingerprint"]
            == root.sha256.hex()
        )
        assert not root.simulated
        assert INTEL_ROOT_DER.read_bytes() == root.certificate_der

    def test_from_pem(self) -> None:
        """
        The Intel root read from PEM equals the shipped one.
        """
        pem = (
            VECTORS
            / "intel-root"
            / "Intel_SGX_Provisioning_Certification_RootCA.pem"
        ).read_bytes()
        assert TrustRoot.intel() == TrustRoot.from_pem(pem)

    def test_garbage(self) -> None:
        """
        Bytes that are not a certificate are a parse error.
        """
        with pytest.raises(CertificateParseError):
            TrustRoot.from_der(b"\x30\x03\x02\x01\x00")
        with pytest.raises(CertificateParseError):
            TrustRoot.from_pem(b"no PEM here")

    def test_not_self_signed(self) -> None:
        """
        A certificate that is not a self-signed CA cannot be a trust root.
        """
        leaf = Quote.from_bytes(DCAP_QVL_QUOTE.read_bytes()).pck_chain_pem()[0]
        with pytest.raises(ConfigurationError, match="not self-signed"):
            TrustRoot.from_pem(leaf)

    def test_wrong_root(self) -> None:
        """
        A real quote checked against another root is refused as untrusted,
        naming the root it ends at.
        """
        other = TrustRoot.from_der(_self_signed_ca("Some Other Root CA"))
        with pytest.raises(
            UntrustedRootError, match="Intel SGX Root CA"
        ) as info:
            verify_quote(
                DCAP_QVL_QUOTE.read_bytes(),
                _collateral(DCAP_QVL_COLLATERAL),
                now=T_DCAP,
                trust_root=other,
            )
        assert not isinstance(info.value, SimulatedEvidenceError)

    def test_simulated_root_flag(self) -> None:
        """
        A root whose subject says SIMULATED is flagged as simulated.
        """
        root = TrustRoot.from_der(_self_signed_ca("attestd SIMULATED Root"))
        assert root.simulated


def _self_signed_ca(common_name: str) -> bytes:
    """
    A fresh self-signed P-256 CA certificate, DER.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.datetime(2018, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365 * 40))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


class TestStatuses:
    @pytest.mark.parametrize(
        ("platform", "qe", "merged"),
        [(p, TcbStatus.UP_TO_DATE, p) for p in TcbStatus]
        + [
            (
                TcbStatus.UP_TO_DATE,
                TcbStatus.OUT_OF_DATE,
                TcbStatus.OUT_OF_DATE,
            ),
            (
                TcbStatus.SW_HARDENING_NEEDED,
                TcbStatus.OUT_OF_DATE,
                TcbStatus.OUT_OF_DATE,
            ),
            (
                TcbStatus.CONFIGURATION_NEEDED,
                TcbStatus.OUT_OF_DATE,
                TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
            ),
            (
                TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
                TcbStatus.OUT_OF_DATE,
                TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
            ),
            (
                TcbStatus.OUT_OF_DATE,
                TcbStatus.OUT_OF_DATE,
                TcbStatus.OUT_OF_DATE,
            ),
            (
                TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
                TcbStatus.OUT_OF_DATE,
                TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
            ),
            (TcbStatus.REVOKED, TcbStatus.OUT_OF_DATE, TcbStatus.REVOKED),
        ]
        + [(p, TcbStatus.REVOKED, TcbStatus.REVOKED) for p in TcbStatus],
    )
    def test_merge(
        self, platform: TcbStatus, qe: TcbStatus, merged: TcbStatus
    ) -> None:
        """
        Platform and QE statuses merge as the reference (3.3 step 8)
        says.
        """
        assert merged is merge_statuses(platform, qe)

    def test_level_selection_is_first_match(self) -> None:
        """
        The platform level is the first one, in served order, that every
        component SVN and the PCESVN reach.
        """
        info = TCBInfo.from_json(_collateral(DCAP_QVL_COLLATERAL).tcb_info)
        components = (11, 11, 2, 2, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        level = info.select_level(components, 13)
        assert level is info.levels[1]
        assert level.status is TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED
        assert info.select_level((0,) * 16, 0) is None
        newest = info.select_level(info.levels[0].components, 13)
        assert newest is info.levels[0]
        assert info.select_level(info.levels[0].components, 12) is not newest

    def test_tcb_info_v2(self) -> None:
        """
        TCB Info v2 (flat component fields, no id) selects the same level
        as the v3 document it is converted from.
        """
        v3 = json.loads(_collateral(DCAP_QVL_COLLATERAL).tcb_info)
        v2 = {k: v for k, v in v3.items() if k != "id"}
        v2["version"] = 2
        v2["tcbLevels"] = [
            {
                **level,
                "tcb": {
                    **{
                        f"sgxtcbcomp{n + 1:02d}svn": c["svn"]
                        for n, c in enumerate(level["tcb"]["sgxtcbcomponents"])
                    },
                    "pcesvn": level["tcb"]["pcesvn"],
                },
            }
            for level in v3["tcbLevels"]
        ]
        old = TCBInfo.from_json(json.dumps(v2))
        new = TCBInfo.from_json(json.dumps(v3))
        assert old.id is None
        components = (11, 11, 2, 2, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        assert new.select_level(components, 13) == old.select_level(
            components, 13
        )

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"id": "TDX"}, "tcb_info.id"),
            ({"version": 4}, "tcb_info.version"),
        ],
    )
    def test_tcb_info_kind(
        self, change: dict[str, object], field: str
    ) -> None:
        """
        TCB Info that is not SGX v2/v3 is refused as a mismatch.
        """
        data = json.loads(_collateral(DCAP_QVL_COLLATERAL).tcb_info)
        data.update(change)
        with pytest.raises(CollateralMismatchError) as info:
            TCBInfo.from_json(json.dumps(data))
        assert [field] == [m.field for m in info.value.mismatches]

    def test_qe_identity_kind(self) -> None:
        """
        An identity that is not the v2 QE one is refused with every
        mismatch.
        """
        data = json.loads(_collateral(DCAP_QVL_COLLATERAL).qe_identity)
        data.update({"id": "TD_QE", "version": 3})
        with pytest.raises(CollateralMismatchError) as info:
            QEIdentity.from_json(json.dumps(data))
        assert ["qe_identity.id", "qe_identity.version"] == [
            m.field for m in info.value.mismatches
        ]

    def test_qe_level_selection(self) -> None:
        """
        The QE level is the first whose ISVSVN the QE reaches; below all
        levels there is none.
        """
        identity = QEIdentity.from_json(
            _collateral(DCAP_QVL_COLLATERAL).qe_identity
        )
        up = identity.select_level(10)
        assert up is not None
        assert TcbStatus.UP_TO_DATE is up.status
        old = identity.select_level(6)
        assert old is not None
        assert TcbStatus.OUT_OF_DATE is old.status
        assert ("INTEL-SA-00615",) == old.advisory_ids
        assert identity.select_level(0) is None

    def test_qe_identity_mismatches_collected(self) -> None:
        """
        Every way the QE report differs from the QE Identity is reported
        at once.
        """
        identity = QEIdentity.from_json(
            _collateral(DCAP_QVL_COLLATERAL).qe_identity
        )
        quote = Quote.from_bytes(DCAP_QVL_QUOTE.read_bytes())
        check_qe_identity(identity, quote)
        wrong = attrs.evolve(
            identity,
            mrsigner=bytes(32),
            isv_prod_id=2,
            miscselect=1,
            attributes=b"\xff" + identity.attributes[1:],
        )
        with pytest.raises(QEIdentityMismatchError) as info:
            check_qe_identity(wrong, quote)
        assert [
            "qe.mrsigner",
            "qe.isv_prod_id",
            "qe.misc_select",
            "qe.attributes",
        ] == [m.field for m in info.value.mismatches]

    def test_miscselect_byte_order(self) -> None:
        """
        The QE Identity's miscselect hex is the four bytes as they sit in
        the report (little-endian), as Intel's QVL and dcap-qvl read it.
        """
        raw = bytearray(DCAP_QVL_QUOTE.read_bytes())
        raw[_QE_REPORT + 16] = 0x01
        quote = Quote.from_bytes(bytes(raw))
        assert 1 == quote.qe_report.misc_select
        data = json.loads(_collateral(DCAP_QVL_COLLATERAL).qe_identity)
        data["miscselect"] = "01000000"
        check_qe_identity(QEIdentity.from_json(json.dumps(data)), quote)
        data["miscselect"] = "00000001"
        with pytest.raises(QEIdentityMismatchError, match="misc_select"):
            check_qe_identity(QEIdentity.from_json(json.dumps(data)), quote)


class TestCollateralParsing:
    @pytest.mark.parametrize(
        ("text", "match"),
        [
            ("[]", "not a JSON object"),
            ("{", "not JSON"),
            ('{"version": 3, "version": 3}', "repeated key"),
            ('{"version": NaN}', "non-finite"),
            ('{"version": true, "id": "SGX"}', "version"),
            ('{"version": 3, "id": "SGX"}', "lacks 'tcbLevels'"),
            ("[" * 100000 + "]" * 100000, "not JSON"),
        ],
    )
    def test_malformed_tcb_info(self, text: str, match: str) -> None:
        """
        Malformed TCB Info text raises the collateral parse error.
        """
        with pytest.raises(CollateralParseError, match=match):
            TCBInfo.from_json(text)

    @pytest.mark.parametrize(
        ("path", "value", "match"),
        [
            (("fmspc",), "00A06711", "not 6 bytes"),
            (("pceId",), "zz00", "not hex"),
            (("issueDate",), "2025-06-19T10:56:11", "ending in Z"),
            (("issueDate",), "2025-13-19T10:56:11Z", "ISO 8601"),
            (("tcbLevels", 0, "tcbStatus"), "Fine", "known TCB status"),
            (("tcbLevels", 0, "advisoryIDs"), [1], "list of strings"),
            (("tcbLevels", 0, "tcb", "pcesvn"), 70000, "more than 65535"),
            (("tcbLevels", 0, "tcb", "sgxtcbcomponents"), [], "not 16"),
            (
                ("tcbLevels", 0, "tcb", "sgxtcbcomponents", 0, "svn"),
                256,
                "above 255",
            ),
            (("tcbLevels",), [], "no TCB level"),
        ],
    )
    def test_malformed_tcb_info_field(
        self, path: tuple[object, ...], value: object, match: str
    ) -> None:
        """
        A malformed field of real TCB Info raises the collateral parse
        error, naming the problem.
        """
        data = json.loads(_collateral(DCAP_QVL_COLLATERAL).tcb_info)
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(CollateralParseError, match=match):
            TCBInfo.from_json(json.dumps(data))

    @pytest.mark.parametrize(
        ("key", "value", "match"),
        [
            ("mrsigner", "00", "not 32 bytes"),
            ("attributesMask", "00" * 15, "not 16 bytes"),
            ("isvprodid", -1, "isvprodid"),
            (
                "tcbLevels",
                [{"tcb": {"isvsvn": 1}, "tcbStatus": "UpToDate"}],
                "tcbDate",
            ),
        ],
    )
    def test_malformed_qe_identity_field(
        self, key: str, value: object, match: str
    ) -> None:
        """
        A malformed field of a real QE Identity raises the collateral
        parse error.
        """
        data = json.loads(_collateral(DCAP_QVL_COLLATERAL).qe_identity)
        data[key] = value
        with pytest.raises(CollateralParseError, match=match):
            QEIdentity.from_json(json.dumps(data))

    def test_qe_level_status(self) -> None:
        """
        A QE level with a platform-only status is malformed.
        """
        data = json.loads(_collateral(DCAP_QVL_COLLATERAL).qe_identity)
        data["tcbLevels"][0]["tcbStatus"] = "SWHardeningNeeded"
        with pytest.raises(CollateralParseError, match="not a QE status"):
            QEIdentity.from_json(json.dumps(data))

    @settings(max_examples=150, deadline=None)
    @given(st.text(max_size=300))
    def test_random_text(self, text: str) -> None:
        """
        Random text given as TCB Info or QE Identity raises nothing but
        the collateral errors.
        """
        for parse in (TCBInfo.from_json, QEIdentity.from_json):
            with contextlib.suppress(
                CollateralParseError, CollateralMismatchError
            ):
                parse(text)


# The mutation matrix.  Each mutation changes one byte of a signed field
# or a signature, in the quote or in the collateral, keeping the format
# intact unless it says otherwise; each names the error that must come
# out, and a pattern its message must match.

Mutation = Callable[[bytes, Collateral], tuple[bytes, Collateral]]

_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----",
    re.DOTALL,
)

#: Offsets in a v3 quote with 32 bytes of QE auth data.
_SIG = 436
_ATT_KEY = _SIG + 64
_QE_REPORT = _SIG + 128
_QE_SIG = _SIG + 512
_AUTH_SIZE = _SIG + 576
_AUTH = _SIG + 578
_CERT_TYPE = _AUTH + 32


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    """
    C{data} with one byte XORed with C{mask}.
    """
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def _reframe(block: bytes, der: bytes) -> bytes:
    """
    A PEM block for C{der} framed exactly like C{block} (same line width
    and line ends), so that it has the same length.
    """
    lines = block.splitlines(keepends=True)
    width = len(lines[1].rstrip(b"\r\n"))
    ending = lines[0][len(lines[0].rstrip(b"\r\n")) :]
    body = base64.b64encode(der)
    wrapped = [
        body[i : i + width] + ending for i in range(0, len(body), width)
    ]
    new = lines[0] + b"".join(wrapped) + lines[-1]
    assert len(new) == len(block)
    return new


def _serial_byte(der: bytes) -> int:
    """
    The index of the last byte of a certificate's serial number, inside
    its signed part.
    """
    cert = x509.load_der_x509_certificate(der)
    serial = cert.serial_number
    content = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    encoded = b"\x02" + bytes([len(content)]) + content
    index = der.index(encoded)
    assert index < der.index(cert.signature)
    return index + len(encoded) - 1


def _mutate_cert(text: bytes, position: int, part: str) -> bytes:
    """
    C{text} (a quote or a PEM chain) with the certificate at C{position}
    changed in its signed part (C{"tbs"}: the serial number) or in its
    signature (C{"sig"}: the last byte).
    """
    block = _PEM_BLOCK.findall(text)[position]
    lines = block.splitlines()
    der = base64.b64decode(b"".join(lines[1:-1]))
    index = _serial_byte(der) if part == "tbs" else len(der) - 1
    new = _reframe(block, _flip(der, index))
    assert text.count(block) == 1
    return text.replace(block, new)


def _quote_byte(index: int, mask: int = 0x01) -> Mutation:
    def mutate(
        quote: bytes, collateral: Collateral
    ) -> tuple[bytes, Collateral]:
        return _flip(quote, index, mask), collateral

    return mutate


def _quote_cert(position: int, part: str) -> Mutation:
    def mutate(
        quote: bytes, collateral: Collateral
    ) -> tuple[bytes, Collateral]:
        return _mutate_cert(quote, position, part), collateral

    return mutate


def _chain_cert(name: str, position: int, part: str) -> Mutation:
    def mutate(
        quote: bytes, collateral: Collateral
    ) -> tuple[bytes, Collateral]:
        text = getattr(collateral, name).encode("ascii")
        new = _mutate_cert(text, position, part).decode("ascii")
        return quote, attrs.evolve(collateral, **{name: new})

    return mutate


def _crl(name: str, part: str) -> Mutation:
    def mutate(
        quote: bytes, collateral: Collateral
    ) -> tuple[bytes, Collateral]:
        der = getattr(collateral, name)
        crl = x509.load_der_x509_crl(der)
        tbs = crl.tbs_certlist_bytes
        start = der.index(tbs)
        if part == "tag":
            index = 0
        elif part == "tbs":
            index = start + len(tbs) - 1
        elif part == "issuer":
            index = start + tbs.index(b"Intel Corporation")
        else:
            index = len(der) - 1
        return quote, attrs.evolve(collateral, **{name: _flip(der, index)})

    return mutate


def _json_field(name: str, pattern: str) -> Mutation:
    """
    Change the last digit matched by C{pattern}'s group in the signed
    JSON text C{name}, keeping it valid JSON.
    """

    def mutate(
        quote: bytes, collateral: Collateral
    ) -> tuple[bytes, Collateral]:
        text = getattr(collateral, name)
        match = re.search(pattern, text)
        assert match is not None
        end = match.end(1) - 1
        digit = text[end]
        new_digit = "1" if digit == "0" else "0"
        new = text[:end] + new_digit + text[end + 1 :]
        json.loads(new)
        return quote, attrs.evolve(collateral, **{name: new})

    return mutate


def _signature(name: str, index: int) -> Mutation:
    def mutate(
        quote: bytes, collateral: Collateral
    ) -> tuple[bytes, Collateral]:
        value = getattr(collateral, name)
        return quote, attrs.evolve(collateral, **{name: _flip(value, index)})

    return mutate


def _pem_garbage(name: str | None) -> Mutation:
    """
    Break the base64 of a PEM certificate (a format-breaking mutation).
    """

    def mutate(
        quote: bytes, collateral: Collateral
    ) -> tuple[bytes, Collateral]:
        if name is None:
            index = quote.index(b"-----BEGIN CERTIFICATE-----\n") + 40
            return quote[:index] + b"!" + quote[index + 1 :], collateral
        text = getattr(collateral, name)
        index = text.index("-----BEGIN CERTIFICATE-----\n") + 40
        new = text[:index] + "!" + text[index + 1 :]
        return quote, attrs.evolve(collateral, **{name: new})

    return mutate


MUTATIONS: list[tuple[str, Mutation, type[AttestdError], str]] = [
    # Quote header.
    ("header.version", _quote_byte(0), QuoteParseError, "version"),
    ("header.att_key_type", _quote_byte(2), UnsupportedQuoteError, "key type"),
    ("header.reserved", _quote_byte(4), QuoteSignatureError, "quote sig"),
    ("header.qe_svn", _quote_byte(8), QuoteSignatureError, "quote sig"),
    ("header.pce_svn", _quote_byte(10), QuoteSignatureError, "quote sig"),
    ("header.qe_vendor_id", _quote_byte(12), UnsupportedQuoteError, "vendor"),
    ("header.user_data", _quote_byte(28), QuoteSignatureError, "quote sig"),
    (
        "header.user_data.end",
        _quote_byte(47),
        QuoteSignatureError,
        "quote sig",
    ),
    # ISV enclave report body.
    ("body.cpu_svn", _quote_byte(48), QuoteSignatureError, "quote sig"),
    ("body.misc_select", _quote_byte(64), QuoteSignatureError, "quote sig"),
    (
        "body.debug_flag",
        _quote_byte(96, 0x02),
        QuoteSignatureError,
        "quote sig",
    ),
    ("body.mrenclave", _quote_byte(112), QuoteSignatureError, "quote sig"),
    ("body.mrsigner", _quote_byte(176), QuoteSignatureError, "quote sig"),
    ("body.isv_prod_id", _quote_byte(304), QuoteSignatureError, "quote sig"),
    ("body.isv_svn", _quote_byte(306), QuoteSignatureError, "quote sig"),
    ("body.report_data", _quote_byte(368), QuoteSignatureError, "quote sig"),
    (
        "body.report_data.end",
        _quote_byte(431),
        QuoteSignatureError,
        "quote sig",
    ),
    # Signature data.
    ("sig_data.length", _quote_byte(432), QuoteParseError, "length"),
    ("quote_signature.r", _quote_byte(_SIG), QuoteSignatureError, "quote sig"),
    (
        "quote_signature.s",
        _quote_byte(_SIG + 63),
        QuoteSignatureError,
        "quote sig",
    ),
    ("attestation_key.x", _quote_byte(_ATT_KEY), QEReportBindingError, "bind"),
    (
        "attestation_key.y",
        _quote_byte(_ATT_KEY + 63),
        QEReportBindingError,
        "bind",
    ),
    (
        "qe_report.cpu_svn",
        _quote_byte(_QE_REPORT),
        QEReportSignatureError,
        "QE report sig",
    ),
    (
        "qe_report.attributes",
        _quote_byte(_QE_REPORT + 48),
        QEReportSignatureError,
        "QE report sig",
    ),
    (
        "qe_report.mrsigner",
        _quote_byte(_QE_REPORT + 128),
        QEReportSignatureError,
        "QE report sig",
    ),
    (
        "qe_report.isv_svn",
        _quote_byte(_QE_REPORT + 258),
        QEReportSignatureError,
        "QE report sig",
    ),
    (
        "qe_report.report_data",
        _quote_byte(_QE_REPORT + 320),
        QEReportSignatureError,
        "QE report sig",
    ),
    (
        "qe_report.report_data.end",
        _quote_byte(_QE_REPORT + 383),
        QEReportSignatureError,
        "QE report sig",
    ),
    (
        "qe_report_signature.r",
        _quote_byte(_QE_SIG),
        QEReportSignatureError,
        "QE report sig",
    ),
    (
        "qe_report_signature.s",
        _quote_byte(_QE_SIG + 63),
        QEReportSignatureError,
        "QE report sig",
    ),
    ("qe_auth_data.size", _quote_byte(_AUTH_SIZE), QuoteParseError, "."),
    ("qe_auth_data", _quote_byte(_AUTH), QEReportBindingError, "bind"),
    (
        "qe_auth_data.end",
        _quote_byte(_AUTH + 31),
        QEReportBindingError,
        "bind",
    ),
    ("cert_data.type", _quote_byte(_CERT_TYPE), QuoteParseError, "type 4"),
    ("cert_data.size", _quote_byte(_CERT_TYPE + 2), QuoteParseError, "."),
    # PCK chain in the quote.
    (
        "pck_leaf.tbs",
        _quote_cert(0, "tbs"),
        CertificateChainError,
        "PCK Certificate by",
    ),
    (
        "pck_leaf.sig",
        _quote_cert(0, "sig"),
        CertificateChainError,
        "PCK Certificate by",
    ),
    (
        "pck_ca.tbs",
        _quote_cert(1, "tbs"),
        CertificateChainError,
        "CA by .*Root CA",
    ),
    (
        "pck_ca.sig",
        _quote_cert(1, "sig"),
        CertificateChainError,
        "CA by .*Root CA",
    ),
    (
        "pck_root.tbs",
        _quote_cert(2, "tbs"),
        UntrustedRootError,
        "PCK certificate chain ends",
    ),
    (
        "pck_root.sig",
        _quote_cert(2, "sig"),
        UntrustedRootError,
        "PCK certificate chain ends",
    ),
    ("pck_chain.base64", _pem_garbage(None), CertificateParseError, "PCK"),
    # CRLs.
    (
        "root_ca_crl.tbs",
        _crl("root_ca_crl", "tbs"),
        CRLError,
        "root_ca_crl: sig",
    ),
    (
        "root_ca_crl.issuer",
        _crl("root_ca_crl", "issuer"),
        CRLError,
        "root_ca_crl is issued",
    ),
    (
        "root_ca_crl.sig",
        _crl("root_ca_crl", "sig"),
        CRLError,
        "root_ca_crl: sig",
    ),
    ("pck_crl.tbs", _crl("pck_crl", "tbs"), CRLError, "pck_crl: sig"),
    (
        "pck_crl.issuer",
        _crl("pck_crl", "issuer"),
        CRLError,
        "pck_crl is issued",
    ),
    ("pck_crl.sig", _crl("pck_crl", "sig"), CRLError, "pck_crl: sig"),
    # TCB Info.
    (
        "tcb_info.evaluation_number",
        _json_field("tcb_info", r'"tcbEvaluationDataNumber":\s*(\d+)'),
        TCBInfoSignatureError,
        "tcb_info sig",
    ),
    (
        "tcb_info.issue_date",
        _json_field("tcb_info", r'"issueDate":\s*"[^"]*?(\d)Z"'),
        TCBInfoSignatureError,
        "tcb_info sig",
    ),
    (
        "tcb_info.pcesvn",
        _json_field("tcb_info", r'"pcesvn":\s*(\d+)'),
        TCBInfoSignatureError,
        "tcb_info sig",
    ),
    (
        "tcb_info.pce_id",
        _json_field("tcb_info", r'"pceId":\s*"(\d+)'),
        TCBInfoSignatureError,
        "tcb_info sig",
    ),
    (
        "tcb_info_signature.r",
        _signature("tcb_info_signature", 0),
        TCBInfoSignatureError,
        "tcb_info sig",
    ),
    (
        "tcb_info_signature.s",
        _signature("tcb_info_signature", 63),
        TCBInfoSignatureError,
        "tcb_info sig",
    ),
    # QE Identity.
    (
        "qe_identity.isvprodid",
        _json_field("qe_identity", r'"isvprodid":\s*(\d+)'),
        QEIdentitySignatureError,
        "qe_identity sig",
    ),
    (
        "qe_identity.isvsvn",
        _json_field("qe_identity", r'"isvsvn":\s*(\d+)'),
        QEIdentitySignatureError,
        "qe_identity sig",
    ),
    (
        "qe_identity.next_update",
        _json_field("qe_identity", r'"nextUpdate":\s*"(\d+)'),
        QEIdentitySignatureError,
        "qe_identity sig",
    ),
    (
        "qe_identity.miscselect",
        _json_field("qe_identity", r'"miscselect":\s*"(\d+)'),
        QEIdentitySignatureError,
        "qe_identity sig",
    ),
    (
        "qe_identity_signature.r",
        _signature("qe_identity_signature", 0),
        QEIdentitySignatureError,
        "qe_identity sig",
    ),
    (
        "qe_identity_signature.s",
        _signature("qe_identity_signature", 63),
        QEIdentitySignatureError,
        "qe_identity sig",
    ),
    # Collateral issuer chains.
    *[
        (
            f"{chain}.{which}.{part}",
            _chain_cert(chain, position, part),
            error,
            f"^{chain}",
        )
        for chain in (
            "pck_crl_issuer_chain",
            "tcb_info_issuer_chain",
            "qe_identity_issuer_chain",
        )
        for position, which, error in (
            (0, "signer", CertificateChainError),
            (1, "root", UntrustedRootError),
        )
        for part in ("tbs", "sig")
    ],
    (
        "tcb_info_issuer_chain.base64",
        _pem_garbage("tcb_info_issuer_chain"),
        CertificateParseError,
        "tcb_info_issuer_chain",
    ),
    (
        "root_ca_crl.der",
        _crl("root_ca_crl", "tag"),
        CollateralParseError,
        "root_ca_crl",
    ),
]

#: The two non-debug real vectors: quote, bundle, time.
REAL = {
    "dcap-qvl": (DCAP_QVL_QUOTE, DCAP_QVL_COLLATERAL, T_DCAP),
    "konvera": (KONVERA_QUOTE, AUTOMATA_BUNDLE, T_AUTOMATA),
}


class TestMutations:
    @pytest.mark.parametrize("vector", sorted(REAL))
    @pytest.mark.parametrize(
        ("mutation", "error", "match"),
        [pytest.param(m, e, p, id=n) for n, m, e, p in MUTATIONS],
    )
    def test_refused(
        self,
        vector: str,
        mutation: Mutation,
        error: type[AttestdError],
        match: str,
    ) -> None:
        """
        A one-byte change in a signed field or a signature is refused with
        the error that names it.
        """
        quote_path, bundle, now = REAL[vector]
        quote, collateral = mutation(
            quote_path.read_bytes(), _collateral(bundle)
        )
        with pytest.raises(error, match=match) as info:
            verify_quote(quote, collateral, now=now)
        if not issubclass(error, ParseError):
            assert not isinstance(info.value, ParseError)
            assert isinstance(info.value, QuoteVerificationError)

    def test_unmutated(self) -> None:
        """
        The mutation helpers leave the inputs intact when they change
        nothing (sanity check for the matrix): a reframed PEM block is
        identical.
        """
        quote = DCAP_QVL_QUOTE.read_bytes()
        block = _PEM_BLOCK.findall(quote)[0]
        der = base64.b64decode(b"".join(block.splitlines()[1:-1]))
        assert block == _reframe(block, der)

    @settings(max_examples=120, deadline=None)
    @given(st.data())
    def test_any_byte_before_certification_data(
        self, data: st.DataObject
    ) -> None:
        """
        Changing any byte of a real quote before its certification data
        makes verification fail with an attestd error.
        """
        quote = bytearray(KONVERA_QUOTE.read_bytes())
        index = data.draw(st.integers(0, _CERT_TYPE + 5))
        quote[index] ^= data.draw(st.integers(1, 255))
        with pytest.raises(AttestdError):
            verify_quote(
                bytes(quote), _collateral(AUTOMATA_BUNDLE), now=T_AUTOMATA
            )

    @settings(max_examples=120, deadline=None)
    @given(st.data())
    def test_any_byte_anywhere(self, data: st.DataObject) -> None:
        """
        Changing any byte of a real quote either verifies (carrier bytes
        such as the trailing NUL are not signed) or raises an attestd
        error, never anything else.
        """
        quote = bytearray(KONVERA_QUOTE.read_bytes())
        index = data.draw(st.integers(0, len(quote) - 1))
        quote[index] ^= data.draw(st.integers(1, 255))
        try:
            verdict = verify_quote(
                bytes(quote), _collateral(AUTOMATA_BUNDLE), now=T_AUTOMATA
            )
        except AttestdError:
            return
        assert isinstance(verdict, QuoteVerdict)
        assert index >= _CERT_TYPE + 6

    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=6000))
    def test_random_bytes(self, data: bytes) -> None:
        """
        Random bytes as a quote raise the quote parse error.
        """
        with pytest.raises(QuoteParseError):
            verify_quote(data, _collateral(AUTOMATA_BUNDLE), now=T_AUTOMATA)

    @settings(max_examples=100, deadline=None)
    @given(st.data())
    def test_truncated(self, data: st.DataObject) -> None:
        """
        Every truncation of a real quote raises the quote parse error.
        """
        quote = KONVERA_QUOTE.read_bytes()
        cut = data.draw(st.integers(0, len(quote) - 1))
        with pytest.raises(QuoteParseError):
            verify_quote(
                quote[:cut], _collateral(AUTOMATA_BUNDLE), now=T_AUTOMATA
            )


class TestLazyParsing:
    """
    Parts of certificates and CRLs that cryptography decodes only when
    first read are decoded up front, so that damage there is a parse
    error and not a stray ValueError from deep inside a check.
    """

    def test_undecodable_subject_in_issuer_chain(self) -> None:
        """
        An issuer chain certificate whose subject is not valid UTF-8 is a
        certificate parse error.
        """
        collateral = _collateral(DCAP_QVL_COLLATERAL)
        chain = collateral.pck_crl_issuer_chain
        # "Intel SGX PCK Processor CA" becomes "...Proces\x83or CA".
        assert 1 == chain.count("UHJvY2Vzc29y")
        damaged = attrs.evolve(
            collateral,
            pck_crl_issuer_chain=chain.replace("UHJvY2Vzc29y", "UHJvY2Vzg29y"),
        )
        with pytest.raises(CertificateParseError, match="issuer_chain"):
            verify_quote(DCAP_QVL_QUOTE.read_bytes(), damaged, now=T_DCAP)

    def test_undecodable_subject_in_quote(self) -> None:
        """
        A PCK leaf whose subject is not valid UTF-8 is a certificate
        parse error.
        """
        quote = KONVERA_QUOTE.read_bytes()
        # "Intel SGX PCK Certificate" becomes "...Certificat\x83".
        assert 1 == quote.count(b"UENLIENlcnRpZmljYXRl")
        damaged = quote.replace(
            b"UENLIENlcnRpZmljYXRl", b"UENLIENlcnRpZmljYXSD"
        )
        with pytest.raises(CertificateParseError, match="PCK"):
            verify_quote(damaged, _collateral(AUTOMATA_BUNDLE), now=T_AUTOMATA)

    def test_undecodable_crl_issuer(self) -> None:
        """
        A CRL whose issuer name does not decode is a collateral parse
        error.
        """
        collateral = _collateral(DCAP_QVL_COLLATERAL)
        der = collateral.pck_crl
        # The issuer's locality attribute: OID 2.5.4.7, length 3 -> 2.
        index = der.index(bytes.fromhex("0603550407"))
        damaged = attrs.evolve(collateral, pck_crl=_flip(der, index + 1, 0x01))
        with pytest.raises(CollateralParseError, match="pck_crl"):
            verify_quote(DCAP_QVL_QUOTE.read_bytes(), damaged, now=T_DCAP)


#: The verification time of the simulated PKI tests.
T_SIM = datetime.datetime(2026, 1, 15, 12, tzinfo=datetime.timezone.utc)
_DAY = datetime.timedelta(days=1)


def _simulated(
    options: CollateralOptions | None = None,
    *,
    pki: SimulatedPKI | None = None,
    now: datetime.datetime = T_SIM,
    allow_expired_collateral: bool = False,
) -> QuoteVerdict:
    """
    Verify a fresh simulated quote against collateral issued with
    C{options}, trusting the simulated root.
    """
    pki = SimulatedPKI.generate(now=T_SIM) if pki is None else pki
    quote = pki.quoting_enclave().quote_for(b"simulated")
    collateral = pki.issue_collateral(T_SIM, options).collateral()
    return verify_quote(
        quote,
        collateral,
        now=now,
        trust_root=TrustRoot.from_der(pki.root_certificate_der()),
        allow_expired_collateral=allow_expired_collateral,
    )


class TestSimulated:
    """
    The refusing branches that real, Intel-signed data cannot reach,
    driven by the simulated provisioning infrastructure.
    """

    def test_up_to_date(self) -> None:
        """
        A simulated quote verifies as UpToDate against its own root, and
        the verdict says the root was simulated.
        """
        verdict = _simulated()
        assert TcbStatus.UP_TO_DATE is verdict.status
        assert () == verdict.advisory_ids
        assert verdict.simulated
        assert verdict.to_json_dict()["simulated"] is True

    @pytest.mark.parametrize("ca", ["platform", "processor"])
    def test_simulated_needs_explicit_root(
        self, ca: Literal["platform", "processor"]
    ) -> None:
        """
        Without the simulated root given explicitly, simulated evidence
        is refused with a message that says so.
        """
        pki = SimulatedPKI.generate(now=T_SIM, ca=ca)
        quote = pki.quoting_enclave().quote_for(b"")
        collateral = pki.issue_collateral(T_SIM).collateral()
        with pytest.raises(SimulatedEvidenceError, match="--trust-root"):
            verify_quote(quote, collateral, now=T_SIM)

    def test_real_quote_with_simulated_root(self) -> None:
        """
        A real quote checked against a simulated root is untrusted (not
        called simulated).
        """
        pki = SimulatedPKI.generate(now=T_SIM)
        with pytest.raises(UntrustedRootError) as info:
            verify_quote(
                DCAP_QVL_QUOTE.read_bytes(),
                _collateral(DCAP_QVL_COLLATERAL),
                now=T_DCAP,
                trust_root=TrustRoot.from_der(pki.root_certificate_der()),
            )
        assert not isinstance(info.value, SimulatedEvidenceError)

    def test_another_simulated_root(self) -> None:
        """
        A simulated quote checked against another simulated root is
        untrusted.
        """
        pki = SimulatedPKI.generate(now=T_SIM)
        other = SimulatedPKI.generate(now=T_SIM)
        quote = pki.quoting_enclave().quote_for(b"")
        with pytest.raises(UntrustedRootError, match="not at the trusted"):
            verify_quote(
                quote,
                pki.issue_collateral(T_SIM).collateral(),
                now=T_SIM,
                trust_root=TrustRoot.from_der(other.root_certificate_der()),
            )

    @pytest.mark.parametrize("status", list(TcbStatus), ids=str)
    def test_platform_status(self, status: TcbStatus) -> None:
        """
        Each TCB status of the platform's level comes out as the
        platform status, with its advisories.
        """
        verdict = _simulated(
            CollateralOptions(
                tcb_levels=tcb_levels_with_status(
                    status.value, ["INTEL-SA-00002", "INTEL-SA-00001"]
                )
            )
        )
        assert status is verdict.platform_status
        assert status is verdict.status
        assert ("INTEL-SA-00001", "INTEL-SA-00002") == verdict.advisory_ids

    @pytest.mark.parametrize(
        ("platform", "qe", "merged"),
        [
            ("UpToDate", "OutOfDate", TcbStatus.OUT_OF_DATE),
            (
                "ConfigurationNeeded",
                "OutOfDate",
                TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
            ),
            ("SWHardeningNeeded", "Revoked", TcbStatus.REVOKED),
        ],
    )
    def test_qe_status_merged(
        self, platform: str, qe: str, merged: TcbStatus
    ) -> None:
        """
        The Quoting Enclave's status merges into the platform's, and the
        advisories of both levels are united.
        """
        verdict = _simulated(
            CollateralOptions(
                tcb_levels=tcb_levels_with_status(platform, ["INTEL-SA-1"]),
                qe_levels=qe_levels_with_status(qe, ["INTEL-SA-2"]),
            )
        )
        assert TcbStatus(qe) is verdict.qe_status
        assert merged is verdict.status
        assert ("INTEL-SA-1", "INTEL-SA-2") == verdict.advisory_ids

    def test_revoked_pck(self) -> None:
        """
        A PCK certificate listed in the PCK CRL is refused.
        """
        pki = SimulatedPKI.generate(now=T_SIM)
        serial = pki.pck_certificate.serial_number
        with pytest.raises(RevokedError, match="PCK certificate"):
            _simulated(
                CollateralOptions(revoked_pck_serials=(serial,)), pki=pki
            )

    def test_revoked_pck_ca(self) -> None:
        """
        A PCK CA listed in the root CA CRL is refused.
        """
        pki = SimulatedPKI.generate(now=T_SIM)
        serial = pki.pck_ca_certificate.serial_number
        with pytest.raises(RevokedError, match="PCK CA certificate"):
            _simulated(
                CollateralOptions(revoked_ca_serials=(serial,)), pki=pki
            )

    def test_revoked_tcb_signing(self) -> None:
        """
        A TCB Signing certificate listed in the root CA CRL is refused.
        """
        pki = SimulatedPKI.generate(now=T_SIM)
        serial = pki.tcb_signing_certificate.serial_number
        with pytest.raises(RevokedError, match="tcb_info_issuer_chain"):
            _simulated(
                CollateralOptions(revoked_ca_serials=(serial,)), pki=pki
            )

    def test_wrong_fmspc_and_pce_id(self) -> None:
        """
        TCB Info for another FMSPC and PCE-ID is refused with both
        mismatches.
        """
        with pytest.raises(CollateralMismatchError) as info:
            _simulated(
                CollateralOptions(fmspc=b"\x11" * 6, pce_id=b"\x01\x00")
            )
        assert ["tcb_info.fmspc", "tcb_info.pceId"] == [
            m.field for m in info.value.mismatches
        ]

    def test_qe_identity_mismatch(self) -> None:
        """
        A QE Identity for another MRSIGNER and ISVPRODID is refused with
        both mismatches.
        """
        with pytest.raises(QEIdentityMismatchError) as info:
            _simulated(
                CollateralOptions(qe_mrsigner=bytes(32), qe_isv_prod_id=7)
            )
        assert ["qe.mrsigner", "qe.isv_prod_id"] == [
            m.field for m in info.value.mismatches
        ]

    def test_platform_below_every_level(self) -> None:
        """
        A platform below every TCB level has no status: refused.
        """
        level = TCBLevel(components=(255,) * 16, pcesvn=99, status="UpToDate")
        with pytest.raises(TCBLevelNotFoundError, match="no TCB level"):
            _simulated(CollateralOptions(tcb_levels=(level,)))

    def test_qe_below_every_level(self) -> None:
        """
        A Quoting Enclave below every QE Identity level is refused.
        """
        level = QETCBLevel(isvsvn=0xFFFF, status="UpToDate")
        with pytest.raises(TCBLevelNotFoundError, match="QE Identity"):
            _simulated(CollateralOptions(qe_levels=(level,)))

    @pytest.mark.parametrize(
        ("window", "name"),
        [
            ("tcb_info_window", "tcb_info"),
            ("qe_identity_window", "qe_identity"),
            ("pck_crl_window", "pck_crl"),
            ("root_crl_window", "root_ca_crl"),
        ],
    )
    def test_each_piece_expired(self, window: str, name: str) -> None:
        """
        Each piece of collateral past its next update is refused, naming
        it, unless expired collateral is allowed.
        """
        options = CollateralOptions(
            **{window: (T_SIM - 40 * _DAY, T_SIM - _DAY)}
        )
        pki = SimulatedPKI.generate(now=T_SIM - 50 * _DAY)
        with pytest.raises(CollateralExpiredError, match=f"^{name}"):
            _simulated(options, pki=pki)
        verdict = _simulated(options, pki=pki, allow_expired_collateral=True)
        assert verdict.collateral_expired
        assert T_SIM - _DAY == verdict.collateral_expires

    @pytest.mark.parametrize(
        ("window", "name"),
        [
            ("tcb_info_window", "tcb_info"),
            ("qe_identity_window", "qe_identity"),
            ("pck_crl_window", "pck_crl"),
            ("root_crl_window", "root_ca_crl"),
        ],
    )
    def test_each_piece_not_yet_valid(self, window: str, name: str) -> None:
        """
        Each piece of collateral issued after the verification time is
        refused, naming it, even when expired collateral is allowed.
        """
        options = CollateralOptions(
            **{window: (T_SIM + _DAY, T_SIM + 30 * _DAY)}
        )
        with pytest.raises(CollateralNotYetValidError, match=f"^{name}"):
            _simulated(options, allow_expired_collateral=True)

    def test_expired_pck_certificate(self) -> None:
        """
        A PCK certificate past its notAfter is refused.
        """
        pki = SimulatedPKI.generate(now=T_SIM - 400 * _DAY)
        leaf = pki.issue_pck_certificate(
            not_before=T_SIM - 300 * _DAY, not_after=T_SIM - _DAY
        )
        quote = pki.quoting_enclave(pck_certificate=leaf).quote_for(b"")
        with pytest.raises(CertificateValidityError, match="PCK Certificate"):
            verify_quote(
                quote,
                pki.issue_collateral(T_SIM).collateral(),
                now=T_SIM,
                trust_root=TrustRoot.from_der(pki.root_certificate_der()),
            )


def _issue(
    template: x509.Certificate,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    constraints: x509.BasicConstraints | None,
    usage: x509.KeyUsage | None,
    copy_sgx: bool = False,
) -> x509.Certificate:
    """
    Re-issue C{template} (same subject, key and validity) with the given
    basic constraints and key usage, signed by C{issuer_key}.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.subject if issuer is None else issuer.subject)
        .public_key(template.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
    )
    if constraints is not None:
        builder = builder.add_extension(constraints, critical=True)
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if copy_sgx:
        ext = template.extensions.get_extension_for_oid(
            x509.ObjectIdentifier("1.2.840.113741.1.13.1")
        )
        builder = builder.add_extension(ext.value, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _usage(**flags: bool) -> x509.KeyUsage:
    """
    A KeyUsage with only the named flags set.
    """
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    )
    return x509.KeyUsage(
        **{n: flags.get(n, False) for n in names},
        encipher_only=False,
        decipher_only=False,
    )


_CA_USAGE = _usage(key_cert_sign=True, crl_sign=True)
_LEAF_USAGE = _usage(digital_signature=True, content_commitment=True)


def _with_chain(quote: bytes, certs: list[x509.Certificate]) -> bytes:
    """
    C{quote} (with 32 bytes of QE auth data) carrying C{certs} as its
    type-5 certification data, lengths updated.
    """
    chain = b"".join(c.public_bytes(Encoding.PEM) for c in certs) + b"\0"
    sig_data = (
        quote[_SIG:_CERT_TYPE] + struct.pack("<HI", 5, len(chain)) + chain
    )
    return quote[:432] + struct.pack("<I", len(sig_data)) + sig_data


def _with_qe_report_data(
    quote: bytes, pck_key: ec.EllipticCurvePrivateKey, report_data: bytes
) -> bytes:
    """
    C{quote} with new QE report data, the QE report signed again with
    the PCK key.
    """
    raw = bytearray(quote)
    raw[_QE_REPORT + 320 : _QE_REPORT + 384] = report_data
    der = pck_key.sign(
        bytes(raw[_QE_REPORT : _QE_REPORT + 384]), ec.ECDSA(hashes.SHA256())
    )
    r, s = decode_dss_signature(der)
    raw[_QE_SIG : _QE_SIG + 64] = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return bytes(raw)


class TestCraftedEvidence:
    """
    Evidence signed by the simulated PKI's keys but assembled by hand, to
    reach the certificate profile and QE binding checks.
    """

    def _verify(
        self, pki: SimulatedPKI, quote: bytes, root: x509.Certificate
    ) -> QuoteVerdict:
        return verify_quote(
            quote,
            pki.issue_collateral(T_SIM).collateral(),
            now=T_SIM,
            trust_root=TrustRoot.from_der(root.public_bytes(Encoding.DER)),
        )

    def _chain(
        self,
        pki: SimulatedPKI,
        *,
        ca_constraints: x509.BasicConstraints | None = None,
        ca_usage: x509.KeyUsage | None = _CA_USAGE,
        leaf_constraints: x509.BasicConstraints | None = None,
        leaf_usage: x509.KeyUsage | None = _LEAF_USAGE,
        root_path_length: int | None = None,
    ) -> tuple[bytes, x509.Certificate]:
        """
        A quote whose PCK chain is re-issued with the given profile (the
        same names and keys as the PKI's), and the root to trust.
        """
        root = pki.root_certificate
        if root_path_length is not None:
            root = _issue(
                root,
                None,
                pki.root_key,
                constraints=x509.BasicConstraints(True, root_path_length),
                usage=_CA_USAGE,
            )
        ca = _issue(
            pki.pck_ca_certificate,
            root,
            pki.root_key,
            constraints=ca_constraints or x509.BasicConstraints(True, 0),
            usage=ca_usage,
        )
        leaf = _issue(
            pki.pck_certificate,
            ca,
            pki.pck_ca_key,
            constraints=leaf_constraints or x509.BasicConstraints(False, None),
            usage=leaf_usage,
            copy_sgx=True,
        )
        quote = pki.quoting_enclave().quote_for(b"crafted")
        return _with_chain(quote, [leaf, ca, root]), root

    def test_well_formed_chain(self) -> None:
        """
        A re-issued chain with Intel's profile verifies (control for the
        tests below).
        """
        pki = SimulatedPKI.generate(now=T_SIM)
        quote, root = self._chain(pki)
        assert TcbStatus.UP_TO_DATE is self._verify(pki, quote, root).status

    @pytest.mark.parametrize(
        ("profile", "match"),
        [
            ({"ca_constraints": x509.BasicConstraints(False, None)}, "no CA"),
            (
                {"ca_usage": _usage(digital_signature=True)},
                "may not sign cert",
            ),
            (
                {"leaf_constraints": x509.BasicConstraints(True, None)},
                "is a CA certificate",
            ),
            (
                {"leaf_usage": _usage(content_commitment=True)},
                "may not sign$",
            ),
            ({"root_path_length": 0}, "path length 0"),
        ],
    )
    def test_profile_refused(
        self, profile: dict[str, object], match: str
    ) -> None:
        """
        A PCK chain whose CA is no CA, may not sign certificates, whose
        leaf is a CA or may not sign, or that breaks a path length, is
        refused.
        """
        pki = SimulatedPKI.generate(now=T_SIM)
        quote, root = self._chain(pki, **profile)  # type: ignore[arg-type]
        with pytest.raises(CertificateChainError, match=match):
            self._verify(pki, quote, root)

    def test_ca_without_crl_sign(self) -> None:
        """
        A PCK CA whose key usage does not allow CRL signing cannot vouch
        for the PCK CRL.
        """
        pki = SimulatedPKI.generate(now=T_SIM)
        quote, root = self._chain(pki, ca_usage=_usage(key_cert_sign=True))
        with pytest.raises(CRLError, match="may not sign CRLs"):
            self._verify(pki, quote, root)

    def test_qe_report_data_upper_half(self) -> None:
        """
        A correctly signed QE report whose report data is not zero after
        the key hash is refused; the same report with zeros verifies.
        """
        pki = SimulatedPKI.generate(now=T_SIM)
        quote = pki.quoting_enclave().quote_for(b"")
        parsed = Quote.from_bytes(quote)
        digest = hashlib.sha256(
            parsed.attestation_key + parsed.qe_auth_data
        ).digest()
        good = _with_qe_report_data(quote, pki.pck_key, digest + bytes(32))
        bad = _with_qe_report_data(
            quote, pki.pck_key, digest + b"\1" + bytes(31)
        )
        root = pki.root_certificate
        assert TcbStatus.UP_TO_DATE is self._verify(pki, good, root).status
        with pytest.raises(QEReportBindingError, match="not zero"):
            self._verify(pki, bad, root)
