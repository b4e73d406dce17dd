"""
The files source: the RA-TLS certificate and key that C{gramine-ratls}
wrote before the daemon started (C{--attestation files}).
"""

from __future__ import annotations

from pathlib import Path

from attestd._tls import ServerIdentity, load_identity
from attestd.sources._base import AttestationSource


class FilesSource(AttestationSource):
    """
    Reads a certificate and its key from files (see
    L{attestd._tls.load_identity} for the forms accepted).  It cannot
    quote: C{--rotate} reads the files again (and serves what they hold
    then, e.g. after C{gramine-ratls} ran again), and fresh quotes are
    refused.

    @ivar cert_path: The certificate file.
    @ivar key_path: The key file.
    @ivar insecure_unattested: Whether a certificate without valid
        evidence is served anyway.
    """

    kind = "files"

    def __init__(
        self,
        cert_path: Path,
        key_path: Path,
        *,
        insecure_unattested: bool = False,
    ) -> None:
        """
        @param cert_path: The certificate file.
        @param key_path: The key file.
        @param insecure_unattested: Serve a certificate without valid
            evidence anyway (development only).
        """
        self.cert_path = cert_path
        self.key_path = key_path
        self.insecure_unattested = insecure_unattested

    def load(self) -> ServerIdentity:
        """
        Read the files.

        @raise attestd.errors.AttestdError: See L{load_identity}.
        """
        return load_identity(
            self.cert_path,
            self.key_path,
            insecure_unattested=self.insecure_unattested,
        )

    def renew(self) -> ServerIdentity:
        """
        Read the files again.
        """
        return self.load()
