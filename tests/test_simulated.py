"""
Tests for the simulated DCAP infrastructure: its certificates, quotes,
collateral and RA-TLS certificates have the real formats (compared with
the real vectors), their signatures hold, and an independent verifier
(dcap-qvl, given the simulated root) reaches the configured verdicts.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import stat
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import cbor2
import dcap_qvl
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
)
from pyasn1.codec.der import decoder as der_decoder

from attestd._collateral import Collateral
from attestd._dcap import QuoteVerdict, TrustRoot, verify_quote
from attestd._evidence import (
    OID_DICE_TAGGED_EVIDENCE,
    OID_LEGACY_GRAMINE,
    CertificateInfo,
    RATLSEvidence,
)
from attestd._pck import PCKExtension
from attestd._quote import FLAG_DEBUG, INTEL_QE_VENDOR_ID, Quote
from attestd._simulated import (
    OID_SGX_EXTENSIONS,
    TCB_STATUSES,
    CollateralOptions,
    QETCBLevel,
    SimulatedCollateral,
    SimulatedEnclave,
    SimulatedPKI,
    SimulatedPlatform,
    SimulatedQuotingEnclave,
    TCBLevel,
    is_simulated_root,
    mint_ratls_certificate,
    qe_levels_with_status,
    tcb_levels_with_status,
)
from attestd._simulated_x509 import encode_sgx_extension
from attestd._tcb import QEIdentity, TCBInfo
from attestd.errors import (
    CollateralExpiredError,
    CollateralMismatchError,
    CollateralNotYetValidError,
    ConfigurationError,
    QEIdentityMismatchError,
    RevokedError,
    SimulatedEvidenceError,
)

from ._vectors import (
    DCAP_QVL_COLLATERAL,
    DCAP_QVL_QUOTE,
    INTEL_ROOT_DER,
    KONVERA_DER,
    KONVERA_QUOTE,
    VECTORS,
)

#: The simulated PKI is made at this time (2025-08-15T05:45:00Z, the day
#: of the automata collateral bundle) and collateral is issued then.
NOW = 1755236700
#: Verification happens a minute later.
LATER = NOW + 60
UTC = datetime.timezone.utc

ENCLAVE = SimulatedEnclave(
    mrenclave=bytes.fromhex("11" * 32),
    mrsigner=bytes.fromhex("22" * 32),
    isv_prod_id=7,
    isv_svn=3,
)


@pytest.fixture(scope="module")
def pki() -> SimulatedPKI:
    """
    One simulated PKI for the whole module.
    """
    return SimulatedPKI.generate(now=NOW)


@pytest.fixture(scope="module")
def qe(pki: SimulatedPKI) -> SimulatedQuotingEnclave:
    """
    A quoting enclave of the default platform quoting L{ENCLAVE}.
    """
    return pki.quoting_enclave(ENCLAVE)


@pytest.fixture(scope="module")
def quote_bytes(qe: SimulatedQuotingEnclave) -> bytes:
    """
    One quote with recognisable report data.
    """
    return qe.quote_for(b"report data")


@pytest.fixture(scope="module")
def collateral(pki: SimulatedPKI) -> SimulatedCollateral:
    """
    Default collateral issued at L{NOW}.
    """
    return pki.issue_collateral(NOW)


def qvl(
    quote: bytes,
    collateral: SimulatedCollateral,
    root_der: bytes,
    at: int = LATER,
) -> Any:
    """
    Verify with dcap-qvl, trusting C{root_der}.
    """
    bundle = dcap_qvl.QuoteCollateralV3.from_json(collateral.collateral_json())
    return dcap_qvl.verify_with_root_ca(quote, bundle, root_der, at)


def verify_raw(key: Any, signature: bytes, data: bytes) -> None:
    """
    Check an r || s ECDSA-P256/SHA-256 signature; raises if it fails.
    """
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:], "big"),
    )
    key.verify(der, data, ec.ECDSA(hashes.SHA256()))


def point_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    """
    The P-256 public key of a raw X || Y point.
    """
    return ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + raw
    )


def decode_sgx_extension(certificate: x509.Certificate) -> dict[str, Any]:
    """
    Walk a PCK certificate's SGX extension with a schema-less DER decoder
    (independently of the encoder) into {sub-OID: value}.
    """
    value = certificate.extensions.get_extension_for_oid(
        x509.ObjectIdentifier(OID_SGX_EXTENSIONS)
    ).value
    assert isinstance(value, x509.UnrecognizedExtension)
    decoded, rest = der_decoder.decode(value.value)
    assert rest == b""

    def walk(node: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for entry in node:
            oid = str(entry[0])
            item = entry[1]
            tag = item.tagSet[-1].tagId
            if tag == 16:  # SEQUENCE: nested entries
                out.update(walk(item))
            elif tag == 4:  # OCTET STRING
                out[oid] = bytes(item)
            elif tag == 1:  # BOOLEAN
                out[oid] = bool(item)
            else:  # INTEGER, ENUMERATED
                out[oid] = (tag, int(item))
        return out

    return walk(decoded)


def real_konvera_chain() -> list[x509.Certificate]:
    """
    The PCK chain (Platform CA) inside the real konvera quote.
    """
    quote = Quote.from_bytes(KONVERA_QUOTE.read_bytes())
    return [x509.load_pem_x509_certificate(c) for c in quote.pck_chain_pem()]


def extension_profile(
    certificate: x509.Certificate,
) -> list[tuple[str, bool]]:
    """
    (OID, critical) of each extension, CRL distribution points aside.
    """
    return [
        (e.oid.dotted_string, e.critical)
        for e in certificate.extensions
        if e.oid != x509.oid.ExtensionOID.CRL_DISTRIBUTION_POINTS
    ]


class TestPKI:
    def test_root_says_simulated(self, pki: SimulatedPKI) -> None:
        """
        The root's subject names it a simulated root; Intel's is not one.
        """
        subject = pki.root_certificate.subject.rfc4514_string()
        assert "SIMULATED" in subject
        assert "not Intel" in subject
        assert is_simulated_root(pki.root_certificate)
        intel = x509.load_der_x509_certificate(INTEL_ROOT_DER.read_bytes())
        assert not is_simulated_root(intel)
        for certificate in (
            pki.pck_ca_certificate,
            pki.tcb_signing_certificate,
            pki.pck_certificate,
        ):
            assert "SIMULATED" in certificate.subject.rfc4514_string()

    def test_chain_signatures(self, pki: SimulatedPKI) -> None:
        """
        PCK leaf, PCK CA and TCB signing certificates chain to the root,
        which signs itself.
        """
        root = pki.root_certificate
        root.verify_directly_issued_by(root)
        pki.pck_ca_certificate.verify_directly_issued_by(root)
        pki.tcb_signing_certificate.verify_directly_issued_by(root)
        pki.pck_certificate.verify_directly_issued_by(pki.pck_ca_certificate)

    def test_profile_matches_intel(self, pki: SimulatedPKI) -> None:
        """
        Each certificate has the extensions, criticality, key usage and
        basic constraints of its counterpart in a real PCK chain, P-256
        keys and ecdsa-with-SHA256.
        """
        real = real_konvera_chain()
        mine = [pki.pck_certificate, pki.pck_ca_certificate]
        mine.append(pki.root_certificate)
        for simulated, intel in zip(mine, real, strict=True):
            assert extension_profile(intel) == extension_profile(simulated)
            for kind in (x509.KeyUsage, x509.BasicConstraints):
                assert (
                    intel.extensions.get_extension_for_class(kind).value
                    == simulated.extensions.get_extension_for_class(kind).value
                )
            key = simulated.public_key()
            assert isinstance(key, ec.EllipticCurvePublicKey)
            assert isinstance(key.curve, ec.SECP256R1)
            assert intel.signature_algorithm_oid == (
                simulated.signature_algorithm_oid
            )
        assert "PCK Platform CA" in (
            pki.pck_ca_certificate.subject.rfc4514_string()
        )

    def test_now_is_respected(self, pki: SimulatedPKI) -> None:
        """
        Every certificate is valid at the creation time and for years.
        """
        when = datetime.datetime.fromtimestamp(NOW, UTC)
        for certificate in (
            pki.root_certificate,
            pki.pck_ca_certificate,
            pki.tcb_signing_certificate,
            pki.pck_certificate,
        ):
            assert certificate.not_valid_before_utc < when
            assert certificate.not_valid_after_utc > when + datetime.timedelta(
                days=5 * 365
            )

    def test_processor_ca(self) -> None:
        """
        With a Processor CA, the PCK leaf lacks the platform instance id
        and configuration, has SGX type Standard, and dcap-qvl reads the
        CA kind from the chain and verifies the quote.
        """
        pki = SimulatedPKI.generate(now=NOW, ca="processor")
        assert pki.ca == "processor"
        fields = decode_sgx_extension(pki.pck_certificate)
        assert f"{OID_SGX_EXTENSIONS}.6" not in fields
        assert f"{OID_SGX_EXTENSIONS}.7.1" not in fields
        assert fields[f"{OID_SGX_EXTENSIONS}.5"] == (10, 0)
        quote = pki.quoting_enclave().quote_for(b"")
        assert dcap_qvl.parse_quote(quote).ca() == "processor"
        report = qvl(
            quote, pki.issue_collateral(NOW), pki.root_certificate_der()
        )
        assert report.status == "UpToDate"
        with pytest.raises(ConfigurationError, match="platform"):
            SimulatedPKI.generate(now=NOW, ca="neither")  # type: ignore[arg-type]


class TestPCKExtension:
    def test_reproduces_real_extension(self) -> None:
        """
        Encoding the values of the real konvera PCK certificate gives
        exactly its extension bytes.
        """
        leaf = real_konvera_chain()[0]
        value = leaf.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(OID_SGX_EXTENSIONS)
        ).value
        assert isinstance(value, x509.UnrecognizedExtension)
        fields = decode_sgx_extension(leaf)
        base = OID_SGX_EXTENSIONS
        encoded = encode_sgx_extension(
            ppid=fields[f"{base}.1"],
            components=[fields[f"{base}.2.{n}"][1] for n in range(1, 17)],
            pcesvn=fields[f"{base}.2.17"][1],
            cpusvn=fields[f"{base}.2.18"],
            pce_id=fields[f"{base}.3"],
            fmspc=fields[f"{base}.4"],
            sgx_type=fields[f"{base}.5"][1],
            platform_instance_id=fields[f"{base}.6"],
            configuration=(
                fields[f"{base}.7.1"],
                fields[f"{base}.7.2"],
                fields[f"{base}.7.3"],
            ),
        )
        assert value.value == encoded

    def test_round_trip(self, pki: SimulatedPKI) -> None:
        """
        A PCK certificate for a configured platform decodes back to its
        FMSPC, PCE-ID, component SVNs, PCESVN, CPUSVN, SGX type and
        configuration, both here and with dcap-qvl's parser.
        """
        platform = SimulatedPlatform(
            fmspc=bytes.fromhex("00906ed50000"),
            pce_id=b"\x00\x01",
            tcb_components=list(range(1, 17)),
            pcesvn=300,
            smt_enabled=True,
        )
        leaf = pki.issue_pck_certificate(platform)
        leaf.verify_directly_issued_by(pki.pck_ca_certificate)
        base = OID_SGX_EXTENSIONS
        fields = decode_sgx_extension(leaf)
        assert [fields[f"{base}.2.{n}"] for n in range(1, 17)] == [
            (2, n) for n in range(1, 17)
        ]
        assert fields[f"{base}.2.17"] == (2, 300)
        assert fields[f"{base}.2.18"] == bytes(range(1, 17))
        assert fields[f"{base}.3"] == b"\x00\x01"
        assert fields[f"{base}.4"] == bytes.fromhex("00906ed50000")
        assert fields[f"{base}.5"] == (10, 1)
        assert len(fields[f"{base}.1"]) == 16
        assert len(fields[f"{base}.6"]) == 16
        assert (
            fields[f"{base}.7.1"],
            fields[f"{base}.7.2"],
            fields[f"{base}.7.3"],
        ) == (True, False, True)
        parsed = dcap_qvl.parse_pck_extension_from_pem(
            leaf.public_bytes(Encoding.PEM)
        )
        assert bytes(parsed.fmspc) == platform.fmspc
        assert bytes(parsed.pce_id) == platform.pce_id
        assert parsed.pce_svn == 300
        assert bytes(parsed.cpu_svn) == bytes(range(1, 17))

    def test_platform_validation(self) -> None:
        """
        Wrong sizes and out-of-range SVNs are configuration errors.
        """
        with pytest.raises(ConfigurationError, match="FMSPC"):
            SimulatedPlatform(fmspc=b"\0" * 5)
        with pytest.raises(ConfigurationError, match="16 component"):
            SimulatedPlatform(tcb_components=(1, 2, 3))
        with pytest.raises(ConfigurationError, match="component SVN"):
            SimulatedPlatform(tcb_components=(256,) + (0,) * 15)
        with pytest.raises(ConfigurationError, match="MRENCLAVE"):
            SimulatedEnclave(mrenclave=b"short")
        with pytest.raises(ConfigurationError, match="unknown TCB status"):
            TCBLevel(components=(0,) * 16, pcesvn=0, status="Fine")
        with pytest.raises(ConfigurationError, match="unknown TCB status"):
            QETCBLevel(isvsvn=1, status="SWHardeningNeeded")


class TestQuote:
    def test_parses(
        self, quote_bytes: bytes, qe: SimulatedQuotingEnclave
    ) -> None:
        """
        The quote parses with attestd's parser into the configured
        header and report body, report data padded with zero bytes.
        """
        quote = Quote.from_bytes(quote_bytes)
        header = quote.header
        assert (header.version, header.att_key_type, header.tee_type) == (
            3,
            2,
            0,
        )
        assert header.qe_svn == qe.platform.qe_svn == 8
        assert header.pce_svn == qe.platform.pcesvn == 13
        assert header.qe_vendor_id == INTEL_QE_VENDOR_ID
        assert header.user_data == qe.qe_id + bytes(4)
        report = quote.report
        assert report.mrenclave == ENCLAVE.mrenclave
        assert report.mrsigner == ENCLAVE.mrsigner
        assert (report.isv_prod_id, report.isv_svn) == (7, 3)
        assert report.flags == 0x5
        assert report.xfrm == 0xE7
        assert not report.debug
        assert report.cpu_svn == qe.platform.cpusvn
        assert report.report_data == b"report data".ljust(64, b"\0")
        assert quote.qe_report.isv_prod_id == 1
        assert quote.qe_report.isv_svn == 8
        assert quote.qe_report.flags == 0x15

    def test_layout_matches_real_quotes(self, quote_bytes: bytes) -> None:
        """
        The signature data has the shape of real quotes: 32 bytes of QE
        authentication data 00..1f, certification data type 5 holding a
        three-certificate PEM chain ending in one NUL byte.
        """
        for path in (KONVERA_QUOTE, DCAP_QVL_QUOTE, None):
            data = quote_bytes if path is None else path.read_bytes()
            quote = Quote.from_bytes(data)
            assert quote.qe_auth_data == bytes(range(32))
            assert quote.certification_data_type == 5
            assert len(quote.pck_chain_pem()) == 3
            tail = b"-----END CERTIFICATE-----\n\x00"
            assert quote.certification_data.endswith(tail)
            assert quote.certification_data.count(b"\x00") == 1
            (size,) = struct.unpack_from("<I", data, 432)
            assert size == len(data) - 436
            assert quote.qe_report.report_data[32:] == bytes(32)

    def test_signatures(
        self, quote_bytes: bytes, qe: SimulatedQuotingEnclave
    ) -> None:
        """
        The attestation key signs header and body, the PCK leaf key signs
        the QE report, and the QE report data binds the attestation key
        and the QE authentication data.
        """
        quote = Quote.from_bytes(quote_bytes)
        verify_raw(
            point_key(quote.attestation_key),
            quote.signature,
            quote.signed_data,
        )
        leaf = x509.load_pem_x509_certificate(quote.pck_chain_pem()[0])
        assert leaf == qe.pck_certificate
        verify_raw(
            leaf.public_key(), quote.qe_report_signature, quote.qe_report.raw
        )
        assert quote.qe_report.report_data[:32] == (
            hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest()
        )
        flipped = bytearray(quote.signed_data)
        flipped[100] ^= 1
        with pytest.raises(InvalidSignature):
            verify_raw(
                point_key(quote.attestation_key),
                quote.signature,
                bytes(flipped),
            )

    def test_enclave_override(self, qe: SimulatedQuotingEnclave) -> None:
        """
        A quote can be made for another enclave, e.g. a debug one.
        """
        debug = attrs.evolve(ENCLAVE, flags=ENCLAVE.flags | FLAG_DEBUG)
        quote = Quote.from_bytes(qe.quote_for(bytes(64), enclave=debug))
        assert quote.report.debug
        assert quote.report.flags == 0x7

    def test_report_data_bound(self, qe: SimulatedQuotingEnclave) -> None:
        """
        Report data longer than 64 bytes is refused.
        """
        with pytest.raises(ConfigurationError, match="at most 64"):
            qe.quote_for(bytes(65))

    def test_other_platform(self, pki: SimulatedPKI) -> None:
        """
        A quoting enclave for another platform carries a PCK certificate
        for it, under the same CA, and its header follows the platform.
        """
        platform = SimulatedPlatform(
            fmspc=bytes.fromhex("010203040506"),
            pcesvn=11,
            qe=attrs.evolve(SimulatedPlatform().qe, isv_svn=6),
        )
        qe = pki.quoting_enclave(platform=platform)
        quote = Quote.from_bytes(qe.quote_for(b"x"))
        assert (quote.header.qe_svn, quote.header.pce_svn) == (6, 11)
        leaf = x509.load_pem_x509_certificate(quote.pck_chain_pem()[0])
        assert leaf != pki.pck_certificate
        fields = decode_sgx_extension(leaf)
        assert fields[f"{OID_SGX_EXTENSIONS}.4"] == platform.fmspc
        other = SimulatedPKI.generate(now=NOW)
        with pytest.raises(ConfigurationError, match="PCK key"):
            pki.quoting_enclave(pck_certificate=other.pck_certificate)


class TestCollateral:
    def test_bundle_layout(self, collateral: SimulatedCollateral) -> None:
        """
        The bundle has the keys of dcap-qvl's sample bundle, and both
        attestd's collateral model and dcap-qvl read it.
        """
        sample = json.loads(DCAP_QVL_COLLATERAL.read_text())
        bundle = json.loads(collateral.collateral_json())
        assert list(sample) == list(bundle)
        model = collateral.collateral()
        assert isinstance(model, Collateral)
        assert model == Collateral.from_json(collateral.collateral_json())
        assert model.tcb_info.encode() == collateral.tcb_info
        assert model.pck_crl == collateral.pck_crl_der()
        assert model.root_ca_crl == collateral.root_ca_crl_der()
        parsed = dcap_qvl.QuoteCollateralV3.from_json(
            collateral.collateral_json()
        )
        assert parsed.tcb_info == collateral.tcb_info.decode()

    def test_tcb_info_format(self, collateral: SimulatedCollateral) -> None:
        """
        TCB Info has the keys of real v3 TCB Info, in the same order,
        compact serialisation, the platform's FMSPC and a 30-day window.
        """
        real = json.loads(
            (
                VECTORS / "automata-0825" / "sgx_tcbinfov3_00606a000000.json"
            ).read_text()
        )["tcbInfo"]
        tcb_info = json.loads(collateral.tcb_info)
        assert list(real) == list(tcb_info)
        assert [k for k in real["tcbLevels"][0] if k != "advisoryIDs"] == (
            list(tcb_info["tcbLevels"][0])
        )
        assert list(real["tcbLevels"][0]["tcb"]) == list(
            tcb_info["tcbLevels"][0]["tcb"]
        )
        assert (tcb_info["id"], tcb_info["version"]) == ("SGX", 3)
        assert tcb_info["fmspc"] == SimulatedPlatform().fmspc.hex()
        assert tcb_info["pceId"] == "0000"
        assert tcb_info["issueDate"] == "2025-08-15T05:45:00Z"
        assert tcb_info["nextUpdate"] == "2025-09-14T05:45:00Z"
        assert b" " not in collateral.tcb_info
        assert tcb_info["tcbLevels"] == [
            {
                "tcb": {
                    "sgxtcbcomponents": [
                        {"svn": svn} for svn in SimulatedPlatform().cpusvn
                    ],
                    "pcesvn": 13,
                },
                "tcbDate": "2024-03-13T00:00:00Z",
                "tcbStatus": "UpToDate",
            }
        ]

    def test_qe_identity_format(
        self, collateral: SimulatedCollateral, quote_bytes: bytes
    ) -> None:
        """
        QE Identity has the keys of a real one, in the same order, and
        describes the simulated QE report under its masks.
        """
        real = json.loads(
            (VECTORS / "automata-0825" / "sgx_qeidentity_v4.json").read_text()
        )["enclaveIdentity"]
        identity = json.loads(collateral.qe_identity)
        assert list(real) == list(identity)
        assert (identity["id"], identity["version"]) == ("QE", 2)
        qe_report = Quote.from_bytes(quote_bytes).qe_report
        assert bytes.fromhex(identity["mrsigner"]) == qe_report.mrsigner
        assert identity["isvprodid"] == qe_report.isv_prod_id
        mask = bytes.fromhex(identity["attributesMask"])
        assert bytes(
            a & m for a, m in zip(qe_report.attributes, mask, strict=True)
        ) == bytes.fromhex(identity["attributes"])
        assert identity["attributesMask"] == real["attributesMask"]
        assert identity["tcbLevels"] == [
            {
                "tcb": {"isvsvn": 8},
                "tcbDate": "2024-03-13T00:00:00Z",
                "tcbStatus": "UpToDate",
            }
        ]

    def test_signatures(
        self, pki: SimulatedPKI, collateral: SimulatedCollateral
    ) -> None:
        """
        TCB Info and QE Identity are signed over their exact bytes by the
        TCB signing certificate of their issuer chains, which chains to
        the root; both CRLs are signed by their issuers.
        """
        for chain_pem, signed, signature in (
            (
                collateral.tcb_info_issuer_chain,
                collateral.tcb_info,
                collateral.tcb_info_signature,
            ),
            (
                collateral.qe_identity_issuer_chain,
                collateral.qe_identity,
                collateral.qe_identity_signature,
            ),
        ):
            signing, root = x509.load_pem_x509_certificates(chain_pem)
            assert root == pki.root_certificate
            signing.verify_directly_issued_by(root)
            verify_raw(signing.public_key(), signature, signed)
            with pytest.raises(InvalidSignature):
                verify_raw(signing.public_key(), signature, signed + b" ")
        pck_ca, root = x509.load_pem_x509_certificates(
            collateral.pck_crl_issuer_chain
        )
        assert pck_ca == pki.pck_ca_certificate
        pck_crl = x509.load_der_x509_crl(collateral.pck_crl_der())
        root_crl = x509.load_der_x509_crl(collateral.root_ca_crl_der())
        assert pck_crl.is_signature_valid(pck_ca.public_key())  # type: ignore[arg-type]
        assert root_crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
        assert not pck_crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]

    def test_crl_format(self, collateral: SimulatedCollateral) -> None:
        """
        The CRLs have the extensions of Intel's (CRL number, authority
        key id), the issuers' names and the 30-day window.
        """
        sample = json.loads(DCAP_QVL_COLLATERAL.read_text())
        real = x509.load_der_x509_crl(bytes.fromhex(sample["pck_crl"]))
        for der in (collateral.pck_crl_der(), collateral.root_ca_crl_der()):
            crl = x509.load_der_x509_crl(der)
            assert [e.oid for e in real.extensions] == [
                e.oid for e in crl.extensions
            ]
            assert crl.last_update_utc == datetime.datetime.fromtimestamp(
                NOW, UTC
            )
            assert crl.next_update_utc == (
                crl.last_update_utc + datetime.timedelta(days=30)
            )
            assert len(crl) == 0

    def test_revoked_serials_and_windows(self, pki: SimulatedPKI) -> None:
        """
        Revoked serials are listed with reason keyCompromise, and each
        piece takes its own window when given one.
        """
        start = datetime.datetime(2025, 1, 1, tzinfo=UTC)
        end = datetime.datetime(2025, 2, 1, tzinfo=UTC)
        options = CollateralOptions(
            revoked_pck_serials=[pki.pck_certificate.serial_number, 5],
            revoked_ca_serials=[pki.pck_ca_certificate.serial_number],
            tcb_info_window=(start, end),
            qe_identity_window=(start, end),
            pck_crl_window=(start, end),
            root_crl_window=(start, end),
        )
        issued = pki.issue_collateral(NOW, options)
        pck_crl = x509.load_der_x509_crl(issued.pck_crl_der())
        entry = pck_crl.get_revoked_certificate_by_serial_number(
            pki.pck_certificate.serial_number
        )
        assert entry is not None
        assert entry.extensions.get_extension_for_class(
            x509.CRLReason
        ).value.reason == (x509.ReasonFlags.key_compromise)
        assert len(pck_crl) == 2
        root_crl = x509.load_der_x509_crl(issued.root_ca_crl_der())
        assert (
            root_crl.get_revoked_certificate_by_serial_number(
                pki.pck_ca_certificate.serial_number
            )
            is not None
        )
        for crl in (pck_crl, root_crl):
            assert (crl.last_update_utc, crl.next_update_utc) == (start, end)
        for document in (issued.tcb_info, issued.qe_identity):
            data = json.loads(document)
            assert (data["issueDate"], data["nextUpdate"]) == (
                "2025-01-01T00:00:00Z",
                "2025-02-01T00:00:00Z",
            )

    def test_pcs_responses(self, collateral: SimulatedCollateral) -> None:
        """
        The PCS-style bodies embed the signed objects byte for byte with
        their hex signatures, next to their issuer chains.
        """
        body, chain = collateral.pcs_tcb_info_response()
        assert body.startswith(b'{"tcbInfo":' + collateral.tcb_info + b",")
        assert json.loads(body)["signature"] == (
            collateral.tcb_info_signature.hex()
        )
        assert chain == collateral.tcb_info_issuer_chain
        body, chain = collateral.pcs_qe_identity_response()
        assert body.startswith(
            b'{"enclaveIdentity":' + collateral.qe_identity + b","
        )
        assert json.loads(body)["signature"] == (
            collateral.qe_identity_signature.hex()
        )
        assert len(x509.load_pem_x509_certificates(chain)) == 2
        crl, chain = collateral.pcs_pck_crl_response()
        assert crl == collateral.pck_crl_der()
        assert chain == collateral.pck_crl_issuer_chain


class TestIndependentVerifier:
    """
    dcap-qvl, an independent DCAP verifier, reaches the configured
    verdicts on simulated quotes when given the simulated root.
    """

    def test_up_to_date(
        self,
        pki: SimulatedPKI,
        quote_bytes: bytes,
        collateral: SimulatedCollateral,
    ) -> None:
        """
        Default collateral gives UpToDate with no advisories.
        """
        report = qvl(quote_bytes, collateral, pki.root_certificate_der())
        assert (report.status, list(report.advisory_ids)) == ("UpToDate", [])

    @pytest.mark.parametrize(
        "status", [s for s in TCB_STATUSES if s != "Revoked"]
    )
    def test_each_status(
        self, pki: SimulatedPKI, quote_bytes: bytes, status: str
    ) -> None:
        """
        The platform gets the status and advisories of the level it
        matches.
        """
        advisories = ["INTEL-SA-00615", "INTEL-SA-00828"]
        options = CollateralOptions(
            tcb_levels=tcb_levels_with_status(status, advisories)
        )
        report = qvl(
            quote_bytes,
            pki.issue_collateral(NOW, options),
            pki.root_certificate_der(),
        )
        assert report.status == status
        assert sorted(report.advisory_ids) == advisories

    def test_revoked_tcb(self, pki: SimulatedPKI, quote_bytes: bytes) -> None:
        """
        A Revoked TCB level is refused.
        """
        options = CollateralOptions(
            tcb_levels=tcb_levels_with_status("Revoked")
        )
        with pytest.raises(ValueError, match="Revoked"):
            qvl(
                quote_bytes,
                pki.issue_collateral(NOW, options),
                pki.root_certificate_der(),
            )

    def test_qe_out_of_date(
        self, pki: SimulatedPKI, quote_bytes: bytes
    ) -> None:
        """
        An out-of-date QE makes an up-to-date platform OutOfDate and adds
        its advisories.
        """
        options = CollateralOptions(
            qe_levels=qe_levels_with_status("OutOfDate", ["INTEL-SA-00999"])
        )
        report = qvl(
            quote_bytes,
            pki.issue_collateral(NOW, options),
            pki.root_certificate_der(),
        )
        assert report.status == "OutOfDate"
        assert list(report.advisory_ids) == ["INTEL-SA-00999"]

    def test_intel_root_refuses(
        self, quote_bytes: bytes, collateral: SimulatedCollateral
    ) -> None:
        """
        With Intel's root (dcap-qvl's default) the simulated collateral
        and quote are refused, at the first check that needs the root
        (the root CA CRL's signature).
        """
        bundle = dcap_qvl.QuoteCollateralV3.from_json(
            collateral.collateral_json()
        )
        with pytest.raises(
            ValueError, match="InvalidCrlSignatureForPublicKey"
        ):
            dcap_qvl.verify(quote_bytes, bundle, LATER)

    def test_other_simulated_root_refuses(
        self, quote_bytes: bytes, collateral: SimulatedCollateral
    ) -> None:
        """
        Another simulated PKI's root does not accept this one's quote.
        """
        other = SimulatedPKI.generate(now=NOW)
        with pytest.raises(
            ValueError, match="InvalidCrlSignatureForPublicKey"
        ):
            qvl(quote_bytes, collateral, other.root_certificate_der())

    def test_revoked_pck(self, pki: SimulatedPKI, quote_bytes: bytes) -> None:
        """
        A quote whose PCK certificate the PCK CRL lists is refused.
        """
        options = CollateralOptions(
            revoked_pck_serials=[pki.pck_certificate.serial_number]
        )
        with pytest.raises(ValueError, match=r"[Rr]evoked"):
            qvl(
                quote_bytes,
                pki.issue_collateral(NOW, options),
                pki.root_certificate_der(),
            )

    def test_expired_collateral(
        self,
        pki: SimulatedPKI,
        quote_bytes: bytes,
        collateral: SimulatedCollateral,
    ) -> None:
        """
        At nextUpdate, and before issueDate, the collateral is refused
        (dcap-qvl takes a CRL's nextUpdate as the first invalid second).
        """
        root = pki.root_certificate_der()
        last = NOW + 30 * 86400 - 1
        assert qvl(quote_bytes, collateral, root, last).status == "UpToDate"
        with pytest.raises(ValueError, match=r"[Ee]xpired"):
            qvl(quote_bytes, collateral, root, last + 1)
        with pytest.raises(ValueError, match="future"):
            qvl(quote_bytes, collateral, root, NOW - 1)

    def test_wrong_fmspc(self, pki: SimulatedPKI, quote_bytes: bytes) -> None:
        """
        TCB Info for another FMSPC is refused.
        """
        options = CollateralOptions(fmspc=bytes.fromhex("00606a000000"))
        with pytest.raises(ValueError, match=r"[Ff]mspc"):
            qvl(
                quote_bytes,
                pki.issue_collateral(NOW, options),
                pki.root_certificate_der(),
            )


class TestPersistence:
    @pytest.fixture
    def state(self, tmp_path: Path) -> Iterator[Path]:
        """
        An empty state directory path.
        """
        yield tmp_path / "state"

    def test_same_root_across_loads(self, state: Path) -> None:
        """
        Loading the state again gives the same root, keys and
        certificates; key files are private.
        """
        first = SimulatedPKI.load_or_create(state, now=NOW)
        second = SimulatedPKI.load_or_create(state, now=NOW + 86400)
        assert first.root_sha256() == second.root_sha256()
        assert first.root_certificate_pem() == second.root_certificate_pem()
        for name in (
            "pck_ca_certificate",
            "tcb_signing_certificate",
            "pck_certificate",
        ):
            assert getattr(first, name) == getattr(second, name)
        assert raw(first.pck_key) == raw(second.pck_key)
        assert sorted(p.name for p in state.iterdir()) == [
            ".lock",
            "pck-ca.key",
            "pck-ca.pem",
            "pck.key",
            "pck.pem",
            "root-ca.key",
            "root-ca.pem",
            "tcb-signing.key",
            "tcb-signing.pem",
        ]
        for key_file in state.glob("*.key"):
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert (state / "root-ca.pem").read_bytes() == (
            first.root_certificate_pem()
        )

    def test_loaded_pki_verifies(self, state: Path) -> None:
        """
        Quotes and collateral of a reloaded PKI verify against the root
        saved the first time, with collateral issued at a later time.
        """
        root = SimulatedPKI.load_or_create(state, now=NOW).root_certificate
        pki = SimulatedPKI.load_or_create(state, now=NOW + 3600)
        later = NOW + 40 * 86400
        quote = pki.quoting_enclave().quote_for(b"again")
        report = qvl(
            quote,
            pki.issue_collateral(later),
            root.public_bytes(Encoding.DER),
            later + 1,
        )
        assert report.status == "UpToDate"

    def test_platform_change_keeps_root(self, state: Path) -> None:
        """
        A different platform gets a new PCK certificate under the same
        root and PCK CA, and it is saved.
        """
        first = SimulatedPKI.load_or_create(state, now=NOW)
        platform = SimulatedPlatform(pcesvn=7)
        second = SimulatedPKI.load_or_create(state, now=NOW, platform=platform)
        assert first.root_sha256() == second.root_sha256()
        assert first.pck_ca_certificate == second.pck_ca_certificate
        assert first.pck_certificate != second.pck_certificate
        fields = decode_sgx_extension(second.pck_certificate)
        assert fields[f"{OID_SGX_EXTENSIONS}.2.17"] == (2, 7)
        third = SimulatedPKI.load_or_create(state, now=NOW, platform=platform)
        assert third.pck_certificate == second.pck_certificate

    def test_processor_switch(self, state: Path) -> None:
        """
        Asking for a Processor CA after a Platform CA issues a new PCK CA
        under the same root.
        """
        first = SimulatedPKI.load_or_create(state, now=NOW)
        second = SimulatedPKI.load_or_create(state, now=NOW, ca="processor")
        assert second.ca == "processor"
        assert first.root_sha256() == second.root_sha256()
        second.pck_certificate.verify_directly_issued_by(
            second.pck_ca_certificate
        )

    def test_concurrent_creation(self, state: Path) -> None:
        """
        Callers racing on a fresh directory all end up with one root.
        """
        roots: list[bytes] = []

        def load() -> None:
            roots.append(
                SimulatedPKI.load_or_create(state, now=NOW).root_sha256()
            )

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(roots) == 4
        assert len(set(roots)) == 1
        saved = x509.load_pem_x509_certificate(
            (state / "root-ca.pem").read_bytes()
        )
        assert (
            hashlib.sha256(saved.public_bytes(Encoding.DER)).digest()
            == (roots[0])
        )

    def test_half_root_refused(self, state: Path) -> None:
        """
        A root certificate without its key is a configuration error, not
        a silently new root.
        """
        SimulatedPKI.load_or_create(state, now=NOW)
        os.remove(state / "root-ca.key")
        with pytest.raises(ConfigurationError, match="half of the root"):
            SimulatedPKI.load_or_create(state, now=NOW)

    def test_corrupt_key_refused(self, state: Path) -> None:
        """
        An unreadable key file is a configuration error naming it.
        """
        SimulatedPKI.load_or_create(state, now=NOW)
        (state / "pck.key").write_bytes(b"not a key")
        with pytest.raises(ConfigurationError, match=r"pck\.key"):
            SimulatedPKI.load_or_create(state, now=NOW)

    def test_mismatched_root_refused(self, state: Path) -> None:
        """
        A root certificate that is not the key's is refused.
        """
        SimulatedPKI.load_or_create(state, now=NOW)
        other = SimulatedPKI.generate(now=NOW)
        (state / "root-ca.pem").write_bytes(other.root_certificate_pem())
        with pytest.raises(ConfigurationError, match="does not match"):
            SimulatedPKI.load_or_create(state, now=NOW)

    def test_expired_root_refused(self, state: Path) -> None:
        """
        A root no longer valid at C{now} is refused.
        """
        SimulatedPKI.load_or_create(state, now=NOW)
        with pytest.raises(ConfigurationError, match="not valid"):
            SimulatedPKI.load_or_create(state, now=NOW + 31 * 365 * 86400)


def raw(key: ec.EllipticCurvePrivateKey) -> bytes:
    """
    A private key's public point, for comparing keys.
    """
    return key.public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint
    )


@pytest.fixture(scope="module")
def minted(
    qe: SimulatedQuotingEnclave,
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """
    One minted dual-extension RA-TLS certificate.
    """
    return qe.mint_ratls_certificate()


class TestRATLS:
    def test_dice_evidence_binds(
        self, minted: tuple[bytes, ec.EllipticCurvePrivateKey]
    ) -> None:
        """
        attestd reads the minted certificate as DICE evidence, and the
        binding holds.
        """
        der, key = minted
        evidence = RATLSEvidence.from_certificate(der)
        assert evidence.kind == "dice"
        evidence.check_binding()
        assert evidence.quote.report.mrenclave == ENCLAVE.mrenclave
        spki = key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        assert evidence.certificate.spki_der == spki
        claims = (
            bytes.fromhex("a16b")
            + b"pubkey-hash"
            + bytes.fromhex("582482015820")
            + hashlib.sha256(spki).digest()
        )
        assert evidence.claims == claims
        assert evidence.quote.report.report_data == (
            hashlib.sha256(claims).digest() + bytes(32)
        )

    def test_legacy_quote_binds_alone(
        self,
        qe: SimulatedQuotingEnclave,
        minted: tuple[bytes, ec.EllipticCurvePrivateKey],
    ) -> None:
        """
        The legacy extension's quote binds the key by itself:
        SHA-256(SPKI) then 32 zero bytes; a legacy-only certificate reads
        as legacy evidence whose binding holds.
        """
        der, key = minted
        certificate = x509.load_der_x509_certificate(der)
        value = certificate.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(OID_LEGACY_GRAMINE)
        ).value
        assert isinstance(value, x509.UnrecognizedExtension)
        quote = Quote.from_bytes(value.value)
        spki = certificate.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        assert quote.report.report_data == (
            hashlib.sha256(spki).digest() + bytes(32)
        )
        dice = certificate.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(OID_DICE_TAGGED_EVIDENCE)
        ).value
        assert isinstance(dice, x509.UnrecognizedExtension)
        tag = cbor2.loads(dice.value)
        assert tag.tag == 60000
        assert tag.value[0] != value.value
        legacy_der, _ = mint_ratls_certificate(qe.quote_for, key, dice=False)
        evidence = RATLSEvidence.from_certificate(legacy_der)
        assert evidence.kind == "legacy"
        evidence.check_binding()

    def test_gramine_profile(
        self, minted: tuple[bytes, ec.EllipticCurvePrivateKey]
    ) -> None:
        """
        The certificate has Gramine's profile: names, serial, validity,
        P-384 key, ecdsa-with-SHA256 without parameters, and the
        extensions in Gramine's order with the AKI naming the SKI.
        """
        der, _ = minted
        certificate = x509.load_der_x509_certificate(der)
        assert certificate.subject.rfc4514_string() == (
            "C=US,O=GramineDevelopers,CN=RATLS"
        )
        assert certificate.issuer == certificate.subject
        real = CertificateInfo.from_der(KONVERA_DER.read_bytes()).der
        assert certificate.subject.public_bytes() in real
        assert certificate.serial_number == 1
        assert certificate.version == x509.Version.v3
        assert certificate.not_valid_before_utc == datetime.datetime(
            2001, 1, 1, tzinfo=UTC
        )
        assert certificate.not_valid_after_utc == datetime.datetime(
            2030, 12, 31, 23, 59, 59, tzinfo=UTC
        )
        key = certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert isinstance(key.curve, ec.SECP384R1)
        assert certificate.signature_algorithm_oid.dotted_string == (
            "1.2.840.10045.4.3.2"
        )
        assert bytes.fromhex("300a06082a8648ce3d040302") in der
        assert bytes.fromhex("300c06082a8648ce3d0403020500") not in der
        assert [
            (e.oid.dotted_string, e.critical) for e in certificate.extensions
        ] == [
            ("2.5.29.19", False),
            ("2.5.29.14", False),
            ("2.5.29.35", False),
            (OID_LEGACY_GRAMINE, False),
            (OID_DICE_TAGGED_EVIDENCE, False),
        ]
        ski = certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
        aki = certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value
        assert aki.key_identifier == ski.digest
        basic = certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
        assert not basic.ca
        certificate.verify_directly_issued_by(certificate)

    def test_legacy_oid_bytes(
        self, minted: tuple[bytes, ec.EllipticCurvePrivateKey]
    ) -> None:
        """
        The legacy extension's OID is written with Gramine's mis-encoding,
        the same bytes as in the real konvera certificate.
        """
        der, _ = minted
        wire = bytes.fromhex("060b06092a864886f84d8a3906")
        assert wire in KONVERA_DER.read_bytes()
        assert wire in der

    def test_independent_verifier(
        self,
        pki: SimulatedPKI,
        minted: tuple[bytes, ec.EllipticCurvePrivateKey],
        collateral: SimulatedCollateral,
    ) -> None:
        """
        dcap-qvl verifies both quotes of the certificate with the
        simulated root.
        """
        der, _ = minted
        evidence = RATLSEvidence.from_certificate(der)
        certificate = x509.load_der_x509_certificate(der)
        value = certificate.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(OID_LEGACY_GRAMINE)
        ).value
        assert isinstance(value, x509.UnrecognizedExtension)
        for quote in (evidence.quote.raw, value.value):
            report = qvl(quote, collateral, pki.root_certificate_der())
            assert report.status == "UpToDate"

    def test_key_reused_and_extensions_required(
        self, qe: SimulatedQuotingEnclave
    ) -> None:
        """
        A given key is used as is; asking for no quote extension is a
        configuration error.
        """
        key = ec.generate_private_key(ec.SECP384R1())
        der, returned = qe.mint_ratls_certificate(key)
        assert returned is key
        certificate = x509.load_der_x509_certificate(der)
        assert raw(key) == certificate.public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint
        )
        with pytest.raises(ConfigurationError, match="at least one"):
            mint_ratls_certificate(qe.quote_for, legacy=False, dice=False)


class TestAttestdVerifier:
    """
    attestd's own DCAP verifier accepts simulated quotes only under the
    simulated root, and reaches the configured verdicts.
    """

    def verify(
        self,
        pki: SimulatedPKI,
        quote: bytes,
        options: CollateralOptions | None = None,
        at: int = LATER,
    ) -> QuoteVerdict:
        """
        Verify C{quote} with collateral issued at L{NOW} under
        C{options}, trusting the simulated root.
        """
        return verify_quote(
            quote,
            pki.issue_collateral(NOW, options).collateral(),
            now=at,
            trust_root=TrustRoot.from_pem(pki.root_certificate_pem()),
        )

    def test_parsers(
        self, pki: SimulatedPKI, collateral: SimulatedCollateral
    ) -> None:
        """
        attestd's PCK extension, TCB Info and QE Identity parsers read
        the simulated ones back to the configured values.
        """
        platform = pki.platform
        pck = PCKExtension.from_certificate(pki.pck_certificate)
        assert (pck.fmspc, pck.pce_id) == (platform.fmspc, platform.pce_id)
        assert pck.tcb_components == platform.tcb_components
        assert (pck.pce_svn, pck.cpu_svn) == (platform.pcesvn, platform.cpusvn)
        tcb_info = TCBInfo.from_json(collateral.tcb_info)
        assert tcb_info.fmspc == platform.fmspc
        assert tcb_info.issue_date == datetime.datetime.fromtimestamp(NOW, UTC)
        assert [level.status.value for level in tcb_info.levels] == [
            "UpToDate"
        ]
        identity = QEIdentity.from_json(collateral.qe_identity)
        assert identity.mrsigner == platform.qe.mrsigner
        assert identity.select_level(platform.qe_svn) is not None

    def test_intel_root_says_simulated(
        self, quote_bytes: bytes, collateral: SimulatedCollateral
    ) -> None:
        """
        With the default (Intel) root the quote is refused as simulated
        evidence.
        """
        with pytest.raises(SimulatedEvidenceError, match="simulated"):
            verify_quote(quote_bytes, collateral.collateral(), now=LATER)

    @pytest.mark.parametrize("status", TCB_STATUSES)
    def test_each_status(
        self, pki: SimulatedPKI, quote_bytes: bytes, status: str
    ) -> None:
        """
        The verdict carries the matched level's status and advisories,
        and says it rests on a simulated root.
        """
        advisories = ("INTEL-SA-00615", "INTEL-SA-00828")
        verdict = self.verify(
            pki,
            quote_bytes,
            CollateralOptions(
                tcb_levels=tcb_levels_with_status(status, advisories)
            ),
        )
        assert (verdict.status.value, verdict.advisory_ids) == (
            status,
            advisories,
        )
        assert verdict.simulated
        assert verdict.quote.report.mrenclave == ENCLAVE.mrenclave

    def test_qe_status_merges(
        self, pki: SimulatedPKI, quote_bytes: bytes
    ) -> None:
        """
        An out-of-date QE turns ConfigurationNeeded into
        OutOfDateConfigurationNeeded and adds its advisories.
        """
        verdict = self.verify(
            pki,
            quote_bytes,
            CollateralOptions(
                tcb_levels=tcb_levels_with_status(
                    "ConfigurationNeeded", ["INTEL-SA-00001"]
                ),
                qe_levels=qe_levels_with_status(
                    "OutOfDate", ["INTEL-SA-00002"]
                ),
            ),
        )
        assert verdict.status.value == "OutOfDateConfigurationNeeded"
        assert verdict.qe_status.value == "OutOfDate"
        assert verdict.advisory_ids == ("INTEL-SA-00001", "INTEL-SA-00002")

    def test_refusals(self, pki: SimulatedPKI, quote_bytes: bytes) -> None:
        """
        A revoked PCK certificate or PCK CA, expired or not yet valid
        collateral, another FMSPC and another QE signer are each refused
        with their own error.
        """
        cases: list[tuple[type[Exception], CollateralOptions, int]] = [
            (
                RevokedError,
                CollateralOptions(
                    revoked_pck_serials=[pki.pck_certificate.serial_number]
                ),
                LATER,
            ),
            (
                RevokedError,
                CollateralOptions(
                    revoked_ca_serials=[pki.pck_ca_certificate.serial_number]
                ),
                LATER,
            ),
            (CollateralExpiredError, CollateralOptions(), NOW + 31 * 86400),
            (CollateralNotYetValidError, CollateralOptions(), NOW - 1),
            (
                CollateralMismatchError,
                CollateralOptions(fmspc=bytes.fromhex("00606a000000")),
                LATER,
            ),
            (
                QEIdentityMismatchError,
                CollateralOptions(qe_mrsigner=bytes(32)),
                LATER,
            ),
        ]
        for error, options, at in cases:
            with pytest.raises(error):
                self.verify(pki, quote_bytes, options, at)

    def test_ratls_certificate(
        self,
        pki: SimulatedPKI,
        minted: tuple[bytes, ec.EllipticCurvePrivateKey],
    ) -> None:
        """
        The DICE quote of a minted RA-TLS certificate verifies.
        """
        evidence = RATLSEvidence.from_certificate(minted[0])
        verdict = self.verify(pki, evidence.quote.raw)
        assert verdict.status.value == "UpToDate"
