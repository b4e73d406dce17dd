"""
What every attestation source offers the daemon.

A source gives the daemon its L{ServerIdentity}: an RA-TLS certificate,
its private key and the evidence the certificate carries.  Sources that
quote in this process (L{InProcessSource}: Gramine's C{/dev/attestation},
or the simulated quoting enclave) can also mint a new certificate
(rotation) and quote a client's nonce (fresh quotes); the files source
can only read what C{gramine-ratls} wrote.

Every method here blocks (device I/O, key generation, signing): the
daemon calls them before its reactor runs, or in a thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from attestd._fresh import check_nonce, fresh_report_data
from attestd._simulated_ratls import mint_ratls_certificate
from attestd._tls import ServerIdentity, minted_identity
from attestd.errors import (
    AttestationSourceError,
    AttestdError,
    FreshnessUnavailableError,
)


class AttestationSource(ABC):
    """
    Where the daemon's certificate comes from.

    @cvar kind: The C{--attestation} name: C{"files"}, C{"gramine"} or
        C{"simulated"}.
    @cvar in_process: Whether the source quotes in this process, and so
        can mint certificates and fresh quotes.
    @cvar simulated: Whether its evidence is simulated.
    """

    kind: ClassVar[str]
    in_process: ClassVar[bool] = False
    simulated: ClassVar[bool] = False

    @abstractmethod
    def load(self) -> ServerIdentity:
        """
        The identity to serve at start.

        @return: The identity.
        @raise AttestdError: If the source cannot give one; the message
            says why in one line.
        """

    @abstractmethod
    def renew(self) -> ServerIdentity:
        """
        The identity to serve from now on, for C{--rotate}: a new key and
        certificate for an in-process source, the files read again for
        the files source.

        @return: The identity.
        @raise AttestdError: If the source cannot give one.
        """

    def fresh_quote(self, spki_der: bytes, nonce: bytes) -> bytes:
        """
        A quote whose report data is
        L{attestd._fresh.fresh_report_data}C{(spki_der, nonce)}.

        @param spki_der: The SubjectPublicKeyInfo DER of the certificate
            the client is connected to.
        @param nonce: The client's nonce (16 to 64 bytes).
        @return: The quote.
        @raise FreshnessUnavailableError: Unless the source is in-process.
        """
        msg = (
            "fresh quotes need an in-process attestation source "
            "(--attestation gramine inside Gramine, or --attestation "
            f"simulated); the {self.kind} source cannot quote on demand"
        )
        raise FreshnessUnavailableError(msg)


class InProcessSource(AttestationSource):
    """
    A source with a quoting function of its own: it mints RA-TLS
    certificates the way Gramine 1.8 and later do (a fresh P-384 key,
    the legacy quote and the TCG DICE evidence, each quote binding the
    key as Gramine binds it) and quotes nonces.
    """

    in_process = True

    @abstractmethod
    def quote(self, report_data: bytes) -> bytes:
        """
        Quote this enclave with C{report_data}.

        @param report_data: 64 bytes.
        @return: The quote.
        @raise AttestdError: If no quote can be made.
        """

    def mint(self) -> ServerIdentity:
        """
        Mint a new key and RA-TLS certificate.

        @return: The identity; its evidence binds its key.
        @raise AttestationSourceError: If the minted certificate cannot
            be served (this is a bug of the source, or a quote that
            does not carry the report data asked for).
        @raise AttestdError: If quoting fails.
        """
        der, key = mint_ratls_certificate(self.quote)
        try:
            return minted_identity(der, key, simulated=self.simulated)
        except AttestationSourceError:
            raise
        except AttestdError as e:
            msg = f"the {self.kind} source minted an unusable certificate: {e}"
            raise AttestationSourceError(msg) from e

    def load(self) -> ServerIdentity:
        """
        Mint the first identity.
        """
        return self.mint()

    def renew(self) -> ServerIdentity:
        """
        Mint a new identity.
        """
        return self.mint()

    def fresh_quote(self, spki_der: bytes, nonce: bytes) -> bytes:
        """
        Quote C{SHA-256(spki_der) || SHA-256(nonce)}.

        @raise attestd.errors.NonceParseError: If C{nonce} is not 16 to
            64 bytes.
        """
        check_nonce(nonce)
        return self.quote(fresh_report_data(spki_der, nonce))
