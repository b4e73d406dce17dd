"""
End-to-end RA-TLS certificate verification (evidence, DCAP quote, policy)
on the real Gramine certificates and the automata-0825 collateral bundle.
"""

from __future__ import annotations

import datetime
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from attestd._collateral import Collateral
from attestd._dcap import TcbStatus, TrustRoot
from attestd._policy import Policy
from attestd._verifier import (
    RATLSVerdict,
    evaluate_ratls_certificate,
    verify_ratls_certificate,
)
from attestd.errors import (
    BindingError,
    CollateralExpiredError,
    CollateralNotYetValidError,
    InsecurePolicyWarning,
    Mismatch,
    MissingEvidenceError,
    PolicyError,
    UntrustedRootError,
)

from ._vectors import (
    AUTOMATA_BUNDLE,
    CCC_DER,
    KONVERA_DER,
    KONVERA_QUOTE,
    expected,
)

BUNDLE = expected()["automata_0825_bundle"]
NOW = BUNDLE["verification_time"]
WINDOW = BUNDLE["computed_valid_time_window"]
KONVERA_ADVISORIES = BUNDLE["vectors"][
    "gramine-ratls-certs/konvera_gramine_legacy_quote.bin"
]["computed_advisory_ids"]
CCC_ADVISORIES = BUNDLE["vectors"][
    "gramine-ratls-certs/ccc_gramine_legacy_ext_quote.bin"
]["computed_advisory_ids"]
KONVERA = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
CCC = expected()["ccc_gramine_dualoid_cert"]["computed"]


@pytest.fixture(scope="module")
def collateral() -> Collateral:
    """
    The automata-0825 bundle for FMSPC 00606a000000.
    """
    return Collateral.from_json(AUTOMATA_BUNDLE.read_text())


def measured(source: dict[str, object], **changes: object) -> Policy:
    """
    A policy naming the measurements of C{source} exactly, with changes.
    """
    fields: dict[str, object] = {
        "mrenclave": bytes.fromhex(str(source["mrenclave"])),
        "mrsigner": bytes.fromhex(str(source["mrsigner"])),
        "isv_prod_id": source["isv_prod_id"],
        "isv_svn": source["isv_svn"],
    }
    fields.update(changes)
    return Policy(**fields)  # type: ignore[arg-type]


def env_of(source: dict[str, object], **changes: str) -> dict[str, str]:
    """
    C{RA_TLS_*} variables naming the measurements of C{source}.
    """
    env = {
        "RA_TLS_MRENCLAVE": str(source["mrenclave"]),
        "RA_TLS_MRSIGNER": str(source["mrsigner"]),
        "RA_TLS_ISV_PROD_ID": str(source["isv_prod_id"]),
        "RA_TLS_ISV_SVN": str(source["isv_svn"]),
    }
    env.update(changes)
    return env


def refused(
    der: bytes, collateral: Collateral, policy: Policy, now: int = NOW
) -> tuple[Mismatch, ...]:
    """
    The mismatches of the L{PolicyError} raised for C{der}.
    """
    with pytest.raises(PolicyError) as info:
        verify_ratls_certificate(der, collateral, policy, now=now)
    return info.value.mismatches


def fields(mismatches: tuple[Mismatch, ...]) -> list[str]:
    """
    The checked fields of some mismatches, in order.
    """
    return [m.field for m in mismatches]


def foreign_root() -> TrustRoot:
    """
    A self-signed P-256 CA that is not Intel's.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other Root")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365 * 20))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .sign(key, hashes.SHA256())
    )
    return TrustRoot.from_der(cert.public_bytes(Encoding.DER))


class TestKonvera:
    def test_refused_by_default(self, collateral: Collateral) -> None:
        """
        The konvera certificate with its own measurements is refused by
        default, for one reason: the platform is OutOfDate, with its six
        advisories listed.
        """
        (mismatch,) = refused(
            KONVERA_DER.read_bytes(), collateral, measured(KONVERA)
        )
        assert "tcb_status" == mismatch.field
        assert mismatch.actual.startswith("OutOfDate")
        assert 6 == len(KONVERA_ADVISORIES)
        for advisory in KONVERA_ADVISORIES:
            assert advisory in mismatch.actual

    def test_accepted_with_outdated(self, collateral: Collateral) -> None:
        """
        With allow-outdated the konvera certificate is accepted, and the
        verdict carries its measurements, status and advisories.
        """
        verdict = verify_ratls_certificate(
            KONVERA_DER.read_bytes(),
            collateral,
            measured(KONVERA, allow_outdated_tcb_insecure=True),
            now=NOW,
        )
        report = verdict.quote.quote.report
        assert (
            KONVERA["mrenclave"],
            KONVERA["mrsigner"],
            KONVERA["isv_prod_id"],
            KONVERA["isv_svn"],
        ) == (
            report.mrenclave.hex(),
            report.mrsigner.hex(),
            report.isv_prod_id,
            report.isv_svn,
        )
        assert verdict.quote.status == TcbStatus.OUT_OF_DATE
        assert tuple(KONVERA_ADVISORIES) == verdict.quote.advisory_ids
        assert "legacy" == verdict.evidence.kind
        assert KONVERA_QUOTE.read_bytes() == verdict.quote.quote.raw
        assert verdict.accepted
        assert not verdict.quote.collateral_expired

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"mrenclave": bytes(32)}, "mrenclave"),
            ({"mrsigner": bytes.fromhex(CCC["mrsigner"])}, "mrsigner"),
            ({"isv_prod_id": 1}, "isv_prod_id"),
            ({"isv_svn": 1}, "isv_svn"),
        ],
    )
    def test_each_wrong_measurement(
        self, collateral: Collateral, changes: dict[str, object], field: str
    ) -> None:
        """
        A wrong MRENCLAVE, MRSIGNER or ISVPRODID, or a required ISVSVN
        above the enclave's, refuses the certificate even with
        allow-outdated, with that one mismatch.
        """
        policy = measured(KONVERA, allow_outdated_tcb_insecure=True, **changes)
        assert [field] == fields(
            refused(KONVERA_DER.read_bytes(), collateral, policy)
        )

    def test_all_wrong_all_reported(self, collateral: Collateral) -> None:
        """
        When all four measurements are wrong and the TCB is not allowed,
        all five reasons are reported in one error.
        """
        policy = Policy(
            mrenclave=bytes.fromhex(CCC["mrenclave"]),
            mrsigner=bytes.fromhex(CCC["mrsigner"]),
            isv_prod_id=3,
            isv_svn=2,
        )
        mismatches = refused(KONVERA_DER.read_bytes(), collateral, policy)
        assert [
            "mrenclave",
            "mrsigner",
            "isv_prod_id",
            "isv_svn",
            "tcb_status",
        ] == fields(mismatches)
        assert Mismatch("isv_svn", ">= 2", "0") == mismatches[3]
        assert KONVERA["mrenclave"] == mismatches[0].actual

    def test_evaluate_reports_without_raising(
        self, collateral: Collateral
    ) -> None:
        """
        L{evaluate_ratls_certificate} returns a refused verdict with its
        mismatches and measurements instead of raising.
        """
        verdict = evaluate_ratls_certificate(
            KONVERA_DER.read_bytes(),
            collateral,
            measured(KONVERA, isv_svn=4),
            now=NOW,
        )
        assert not verdict.accepted
        assert ["isv_svn", "tcb_status"] == fields(verdict.mismatches)
        data = verdict.to_json_dict()
        assert data["accepted"] is False
        assert [
            "isv_svn",
            "tcb_status",
        ] == [m["field"] for m in data["mismatches"]]

    def test_explicit_intel_root(self, collateral: Collateral) -> None:
        """
        Passing the Intel root explicitly gives the same verdict as the
        default.
        """
        policy = measured(KONVERA, allow_outdated_tcb_insecure=True)
        der = KONVERA_DER.read_bytes()
        assert verify_ratls_certificate(
            der, collateral, policy, now=NOW
        ) == verify_ratls_certificate(
            der, collateral, policy, now=NOW, trust_root=TrustRoot.intel()
        )

    def test_foreign_root_refused(self, collateral: Collateral) -> None:
        """
        With another root pinned, the Intel-signed evidence is refused as
        untrusted, whatever the policy allows.
        """
        with pytest.warns(InsecurePolicyWarning, match="any enclave"):
            policy = Policy(
                mrenclave=None,
                mrsigner=None,
                isv_prod_id=None,
                isv_svn=None,
                allow_outdated_tcb_insecure=True,
                allow_debug_enclave_insecure=True,
                accept_any_enclave=True,
            )
        with pytest.raises(UntrustedRootError):
            verify_ratls_certificate(
                KONVERA_DER.read_bytes(),
                collateral,
                policy,
                now=NOW,
                trust_root=foreign_root(),
            )


class TestCollateralWindow:
    def test_expired_needs_outdated(self, collateral: Collateral) -> None:
        """
        One second after the collateral's window, the certificate is
        refused as expired without allow-outdated, and accepted (and
        flagged) with it.
        """
        after = WINDOW[1] + 1
        der = KONVERA_DER.read_bytes()
        with pytest.raises(CollateralExpiredError):
            verify_ratls_certificate(
                der, collateral, measured(KONVERA), now=after
            )
        verdict = verify_ratls_certificate(
            der,
            collateral,
            measured(KONVERA, allow_outdated_tcb_insecure=True),
            now=after,
        )
        assert verdict.quote.collateral_expired
        assert verdict.to_json_dict()["collateral_expired"] is True

    def test_last_second(self, collateral: Collateral) -> None:
        """
        At the last second of the window the collateral is current.
        """
        verdict = verify_ratls_certificate(
            KONVERA_DER.read_bytes(),
            collateral,
            measured(KONVERA, allow_outdated_tcb_insecure=True),
            now=WINDOW[1],
        )
        assert not verdict.quote.collateral_expired

    def test_not_yet_valid(self, collateral: Collateral) -> None:
        """
        One second before the window, the collateral is refused even with
        allow-outdated.
        """
        with pytest.raises(CollateralNotYetValidError):
            verify_ratls_certificate(
                KONVERA_DER.read_bytes(),
                collateral,
                measured(KONVERA, allow_outdated_tcb_insecure=True),
                now=WINDOW[0] - 1,
            )


class TestCCC:
    @pytest.mark.parametrize(
        ("debug", "outdated", "reasons"),
        [
            (False, False, ["debug", "tcb_status"]),
            (True, False, ["tcb_status"]),
            (False, True, ["debug"]),
        ],
    )
    def test_needs_both(
        self,
        collateral: Collateral,
        debug: bool,
        outdated: bool,
        reasons: list[str],
    ) -> None:
        """
        The CCC debug certificate is refused unless both debug enclaves
        and outdated TCBs are allowed; each missing switch is a reason.
        """
        policy = measured(
            CCC,
            allow_debug_enclave_insecure=debug,
            allow_outdated_tcb_insecure=outdated,
        )
        assert reasons == fields(
            refused(CCC_DER.read_bytes(), collateral, policy)
        )

    def test_accepted_with_both(self, collateral: Collateral) -> None:
        """
        With allow-debug and allow-outdated the CCC certificate is
        accepted through its DICE evidence: OutOfDate with ten
        advisories, a debug enclave.
        """
        verdict = verify_ratls_certificate(
            CCC_DER.read_bytes(),
            collateral,
            measured(
                CCC,
                allow_debug_enclave_insecure=True,
                allow_outdated_tcb_insecure=True,
            ),
            now=NOW,
        )
        assert "dice" == verdict.evidence.kind
        assert verdict.quote.status == TcbStatus.OUT_OF_DATE
        assert 10 == len(CCC_ADVISORIES)
        assert tuple(CCC_ADVISORIES) == verdict.quote.advisory_ids
        assert verdict.quote.quote.report.debug
        assert CCC["mrenclave"] == verdict.quote.quote.report.mrenclave.hex()

    def test_ten_advisories_in_refusal(self, collateral: Collateral) -> None:
        """
        The refusal of the CCC certificate lists its ten advisories.
        """
        policy = measured(CCC, allow_debug_enclave_insecure=True)
        (mismatch,) = refused(CCC_DER.read_bytes(), collateral, policy)
        for advisory in CCC_ADVISORIES:
            assert advisory in mismatch.actual


class TestEnvironment:
    def test_default_refused(self, collateral: Collateral) -> None:
        """
        The konvera measurements from RA_TLS_* variables alone refuse the
        OutOfDate platform.
        """
        policy = Policy.from_env(env_of(KONVERA))
        assert ["tcb_status"] == fields(
            refused(KONVERA_DER.read_bytes(), collateral, policy)
        )

    def test_outdated_allowed(self, collateral: Collateral) -> None:
        """
        RA_TLS_ALLOW_OUTDATED_TCB_INSECURE=1 accepts the konvera
        certificate, as Gramine's verifier does with its source's
        settings.
        """
        env = env_of(KONVERA, **KONVERA["ra_tls_verify_with"])
        verdict = verify_ratls_certificate(
            KONVERA_DER.read_bytes(),
            collateral,
            Policy.from_env(env),
            now=NOW,
        )
        assert verdict.accepted

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"RA_TLS_MRENCLAVE": "00" * 32}, "mrenclave"),
            ({"RA_TLS_MRSIGNER": CCC["mrsigner"]}, "mrsigner"),
            ({"RA_TLS_ISV_PROD_ID": "5"}, "isv_prod_id"),
            ({"RA_TLS_ISV_SVN": "1"}, "isv_svn"),
        ],
    )
    def test_wrong_values(
        self, collateral: Collateral, changes: dict[str, str], field: str
    ) -> None:
        """
        A wrong value in any RA_TLS_* measurement variable refuses the
        certificate with that mismatch.
        """
        env = env_of(
            KONVERA, RA_TLS_ALLOW_OUTDATED_TCB_INSECURE="1", **changes
        )
        assert [field] == fields(
            refused(KONVERA_DER.read_bytes(), collateral, Policy.from_env(env))
        )

    def test_any_everywhere(self, collateral: Collateral) -> None:
        """
        C{any} for all four measurements accepts the konvera certificate
        with allow-outdated and logs the any-enclave warning; the CCC one
        still needs allow-debug.
        """
        env = {
            "RA_TLS_MRENCLAVE": "any",
            "RA_TLS_MRSIGNER": "any",
            "RA_TLS_ISV_PROD_ID": "any",
            "RA_TLS_ISV_SVN": "any",
            "RA_TLS_ALLOW_OUTDATED_TCB_INSECURE": "1",
        }
        with pytest.warns(InsecurePolicyWarning, match="any enclave"):
            policy = Policy.from_env(env)
        verify_ratls_certificate(
            KONVERA_DER.read_bytes(), collateral, policy, now=NOW
        )
        assert ["debug"] == fields(
            refused(CCC_DER.read_bytes(), collateral, policy)
        )

    def test_same_as_python(self, collateral: Collateral) -> None:
        """
        The environment and the Python API build the same policy, hence
        the same verdict.
        """
        env = env_of(CCC, RA_TLS_ALLOW_DEBUG_ENCLAVE_INSECURE="1")
        python = measured(CCC, allow_debug_enclave_insecure=True)
        assert python == Policy.from_env(env)
        der = CCC_DER.read_bytes()
        assert refused(der, collateral, python) == refused(
            der, collateral, Policy.from_env(env)
        )


class TestEvidenceFirst:
    def test_binding_checked(self, collateral: Collateral) -> None:
        """
        A certificate whose quote does not bind its key is refused before
        the quote is verified.
        """
        der = KONVERA_DER.read_bytes()
        quote = KONVERA_QUOTE.read_bytes()
        other = bytearray(quote)
        other[368] ^= 1
        with pytest.raises(BindingError):
            verify_ratls_certificate(
                der.replace(quote, bytes(other)),
                collateral,
                measured(KONVERA, allow_outdated_tcb_insecure=True),
                now=NOW,
            )

    def test_no_evidence(self, collateral: Collateral) -> None:
        """
        A certificate without RA-TLS evidence is refused as such.
        """
        der = KONVERA_DER.read_bytes().replace(
            bytes.fromhex("060b06092a864886f84d8a3906"),
            bytes.fromhex("060b06092a864886f84d8a3907"),
        )
        with pytest.raises(MissingEvidenceError):
            verify_ratls_certificate(
                der, collateral, measured(KONVERA), now=NOW
            )


class TestJSON:
    def test_audit_record(self, collateral: Collateral) -> None:
        """
        The JSON verdict names the certificate by SHA-256, the evidence
        kind, the measurements, the TCB status and advisories, the policy
        and every collateral piece by the digest of its exact bytes.
        """
        der = KONVERA_DER.read_bytes()
        policy = measured(KONVERA, allow_outdated_tcb_insecure=True)
        verdict = verify_ratls_certificate(der, collateral, policy, now=NOW)
        data = json.loads(json.dumps(verdict.to_json_dict()))
        assert hashlib.sha256(der).hexdigest() == data["certificate_sha256"]
        assert "legacy" == data["evidence_kind"]
        assert data["accepted"] is True
        assert [] == data["mismatches"]
        assert KONVERA["mrenclave"] == data["measurements"]["mrenclave"]
        assert KONVERA["mrsigner"] == data["measurements"]["mrsigner"]
        assert data["measurements"]["debug"] is False
        assert "OutOfDate" == data["status"]
        assert KONVERA_ADVISORIES == data["advisory_ids"]
        assert policy.to_json_dict() == data["policy"]
        digests = collateral.digests()
        records = {use["name"]: use for use in data["collateral"]}
        assert {
            "tcb_info",
            "qe_identity",
            "pck_crl",
            "root_ca_crl",
        } == set(records)
        for name, use in records.items():
            assert digests[name] == use["sha256"]
            assert use["issuer"]
            assert use["issue_date"] < use["next_update"]

    def test_verdict_type(self, collateral: Collateral) -> None:
        """
        The verdict keeps the evidence, the DCAP verdict and the policy.
        """
        policy = measured(
            CCC,
            allow_debug_enclave_insecure=True,
            allow_outdated_tcb_insecure=True,
        )
        verdict = verify_ratls_certificate(
            CCC_DER.read_bytes(), collateral, policy, now=NOW
        )
        assert isinstance(verdict, RATLSVerdict)
        assert policy is verdict.policy
        assert verdict.evidence.quote == verdict.quote.quote
