"""
Tests for the server-side TLS identity and contexts (C{attestd._tls}),
with real TLS handshakes on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.protocols.tls import TLSMemoryBIOFactory

from attestd._evidence import OID_LEGACY_GRAMINE, OID_LEGACY_INTEL
from attestd._tls import (
    ServerContextFactory,
    ServerIdentity,
    load_identity,
    parse_private_key,
)
from attestd.errors import (
    BindingError,
    CertificateParseError,
    ConfigurationError,
    MissingEvidenceError,
)

from ._vectors import (
    KONVERA_DER,
    KONVERA_KEY_DER,
    KONVERA_KEY_PEM,
    KONVERA_PEM,
    KONVERA_QUOTE,
    KONVERA_TRUSTED_PEM,
    expected,
)

#: Offset of report_data in an SGX quote (48-byte header, then the
#: report body with report_data at 320).
REPORT_DATA_OFFSET = 48 + 320

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def spki_der(key: PrivateKey) -> bytes:
    """
    The SubjectPublicKeyInfo DER of C{key}'s public key.
    """
    return key.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def binding_certificate(
    key: PrivateKey,
    *,
    oid: str = OID_LEGACY_INTEL,
    bind: bool = True,
    evidence: bool = True,
) -> bytes:
    """
    A self-signed certificate for C{key} with a legacy RA-TLS extension.

    This is a binding fixture, not a verifiable quote: the extension holds
    a copy of the real konvera quote whose report data is patched to
    SHA-256 of C{key}'s SubjectPublicKeyInfo, so that the quote parses and
    the key binding holds, while the quote's signature no longer verifies
    (the daemon does not verify it; clients do).

    @param key: The certificate key.
    @param oid: The quote extension's OID.
    @param bind: Patch the report data; when C{False} the quote is the
        konvera one, bound to another key.
    @param evidence: Include the quote extension at all.
    @return: The certificate DER.
    """
    quote = bytearray(KONVERA_QUOTE.read_bytes())
    if bind:
        quote[REPORT_DATA_OFFSET : REPORT_DATA_OFFSET + 32] = hashlib.sha256(
            spki_der(key)
        ).digest()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "RATLS")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2030, 12, 31, tzinfo=datetime.UTC))
    )
    if evidence:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(oid), bytes(quote)
            ),
            critical=False,
        )
    certificate = builder.sign(key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.DER)


def key_bytes(
    key: PrivateKey,
    encoding: serialization.Encoding,
    form: serialization.PrivateFormat,
) -> bytes:
    """
    Serialise C{key} unencrypted.
    """
    return key.private_bytes(encoding, form, serialization.NoEncryption())


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    """
    Write C{data} to C{tmp_path / name} and return the path.
    """
    path = tmp_path / name
    path.write_bytes(data)
    return path


def konvera_identity() -> ServerIdentity:
    """
    The real konvera certificate and key, from the gramine-ratls PEM form.
    """
    return load_identity(KONVERA_TRUSTED_PEM, KONVERA_KEY_PEM)


class _Hello(Protocol):
    """
    Answer every TLS connection with one line, then wait.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"hello\n")


def serve_tls(creator: ServerContextFactory) -> Any:
    """
    Listen on 127.0.0.1 with TLS from C{creator}.

    @return: The listening port.
    """
    factory = TLSMemoryBIOFactory(creator, False, Factory.forProtocol(_Hello))
    return reactor.listenTCP(0, factory, interface="127.0.0.1")


def client_context(
    *,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    alpn: list[str] | None = None,
) -> ssl.SSLContext:
    """
    A stdlib client context that accepts any certificate (RA-TLS
    certificates are checked by their quote, not by a CA).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context


def handshake(port: int, context: ssl.SSLContext) -> dict[str, Any]:
    """
    Do a TLS handshake with 127.0.0.1:C{port} and read one line
    (blocking; run it in a thread).

    @return: The peer certificate DER, the TLS version, the cipher, the
        ALPN protocol and the line read.
    """
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock) as tls,
    ):
        return {
            "der": tls.getpeercert(binary_form=True),
            "version": tls.version(),
            "cipher": tls.cipher()[0],
            "alpn": tls.selected_alpn_protocol(),
            "line": tls.recv(6),
        }


async def handshake_with(
    creator: ServerContextFactory, context: ssl.SSLContext
) -> dict[str, Any]:
    """
    Serve C{creator} on a fresh port and do one handshake against it.
    """
    port = serve_tls(creator)
    try:
        return await deferToThread(handshake, port.getHost().port, context)
    finally:
        await port.stopListening()


@pytest.fixture
def p256_key() -> ec.EllipticCurvePrivateKey:
    """
    A fresh P-256 key.
    """
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa3072_key() -> rsa.RSAPrivateKey:
    """
    A fresh RSA-3072 key, as Gramine 1.0-1.3 used (made once: it is slow).
    """
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


class TestLoadIdentity:
    @pytest.mark.parametrize(
        ("cert", "key"),
        [
            (KONVERA_TRUSTED_PEM, KONVERA_KEY_PEM),
            (KONVERA_DER, KONVERA_KEY_DER),
            (KONVERA_PEM, KONVERA_KEY_PEM),
        ],
    )
    def test_gramine_forms(self, cert: Path, key: Path) -> None:
        """
        The real konvera certificate and key load from gramine-ratls's PEM
        (TRUSTED CERTIFICATE label, trailing NUL), from DER and from
        ordinary PEM, with bound legacy evidence.
        """
        want = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
        identity = load_identity(cert, key)
        assert KONVERA_DER.read_bytes() == identity.certificate_der
        assert identity.evidence is not None
        assert "legacy" == identity.evidence.kind
        report = identity.evidence.quote.report
        assert want["mrenclave"] == report.mrenclave.hex()
        assert want["mrsigner"] == report.mrsigner.hex()
        assert identity.unattested_reason is None
        assert (
            hashlib.sha256(KONVERA_DER.read_bytes()).hexdigest()
            == identity.certificate_sha256
        )

    @pytest.mark.parametrize(
        "form",
        [
            serialization.PrivateFormat.PKCS8,
            serialization.PrivateFormat.TraditionalOpenSSL,
        ],
    )
    @pytest.mark.parametrize(
        "encoding", [serialization.Encoding.PEM, serialization.Encoding.DER]
    )
    def test_key_encodings(
        self,
        tmp_path: Path,
        form: serialization.PrivateFormat,
        encoding: serialization.Encoding,
    ) -> None:
        """
        The konvera key loads as PKCS#8 or SEC1, in PEM or DER.
        """
        key = parse_private_key(KONVERA_KEY_DER.read_bytes())
        path = write(tmp_path, "key", key_bytes(key, encoding, form))
        identity = load_identity(KONVERA_DER, path)
        assert identity.evidence is not None

    def test_der_key_ending_like_padding(self, tmp_path: Path) -> None:
        """
        A DER key whose last byte happens to be NUL or whitespace loads:
        only PEM files get gramine-ratls's trailing NUL removed.
        """
        for value in range(1, 10_000):
            key = ec.derive_private_key(value, ec.SECP256R1())
            der = key_bytes(
                key,
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
            )
            if der[-1:] in (b"\0", b" ", b"\t", b"\r", b"\n"):
                break
        else:
            pytest.fail("no such key found")
        path = write(tmp_path, "key.der", der)
        assert spki_der(key) == spki_der(parse_private_key(path.read_bytes()))

    def test_p256(
        self, tmp_path: Path, p256_key: ec.EllipticCurvePrivateKey
    ) -> None:
        """
        A P-256 key with a binding fixture certificate (Intel's OID
        spelling) loads with its evidence.
        """
        cert = write(tmp_path, "cert.der", binding_certificate(p256_key))
        key = write(
            tmp_path,
            "key.der",
            key_bytes(
                p256_key,
                serialization.Encoding.DER,
                serialization.PrivateFormat.TraditionalOpenSSL,
            ),
        )
        identity = load_identity(cert, key)
        assert identity.evidence is not None
        assert identity.evidence.kind == "legacy"

    def test_rsa3072(
        self, tmp_path: Path, rsa3072_key: rsa.RSAPrivateKey
    ) -> None:
        """
        An RSA-3072 key in PKCS#1 PEM with a trailing NUL, with a binding
        fixture certificate under Gramine's OID spelling, loads.
        """
        cert = binding_certificate(rsa3072_key, oid=OID_LEGACY_GRAMINE)
        pem = key_bytes(
            rsa3072_key,
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
        )
        assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
        identity = load_identity(
            write(tmp_path, "cert.der", cert),
            write(tmp_path, "key.pem", pem + b"\0"),
        )
        assert identity.evidence is not None

    def test_key_mismatch(self, tmp_path: Path) -> None:
        """
        A key that does not belong to the certificate is refused, naming
        both files.
        """
        other = ec.generate_private_key(ec.SECP384R1())
        key = write(
            tmp_path,
            "other.pem",
            key_bytes(
                other,
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
            ),
        )
        with pytest.raises(ConfigurationError, match="does not match") as e:
            load_identity(KONVERA_DER, key)
        assert str(key) in str(e.value)
        assert str(KONVERA_DER) in str(e.value)

    @pytest.mark.parametrize(
        ("name", "make", "error", "match"),
        [
            ("missing", None, ConfigurationError, "No such file"),
            (
                "directory",
                "dir",
                ConfigurationError,
                r"not a regular file \(a directory\)",
            ),
            ("empty", b"", CertificateParseError, "empty"),
            (
                "truncated-der",
                KONVERA_DER.read_bytes()[:3000],
                CertificateParseError,
                "truncated",
            ),
            (
                "truncated-pem",
                KONVERA_TRUSTED_PEM.read_bytes()[:4000],
                CertificateParseError,
                "no DER certificate and no PEM",
            ),
            ("garbage", b"garbage\n", CertificateParseError, "no DER"),
        ],
    )
    def test_bad_certificate_file(
        self,
        tmp_path: Path,
        name: str,
        make: bytes | str | None,
        error: type[Exception],
        match: str,
    ) -> None:
        """
        A certificate file that is missing, unreadable, empty, truncated
        or garbage is refused with a typed error naming the file.
        """
        path = tmp_path / name
        if make == "dir":
            path.mkdir()
        elif isinstance(make, bytes):
            path.write_bytes(make)
        with pytest.raises(error, match=match) as e:
            load_identity(path, KONVERA_KEY_PEM)
        assert str(path) in str(e.value)

    @pytest.mark.parametrize("which", ["certificate", "key"])
    def test_fifo_refused_without_blocking(
        self, tmp_path: Path, which: str
    ) -> None:
        """
        A FIFO given as the certificate or the key is refused as not a
        regular file, without waiting for a writer to open it.
        """
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        cert, key = (
            (fifo, KONVERA_KEY_PEM)
            if which == "certificate"
            else (KONVERA_DER, fifo)
        )
        result: list[BaseException | None] = []

        def load() -> None:
            try:
                load_identity(cert, key)
            except BaseException as e:  # noqa: BLE001
                result.append(e)
            else:
                result.append(None)

        # A thread, so that a blocking open fails the test instead of
        # hanging it (the writer below then releases the thread).
        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        thread.join(10)
        if thread.is_alive():
            with fifo.open("wb"):
                pass
            thread.join(10)
            pytest.fail(f"opening the {which} FIFO blocked")
        (error,) = result
        assert isinstance(error, ConfigurationError)
        assert f"{fifo}: not a regular file (a FIFO)" in str(error)

    def test_device_refused(self) -> None:
        """
        A character device given as the key is refused as not a regular
        file.
        """
        with pytest.raises(ConfigurationError) as e:
            load_identity(KONVERA_DER, Path(os.devnull))
        assert (
            f"private key {os.devnull}: not a regular file (a character "
            "device)"
        ) == str(e.value)

    @pytest.mark.parametrize(
        ("name", "make", "match"),
        [
            ("truncated", lambda: KONVERA_KEY_PEM.read_bytes()[:100], "PEM"),
            ("garbage", lambda: b"\x30\x03\x02\x01\x05", "DER"),
            (
                "encrypted",
                lambda: parse_private_key(
                    KONVERA_KEY_DER.read_bytes()
                ).private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"secret"),
                ),
                "encrypted",
            ),
            (
                "p521",
                lambda: key_bytes(
                    ec.generate_private_key(ec.SECP521R1()),
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                ),
                "secp521r1",
            ),
            (
                "rsa1024",
                lambda: key_bytes(
                    rsa.generate_private_key(
                        public_exponent=65537, key_size=1024
                    ),
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                ),
                "1024 bits",
            ),
            (
                "ed25519",
                lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
                "unsupported private key type",
            ),
        ],
    )
    def test_bad_key_file(
        self,
        tmp_path: Path,
        name: str,
        make: Callable[[], bytes],
        match: str,
    ) -> None:
        """
        A truncated, garbage, encrypted or unsupported key is refused with
        a parse error naming the file.
        """
        path = write(tmp_path, name, make())
        with pytest.raises(CertificateParseError, match=match) as e:
            load_identity(KONVERA_DER, path)
        assert str(path) in str(e.value)

    def test_no_evidence(
        self, tmp_path: Path, p256_key: ec.EllipticCurvePrivateKey
    ) -> None:
        """
        A certificate without RA-TLS evidence is refused, unless
        unattested serving is asked for, which records why.
        """
        cert = write(
            tmp_path,
            "plain.der",
            binding_certificate(p256_key, evidence=False),
        )
        key = write(
            tmp_path,
            "key.der",
            key_bytes(
                p256_key,
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
            ),
        )
        with pytest.raises(MissingEvidenceError, match=str(cert)):
            load_identity(cert, key)
        identity = load_identity(cert, key, insecure_unattested=True)
        assert identity.evidence is None
        assert identity.unattested_reason is not None
        assert "no RA-TLS evidence" in identity.unattested_reason

    def test_swapped_quote(
        self, tmp_path: Path, p256_key: ec.EllipticCurvePrivateKey
    ) -> None:
        """
        A certificate carrying another key's quote fails the binding,
        unless unattested serving is asked for.
        """
        cert = write(
            tmp_path, "swapped.der", binding_certificate(p256_key, bind=False)
        )
        key = write(
            tmp_path,
            "key.der",
            key_bytes(
                p256_key,
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
            ),
        )
        with pytest.raises(BindingError, match="public key"):
            load_identity(cert, key)
        identity = load_identity(cert, key, insecure_unattested=True)
        assert identity.evidence is None


@pytest.fixture(scope="module")
def tls11_client_works() -> Iterator[None]:
    """
    Check that this machine's stdlib client can speak TLS 1.1 at all, with
    a permissive local stdlib server; skip the test otherwise (it could
    not fail).
    """
    identity = konvera_identity()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.TLSv1
    server.set_ciphers("ALL:@SECLEVEL=0")
    server.load_cert_chain(KONVERA_TRUSTED_PEM, KONVERA_KEY_PEM)
    assert identity.evidence is not None
    listener = socket.create_server(("127.0.0.1", 0))
    result: list[str | None] = []

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                result.append(tls.version())
                tls.sendall(b"hello\n")
        except (ssl.SSLError, OSError):
            result.append(None)

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        version = handshake(
            listener.getsockname()[1],
            client_context(
                maximum=ssl.TLSVersion.TLSv1_1, ciphers="ALL:@SECLEVEL=0"
            ),
        )["version"]
    except (ssl.SSLError, OSError):
        version = None
    thread.join()
    listener.close()
    if version != "TLSv1.1":
        pytest.skip("the stdlib client cannot speak TLS 1.1 here")
    yield


class TestServerContext:
    @pytest.mark.parametrize(
        ("cert", "key"),
        [
            (KONVERA_TRUSTED_PEM, KONVERA_KEY_PEM),
            (KONVERA_DER, KONVERA_KEY_DER),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_serves_exact_der(self, cert: Path, key: Path) -> None:
        """
        A client receives exactly the certificate DER that gramine-ratls
        wrote, from the PEM and from the DER files, over TLS 1.3 with
        http/1.1 selected by ALPN.
        """
        creator = ServerContextFactory(load_identity(cert, key))
        result = await handshake_with(
            creator, client_context(alpn=["h2", "http/1.1"])
        )
        assert KONVERA_DER.read_bytes() == result["der"]
        assert "TLSv1.3" == result["version"]
        assert "http/1.1" == result["alpn"]
        assert b"hello\n" == result["line"]

    @pytest_twisted.ensureDeferred
    async def test_alpn_without_http11(self) -> None:
        """
        A client that offers only other protocols still connects, with no
        protocol selected.
        """
        creator = ServerContextFactory(konvera_identity())
        result = await handshake_with(creator, client_context(alpn=["h2"]))
        assert result["alpn"] is None

    @pytest_twisted.ensureDeferred
    async def test_tls11_refused(self, tls11_client_works: None) -> None:
        """
        A TLS 1.1 client is refused, although it can speak TLS 1.1 with a
        permissive server.
        """
        creator = ServerContextFactory(konvera_identity())
        context = client_context(
            maximum=ssl.TLSVersion.TLSv1_1, ciphers="ALL:@SECLEVEL=0"
        )
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await handshake_with(creator, context)

    @pytest_twisted.ensureDeferred
    async def test_tls12_suites(self, tmp_path: Path) -> None:
        """
        Over TLS 1.2 an RSA certificate is served with ECDHE and AES-GCM,
        while static-RSA key exchange and CBC suites are refused.
        """
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        identity = load_identity(
            write(tmp_path, "cert.der", binding_certificate(key)),
            write(
                tmp_path,
                "key.pem",
                key_bytes(
                    key,
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                ),
            ),
        )
        creator = ServerContextFactory(identity)
        ok = await handshake_with(
            creator,
            client_context(
                maximum=ssl.TLSVersion.TLSv1_2,
                ciphers="ECDHE-RSA-AES128-GCM-SHA256",
            ),
        )
        assert ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256") == (
            ok["version"],
            ok["cipher"],
        )
        for weak in ("AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await handshake_with(
                    creator,
                    client_context(
                        maximum=ssl.TLSVersion.TLSv1_2, ciphers=weak
                    ),
                )

    @pytest_twisted.ensureDeferred
    async def test_set_identity(
        self, tmp_path: Path, p256_key: ec.EllipticCurvePrivateKey
    ) -> None:
        """
        After set_identity new connections get the new certificate; an
        identity whose key does not match is refused and the previous one
        stays.
        """
        creator = ServerContextFactory(konvera_identity())
        der = binding_certificate(p256_key)
        new = load_identity(
            write(tmp_path, "new.der", der),
            write(
                tmp_path,
                "new.key",
                key_bytes(
                    p256_key,
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                ),
            ),
        )
        creator.set_identity(new)
        assert new is creator.identity
        result = await handshake_with(creator, client_context())
        assert der == result["der"]
        broken = ServerIdentity(
            certificate_der=KONVERA_DER.read_bytes(),
            certificate=konvera_identity().certificate,
            private_key=p256_key,
            evidence=None,
        )
        with pytest.raises(ConfigurationError, match="does not match"):
            creator.set_identity(broken)
        assert new is creator.identity
        result = await handshake_with(creator, client_context())
        assert der == result["der"]
