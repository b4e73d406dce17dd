"""
attestd: serve HTTPS from a Gramine SGX enclave with RA-TLS, and verify
RA-TLS servers from Python.

The public API is re-exported here; every other module is private.
"""

from attestd._evidence import CertificateInfo, RATLSEvidence, certificate_der
from attestd._quote import Quote, ReportBody

__all__ = [
    "CertificateInfo",
    "Quote",
    "RATLSEvidence",
    "ReportBody",
    "certificate_der",
]
