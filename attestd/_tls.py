"""
Server-side TLS for attestd: the RA-TLS identity and the pyOpenSSL
contexts that present it.

A L{ServerIdentity} is what the daemon serves: the certificate that
C{gramine-ratls} wrote (in any of its forms), the matching private key and
the RA-TLS evidence read from that certificate.  L{ServerContextFactory}
turns an identity into connections for L{TLSMemoryBIOFactory}; its
identity can be replaced while the server runs, so that new connections
get a new certificate while open ones keep theirs.

Certificates from Gramine up to 1.5 carry an ECDSA signature algorithm
with explicit NULL parameters, which pyca/cryptography refuses to load;
OpenSSL accepts them, so certificates are handed to OpenSSL through
pyOpenSSL's C{X509} type.  Nothing here knows about HTTP.
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
import weakref
from pathlib import Path
from typing import Any

from attrs import frozen
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    load_der_private_key,
    load_der_public_key,
    load_pem_private_key,
)
from OpenSSL import SSL, crypto
from twisted.internet.error import ConnectionAborted, ConnectionClosed
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from attestd._evidence import (
    MAX_CERTIFICATE_SIZE,
    CertificateInfo,
    RATLSEvidence,
    certificate_der,
)
from attestd.errors import (
    BindingError,
    CertificateParseError,
    ConfigurationError,
    EvidenceParseError,
    MissingEvidenceError,
)

#: Bound on a private key file; an RSA-4096 PEM key is about 3.3 KiB.
MAX_KEY_SIZE = 64 * 1024

#: The only application protocol offered.
ALPN_HTTP_1_1 = b"http/1.1"

#: TLS 1.2 suites: ephemeral ECDH key exchange and AEAD ciphers only,
#: for ECDSA (P-256, P-384) and RSA certificates.
TLS12_CIPHERS = b":".join(
    [
        b"ECDHE-ECDSA-AES256-GCM-SHA384",
        b"ECDHE-ECDSA-CHACHA20-POLY1305",
        b"ECDHE-ECDSA-AES128-GCM-SHA256",
        b"ECDHE-RSA-AES256-GCM-SHA384",
        b"ECDHE-RSA-CHACHA20-POLY1305",
        b"ECDHE-RSA-AES128-GCM-SHA256",
    ]
)

#: TLS 1.3 suites (all of them are AEAD with ephemeral key exchange).
TLS13_SUITES = b":".join(
    [
        b"TLS_AES_256_GCM_SHA384",
        b"TLS_CHACHA20_POLY1305_SHA256",
        b"TLS_AES_128_GCM_SHA256",
    ]
)

#: Elliptic curves accepted for the certificate key.
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}

#: Smallest RSA modulus accepted (old Gramine used RSA-3072).
MIN_RSA_BITS = 2048

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@frozen
class ServerIdentity:
    """
    A certificate, its private key and the RA-TLS evidence it carries.

    @ivar certificate_der: The certificate's DER, exactly what clients
        receive.
    @ivar certificate: The same certificate as OpenSSL loaded it.
    @ivar private_key: The matching private key.
    @ivar evidence: The certificate's RA-TLS evidence, whose key binding
        holds; L{None} when the identity is served unattested.
    @ivar unattested_reason: Why C{evidence} is L{None}, or L{None} when
        there is evidence.
    @ivar simulated: Whether the evidence is simulated (made by
        attestd's stand-in for Intel's infrastructure, not by SGX).
    """

    certificate_der: bytes
    certificate: crypto.X509
    private_key: PrivateKey
    evidence: RATLSEvidence | None
    unattested_reason: str | None = None
    simulated: bool = False

    @property
    def certificate_sha256(self) -> str:
        """
        SHA-256 of C{certificate_der}, in hex.
        """
        return hashlib.sha256(self.certificate_der).hexdigest()

    @property
    def spki_der(self) -> bytes:
        """
        The certificate's SubjectPublicKeyInfo DER, as it appears in the
        certificate (what RA-TLS report data hashes).
        """
        if self.evidence is not None:
            return self.evidence.certificate.spki_der
        return CertificateInfo.from_der(self.certificate_der).spki_der


def read_file(path: Path, what: str, limit: int) -> bytes:
    """
    Read a whole file, refusing what cannot be one of ours.

    Only a regular file is read: a FIFO, a device, a socket or a directory
    is refused before it is opened (and checked again once open, without
    waiting for a writer), so that start-up never blocks on it.

    @param path: The file.
    @param what: What it holds, for messages (C{"certificate"}).
    @param limit: Largest size accepted, in bytes.
    @return: Its bytes.
    @raise ConfigurationError: If it cannot be read, is not a regular
        file or is too large.
    """
    try:
        _check_regular(path, what, os.stat(path).st_mode)
        # O_NONBLOCK: should the path become a FIFO after the stat, the
        # open does not wait for a writer (the fstat below refuses it).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        msg = f"{what} {path}: cannot read: {e.strerror or e}"
        raise ConfigurationError(msg) from e
    try:
        try:
            _check_regular(path, what, os.fstat(fd).st_mode)
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        msg = f"{what} {path}: cannot read: {e.strerror or e}"
        raise ConfigurationError(msg) from e
    if len(data) > limit:
        msg = f"{what} {path}: larger than {limit} bytes"
        raise ConfigurationError(msg)
    return data


#: What a file that is not a regular one is, by C{stat} type test.
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_regular(path: Path, what: str, mode: int) -> None:
    """
    Refuse a file whose mode is not that of a regular file.

    @raise ConfigurationError: If it is not.
    """
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "special")
    msg = f"{what} {path}: not a regular file ({kind})"
    raise ConfigurationError(msg)


def parse_private_key(data: bytes) -> PrivateKey:
    """
    Parse a private key in any form C{gramine-ratls} or OpenSSL writes.

    Accepted: PEM (with or without the trailing NUL byte that
    C{gramine-ratls} writes) or DER; PKCS#8, SEC1 (C{EC PRIVATE KEY}) or
    PKCS#1 (C{RSA PRIVATE KEY}); unencrypted; EC on P-256 or P-384, or
    RSA of at least L{MIN_RSA_BITS} bits.

    @param data: The file's bytes.
    @return: The key.
    @raise CertificateParseError: If no acceptable key can be read.
    """
    if not data.strip(b"\0 \t\r\n"):
        msg = "private key file is empty"
        raise CertificateParseError(msg)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            # gramine-ratls counts mbedTLS's terminating NUL in the file.
            pem = data.rstrip(b"\0 \t\r\n") + b"\n"
            key = load_pem_private_key(pem, password=None)
        else:
            # DER is taken as it is: its last bytes may be anything.
            key = load_der_private_key(data, password=None)
    except TypeError as e:
        # cryptography raises TypeError for a key that needs a password.
        msg = "private key is encrypted; give it unencrypted"
        raise CertificateParseError(msg) from e
    except (ValueError, UnsupportedAlgorithm) as e:
        msg = (
            "not a readable private key (expected PEM or DER: PKCS#8, "
            "SEC1 or PKCS#1)"
        )
        raise CertificateParseError(msg) from e
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in _CURVES:
            msg = (
                f"EC private key on {key.curve.name}; only P-256 and "
                "P-384 are supported"
            )
            raise CertificateParseError(msg)
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            msg = (
                f"RSA private key of {key.key_size} bits; at least "
                f"{MIN_RSA_BITS} are required"
            )
            raise CertificateParseError(msg)
        return key
    msg = (
        f"unsupported private key type {type(key).__name__}; use EC "
        "(P-256, P-384) or RSA"
    )
    raise CertificateParseError(msg)


def load_certificate(der: bytes) -> crypto.X509:
    """
    Load a certificate DER into OpenSSL.

    @param der: One DER certificate (see L{certificate_der}).
    @return: OpenSSL's view of it.
    @raise CertificateParseError: If OpenSSL cannot read it.
    """
    try:
        return crypto.load_certificate(crypto.FILETYPE_ASN1, der)
    except crypto.Error as e:
        msg = f"OpenSSL cannot read the certificate: {_openssl_reason(e)}"
        raise CertificateParseError(msg) from e


def read_evidence(der: bytes) -> RATLSEvidence:
    """
    Read a certificate's RA-TLS evidence and check its key binding.

    @param der: The certificate DER.
    @return: The evidence, bound to the certificate's key.
    @raise CertificateParseError: If the certificate is malformed.
    @raise EvidenceParseError: If an evidence extension is malformed.
    @raise MissingEvidenceError: If there is no evidence.
    @raise BindingError: If the evidence does not bind the key.
    """
    evidence = RATLSEvidence.from_certificate(der)
    evidence.check_binding()
    return evidence


def load_identity(
    cert_path: Path,
    key_path: Path,
    *,
    insecure_unattested: bool = False,
) -> ServerIdentity:
    """
    Load what C{gramine-ratls} wrote and check that it can be served.

    @param cert_path: The certificate: PEM (C{TRUSTED CERTIFICATE} with a
        trailing NUL, or C{CERTIFICATE}) or DER.
    @param key_path: The private key (see L{parse_private_key}).
    @param insecure_unattested: Serve the certificate even when it carries
        no RA-TLS evidence or its binding does not hold; the reason is
        kept in L{ServerIdentity.unattested_reason}.
    @return: The identity.
    @raise ConfigurationError: If a file cannot be read, or the key does
        not belong to the certificate.
    @raise CertificateParseError: If a file is malformed; the message
        names the file.
    @raise MissingEvidenceError: If the certificate carries no evidence
        (unless C{insecure_unattested}).
    @raise EvidenceParseError: If its evidence is malformed (unless
        C{insecure_unattested}).
    @raise BindingError: If its evidence does not bind its key (unless
        C{insecure_unattested}).
    """
    cert_data = read_file(cert_path, "certificate", MAX_CERTIFICATE_SIZE)
    try:
        der = certificate_der(cert_data)
        x509 = load_certificate(der)
    except CertificateParseError as e:
        msg = f"certificate {cert_path}: {e}"
        raise CertificateParseError(msg) from e
    key_data = read_file(key_path, "private key", MAX_KEY_SIZE)
    try:
        key = parse_private_key(key_data)
    except CertificateParseError as e:
        msg = f"private key {key_path}: {e}"
        raise CertificateParseError(msg) from e
    try:
        spki_der = CertificateInfo.from_der(der).spki_der
        matches = load_der_public_key(spki_der) == key.public_key()
    except (CertificateParseError, ValueError, UnsupportedAlgorithm) as e:
        msg = f"certificate {cert_path}: unreadable public key: {e}"
        raise CertificateParseError(msg) from e
    if not matches:
        msg = (
            f"private key {key_path} does not match certificate "
            f"{cert_path} (their public keys differ)"
        )
        raise ConfigurationError(msg)
    try:
        build_context(
            ServerIdentity(
                certificate_der=der,
                certificate=x509,
                private_key=key,
                evidence=None,
            )
        )
    except ConfigurationError as e:
        msg = f"certificate {cert_path} with key {key_path}: {e}"
        raise ConfigurationError(msg) from e
    try:
        evidence = read_evidence(der)
    except CertificateParseError as e:
        msg = f"certificate {cert_path}: {e}"
        raise CertificateParseError(msg) from e
    except (MissingEvidenceError, EvidenceParseError, BindingError) as e:
        if not insecure_unattested:
            msg = f"certificate {cert_path}: {e}"
            raise type(e)(msg) from e
        return ServerIdentity(
            certificate_der=der,
            certificate=x509,
            private_key=key,
            evidence=None,
            unattested_reason=str(e),
        )
    return ServerIdentity(
        certificate_der=der,
        certificate=x509,
        private_key=key,
        evidence=evidence,
    )


def minted_identity(
    der: bytes, key: PrivateKey, *, simulated: bool = False
) -> ServerIdentity:
    """
    The identity of a certificate minted in this process, checked as
    strictly as one read from files: OpenSSL must take it with its key,
    and its evidence must be readable and bind its key.

    @param der: The certificate DER.
    @param key: Its private key.
    @param simulated: Whether its evidence is simulated.
    @return: The identity.
    @raise CertificateParseError: If the certificate is malformed.
    @raise EvidenceParseError: If its evidence is malformed.
    @raise MissingEvidenceError: If it carries no evidence.
    @raise BindingError: If its evidence does not bind its key.
    @raise ConfigurationError: If OpenSSL refuses it or the key.
    """
    identity = ServerIdentity(
        certificate_der=der,
        certificate=load_certificate(der),
        private_key=key,
        evidence=read_evidence(der),
        simulated=simulated,
    )
    build_context(identity)
    return identity


def _openssl_reason(error: crypto.Error | SSL.Error) -> str:
    """
    The reasons of an OpenSSL error, as one short phrase.
    """
    queue = error.args[0] if error.args else []
    reasons = [
        str(item[-1])
        for item in (queue if isinstance(queue, list) else [])
        if isinstance(item, tuple) and item
    ]
    return "; ".join(reasons) or str(error) or "unknown OpenSSL error"


def handshake_failure(reason: Failure) -> str:
    """
    Why a server-side TLS handshake failed, in a few stable words: the
    reason OpenSSL gives (C{unsupported protocol} for a TLS 1.0 or 1.1
    client, C{http request} for plain HTTP, C{wrong version number} or
    C{packet length too long} for other bytes that are not TLS, C{no
    shared cipher}, an alert the client sent), or that the client closed
    the connection first.

    @param reason: What the connection was lost with.
    @return: The reason.
    """
    error = reason.value
    if isinstance(error, SSL.SysCallError):
        return f"connection error during the handshake: {error}"
    if isinstance(error, SSL.Error):
        return _openssl_reason(error)
    if isinstance(error, ConnectionAborted):
        return "connection aborted during the handshake"
    if isinstance(error, ConnectionClosed):
        return (
            "the client closed the connection before the handshake completed"
        )
    return str(error) or type(error).__name__


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> Any:
    """
    Choose C{http/1.1} when the client offers it; otherwise go on without
    ALPN.

    @return: C{http/1.1}, or pyOpenSSL's C{NO_OVERLAPPING_PROTOCOLS}.
    """
    if ALPN_HTTP_1_1 in offered:
        return ALPN_HTTP_1_1
    return SSL.NO_OVERLAPPING_PROTOCOLS


def build_context(identity: ServerIdentity) -> SSL.Context:
    """
    Make a server context that presents C{identity}.

    TLS 1.2 is the minimum; TLS 1.2 suites are ECDHE with AES-GCM or
    ChaCha20-Poly1305 only; compression, renegotiation and session
    tickets are off (tickets would tie past sessions to a ticket key that
    lives as long as the process); ALPN selects C{http/1.1}.

    @param identity: What to present.
    @return: A new context.
    @raise ConfigurationError: If the key does not belong to the
        certificate, or OpenSSL refuses either.
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(
        SSL.OP_NO_COMPRESSION
        | SSL.OP_NO_RENEGOTIATION
        | SSL.OP_NO_TICKET
        | SSL.OP_CIPHER_SERVER_PREFERENCE
        | SSL.OP_SINGLE_ECDH_USE
    )
    context.set_cipher_list(TLS12_CIPHERS)
    context.set_tls13_ciphersuites(TLS13_SUITES)
    context.set_alpn_select_callback(_select_alpn)
    try:
        with warnings.catch_warnings():
            # XXX: pyOpenSSL deprecates X509 objects here, but
            # cryptography cannot load Gramine <= 1.5 certificates (NULL
            # ECDSA parameters); when pyOpenSSL drops X509, such
            # certificates will need another way into OpenSSL.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.use_certificate(identity.certificate)
    except SSL.Error as e:
        msg = f"OpenSSL refuses the certificate: {_openssl_reason(e)}"
        raise ConfigurationError(msg) from e
    try:
        context.use_privatekey(identity.private_key)
        context.check_privatekey()
    except SSL.Error as e:
        msg = "the private key does not match the certificate's public key"
        raise ConfigurationError(msg) from e
    return context


@implementer(IOpenSSLServerConnectionCreator)
class ServerContextFactory:
    """
    Make server-side TLS connections that present the current identity.

    Give it to L{twisted.protocols.tls.TLSMemoryBIOFactory} as the
    connection creator.  L{set_identity} replaces the context that new
    connections use; connections already open keep the context (and so
    the certificate) they started with, and L{identity_for} tells which
    identity a connection presents.

    @ivar _current: The identity new connections present, and the
        context built from it (replaced together).
    @ivar _connections: The identity each open connection presents, by
        its TLS protocol (forgotten with the protocol).
    """

    def __init__(self, identity: ServerIdentity) -> None:
        """
        @param identity: The identity to present.
        @raise ConfigurationError: See L{build_context}.
        """
        self._current = (identity, build_context(identity))
        self._connections: weakref.WeakKeyDictionary[
            object, ServerIdentity
        ] = weakref.WeakKeyDictionary()

    @property
    def identity(self) -> ServerIdentity:
        """
        The identity new connections present.
        """
        return self._current[0]

    def set_identity(self, identity: ServerIdentity) -> None:
        """
        Present C{identity} on new connections.  If it cannot be used,
        the previous identity stays in place.

        @param identity: The new identity.
        @raise ConfigurationError: See L{build_context}.
        """
        self._current = (identity, build_context(identity))

    def identity_for(self, transport: object) -> ServerIdentity | None:
        """
        The identity a connection presents.

        @param transport: The connection's TLS protocol (the transport
            of the protocol it wraps, e.g. an HTTP channel).
        @return: Its identity, or L{None} if it is not one of this
            factory's connections.
        """
        try:
            return self._connections.get(transport)
        except TypeError:
            # Not weakly referenceable: not a TLS protocol of ours.
            return None

    def serverConnectionForTLS(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> SSL.Connection:
        """
        Make a connection for one accepted client.

        @param tlsProtocol: The TLS protocol that asks; it is remembered
            with the identity it presents.
        @return: An OpenSSL connection using the current context.
        """
        identity, context = self._current
        self._connections[tlsProtocol] = identity
        return SSL.Connection(context, None)
