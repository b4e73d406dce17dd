"""
Tests for quote parsing and RA-TLS evidence extraction on real Gramine
certificates.
"""

from __future__ import annotations

import struct

import pytest

from attestd._evidence import (
    OID_LEGACY_GRAMINE,
    RATLSEvidence,
    certificate_der,
)
from attestd._quote import Quote
from attestd.errors import (
    BindingError,
    CertificateParseError,
    EvidenceParseError,
    MissingEvidenceError,
    QuoteParseError,
    UnsupportedQuoteError,
)

from ._vectors import (
    CCC_DER,
    CCC_DICE_QUOTE,
    CCC_PEM,
    DCAP_QVL_QUOTE,
    KONVERA_DER,
    KONVERA_PEM,
    KONVERA_QUOTE,
    KONVERA_TRUSTED_PEM,
    expected,
)


class TestQuote:
    def test_konvera_fields(self) -> None:
        """
        The konvera quote's measurements are the ones its source states.
        """
        want = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
        quote = Quote.from_bytes(KONVERA_QUOTE.read_bytes())
        assert want["mrenclave"] == quote.report.mrenclave.hex()
        assert want["mrsigner"] == quote.report.mrsigner.hex()
        assert (want["isv_prod_id"], want["isv_svn"]) == (
            quote.report.isv_prod_id,
            quote.report.isv_svn,
        )
        assert quote.report.flags == 0x5
        assert not quote.report.debug
        assert len(quote.pck_chain_pem()) == 3

    def test_dcap_qvl_fields(self) -> None:
        """
        Header and body fields of the dcap-qvl sample match EXPECTED.json.
        """
        want = expected()["dcap_qvl_sgx_sample"]["quote_fields"]
        quote = Quote.from_bytes(DCAP_QVL_QUOTE.read_bytes())
        assert want["qe_svn"] == quote.header.qe_svn
        assert want["pce_svn"] == quote.header.pce_svn
        assert want["mrenclave"] == quote.report.mrenclave.hex()
        assert quote.report.report_data.hex().startswith(
            want["report_data_hex_prefix"]
        )

    @pytest.mark.parametrize("cut", [0, 10, 431, 436, 1000, 4729])
    def test_truncated(self, cut: int) -> None:
        """
        Every truncation of a real quote is a parse error.
        """
        data = KONVERA_QUOTE.read_bytes()[:cut]
        with pytest.raises(QuoteParseError):
            Quote.from_bytes(data)

    def test_trailing_bytes(self) -> None:
        """
        Bytes after the announced signature data are refused.
        """
        with pytest.raises(QuoteParseError, match="signature data length"):
            Quote.from_bytes(KONVERA_QUOTE.read_bytes() + b"\0")

    @pytest.mark.parametrize("version", [4, 5])
    def test_newer_versions(self, version: int) -> None:
        """
        Quote versions 4 and 5 are recognised and said to be unsupported.
        """
        data = bytearray(KONVERA_QUOTE.read_bytes())
        struct.pack_into("<H", data, 0, version)
        with pytest.raises(UnsupportedQuoteError, match=f"{version}"):
            Quote.from_bytes(bytes(data))


class TestCertificateFiles:
    @pytest.mark.parametrize(
        "path", [KONVERA_DER, KONVERA_PEM, KONVERA_TRUSTED_PEM]
    )
    def test_every_gramine_form(self, path: object) -> None:
        """
        DER, PEM and TRUSTED CERTIFICATE PEM with a trailing NUL all yield
        the same DER.
        """
        assert KONVERA_TRUSTED_PEM.read_bytes().endswith(b"\0")
        assert KONVERA_DER.read_bytes() == certificate_der(
            path.read_bytes()  # type: ignore[attr-defined]
        )

    @pytest.mark.parametrize(
        "data",
        [b"", b"\0", b"garbage", b"-----BEGIN CERTIFICATE-----\n!!\n"],
    )
    def test_garbage(self, data: bytes) -> None:
        """
        Empty or garbage files are refused with a parse error.
        """
        with pytest.raises(CertificateParseError):
            certificate_der(data)

    def test_truncated_der(self) -> None:
        """
        A truncated DER certificate is refused.
        """
        with pytest.raises(CertificateParseError, match="truncated"):
            certificate_der(KONVERA_DER.read_bytes()[:-1])


class TestEvidence:
    def test_konvera_legacy(self) -> None:
        """
        The konvera certificate carries legacy evidence bound to its key.
        """
        evidence = RATLSEvidence.from_certificate(KONVERA_DER.read_bytes())
        assert evidence.kind == "legacy"
        assert evidence.quote.raw == KONVERA_QUOTE.read_bytes()
        evidence.check_binding()

    def test_ccc_dice(self) -> None:
        """
        The CCC dual-OID certificate is read through its DICE extension,
        whose binding holds, and is a debug enclave.
        """
        der = certificate_der(CCC_PEM.read_bytes())
        assert der == CCC_DER.read_bytes()
        evidence = RATLSEvidence.from_certificate(der)
        assert evidence.kind == "dice"
        assert evidence.quote.raw == CCC_DICE_QUOTE.read_bytes()
        assert evidence.quote.report.debug
        assert (
            evidence.pubkey_hash.hex()
            == (
                expected()["ccc_gramine_dualoid_cert"]["computed"][
                    "sha256_spki_der"
                ]
            )
        )
        evidence.check_binding()

    def test_swapped_quote(self) -> None:
        """
        A certificate whose legacy quote was replaced by another
        certificate's quote of the same length fails the binding.
        """
        der = KONVERA_DER.read_bytes()
        own = KONVERA_QUOTE.read_bytes()
        other = bytearray(own)
        # The report data of another key: the quote stays well-formed.
        other[368:400] = bytes(32)
        evidence = RATLSEvidence.from_certificate(
            der.replace(own, bytes(other))
        )
        with pytest.raises(BindingError, match="public key"):
            evidence.check_binding()

    def test_no_evidence(self) -> None:
        """
        A certificate without an evidence extension is refused.
        """
        der = KONVERA_DER.read_bytes()
        oid = bytes.fromhex("060b06092a864886f84d8a3906")
        # Rename the extension: same length, unrelated OID.
        renamed = der.replace(oid, bytes.fromhex("060b06092a864886f84d8a3907"))
        assert OID_LEGACY_GRAMINE not in str(renamed)
        with pytest.raises(MissingEvidenceError):
            RATLSEvidence.from_certificate(renamed)

    def test_dice_without_pubkey_hash(self) -> None:
        """
        DICE claims without pubkey-hash are refused, not skipped.
        """
        der = CCC_DER.read_bytes()
        claim = b"pubkey-hash"
        with pytest.raises(EvidenceParseError, match="pubkey-hash"):
            RATLSEvidence.from_certificate(der.replace(claim, b"pubkey-hasx"))
