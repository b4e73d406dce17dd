"""
Tests for the PCK certificate SGX extension parser, on the PCK leaves of
the real quotes and on hand-built DER.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import dcap_qvl
import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ

from attestd._pck import OID_SGX_EXTENSIONS, PCKConfiguration, PCKExtension
from attestd._quote import Quote
from attestd.errors import PCKExtensionParseError

from ._vectors import (
    CCC_DICE_QUOTE,
    CCC_LEGACY_QUOTE,
    DCAP_QVL_QUOTE,
    INTEL_ROOT_DER,
    KONVERA_QUOTE,
    expected,
)

QUOTES = [DCAP_QVL_QUOTE, KONVERA_QUOTE, CCC_LEGACY_QUOTE, CCC_DICE_QUOTE]


def _leaf_pem(path: Path) -> bytes:
    """
    The PEM of the PCK leaf in a quote's certification data.
    """
    return Quote.from_bytes(path.read_bytes()).pck_chain_pem()[0]


def _leaf(path: Path) -> x509.Certificate:
    """
    The PCK leaf certificate of a quote.
    """
    return x509.load_pem_x509_certificate(_leaf_pem(path))


def _extension_der(path: Path) -> bytes:
    """
    The DER value of the SGX extension of a quote's PCK leaf.
    """
    ext = _leaf(path).extensions.get_extension_for_oid(
        x509.ObjectIdentifier(OID_SGX_EXTENSIONS)
    )
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    return ext.value.value


def _seq(*items: bytes) -> bytes:
    """
    A DER SEQUENCE of already encoded items.
    """
    body = b"".join(items)
    assert len(body) < 0x10000
    if len(body) < 0x80:
        return b"\x30" + bytes([len(body)]) + body
    if len(body) < 0x100:
        return b"\x30\x81" + bytes([len(body)]) + body
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def _pair(suffix: str, value: bytes) -> bytes:
    """
    One C{SEQUENCE {OID, value}} under the SGX arc.
    """
    oid = der_encoder.encode(
        univ.ObjectIdentifier(OID_SGX_EXTENSIONS + suffix)
    )
    return _seq(oid, value)


def _octets(data: bytes) -> bytes:
    return der_encoder.encode(univ.OctetString(data))


def _int(value: int) -> bytes:
    return der_encoder.encode(univ.Integer(value))


def _build(
    *,
    fields: dict[str, bytes] | None = None,
    tcb: dict[str, bytes] | None = None,
    extra: tuple[bytes, ...] = (),
) -> bytes:
    """
    Build an SGX extension like a Processor CA leaf's; C{fields} and
    C{tcb} override (or, with C{b""}, drop) entries by OID suffix.
    """
    tcb_items = {f".2.{n}": _int(n) for n in range(1, 17)}
    tcb_items[".2.17"] = _int(13)
    tcb_items[".2.18"] = _octets(bytes(range(1, 17)))
    tcb_items.update(tcb or {})
    items = {
        ".1": _octets(b"P" * 16),
        ".2": _seq(*(_pair(k, v) for k, v in tcb_items.items() if v)),
        ".3": _octets(b"\0\0"),
        ".4": _octets(bytes.fromhex("00a067110000")),
        ".5": der_encoder.encode(univ.Enumerated(0)),
    }
    items.update(fields or {})
    return _seq(*(_pair(k, v) for k, v in items.items() if v), *extra)


class TestRealCertificates:
    def test_dcap_qvl_sample(self) -> None:
        """
        The dcap-qvl sample's PCK leaf gives the FMSPC, PCESVN and TCB
        components stated in EXPECTED.json.
        """
        want = expected()["dcap_qvl_sgx_sample"]["quote_fields"]
        pck = PCKExtension.from_certificate(_leaf(DCAP_QVL_QUOTE))
        assert want["fmspc"] == pck.fmspc.hex()
        assert want["pck_pcesvn"] == pck.pce_svn
        assert tuple(want["pck_cpusvn_components"]) == pck.tcb_components
        assert b"\0\0" == pck.pce_id
        assert 0 == pck.sgx_type
        assert pck.platform_instance_id is None
        assert pck.configuration is None

    def test_konvera_platform_fields(self) -> None:
        """
        A Platform CA leaf carries the platform instance id and the
        configuration flags.
        """
        pck = PCKExtension.from_certificate(_leaf(KONVERA_QUOTE))
        assert "00606a000000" == pck.fmspc.hex()
        assert 1 == pck.sgx_type
        assert pck.platform_instance_id is not None
        assert 16 == len(pck.platform_instance_id)
        assert (
            PCKConfiguration(
                dynamic_platform=True, cached_keys=False, smt_enabled=False
            )
            == pck.configuration
        )

    @pytest.mark.parametrize("path", QUOTES, ids=lambda p: p.name)
    def test_agrees_with_dcap_qvl(self, path: Path) -> None:
        """
        Every field dcap-qvl reads from a real PCK leaf has the same value
        here.
        """
        theirs = dcap_qvl.parse_pck_extension_from_pem(_leaf_pem(path))
        ours = PCKExtension.from_certificate(_leaf(path))
        assert bytes(theirs.ppid) == ours.ppid
        assert bytes(theirs.cpu_svn) == ours.cpu_svn
        assert theirs.pce_svn == ours.pce_svn
        assert bytes(theirs.pce_id) == ours.pce_id
        assert bytes(theirs.fmspc) == ours.fmspc
        assert theirs.sgx_type == ours.sgx_type
        instance = theirs.platform_instance_id
        assert (
            None if instance is None else bytes(instance)
        ) == ours.platform_instance_id

    @pytest.mark.parametrize("path", QUOTES, ids=lambda p: p.name)
    def test_components_are_cpusvn(self, path: Path) -> None:
        """
        On real leaves the sixteen component SVNs spell out the CPUSVN.
        """
        pck = PCKExtension.from_certificate(_leaf(path))
        assert pck.cpu_svn == bytes(pck.tcb_components)

    def test_certificate_without_extension(self) -> None:
        """
        A certificate without the SGX extension (the Intel root) is
        refused as a parse error.
        """
        root = x509.load_der_x509_certificate(INTEL_ROOT_DER.read_bytes())
        with pytest.raises(PCKExtensionParseError, match="no SGX extension"):
            PCKExtension.from_certificate(root)

    @pytest.mark.parametrize("path", [DCAP_QVL_QUOTE, KONVERA_QUOTE])
    def test_every_truncation(self, path: Path) -> None:
        """
        Every proper prefix of a real extension is a parse error.
        """
        der = _extension_der(path)
        for cut in range(len(der)):
            with pytest.raises(PCKExtensionParseError):
                PCKExtension.from_der(der[:cut])

    def test_trailing_bytes(self) -> None:
        """
        Bytes after the extension's SEQUENCE are refused.
        """
        der = _extension_der(KONVERA_QUOTE)
        with pytest.raises(PCKExtensionParseError, match="trailing"):
            PCKExtension.from_der(der + b"\0\0")


class TestBuiltExtensions:
    def test_minimal(self) -> None:
        """
        An extension with only the mandatory fields parses.
        """
        pck = PCKExtension.from_der(_build())
        assert tuple(range(1, 17)) == pck.tcb_components
        assert 13 == pck.pce_svn
        assert pck.configuration is None

    def test_unknown_sub_oid_ignored(self) -> None:
        """
        A field under the SGX arc that Intel may add later is ignored.
        """
        pck = PCKExtension.from_der(
            _build(extra=(_pair(".42", _octets(b"new")),))
        )
        assert b"\0\0" == pck.pce_id

    @pytest.mark.parametrize(
        ("fields", "tcb", "match"),
        [
            ({".4": b""}, {}, r"lacks .*\.4"),
            ({".1": b""}, {}, r"lacks .*\.1"),
            ({".5": b""}, {}, r"lacks .*\.5"),
            ({}, {".2.17": b""}, r"lacks .*\.2\.17"),
            ({}, {".2.7": b""}, r"lacks .*\.2\.7"),
            ({".4": _octets(b"\0" * 5)}, {}, "5 bytes, expected 6"),
            ({".3": _octets(b"\0" * 3)}, {}, "3 bytes, expected 2"),
            ({".6": _octets(b"\0" * 15)}, {}, "15 bytes, expected 16"),
            ({".5": _int(0)}, {}, "not Enumerated"),
            ({".5": der_encoder.encode(univ.Enumerated(3))}, {}, "not in"),
            ({".4": _int(1)}, {}, "not an OCTET STRING"),
            ({}, {".2.3": _int(256)}, "not in"),
            ({}, {".2.3": _int(-1)}, "not in"),
            ({}, {".2.17": _int(0x10000)}, "not in"),
            ({}, {".2.18": _octets(b"\0" * 17)}, "17 bytes"),
            ({".2": _octets(b"x")}, {}, "not a SEQUENCE"),
            ({".7": _seq(_pair(".7.1", _int(1)))}, {}, "not a BOOLEAN"),
        ],
    )
    def test_malformed_field(
        self, fields: dict[str, bytes], tcb: dict[str, bytes], match: str
    ) -> None:
        """
        A missing mandatory field, a wrong size, type or range is a parse
        error that names the field.
        """
        with pytest.raises(PCKExtensionParseError, match=match):
            PCKExtension.from_der(_build(fields=fields, tcb=tcb))

    def test_repeated_field(self) -> None:
        """
        A field that appears twice (say, two FMSPCs) is refused, not
        resolved either way.
        """
        twice = _build(
            extra=(_pair(".4", _octets(bytes.fromhex("00606a000000"))),)
        )
        with pytest.raises(PCKExtensionParseError, match="repeats"):
            PCKExtension.from_der(twice)

    def test_not_pairs(self) -> None:
        """
        A SEQUENCE whose items are not (OID, value) pairs is refused.
        """
        with pytest.raises(PCKExtensionParseError, match="pair"):
            PCKExtension.from_der(_seq(_int(1)))

    def test_oversized(self) -> None:
        """
        An extension larger than the bound is refused before decoding.
        """
        big = _build(extra=(_pair(".42", _octets(b"x" * 5000)),))
        with pytest.raises(PCKExtensionParseError, match="more than"):
            PCKExtension.from_der(big)

    def test_deep_nesting(self) -> None:
        """
        Deeply nested SEQUENCEs within the size bound are a parse error,
        not a crash.
        """
        data = b""
        for _ in range(1000):
            data = b"\x30\x82" + len(data).to_bytes(2, "big") + data
            if len(data) > 4000:
                break
        with pytest.raises(PCKExtensionParseError):
            PCKExtension.from_der(data)

    def test_configuration(self) -> None:
        """
        The configuration flags read as booleans, absent ones as None.
        """
        config = _seq(
            _pair(".7.1", der_encoder.encode(univ.Boolean(False))),
            _pair(".7.3", der_encoder.encode(univ.Boolean(True))),
        )
        pck = PCKExtension.from_der(_build(fields={".7": config}))
        assert (
            PCKConfiguration(
                dynamic_platform=False, cached_keys=None, smt_enabled=True
            )
            == pck.configuration
        )


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=600))
    def test_random_bytes(self, data: bytes) -> None:
        """
        Random bytes either parse or raise the package's parse error.
        """
        with contextlib.suppress(PCKExtensionParseError):
            PCKExtension.from_der(data)

    @settings(max_examples=200, deadline=None)
    @given(st.data())
    def test_mutated_real_extension(self, data: st.DataObject) -> None:
        """
        A real extension with one byte changed either parses or raises
        the package's parse error.
        """
        der = bytearray(_extension_der(KONVERA_QUOTE))
        index = data.draw(st.integers(0, len(der) - 1))
        der[index] = data.draw(st.integers(0, 255))
        with contextlib.suppress(PCKExtensionParseError):
            PCKExtension.from_der(bytes(der))
