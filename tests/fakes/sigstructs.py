"""
Make SIGSTRUCTs (C{.sig} files) the way C{gramine-sgx-sign} does: the fixed
headers, the measured fields, an RSA-3072 e = 3 PKCS#1 v1.5 SHA-256
signature over C{bytes[0:128] + bytes[900:1028]}, and C{Q1}/C{Q2}, with the
modulus, signature, C{Q1} and C{Q2} stored little-endian.

Run as C{python sigstructs.py KEY.pem OUT.sig [MRENCLAVE-HEX]} to sign one
with a PEM key (used by the fake C{docker}).
"""

from __future__ import annotations

import datetime
import hashlib
import struct
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HEADER = bytes.fromhex("06000000e10000000000010000000000")
HEADER2 = bytes.fromhex("01010000600000006000000001000000")

#: Gramine's default masks.
FLAGS_MASK = 0xFFFFFFFFFFFFFFFF
XFRM_MASK = 0xFFFFFFFFFFF9FF1B
MISC_MASK = 0xFFFFFFFF

#: INIT | MODE64BIT, the flags of a production enclave.
FLAGS = 0x4
XFRM = 0x3


def generate_key(exponent: int = 3, bits: int = 3072) -> rsa.RSAPrivateKey:
    """
    Make an RSA key like C{gramine-sgx-gen-private-key} does.

    @param exponent: The public exponent (SGX needs 3).
    @param bits: The modulus size (SGX needs 3072).
    @return: The key.
    """
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


def _bcd(value: int) -> int:
    """
    Pack a decimal number as binary-coded decimal.

    @param value: The number.
    @return: Its digits, one per nibble.
    """
    return int(str(value), 16)


def make_sigstruct(
    key: rsa.RSAPrivateKey,
    mrenclave: bytes = bytes(range(32)),
    isv_prod_id: int = 0,
    isv_svn: int = 0,
    debug: bool = False,
    date: datetime.date = datetime.date(2026, 2, 2),
) -> bytes:
    """
    Build and sign a SIGSTRUCT.

    @param key: The RSA-3072 e = 3 signing key.
    @param mrenclave: C{ENCLAVEHASH}.
    @param isv_prod_id: C{ISVPRODID}.
    @param isv_svn: C{ISVSVN}.
    @param debug: Whether to set the DEBUG attribute.
    @param date: The signing date.
    @return: 1808 bytes.
    """
    flags = FLAGS | (0x2 if debug else 0)
    modulus = key.public_key().public_numbers().n
    head = (
        HEADER
        + struct.pack("<I", 0)
        + struct.pack(
            "<BBH", _bcd(date.day), _bcd(date.month), _bcd(date.year)
        )
        + HEADER2
        + struct.pack("<I", 0)
        + bytes(84)
    )
    body = (
        struct.pack("<II", 0, MISC_MASK)
        + bytes(4)
        + bytes(16)
        + struct.pack("<QQ", flags, XFRM)
        + struct.pack("<QQ", FLAGS_MASK, XFRM_MASK)
        + mrenclave
        + bytes(16)
        + bytes(16)
        + struct.pack("<HH", isv_prod_id, isv_svn)
    )
    assert (len(head), len(body)) == (128, 128)
    signature = int.from_bytes(
        key.sign(head + body, padding.PKCS1v15(), hashes.SHA256()), "big"
    )
    q1 = signature * signature // modulus
    q2 = (signature**3 - q1 * signature * modulus) // modulus
    data = (
        head
        + modulus.to_bytes(384, "little")
        + struct.pack("<I", 3)
        + signature.to_bytes(384, "little")
        + body
        + bytes(12)
        + q1.to_bytes(384, "little")
        + q2.to_bytes(384, "little")
    )
    assert len(data) == 1808
    return data


def mrsigner_of(key: rsa.RSAPrivateKey) -> bytes:
    """
    MRSIGNER as Intel defines it: SHA-256 of the little-endian modulus.

    @param key: The signing key.
    @return: 32 bytes.
    """
    modulus = key.public_key().public_numbers().n
    return hashlib.sha256(modulus.to_bytes(384, "little")).digest()


def main(argv: list[str]) -> int:
    """
    Sign a SIGSTRUCT with a PEM key file.

    @param argv: C{KEY.pem OUT.sig [MRENCLAVE-HEX]}.
    @return: The exit status.
    """
    with open(argv[0], "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    mrenclave = bytes.fromhex(argv[2]) if len(argv) > 2 else bytes(32)
    with open(argv[1], "wb") as f:
        f.write(make_sigstruct(key, mrenclave=mrenclave))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
