# -*- test-case-name: tests.test_sigstruct -*-
"""
Parsing and signature checking of an SGX SIGSTRUCT: the C{.sig} file that
C{gramine-sgx-sign} writes next to the signed manifest.

The layout is Intel's C{SIGSTRUCT} (Intel SDM vol. 3D, 38.13; Gramine's
C{sgx_arch.h} C{sgx_sigstruct_t}), 1808 bytes, integers little-endian.  The
RSA modulus, signature and the two helper values C{q1}/C{q2} are stored as
little-endian 384-byte integers.  MRSIGNER is the SHA-256 of the modulus
bytes exactly as stored.

Run as C{python -m attestd._sigstruct FILE.sig} to print the fields as
C{key: value} lines.
"""

from __future__ import annotations

import datetime
import hashlib
import sys
from collections.abc import Sequence

from attrs import frozen
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from attestd.errors import SigstructParseError, SigstructSignatureError

SIGSTRUCT_SIZE = 1808

#: The fixed C{HEADER} field (offset 0, 16 bytes).
HEADER = bytes.fromhex("06000000e10000000000010000000000")
#: The fixed C{HEADER2} field (offset 24, 16 bytes).
HEADER2 = bytes.fromhex("01010000600000006000000001000000")

#: The only RSA exponent SGX accepts.
EXPONENT = 3
#: The modulus size SGX requires, in bytes (RSA-3072).
MODULUS_SIZE = 384

#: The only vendor values Intel defines: 0 and Intel's PCI vendor id.
_VENDORS = (0x0000, 0x8086)

#: C{ATTRIBUTES.FLAGS} bit of a debug enclave.
FLAG_DEBUG = 0x2

# Byte ranges of the fields, from the table in Gramine's reference notes.
_DATE = slice(20, 24)
_SWDEFINED = slice(40, 44)
_MODULUS = slice(128, 512)
_EXPONENT = slice(512, 516)
_SIGNATURE = slice(516, 900)
_MISC_SELECT = slice(900, 904)
_MISC_MASK = slice(904, 908)
_ISV_FAMILY_ID = slice(912, 928)
_ATTRIBUTE_FLAGS = slice(928, 936)
_ATTRIBUTE_XFRM = slice(936, 944)
_ATTRIBUTE_FLAGS_MASK = slice(944, 952)
_ATTRIBUTE_XFRM_MASK = slice(952, 960)
_ENCLAVE_HASH = slice(960, 992)
_ISVEXT_PROD_ID = slice(1008, 1024)
_ISV_PROD_ID = slice(1024, 1026)
_ISV_SVN = slice(1026, 1028)
_Q1 = slice(1040, 1424)
_Q2 = slice(1424, 1808)

#: The two signed ranges: header to reserved, then body.
_SIGNED_HEAD = slice(0, 128)
_SIGNED_BODY = slice(900, 1028)


def _u(data: bytes, where: slice) -> int:
    """
    Read a little-endian unsigned integer.

    @param data: The whole SIGSTRUCT.
    @param where: The field's byte range.
    @return: The integer.
    """
    return int.from_bytes(data[where], "little")


def _bcd(value: int) -> int:
    """
    Decode one binary-coded-decimal number.

    @param value: The packed digits, two per byte.
    @return: The decimal value.
    @raise SigstructParseError: If a nibble is not a decimal digit.
    """
    text = f"{value:x}"
    if not text.isdigit():
        msg = f"date is not BCD: {value:#x}"
        raise SigstructParseError(msg)
    return int(text)


def _parse_date(raw: bytes) -> datetime.date:
    """
    Decode the C{DATE} field: day, month and year (two bytes) in BCD.

    @param raw: The four bytes at offset 20.
    @return: The date.
    @raise SigstructParseError: If the date is not BCD or not a real date.
    """
    day = _bcd(raw[0])
    month = _bcd(raw[1])
    year = _bcd(int.from_bytes(raw[2:4], "little"))
    try:
        return datetime.date(year, month, day)
    except ValueError as e:
        msg = f"invalid date in SIGSTRUCT: {raw.hex()}"
        raise SigstructParseError(msg) from e


@frozen
class Sigstruct:
    """
    A parsed SIGSTRUCT.

    @ivar raw: The 1808 bytes it was parsed from.
    @ivar mrenclave: C{ENCLAVEHASH}, the enclave measurement (32 bytes).
    @ivar mrsigner: SHA-256 of the signer's modulus as stored (32 bytes).
    @ivar modulus: The signer's RSA modulus, as an integer.
    @ivar isv_prod_id: C{ISVPRODID} (C{sgx.isvprodid} in the manifest).
    @ivar isv_svn: C{ISVSVN} (C{sgx.isvsvn} in the manifest).
    @ivar attribute_flags: C{ATTRIBUTES.FLAGS}.
    @ivar attribute_xfrm: C{ATTRIBUTES.XFRM}.
    @ivar attribute_flags_mask: The flags bits the enclave must match.
    @ivar attribute_xfrm_mask: The XFRM bits the enclave must match.
    @ivar misc_select: C{MISCSELECT}.
    @ivar misc_mask: C{MISCMASK}.
    @ivar vendor: C{VENDOR}: 0, or 0x8086 for Intel's own enclaves.
    @ivar date: The signing date.
    @ivar isv_family_id: C{ISVFAMILYID} (KSS; zero without KSS).
    @ivar isvext_prod_id: C{ISVEXTPRODID} (KSS; zero without KSS).
    """

    raw: bytes
    mrenclave: bytes
    mrsigner: bytes
    modulus: int
    isv_prod_id: int
    isv_svn: int
    attribute_flags: int
    attribute_xfrm: int
    attribute_flags_mask: int
    attribute_xfrm_mask: int
    misc_select: int
    misc_mask: int
    vendor: int
    date: datetime.date
    isv_family_id: bytes
    isvext_prod_id: bytes

    @property
    def debug(self) -> bool:
        """
        Whether the enclave is signed as a debug enclave.
        """
        return bool(self.attribute_flags & FLAG_DEBUG)

    @classmethod
    def from_bytes(cls, data: bytes) -> Sigstruct:
        """
        Parse a SIGSTRUCT (Intel SDM vol. 3D, 38.13).

        Only the structure is checked here: the fixed headers, the size,
        the exponent and the date.  Call L{verify_signature} to check the
        signature.

        @param data: The contents of a C{.sig} file.
        @return: The parsed structure.
        @raise SigstructParseError: If C{data} is not a SIGSTRUCT.
        """
        if len(data) != SIGSTRUCT_SIZE:
            msg = (
                f"a SIGSTRUCT is {SIGSTRUCT_SIZE} bytes, "
                f"this is {len(data)} bytes"
            )
            raise SigstructParseError(msg)
        data = bytes(data)
        if data[0:16] != HEADER:
            msg = f"bad SIGSTRUCT header: {data[0:16].hex()}"
            raise SigstructParseError(msg)
        if data[24:40] != HEADER2:
            msg = f"bad SIGSTRUCT header2: {data[24:40].hex()}"
            raise SigstructParseError(msg)
        vendor = _u(data, slice(16, 20))
        if vendor not in _VENDORS:
            msg = f"bad SIGSTRUCT vendor: {vendor:#x}"
            raise SigstructParseError(msg)
        exponent = _u(data, _EXPONENT)
        if exponent != EXPONENT:
            msg = f"SIGSTRUCT exponent must be {EXPONENT}, not {exponent}"
            raise SigstructParseError(msg)
        modulus = _u(data, _MODULUS)
        if modulus.bit_length() != MODULUS_SIZE * 8 or modulus % 2 == 0:
            msg = "SIGSTRUCT modulus is not an odd 3072-bit number"
            raise SigstructParseError(msg)
        return cls(
            raw=data,
            mrenclave=data[_ENCLAVE_HASH],
            mrsigner=hashlib.sha256(data[_MODULUS]).digest(),
            modulus=modulus,
            isv_prod_id=_u(data, _ISV_PROD_ID),
            isv_svn=_u(data, _ISV_SVN),
            attribute_flags=_u(data, _ATTRIBUTE_FLAGS),
            attribute_xfrm=_u(data, _ATTRIBUTE_XFRM),
            attribute_flags_mask=_u(data, _ATTRIBUTE_FLAGS_MASK),
            attribute_xfrm_mask=_u(data, _ATTRIBUTE_XFRM_MASK),
            misc_select=_u(data, _MISC_SELECT),
            misc_mask=_u(data, _MISC_MASK),
            vendor=vendor,
            date=_parse_date(data[_DATE]),
            isv_family_id=data[_ISV_FAMILY_ID],
            isvext_prod_id=data[_ISVEXT_PROD_ID],
        )

    def signed_data(self) -> bytes:
        """
        The bytes the signer signed: C{bytes[0:128] + bytes[900:1028]}.

        @return: The 256 signed bytes.
        """
        return self.raw[_SIGNED_HEAD] + self.raw[_SIGNED_BODY]

    def verify_signature(self) -> None:
        """
        Check the RSA-3072 (e = 3) PKCS#1 v1.5 SHA-256 signature over
        L{signed_data}, and the C{Q1}/C{Q2} values C{EINIT} uses to check
        it (Intel SDM vol. 3D, 38.13: C{Q1 = floor(S^2 / M)},
        C{Q2 = floor((S^3 - Q1 * S * M) / M)}).

        @raise SigstructSignatureError: If the signature or C{Q1}/C{Q2}
            does not hold.
        """
        signature = _u(self.raw, _SIGNATURE)
        if signature >= self.modulus:
            msg = "SIGSTRUCT signature is not below the modulus"
            raise SigstructSignatureError(msg)
        key = rsa.RSAPublicNumbers(EXPONENT, self.modulus).public_key()
        try:
            key.verify(
                signature.to_bytes(MODULUS_SIZE, "big"),
                self.signed_data(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            msg = "SIGSTRUCT signature does not verify with its modulus"
            raise SigstructSignatureError(msg) from None
        q1 = signature * signature // self.modulus
        q2 = (
            signature * signature * signature - q1 * signature * self.modulus
        ) // self.modulus
        if (q1, q2) != (_u(self.raw, _Q1), _u(self.raw, _Q2)):
            msg = "SIGSTRUCT q1/q2 do not match its signature"
            raise SigstructSignatureError(msg)

    def to_dict(self) -> dict[str, str | int | bool]:
        """
        The fields C{gramine-sgx-sigstruct-view --verbose} shows, under the
        same names: measurements as lowercase hex, masks and flags as
        C{0x}-prefixed hex, the date as ISO 8601.

        @return: A new dictionary.
        """
        return {
            "mr_signer": self.mrsigner.hex(),
            "mr_enclave": self.mrenclave.hex(),
            "isv_prod_id": self.isv_prod_id,
            "isv_svn": self.isv_svn,
            "debug_enclave": self.debug,
            "attribute_flags": f"{self.attribute_flags:#018x}",
            "attribute_xfrms": f"{self.attribute_xfrm:#018x}",
            "misc_select": f"{self.misc_select:#010x}",
            "attribute_flags_mask": f"{self.attribute_flags_mask:#018x}",
            "attribute_xfrm_mask": f"{self.attribute_xfrm_mask:#018x}",
            "misc_mask": f"{self.misc_mask:#010x}",
            "date": self.date.isoformat(),
        }


def main(argv: Sequence[str] | None = None) -> int:
    """
    Print a C{.sig} file's fields as C{key: value} lines, after checking its
    signature.

    @param argv: The arguments, without the program name; C{sys.argv[1:]}
        when L{None}.
    @return: The exit status: 0, or 1 when the file is unreadable,
        malformed or badly signed, or 2 for a usage error.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m attestd._sigstruct FILE.sig\n")
        return 2
    try:
        with open(args[0], "rb") as f:
            sigstruct = Sigstruct.from_bytes(f.read())
        sigstruct.verify_signature()
    except (OSError, SigstructParseError, SigstructSignatureError) as e:
        sys.stderr.write(f"{args[0]}: {e}\n")
        return 1
    for key, value in sigstruct.to_dict().items():
        sys.stdout.write(f"{key}: {value}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
