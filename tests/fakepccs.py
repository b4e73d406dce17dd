"""
A fake PCCS for tests: a C{twisted.web} resource tree serving the real
collateral vectors under C{/sgx/certification/v4} the way Intel PCS and
the PCCS do, over TLS (with a throwaway CA made here) or plain HTTP on
127.0.0.1, with faults that can be switched on per endpoint.

What it serves, from C{tests/vectors}:

  - C{tcb?fmspc=00606a000000}: the file
    C{automata-0825/sgx_tcbinfov3_00606a000000.json} as is, with the TCB
    Signing chain in C{TCB-Info-Issuer-Chain} (or the older
    C{SGX-TCB-Info-Issuer-Chain});
  - C{qe/identity}: C{automata-0825/sgx_qeidentity_v4.json}, chain in
    C{SGX-Enclave-Identity-Issuer-Chain};
  - C{pckcrl?ca=platform}: C{automata-0825/platform_crl.der} (DER with
    C{encoding=der}, PEM otherwise), chain in C{SGX-PCK-CRL-Issuer-Chain};
    C{ca=processor} is not held and gives 404, like an unknown FMSPC;
  - C{rootcacrl}: the root CA CRL of the assembled automata bundle, as hex
    text (older PCCS) or DER (newer).

Issuer chains are taken from the assembled bundle and URL-encoded.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import define, field
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from ._vectors import AUTOMATA_BUNDLE, VECTORS

AUTOMATA = VECTORS / "automata-0825"
TCB_INFO_FILE = AUTOMATA / "sgx_tcbinfov3_00606a000000.json"
QE_IDENTITY_FILE = AUTOMATA / "sgx_qeidentity_v4.json"
PCK_CRL_FILE = AUTOMATA / "platform_crl.der"
FMSPC = "00606a000000"

#: The endpoint names that faults are keyed by.
ENDPOINTS = ("tcb_info", "qe_identity", "pck_crl", "root_ca_crl")


@define
class Fault:
    """
    Something wrong with one endpoint's reply.

    @ivar kind: One of:
        - C{"status"}: answer with C{status} and a short body;
        - C{"hang"}: never answer;
        - C{"missing_chain"}: leave out the issuer-chain header;
        - C{"malformed_chain"}: an issuer-chain header that is URL-encoded
          text but not a PEM chain;
        - C{"raw_chain"}: the chain as a PEM whose certificate is cut;
        - C{"truncated"}: announce the full length, send half the body,
          and close the connection;
        - C{"not_json"}: an HTML body;
        - C{"oversized"}: a body of C{size} bytes sent chunked, with no
          length announced;
        - C{"oversized_declared"}: announce C{size} bytes, send a few and
          stall.
    @ivar status: The status for C{"status"}.
    @ivar size: The body size for the oversized kinds.
    """

    kind: str
    status: int = 500
    size: int = 0


@define
class FakePCCS:
    """
    The data served, the faults and a record of requests.

    @ivar requests: Each request's path and query, in order.
    @ivar faults: Faults by endpoint name (see L{ENDPOINTS}).
    @ivar tcb_chain_header: The header name the TCB Info chain goes in.
    @ivar root_crl_format: C{"hex"} or C{"der"}.
    @ivar pck_crl_format: C{"asked"} (DER with C{encoding=der}, else PEM)
        or C{"pem"} (PEM always, like a server that ignores the
        parameter).
    @ivar any_fmspc: Serve the TCB Info for whatever FMSPC is asked.
    """

    tcb_info_body: bytes
    qe_identity_body: bytes
    pck_crl_der: bytes
    root_ca_crl_der: bytes
    tcb_info_chain: str
    qe_identity_chain: str
    pck_crl_chain: str
    requests: list[str] = field(factory=list)
    faults: dict[str, Fault] = field(factory=dict)
    tcb_chain_header: bytes = b"TCB-Info-Issuer-Chain"
    root_crl_format: str = "hex"
    pck_crl_format: str = "asked"
    any_fmspc: bool = False
    hanging: list[Request] = field(factory=list)

    @classmethod
    def from_vectors(cls) -> FakePCCS:
        """
        A fake serving the automata-0825 collateral for FMSPC
        00606a000000 and the PCK Platform CA.
        """
        bundle = json.loads(AUTOMATA_BUNDLE.read_text())
        return cls(
            tcb_info_body=TCB_INFO_FILE.read_bytes(),
            qe_identity_body=QE_IDENTITY_FILE.read_bytes(),
            pck_crl_der=PCK_CRL_FILE.read_bytes(),
            root_ca_crl_der=bytes.fromhex(bundle["root_ca_crl"]),
            tcb_info_chain=bundle["tcb_info_issuer_chain"],
            qe_identity_chain=bundle["qe_identity_issuer_chain"],
            pck_crl_chain=bundle["pck_crl_issuer_chain"],
        )

    def count(self, prefix: str) -> int:
        """
        How many requests had a path starting with C{prefix} (relative to
        C{/sgx/certification/v4/}).
        """
        full = "/sgx/certification/v4/" + prefix
        return sum(1 for r in self.requests if r.startswith(full))

    def resource(self) -> Resource:
        """
        The resource tree: C{/sgx/certification/v4/...}.
        """
        v4 = Resource()
        v4.putChild(b"tcb", _Endpoint(self, "tcb_info", self._tcb_info))
        qe = Resource()
        qe.putChild(
            b"identity",
            _Endpoint(self, "qe_identity", self._qe_identity),
        )
        v4.putChild(b"qe", qe)
        v4.putChild(b"pckcrl", _Endpoint(self, "pck_crl", self._pck_crl))
        v4.putChild(
            b"rootcacrl", _Endpoint(self, "root_ca_crl", self._root_ca_crl)
        )
        certification = Resource()
        certification.putChild(b"v4", v4)
        sgx = Resource()
        sgx.putChild(b"certification", certification)
        root = Resource()
        root.putChild(b"sgx", sgx)
        return root

    def release(self) -> None:
        """
        Drop the connections of requests left hanging.
        """
        for request in self.hanging:
            transport = request.channel.transport if request.channel else None
            if transport is not None:
                transport.abortConnection()
        self.hanging.clear()

    def _tcb_info(self, request: Request) -> tuple[int, bytes, str | None]:
        fmspc = _arg(request, b"fmspc")
        if fmspc is None or (fmspc.lower() != FMSPC and not self.any_fmspc):
            return 404, b"", None
        return 200, self.tcb_info_body, self.tcb_info_chain

    def _qe_identity(self, request: Request) -> tuple[int, bytes, str | None]:
        return 200, self.qe_identity_body, self.qe_identity_chain

    def _pck_crl(self, request: Request) -> tuple[int, bytes, str | None]:
        ca = _arg(request, b"ca")
        if ca is None or ca.lower() not in ("platform", "processor"):
            return 400, b"", None
        if ca.lower() != "platform":
            return 404, b"", None
        encoding = (_arg(request, b"encoding") or "").lower()
        if encoding == "der" and self.pck_crl_format == "asked":
            body = self.pck_crl_der
        else:
            body = x509.load_der_x509_crl(self.pck_crl_der).public_bytes(
                serialization.Encoding.PEM
            )
        return 200, body, self.pck_crl_chain

    def _root_ca_crl(self, request: Request) -> tuple[int, bytes, str | None]:
        if self.root_crl_format == "der":
            return 200, self.root_ca_crl_der, None
        return 200, self.root_ca_crl_der.hex().encode(), None


def _arg(request: Request, name: bytes) -> str | None:
    values = (request.args or {}).get(name)
    return values[0].decode("ascii") if values else None


class _Endpoint(Resource):
    """
    One API endpoint, with its faults.
    """

    isLeaf = True

    def __init__(
        self,
        fake: FakePCCS,
        name: str,
        serve: Callable[[Request], tuple[int, bytes, str | None]],
    ) -> None:
        super().__init__()
        self._fake = fake
        self._name = name
        self._serve = serve

    def render_GET(self, request: Request) -> bytes | int:
        self._fake.requests.append(request.uri.decode("ascii"))
        status, body, chain = self._serve(request)
        header = {
            "tcb_info": self._fake.tcb_chain_header,
            "qe_identity": b"SGX-Enclave-Identity-Issuer-Chain",
            "pck_crl": b"SGX-PCK-CRL-Issuer-Chain",
        }.get(self._name)
        fault = self._fake.faults.get(self._name)
        if fault is not None and fault.kind == "status":
            status, body, chain = fault.status, b"", None
            request.setHeader(b"Error-Code", b"FakeFault")
        request.setResponseCode(status)
        if status != 200:
            return b'{"error": "fake"}'
        if chain is not None and header is not None:
            value = urllib.parse.quote(chain, safe="").encode("ascii")
            if fault is not None and fault.kind == "malformed_chain":
                value = b"not%20a%20certificate%20chain"
            elif fault is not None and fault.kind == "raw_chain":
                value = urllib.parse.quote(
                    chain[: len(chain) // 3] + "\n-----END CERTIFICATE-----\n",
                    safe="",
                ).encode("ascii")
            if fault is None or fault.kind != "missing_chain":
                request.setHeader(header, value)
        if fault is None:
            return body
        if fault.kind == "hang":
            self._fake.hanging.append(request)
            return NOT_DONE_YET
        if fault.kind == "not_json":
            return b"<html><body>502 Bad Gateway</body></html>"
        if fault.kind == "truncated":
            request.setHeader(b"Content-Length", str(len(body)).encode())
            request.write(body[: len(body) // 2])
            request.loseConnection()
            return NOT_DONE_YET
        if fault.kind == "oversized":
            chunk = b" " * 65536
            for _ in range(fault.size // len(chunk) + 1):
                request.write(chunk)
            request.finish()
            return NOT_DONE_YET
        if fault.kind == "oversized_declared":
            request.setHeader(b"Content-Length", str(fault.size).encode())
            request.write(b" " * 1024)
            self._fake.hanging.append(request)
            return NOT_DONE_YET
        return body


@define
class RunningPCCS:
    """
    A fake PCCS listening on 127.0.0.1.

    @ivar fake: What it serves.
    @ivar url: Its base URL.
    @ivar ca_file: The PEM file of the CA that issued its certificate
        (TLS only).
    """

    fake: FakePCCS
    url: str
    port: Any
    ca_file: Path | None = None

    def stop(self) -> Deferred[None]:
        """
        Stop listening and drop hanging requests.
        """
        self.fake.release()
        return maybeDeferred(self.port.stopListening)


@define
class ThrowawayPKI:
    """
    A CA and a server certificate it issued, made for one test.
    """

    ca_pem: bytes
    server_pem: bytes
    server_key_pem: bytes

    def server_options(self) -> ssl.CertificateOptions:
        """
        Server TLS options presenting the server certificate.
        """
        return ssl.PrivateCertificate.loadPEM(
            self.server_key_pem + self.server_pem
        ).options()


def make_pki(
    *, ip: str = "127.0.0.1", dns_name: str | None = None
) -> ThrowawayPKI:
    """
    Make a P-256 CA and a server certificate naming an IP address (and
    a DNS name, if given).
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "Fake PCCS CA")]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip))]
    if dns_name is not None:
        names = [x509.DNSName(dns_name)]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-pccs")])
        )
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
            False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ThrowawayPKI(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        server_pem=server_cert.public_bytes(serialization.Encoding.PEM),
        server_key_pem=server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def serve_tls(
    reactor: Any, fake: FakePCCS, pki: ThrowawayPKI, directory: Path
) -> RunningPCCS:
    """
    Serve C{fake} over TLS on 127.0.0.1, on a free port.

    @param directory: Where to write the CA file.
    """
    ca_file = directory / "fake-pccs-ca.pem"
    ca_file.write_bytes(pki.ca_pem)
    port = reactor.listenSSL(
        0, Site(fake.resource()), pki.server_options(), interface="127.0.0.1"
    )
    return RunningPCCS(
        fake=fake,
        url=f"https://127.0.0.1:{port.getHost().port}",
        port=port,
        ca_file=ca_file,
    )


def serve_http(reactor: Any, fake: FakePCCS) -> RunningPCCS:
    """
    Serve C{fake} over plain HTTP on 127.0.0.1, on a free port.
    """
    port = reactor.listenTCP(0, Site(fake.resource()), interface="127.0.0.1")
    return RunningPCCS(
        fake=fake, url=f"http://127.0.0.1:{port.getHost().port}", port=port
    )
