"""
Tests for L{attestd._sigstruct}, on SIGSTRUCTs signed in the test with a
fresh RSA-3072 e = 3 key, the way C{gramine-sgx-sign} signs them.
"""

from __future__ import annotations

import datetime
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from attestd._sigstruct import Sigstruct
from attestd.errors import (
    ParseError,
    SigstructParseError,
    SigstructSignatureError,
    VerificationError,
)
from tests.fakes.sigstructs import generate_key, make_sigstruct, mrsigner_of

MRENCLAVE = bytes.fromhex(
    "f94ccbe6a0b5f1e4b4a1b3d6b0a3e4c1d2e3f4a5b6c7d8e9fa0b1c2d3e4f4a66"
)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    """
    One RSA-3072 e = 3 signing key for the module (generation is slow).
    """
    return generate_key()


@pytest.fixture(scope="module")
def signed(key: rsa.RSAPrivateKey) -> bytes:
    """
    A production SIGSTRUCT with ISV_PROD_ID 7, ISV_SVN 3.
    """
    return make_sigstruct(
        key,
        mrenclave=MRENCLAVE,
        isv_prod_id=7,
        isv_svn=3,
        date=datetime.date(2026, 2, 2),
    )


class TestSigstruct:
    """
    Tests for L{Sigstruct.from_bytes} and L{Sigstruct.verify_signature}.
    """

    def test_measurements(self, key: rsa.RSAPrivateKey, signed: bytes) -> None:
        """
        MRENCLAVE is the stored enclave hash and MRSIGNER the SHA-256 of the
        little-endian modulus as stored.
        """
        parsed = Sigstruct.from_bytes(signed)
        modulus = key.public_key().public_numbers().n
        assert parsed.mrenclave == MRENCLAVE
        assert (
            hashlib.sha256(modulus.to_bytes(384, "little")).digest()
            == parsed.mrsigner
        )
        assert mrsigner_of(key) == parsed.mrsigner
        assert modulus == parsed.modulus

    def test_fields(self, signed: bytes) -> None:
        """
        The ISV identity, attributes, masks and date are read from their
        offsets.
        """
        parsed = Sigstruct.from_bytes(signed)
        assert (parsed.isv_prod_id, parsed.isv_svn) == (7, 3)
        assert parsed.attribute_flags == 0x4
        assert parsed.attribute_xfrm == 0x3
        assert parsed.attribute_flags_mask == 0xFFFFFFFFFFFFFFFF
        assert parsed.attribute_xfrm_mask == 0xFFFFFFFFFFF9FF1B
        assert (parsed.misc_select, parsed.misc_mask) == (0, 0xFFFFFFFF)
        assert datetime.date(2026, 2, 2) == parsed.date
        assert parsed.debug is False

    def test_date_bytes(self, signed: bytes) -> None:
        """
        The date is stored as BCD day, month and little-endian year.
        """
        assert bytes.fromhex("02022620") == signed[20:24]

    def test_debug(self, key: rsa.RSAPrivateKey) -> None:
        """
        A SIGSTRUCT with the DEBUG attribute bit is reported as debug.
        """
        parsed = Sigstruct.from_bytes(make_sigstruct(key, debug=True))
        assert parsed.debug is True
        assert parsed.to_dict()["debug_enclave"] is True

    def test_to_dict(self, key: rsa.RSAPrivateKey, signed: bytes) -> None:
        """
        L{Sigstruct.to_dict} uses C{gramine-sgx-sigstruct-view}'s names.
        """
        assert {
            "mr_signer": mrsigner_of(key).hex(),
            "mr_enclave": MRENCLAVE.hex(),
            "isv_prod_id": 7,
            "isv_svn": 3,
            "debug_enclave": False,
            "attribute_flags": "0x0000000000000004",
            "attribute_xfrms": "0x0000000000000003",
            "misc_select": "0x00000000",
            "attribute_flags_mask": "0xffffffffffffffff",
            "attribute_xfrm_mask": "0xfffffffffff9ff1b",
            "misc_mask": "0xffffffff",
            "date": "2026-02-02",
        } == Sigstruct.from_bytes(signed).to_dict()

    def test_signature_verifies(self, signed: bytes) -> None:
        """
        The signature made by the SIGSTRUCT's own key verifies.
        """
        Sigstruct.from_bytes(signed).verify_signature()

    @pytest.mark.parametrize(
        "offset",
        [
            # Signed head (reserved), signed body (MRENCLAVE, ISV_SVN),
            # the signature itself, Q1 and Q2.
            100,
            960,
            1027,
            600,
            1100,
            1500,
        ],
    )
    def test_flipped_byte_fails(self, signed: bytes, offset: int) -> None:
        """
        Flipping one bit of a signed field, the signature or Q1/Q2 makes
        the signature check fail.
        """
        tampered = bytearray(signed)
        tampered[offset] ^= 0x01
        parsed = Sigstruct.from_bytes(bytes(tampered))
        with pytest.raises(SigstructSignatureError) as e:
            parsed.verify_signature()
        assert isinstance(e.value, VerificationError)

    def test_other_key_fails(self, signed: bytes) -> None:
        """
        A signature checked against another key's modulus fails.
        """
        other = generate_key()
        tampered = bytearray(signed)
        modulus = other.public_key().public_numbers().n
        tampered[128:512] = modulus.to_bytes(384, "little")
        # Half the time the other modulus is below the signature, which is
        # refused before the RSA check.
        with pytest.raises(
            SigstructSignatureError,
            match=r"does not verify|not below the modulus",
        ):
            Sigstruct.from_bytes(bytes(tampered)).verify_signature()


class TestMalformed:
    """
    Malformed SIGSTRUCTs raise L{SigstructParseError}.
    """

    @pytest.mark.parametrize("size", [0, 1807, 1809])
    def test_size(self, signed: bytes, size: int) -> None:
        """
        Anything but 1808 bytes is refused with the size in the message.
        """
        data = (signed * 2)[:size]
        with pytest.raises(SigstructParseError, match=f"this is {size} bytes"):
            Sigstruct.from_bytes(data)

    @pytest.mark.parametrize(
        ("offset", "match"),
        [
            (0, "header"),
            (30, "header2"),
            (16, "vendor"),
            (512, "exponent"),
            (20, "date"),
        ],
    )
    def test_bad_field(self, signed: bytes, offset: int, match: str) -> None:
        """
        A wrong header, vendor, exponent or non-BCD date is refused.
        """
        tampered = bytearray(signed)
        tampered[offset] = 0xFF
        with pytest.raises(SigstructParseError, match=match) as e:
            Sigstruct.from_bytes(bytes(tampered))
        assert isinstance(e.value, ParseError)

    def test_impossible_date(self, signed: bytes) -> None:
        """
        A BCD date that is not a calendar date (month 13) is refused.
        """
        tampered = bytearray(signed)
        tampered[21] = 0x13
        with pytest.raises(SigstructParseError, match="invalid date"):
            Sigstruct.from_bytes(bytes(tampered))

    def test_small_modulus(self, signed: bytes) -> None:
        """
        A modulus shorter than 3072 bits is refused.
        """
        tampered = bytearray(signed)
        tampered[511] = 0
        with pytest.raises(SigstructParseError, match="3072-bit"):
            Sigstruct.from_bytes(bytes(tampered))


class TestMain:
    """
    Tests for C{python -m attestd._sigstruct}.
    """

    def test_prints_fields(
        self, tmp_path: Path, key: rsa.RSAPrivateKey, signed: bytes
    ) -> None:
        """
        The command prints C{key: value} lines for a valid file.
        """
        path = tmp_path / "attestd.sig"
        path.write_bytes(signed)
        result = subprocess.run(
            [sys.executable, "-m", "attestd._sigstruct", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert f"mr_enclave: {MRENCLAVE.hex()}" in lines
        assert f"mr_signer: {mrsigner_of(key).hex()}" in lines

    def test_refuses_bad_signature(
        self, tmp_path: Path, signed: bytes
    ) -> None:
        """
        The command exits 1 and says why when the signature is wrong.
        """
        tampered = bytearray(signed)
        tampered[960] ^= 1
        path = tmp_path / "attestd.sig"
        path.write_bytes(bytes(tampered))
        result = subprocess.run(
            [sys.executable, "-m", "attestd._sigstruct", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1
        assert "does not verify" in result.stderr
        assert result.stdout == ""
