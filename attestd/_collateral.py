"""
DCAP collateral: what a verifier needs besides the quote.

One L{Collateral} holds, for one platform (FMSPC) and one PCK CA:

  - the PCK CRL and its issuer chain (PCK Platform or Processor CA, root);
  - the Intel SGX Root CA CRL;
  - the signed TCB Info and QE Identity, each as the exact JSON bytes that
    were signed plus the signature, and their issuer chain (the TCB
    Signing certificate, root).

The offline bundle file format is the JSON layout of dcap-qvl's
C{QuoteCollateralV3}, so bundles made with dcap-qvl or with
C{attestd collateral fetch} are interchangeable.  This module only models
and (de)serialises collateral; fetching it lives elsewhere.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from typing import Any

from attrs import frozen

from attestd.errors import ParseError


class CollateralParseError(ParseError):
    """
    A collateral bundle or one of its parts is malformed.
    """


#: Bound on a bundle file; real bundles are 15-25 KiB, a busy PCK CRL
#: can add a few hundred KiB.
MAX_BUNDLE_SIZE = 4 * 1024 * 1024

_STRING_FIELDS = (
    "pck_crl_issuer_chain",
    "tcb_info_issuer_chain",
    "tcb_info",
    "qe_identity_issuer_chain",
    "qe_identity",
)
_HEX_FIELDS = (
    "root_ca_crl",
    "pck_crl",
    "tcb_info_signature",
    "qe_identity_signature",
)


@frozen
class Collateral:
    """
    Collateral for verifying quotes of one platform.

    @ivar pck_crl_issuer_chain: PEM chain of the PCK CRL's issuer, then
        the root.
    @ivar root_ca_crl: DER of the CRL issued by the Intel SGX Root CA.
    @ivar pck_crl: DER of the CRL issued by the PCK Platform or Processor
        CA.
    @ivar tcb_info_issuer_chain: PEM chain of the TCB Signing certificate,
        then the root.
    @ivar tcb_info: The exact bytes of the C{tcbInfo} JSON object that
        were signed, as text.
    @ivar tcb_info_signature: The 64-byte signature (r || s) over
        L{tcb_info}.
    @ivar qe_identity_issuer_chain: PEM chain that signed the QE Identity.
    @ivar qe_identity: The exact bytes of the C{enclaveIdentity} object.
    @ivar qe_identity_signature: The 64-byte signature over
        L{qe_identity}.
    """

    pck_crl_issuer_chain: str
    root_ca_crl: bytes
    pck_crl: bytes
    tcb_info_issuer_chain: str
    tcb_info: str
    tcb_info_signature: bytes
    qe_identity_issuer_chain: str
    qe_identity: str
    qe_identity_signature: bytes

    @classmethod
    def from_json(cls, text: str | bytes) -> Collateral:
        """
        Read a bundle in dcap-qvl's C{QuoteCollateralV3} JSON layout.

        @param text: The bundle file's contents.
        @return: The collateral.
        @raise CollateralParseError: If the bundle is malformed.
        """
        if len(text) > MAX_BUNDLE_SIZE:
            msg = f"collateral bundle is larger than {MAX_BUNDLE_SIZE} bytes"
            raise CollateralParseError(msg)
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            msg = f"collateral bundle is not JSON: {e}"
            raise CollateralParseError(msg) from e
        if not isinstance(data, dict):
            msg = "collateral bundle is not a JSON object"
            raise CollateralParseError(msg)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Collateral:
        """
        Read a bundle already decoded from JSON.

        @param data: The decoded bundle.
        @return: The collateral.
        @raise CollateralParseError: If a field is missing or malformed.
        """
        values: dict[str, Any] = {}
        for name in _STRING_FIELDS:
            value = data.get(name)
            if not isinstance(value, str) or not value:
                msg = f"collateral field {name!r} is missing or not text"
                raise CollateralParseError(msg)
            values[name] = value
        for name in _HEX_FIELDS:
            value = data.get(name)
            if not isinstance(value, str) or not value:
                msg = f"collateral field {name!r} is missing or not text"
                raise CollateralParseError(msg)
            try:
                values[name] = binascii.unhexlify(value)
            except (binascii.Error, ValueError) as e:
                msg = f"collateral field {name!r} is not hex: {e}"
                raise CollateralParseError(msg) from e
        for name in ("tcb_info_signature", "qe_identity_signature"):
            if len(values[name]) != 64:
                msg = (
                    f"collateral field {name!r} is {len(values[name])} "
                    "bytes, not a 64-byte r || s signature"
                )
                raise CollateralParseError(msg)
        return cls(**values)

    def to_dict(self) -> dict[str, str]:
        """
        The bundle in dcap-qvl's C{QuoteCollateralV3} JSON layout.
        """
        out: dict[str, str] = {}
        for name in _STRING_FIELDS:
            out[name] = getattr(self, name)
        for name in _HEX_FIELDS:
            out[name] = getattr(self, name).hex()
        return out

    def to_json(self) -> str:
        """
        The bundle as JSON text, readable by L{from_json} and dcap-qvl.
        """
        return json.dumps(self.to_dict(), indent=1)

    def digests(self) -> dict[str, str]:
        """
        SHA-256 (hex) of each piece, so that a verdict can name exactly
        the collateral it used.
        """
        return {
            name: hashlib.sha256(
                value.encode() if isinstance(value, str) else value
            ).hexdigest()
            for name, value in (
                (n, getattr(self, n)) for n in _STRING_FIELDS + _HEX_FIELDS
            )
        }
