"""
What pyca/cryptography raises for malformed certificates and CRLs.

Most parse failures are C{ValueError}s, but a duplicated extension and an
unknown certificate or CRL version have exception types of their own, and
some parts (names, extensions) are only decoded when first used.  Every
place that loads untrusted X.509 data catches this whole tuple and turns
it into one of attestd's parse errors.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

X509_PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.InvalidVersion,
)
