"""
Tests for fresh quotes: C{/.well-known/attestation?nonce=HEX} served by
the daemon in this process (simulated source, real TLS on 127.0.0.1),
the client's round trip (L{attestd._fresh.request_fresh_quote}) and its
checks (L{attestd._fresh.check_fresh_quote}).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from attestd._collateral import Collateral
from attestd._dcap import TrustRoot
from attestd._fresh import (
    FreshVerdict,
    check_fresh_quote,
    fresh_report_data,
    request_fresh_quote,
)
from attestd._policy import Policy
from attestd._simulated import SimulatedEnclave
from attestd._verifier import RATLSVerdict, verify_ratls_certificate
from attestd.errors import (
    AttestationSourceError,
    FreshnessError,
    NonceParseError,
)
from attestd.sources import SimulatedSource
from attestd.tap import AttestdService, Options

from .fakepccs import FakePCCS, make_pki, serve_tls
from .fakes.devattestation import FakeAttestationDevice
from .test_rotation import Client, fetch, simulated_options, start_service
from .test_sources import key_pem


@attrs.frozen
class Server:
    """
    A simulated daemon and what a client needs to verify it.
    """

    service: AttestdService
    source: SimulatedSource
    port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def collateral(self) -> Collateral:
        return Collateral.from_json(self.source.collateral_path.read_bytes())

    def trust_root(self) -> TrustRoot:
        return TrustRoot.from_pem(self.source.root_path.read_bytes())

    def verify(self, der: bytes) -> RATLSVerdict:
        """
        Verify a certificate the server presented.
        """
        return verify_ratls_certificate(
            der,
            self.collateral(),
            Policy(
                mrenclave=self.source.enclave.mrenclave,
                mrsigner=None,
                isv_prod_id=None,
                isv_svn=None,
            ),
            now=time.time(),
            trust_root=self.trust_root(),
        )

    async def fresh(
        self, certificate: RATLSVerdict, nonce: bytes
    ) -> FreshVerdict:
        """
        The client's whole round trip for C{nonce}.
        """
        presented, quote = await exchange(self, certificate, nonce)
        return self.check(quote, presented, nonce)

    def check(
        self, quote: bytes, certificate: RATLSVerdict, nonce: bytes
    ) -> FreshVerdict:
        return check_fresh_quote(
            quote,
            nonce=nonce,
            certificate=certificate,
            collateral=self.collateral(),
            now=time.time(),
            trust_root=self.trust_root(),
        )


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    The simulated state directory of the module.
    """
    return tmp_path_factory.mktemp("fresh-state")


@pytest_twisted.async_yield_fixture
async def server(state: Path) -> AsyncIterator[Server]:
    """
    A simulated daemon in this process.
    """
    service, port = start_service(simulated_options(state))
    assert service.keeper is not None
    source = service.keeper.source
    assert isinstance(source, SimulatedSource)
    yield Server(service, source, port)
    await service.stopService()


async def verified(server: Server) -> RATLSVerdict:
    """
    Fetch the server's certificate over TLS and verify it.
    """
    _, _, der = await deferToThread(fetch, server.port, "/healthz")
    return server.verify(der)


class TestRoundTrip:
    @pytest_twisted.ensureDeferred
    async def test_fresh_quote_accepted(self, server: Server) -> None:
        """
        The server quotes the client's nonce with the certificate's key;
        the client's checks pass.
        """
        certificate = await verified(server)
        nonce = os.urandom(32)
        fresh = await server.fresh(certificate, nonce)
        assert nonce == fresh.nonce
        assert certificate.evidence.certificate.sha256 == (
            fresh.certificate_sha256
        )
        assert (
            fresh_report_data(certificate.evidence.certificate.spki_der, nonce)
            == fresh.quote.quote.report.report_data
        )
        assert fresh.quote.simulated

    @pytest_twisted.ensureDeferred
    async def test_document(self, server: Server) -> None:
        """
        The document with a nonce echoes it, adds the fresh quote, and
        says it is simulated.
        """
        nonce = os.urandom(16)
        status, body, der = await deferToThread(
            fetch, server.port, f"/.well-known/attestation?nonce={nonce.hex()}"
        )
        assert 200 == status
        document = json.loads(body)
        assert (nonce.hex(), True) == (
            document["nonce"],
            document["simulated"],
        )
        assert (
            hashlib.sha256(der).hexdigest() == document["certificate_sha256"]
        )
        certificate = server.verify(der)
        server.check(
            base64.b64decode(document["fresh_quote"]), certificate, nonce
        )

    @pytest_twisted.ensureDeferred
    async def test_quote_binds_the_connections_certificate(
        self, server: Server
    ) -> None:
        """
        Asked over a connection opened before a rotation, the fresh quote
        binds the certificate that connection presents, which the client
        verified.
        """
        client = Client(server.port)
        try:
            _, _, old = await deferToThread(client.get, "/healthz")
            keeper = server.service.keeper
            assert keeper is not None
            assert await keeper.rotate()
            nonce = os.urandom(32)
            status, body, der = await deferToThread(
                client.get, f"/.well-known/attestation?nonce={nonce.hex()}"
            )
        finally:
            await deferToThread(client.close)
        assert (200, old) == (status, der)
        server.check(
            base64.b64decode(json.loads(body)["fresh_quote"]),
            server.verify(old),
            nonce,
        )


class TestRefusals:
    @pytest_twisted.ensureDeferred
    async def test_replayed_nonce(self, server: Server) -> None:
        """
        A fresh quote made for nonce A, presented as the answer to nonce
        B, is refused: the nonce's hash differs.
        """
        certificate = await verified(server)
        a, b = os.urandom(32), os.urandom(32)
        quote = await request_quote(server, certificate, a)
        with pytest.raises(FreshnessError) as e:
            server.check(quote, certificate, b)
        assert ["report_data[32:64] (SHA-256 of the nonce)"] == [
            m.field for m in e.value.mismatches
        ]

    @pytest_twisted.ensureDeferred
    async def test_altered_nonce(self, server: Server) -> None:
        """
        A nonce altered by one bit on its way is refused, by the echo
        check and by the quote check.
        """
        certificate = await verified(server)
        nonce = os.urandom(32)
        altered = bytes([nonce[0] ^ 1]) + nonce[1:]
        quote = await request_quote(server, certificate, altered)
        with pytest.raises(FreshnessError, match="SHA-256 of the nonce"):
            server.check(quote, certificate, nonce)

    @pytest_twisted.ensureDeferred
    async def test_other_key(self, server: Server) -> None:
        """
        A fresh quote for this nonce that binds another certificate's key
        is refused.
        """
        first = await verified(server)
        keeper = server.service.keeper
        assert keeper is not None
        assert await keeper.rotate()
        second = await verified(server)
        nonce = os.urandom(32)
        quote = await request_quote(server, second, nonce)
        with pytest.raises(FreshnessError) as e:
            server.check(quote, first, nonce)
        assert ["report_data[0:32] (certificate key)"] == [
            m.field for m in e.value.mismatches
        ]

    @pytest_twisted.ensureDeferred
    async def test_other_enclave_and_tampering(self, server: Server) -> None:
        """
        A well-signed fresh quote of another enclave is refused for its
        measurements; a tampered quote does not verify.
        """
        certificate = await verified(server)
        nonce = os.urandom(32)
        other = server.source.pki.quoting_enclave(
            SimulatedEnclave(mrenclave=bytes(32), isv_svn=2)
        )
        spki = certificate.evidence.certificate.spki_der
        with pytest.raises(FreshnessError) as e:
            server.check(
                other.quote_for(fresh_report_data(spki, nonce)),
                certificate,
                nonce,
            )
        assert ["mrenclave", "isv_svn", "mrenclave"] == [
            m.field for m in e.value.mismatches
        ]
        quote = bytearray(await request_quote(server, certificate, nonce))
        quote[400] ^= 1
        with pytest.raises(FreshnessError, match="does not verify"):
            server.check(bytes(quote), certificate, nonce)
        with pytest.raises(NonceParseError):
            server.check(bytes(quote), certificate, b"short")

    @pytest_twisted.ensureDeferred
    async def test_rotated_between_connections(self, server: Server) -> None:
        """
        A server that rotated its certificate after the first handshake is
        judged on the certificate of the connection that carried the
        nonce: that one is verified in full, the fresh quote binds its
        key, and the same quote does not bind the first certificate.
        """
        first = await verified(server)
        keeper = server.service.keeper
        assert keeper is not None
        assert await keeper.rotate()
        nonce = os.urandom(32)
        presented, quote = await exchange(server, first, nonce)
        assert (
            presented.evidence.certificate.sha256
            != first.evidence.certificate.sha256
        )
        assert server.check(quote, presented, nonce).nonce == nonce
        with pytest.raises(FreshnessError):
            server.check(quote, first, nonce)


async def exchange(
    server: Server, certificate: RATLSVerdict, nonce: bytes
) -> tuple[RATLSVerdict, bytes]:
    """
    The client's request for C{nonce}: the verdict on the certificate of
    the connection that carried it, and the fresh quote, unchecked.
    """
    return await request_fresh_quote(
        reactor,
        server.url,
        certificate=certificate,
        collateral=server.collateral(),
        trust_root=server.trust_root(),
        clock=time.time,
        nonce=nonce,
        timeout=30,
    )


async def request_quote(
    server: Server, certificate: RATLSVerdict, nonce: bytes
) -> bytes:
    """
    The fresh quote the server gives for C{nonce}, unchecked.
    """
    _, quote = await exchange(server, certificate, nonce)
    return quote


class TestErrors:
    @pytest.mark.parametrize(
        ("query", "reason"),
        [
            ("nonce=abc", "odd number of hex digits"),
            (f"nonce=%20{'ab' * 16}%20", "not hexadecimal"),
            (f"nonce={'+'.join(['ab'] * 16)}", "not hexadecimal"),
            (f"nonce={'ab' * 15}zz", "not hexadecimal"),
            (f"nonce={'00' * 15}", "not 15"),
            (f"nonce={'00' * 65}", "not 65"),
            (f"nonce={'00' * 16}&nonce={'00' * 16}", "give one nonce"),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_bad_nonce(
        self, server: Server, query: str, reason: str
    ) -> None:
        """
        A malformed nonce, or two, get 400 with a JSON reason.
        """
        status, body, _ = await deferToThread(
            fetch, server.port, f"/.well-known/attestation?{query}"
        )
        document = json.loads(body)
        assert (400, "bad_nonce") == (status, document["error"])
        assert reason in document["reason"]

    @pytest_twisted.ensureDeferred
    async def test_server_text_escaped(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        Control characters in the reason a server gives for refusing a
        fresh quote reach the client's error escaped, on one line.
        """
        certificate = await verified(server)

        def refuse(spki_der: bytes, nonce: bytes) -> bytes:
            msg = "\x1b[31mred\x1b[0m injected\nline"
            raise AttestationSourceError(msg)

        monkeypatch.setattr(server.source, "fresh_quote", refuse)
        with pytest.raises(FreshnessError) as raised:
            await request_quote(server, certificate, os.urandom(32))
        text = str(raised.value)
        assert text.isprintable()
        assert text.endswith("\\x1b[31mred\\x1b[0m injected\\nline")
        assert "(HTTP 503)" in text

    @pytest_twisted.ensureDeferred
    async def test_files_source(self, server: Server, tmp_path: Path) -> None:
        """
        A daemon reading its certificate from files answers a nonce with
        501, saying freshness needs an in-process source; a client that
        verified its certificate refuses it.
        """
        minted = server.source.mint()
        cert, key = tmp_path / "crt.der", tmp_path / "key.pem"
        cert.write_bytes(minted.certificate_der)
        key.write_bytes(key_pem(minted.private_key))
        options = Options()
        options.parseOptions(
            [
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ]
        )
        service, port = start_service(options)
        files_server = attrs.evolve(server, port=port)
        try:
            status, body, der = await deferToThread(
                fetch, port, f"/.well-known/attestation?nonce={'ab' * 32}"
            )
            certificate = files_server.verify(der)
            with pytest.raises(FreshnessError, match="HTTP 501"):
                await request_quote(files_server, certificate, os.urandom(32))
        finally:
            await service.stopService()
        document = json.loads(body)
        assert (501, "freshness_unavailable") == (status, document["error"])
        assert "in-process attestation source" in document["reason"]


class TestCommand:
    @pytest_twisted.ensureDeferred
    async def test_fresh_with_pccs(
        self, server: Server, tmp_path: Path
    ) -> None:
        """
        attestd verify --fresh --pccs fetches the collateral, verifies the
        certificate and checks a fresh quote, all in one run of its
        reactor.
        """
        collateral = server.source.collateral()
        fake = FakePCCS(
            tcb_info_body=collateral.pcs_tcb_info_response()[0],
            qe_identity_body=collateral.pcs_qe_identity_response()[0],
            pck_crl_der=collateral.pck_crl,
            root_ca_crl_der=collateral.root_ca_crl,
            tcb_info_chain=collateral.tcb_info_issuer_chain.decode(),
            qe_identity_chain=collateral.qe_identity_issuer_chain.decode(),
            pck_crl_chain=collateral.pck_crl_issuer_chain.decode(),
            any_fmspc=True,
        )
        pccs = serve_tls(reactor, fake, make_pki(), tmp_path)
        assert pccs.ca_file is not None
        try:
            result = await deferToThread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "attestd.cli",
                    "verify",
                    server.url,
                    "--pccs",
                    pccs.url,
                    "--pccs-ca",
                    str(pccs.ca_file),
                    "--trust-root",
                    str(server.source.root_path),
                    "--mrenclave",
                    server.source.enclave.mrenclave.hex(),
                    "--fresh",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            await pccs.stop()
        assert 0 == result.returncode, result.stdout + result.stderr
        assert "fresh_quote:   verified for nonce " in result.stdout
        assert 1 == fake.count("tcb?fmspc=A77E57D00000")


class TestGramineDaemon:
    @pytest_twisted.ensureDeferred
    async def test_fresh_and_rotation(
        self, server: Server, tmp_path: Path
    ) -> None:
        """
        The daemon with --attestation gramine (on a fake /dev/attestation
        driven by the simulated quoting enclave) serves a minted
        certificate, answers fresh quotes and rotates, its device I/O
        done in threads.
        """
        pki = server.source.pki
        with FakeAttestationDevice(
            tmp_path / "attestation",
            pki.quoting_enclave(server.source.enclave),
        ) as device:
            options = Options()
            options.parseOptions(
                [
                    "--attestation",
                    "gramine",
                    "--attestation-dir",
                    str(device.root),
                    "--listen",
                    "tcp:0:interface=127.0.0.1",
                ]
            )
            service, port = start_service(options)
            gramine = attrs.evolve(server, service=service, port=port)
            try:
                certificate = await verified(gramine)
                fresh = await gramine.fresh(certificate, os.urandom(48))
                assert 3 == device.quotes_served
                keeper = service.keeper
                assert keeper is not None
                assert await keeper.rotate()
                rotated = await verified(gramine)
            finally:
                await service.stopService()
        assert "dice" == certificate.evidence.kind
        assert (
            fresh.quote.quote.report.report_data == device.report_data_seen[2]
        )
        assert 5 == device.quotes_served
        assert certificate.evidence.certificate.der != (
            rotated.evidence.certificate.der
        )
