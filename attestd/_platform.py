"""
Which collateral a quote needs: the platform's FMSPC and the PCK CA that
issued its PCK certificate.

Collateral is published per FMSPC (TCB Info) and per PCK CA (the PCK CRL
of the Platform CA or of the Processor CA), so a client that fetches
collateral on demand reads both from the PCK leaf inside the quote.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from attestd._pck import PCKExtension
from attestd._quote import Quote
from attestd._x509util import X509_PARSE_ERRORS
from attestd.errors import QuoteParseError


def pck_identity(quote: Quote) -> tuple[bytes, str]:
    """
    The FMSPC and PCK CA kind of the platform that produced C{quote}.

    @param quote: A parsed quote with type-5 certification data.
    @return: The 6-byte FMSPC and C{"platform"} or C{"processor"}.
    @raise attestd.errors.ParseError: If the PCK leaf, its issuer name or
        its SGX extension cannot be read.
    """
    leaf_pem = quote.pck_chain_pem()[0]
    try:
        leaf = x509.load_pem_x509_certificate(leaf_pem)
        names = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    except X509_PARSE_ERRORS as e:
        msg = f"PCK leaf certificate is malformed: {e}"
        raise QuoteParseError(msg) from e
    issuer = str(names[0].value) if names else ""
    if issuer.endswith("Platform CA"):
        ca = "platform"
    elif issuer.endswith("Processor CA"):
        ca = "processor"
    else:
        msg = f"PCK leaf issuer {issuer!r} is neither a Platform nor a Processor CA"
        raise QuoteParseError(msg)
    return PCKExtension.from_certificate(leaf).fmspc, ca
