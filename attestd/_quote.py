"""
Parsing of Intel SGX DCAP quotes (version 3, ECDSA-P256) and SGX report
bodies.

The layout follows Intel's "SGX ECDSA Quote Library API" (quote format
v3, appendix A) as summarised in the project reference: a 48-byte header,
a 384-byte ISV enclave report body, then a length-prefixed ECDSA
signature data block carrying the attestation key, the Quoting Enclave
report and the certification data (type 5: the PCK certificate chain).

All integers are little-endian.  Every length read from the input is
bounded before it is used; any inconsistency raises
L{attestd.errors.QuoteParseError}.
"""

from __future__ import annotations

import re
import struct

from attrs import frozen

from attestd.errors import QuoteParseError, UnsupportedQuoteError

#: Upper bound on the size of a quote we are willing to parse.  Real
#: quotes are 4.5-5 KiB and Gramine caps them at 8 KiB; the bound leaves
#: room for long certification data while refusing absurd inputs.
MAX_QUOTE_SIZE = 64 * 1024

HEADER_SIZE = 48
REPORT_BODY_SIZE = 384
#: Offset of the signature data length: header plus report body.
SIGNED_SIZE = HEADER_SIZE + REPORT_BODY_SIZE

INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

ATT_KEY_TYPE_ECDSA_P256 = 2
CERT_DATA_PCK_CHAIN = 5

# SGX attribute flags (SDM vol. 3D, SECS.ATTRIBUTES).
FLAG_INIT = 0x01
FLAG_DEBUG = 0x02
FLAG_MODE64BIT = 0x04
FLAG_PROVISION_KEY = 0x10
FLAG_EINITTOKEN_KEY = 0x20
FLAG_KSS = 0x80

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----",
    re.DOTALL,
)


@frozen
class ReportBody:
    """
    An SGX report body (384 bytes), as found in the quote for the ISV
    enclave and for the Quoting Enclave.

    @ivar cpu_svn: 16-byte CPU security version.
    @ivar misc_select: MISCSELECT.
    @ivar isv_ext_prod_id: 16-byte extended product id (KSS).
    @ivar flags: ATTRIBUTES.FLAGS (INIT, DEBUG, MODE64BIT, ...).
    @ivar xfrm: ATTRIBUTES.XFRM.
    @ivar mrenclave: 32-byte enclave measurement.
    @ivar mrsigner: 32-byte SHA-256 of the enclave signer's modulus.
    @ivar config_id: 64-byte CONFIGID (KSS).
    @ivar isv_prod_id: ISVPRODID.
    @ivar isv_svn: ISVSVN.
    @ivar config_svn: CONFIGSVN (KSS).
    @ivar isv_family_id: 16-byte family id (KSS).
    @ivar report_data: 64 bytes chosen by the enclave.
    @ivar raw: The 384 bytes as they were parsed.
    """

    cpu_svn: bytes
    misc_select: int
    isv_ext_prod_id: bytes
    flags: int
    xfrm: int
    mrenclave: bytes
    mrsigner: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes
    raw: bytes

    @property
    def debug(self) -> bool:
        """
        Whether the enclave was launched in debug mode.
        """
        return bool(self.flags & FLAG_DEBUG)

    @property
    def attributes(self) -> bytes:
        """
        The 16 raw ATTRIBUTES bytes (flags, then xfrm).
        """
        return self.raw[48:64]

    @classmethod
    def from_bytes(cls, data: bytes) -> ReportBody:
        """
        Parse exactly 384 bytes of report body.

        @param data: The report body.
        @return: The parsed body.
        @raise QuoteParseError: If C{data} is not 384 bytes long.
        """
        if len(data) != REPORT_BODY_SIZE:
            msg = (
                f"report body must be {REPORT_BODY_SIZE} bytes, "
                f"got {len(data)}"
            )
            raise QuoteParseError(msg)
        data = bytes(data)
        misc_select, flags, xfrm = struct.unpack_from("<I", data, 16) + (
            struct.unpack_from("<QQ", data, 48)
        )
        isv_prod_id, isv_svn, config_svn = struct.unpack_from(
            "<HHH", data, 256
        )
        return cls(
            cpu_svn=data[0:16],
            misc_select=misc_select,
            isv_ext_prod_id=data[32:48],
            flags=flags,
            xfrm=xfrm,
            mrenclave=data[64:96],
            mrsigner=data[128:160],
            config_id=data[192:256],
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            config_svn=config_svn,
            isv_family_id=data[304:320],
            report_data=data[320:384],
            raw=data,
        )


@frozen
class QuoteHeader:
    """
    The 48-byte quote header.

    @ivar version: Quote format version (3).
    @ivar att_key_type: Attestation key type (2: ECDSA-256 with P-256).
    @ivar tee_type: Reserved in v3; the TEE type in v4.
    @ivar qe_svn: Security version of the Quoting Enclave.
    @ivar pce_svn: Security version of the Provisioning Certification
        Enclave.
    @ivar qe_vendor_id: 16-byte QE vendor id (Intel's for Intel's QE).
    @ivar user_data: 20 bytes; for Intel's QE the first 16 are a QE id.
    """

    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@frozen
class Quote:
    """
    A parsed SGX DCAP quote, version 3, ECDSA-P256.

    @ivar header: The quote header.
    @ivar report: The ISV enclave's report body.
    @ivar signature: The 64-byte quote signature (r || s, big-endian) by
        the attestation key over L{signed_data}.
    @ivar attestation_key: The raw 64-byte P-256 public key (X || Y).
    @ivar qe_report: The Quoting Enclave's report body.
    @ivar qe_report_signature: 64-byte signature (r || s) by the PCK leaf
        key over the QE report body.
    @ivar qe_auth_data: The QE authentication data, hashed into the QE
        report data together with the attestation key.
    @ivar certification_data_type: Type of the certification data (5: PCK
        certificate chain).
    @ivar certification_data: The certification data bytes.
    @ivar raw: The whole quote as parsed.
    """

    header: QuoteHeader
    report: ReportBody
    signature: bytes
    attestation_key: bytes
    qe_report: ReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_data_type: int
    certification_data: bytes
    raw: bytes

    @property
    def signed_data(self) -> bytes:
        """
        The bytes covered by the quote signature: header and report body.
        """
        return self.raw[:SIGNED_SIZE]

    def pck_chain_pem(self) -> list[bytes]:
        """
        The PEM certificates of the type-5 certification data, leaf first.

        @return: The certificates, each a PEM block.
        @raise UnsupportedQuoteError: If the certification data is not of
            type 5.
        @raise QuoteParseError: If it holds no certificate.
        """
        if self.certification_data_type != CERT_DATA_PCK_CHAIN:
            msg = (
                "certification data type "
                f"{self.certification_data_type} is not supported "
                "(only type 5, the PCK certificate chain)"
            )
            raise UnsupportedQuoteError(msg)
        blocks = _PEM_CERT.findall(self.certification_data)
        if not blocks:
            msg = "certification data holds no PEM certificate"
            raise QuoteParseError(msg)
        return blocks

    @classmethod
    def from_bytes(cls, data: bytes) -> Quote:
        """
        Parse a DCAP quote.

        @param data: The quote, exactly (no trailing bytes).
        @return: The parsed quote.
        @raise UnsupportedQuoteError: For quote versions 4 and 5 or
            attestation keys other than ECDSA-P256.
        @raise QuoteParseError: For anything malformed or truncated.
        """
        data = bytes(data)
        if len(data) > MAX_QUOTE_SIZE:
            msg = f"quote is {len(data)} bytes, more than {MAX_QUOTE_SIZE}"
            raise QuoteParseError(msg)
        if len(data) < SIGNED_SIZE + 4:
            msg = f"quote is truncated: {len(data)} bytes"
            raise QuoteParseError(msg)
        version, key_type, tee_type, qe_svn, pce_svn = struct.unpack_from(
            "<HHIHH", data, 0
        )
        if version in (4, 5):
            msg = f"quote version {version} is not supported (only 3)"
            raise UnsupportedQuoteError(msg)
        if version != 3:
            msg = f"unknown quote version {version}"
            raise QuoteParseError(msg)
        if key_type != ATT_KEY_TYPE_ECDSA_P256:
            msg = f"attestation key type {key_type} is not supported"
            raise UnsupportedQuoteError(msg)
        header = QuoteHeader(
            version=version,
            att_key_type=key_type,
            tee_type=tee_type,
            qe_svn=qe_svn,
            pce_svn=pce_svn,
            qe_vendor_id=data[12:28],
            user_data=data[28:48],
        )
        report = ReportBody.from_bytes(data[HEADER_SIZE:SIGNED_SIZE])
        (sig_len,) = struct.unpack_from("<I", data, SIGNED_SIZE)
        sig = data[SIGNED_SIZE + 4 :]
        if sig_len != len(sig):
            msg = (
                f"signature data length field says {sig_len} bytes, "
                f"but {len(sig)} follow"
            )
            raise QuoteParseError(msg)
        reader = _Reader(sig)
        signature = reader.take(64, "quote signature")
        attestation_key = reader.take(64, "attestation key")
        qe_report = ReportBody.from_bytes(
            reader.take(REPORT_BODY_SIZE, "QE report")
        )
        qe_report_signature = reader.take(64, "QE report signature")
        qe_auth_data = reader.take(reader.u16("QE auth data size"), "QE auth")
        cert_type = reader.u16("certification data type")
        cert_data = reader.take(
            reader.u32("certification data size"), "certification data"
        )
        if reader.remaining:
            msg = f"{reader.remaining} trailing bytes after the quote"
            raise QuoteParseError(msg)
        return cls(
            header=header,
            report=report,
            signature=signature,
            attestation_key=attestation_key,
            qe_report=qe_report,
            qe_report_signature=qe_report_signature,
            qe_auth_data=qe_auth_data,
            certification_data_type=cert_type,
            certification_data=cert_data,
            raw=data,
        )


class _Reader:
    """
    A bounds-checked cursor over untrusted bytes.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def take(self, size: int, what: str) -> bytes:
        if size > self.remaining:
            msg = (
                f"quote is truncated in the {what}: needs {size} bytes, "
                f"{self.remaining} left"
            )
            raise QuoteParseError(msg)
        chunk = self._data[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def u16(self, what: str) -> int:
        (value,) = struct.unpack("<H", self.take(2, what))
        return int(value)

    def u32(self, what: str) -> int:
        (value,) = struct.unpack("<I", self.take(4, what))
        return int(value)
