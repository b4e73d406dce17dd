"""
Tests for the attested HTTPS client: L{AttestedPolicyForHTTPS},
L{AttestedAgent} and L{RATLSVerifier}, against a real TLS server on
127.0.0.1 that presents the real konvera RA-TLS certificate.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
import treq
from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.ssl import KeyPair, PrivateCertificate
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from attestd._client import (
    AttestedAgent,
    AttestedPolicyForHTTPS,
    CollateralUnavailableError,
    RATLSVerifier,
)
from attestd._collateral import Collateral
from attestd._pccs import BundleCollateralSource
from attestd._policy import Policy
from attestd.errors import CollateralExpiredError, PolicyError

from ._vectors import (
    AUTOMATA_BUNDLE,
    KONVERA_DER,
    KONVERA_KEY_DER,
    expected,
)

NOW = 1755236700
KONVERA = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
MRENCLAVE = bytes.fromhex(KONVERA["mrenclave"])


class _Hello(Resource):
    """
    Counts requests and answers each with a small JSON document.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def render_GET(self, request: Request) -> bytes:
        self.requests += 1
        request.setHeader(b"content-type", b"application/json")
        return b'{"hello": "enclave"}'


class _Server:
    def __init__(self, resource: _Hello, port: Any) -> None:
        self.resource = resource
        self.port = port

    @property
    def url(self) -> bytes:
        return f"https://127.0.0.1:{self.port.getHost().port}/".encode()


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[_Server]:
    """
    A TLS server on 127.0.0.1 presenting the konvera certificate.
    """
    certificate = PrivateCertificate.load(
        KONVERA_DER.read_bytes(),
        KeyPair.load(KONVERA_KEY_DER.read_bytes(), crypto.FILETYPE_ASN1),
        crypto.FILETYPE_ASN1,
    )
    resource = _Hello()
    factory = TLSMemoryBIOFactory(certificate.options(), False, Site(resource))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    yield _Server(resource, port)
    await port.stopListening()


class _CountingBundle:
    """
    A collateral source over the automata bundle that counts its calls.
    """

    def __init__(self) -> None:
        self._source = BundleCollateralSource(AUTOMATA_BUNDLE)
        self.calls: list[tuple[bytes, str]] = []

    def collateral_for(self, fmspc: bytes, ca: str) -> Deferred[Collateral]:
        self.calls.append((fmspc, ca))
        return self._source.collateral_for(fmspc, ca)


def verifier(clock: list[float] | None = None, **policy: Any) -> RATLSVerifier:
    now = clock if clock is not None else [float(NOW)]
    settings: dict[str, Any] = {
        "mrenclave": MRENCLAVE,
        "mrsigner": None,
        "isv_prod_id": 0,
        "isv_svn": 0,
        "allow_outdated_tcb_insecure": True,
    }
    settings.update(policy)
    return RATLSVerifier(policy=Policy(**settings), clock=lambda: now[0])


def reasons(failure: Exception) -> list[BaseException]:
    """
    The underlying exceptions of a failed Agent request.
    """
    inner = getattr(failure, "reasons", None)
    if inner is None:
        return [failure]
    return [r.value for r in inner]


class TestAttestedAgent:
    @pytest_twisted.ensureDeferred
    async def test_accepted(self, server: _Server) -> None:
        """
        A server whose certificate passes is reached; the collateral for
        its platform is fetched once, after a first handshake without it.
        """
        source = _CountingBundle()
        agent = AttestedAgent(reactor, verifier(), source)
        response = await agent.request(b"GET", server.url)
        body = await treq.json_content(response)
        assert {"hello": "enclave"} == body
        assert [(bytes.fromhex("00606a000000"), "platform")] == source.calls
        assert server.resource.requests == 1
        response = await agent.request(b"GET", server.url)
        await treq.content(response)
        assert len(source.calls) == 1
        assert server.resource.requests == 2

    @pytest_twisted.ensureDeferred
    async def test_treq(self, server: _Server) -> None:
        """
        treq's HTTPClient works over the attested agent.
        """
        client = treq.client.HTTPClient(
            AttestedAgent(reactor, verifier(), _CountingBundle())
        )
        response = await client.get(server.url.decode())
        assert response.code == 200

    @pytest_twisted.ensureDeferred
    async def test_wrong_mrenclave(self, server: _Server) -> None:
        """
        A server with another MRENCLAVE is refused during the handshake:
        the request never reaches it, and the error names the mismatch.
        """
        agent = AttestedAgent(
            reactor, verifier(mrenclave=bytes(32)), _CountingBundle()
        )
        with pytest.raises(Exception) as caught:
            await agent.request(b"GET", server.url)
        errors = reasons(caught.value)
        assert any(isinstance(e, PolicyError) for e in errors), errors
        policy_error = next(e for e in errors if isinstance(e, PolicyError))
        assert [m.field for m in policy_error.mismatches] == ["mrenclave"]
        assert server.resource.requests == 0

    @pytest_twisted.ensureDeferred
    async def test_outdated_refused_by_default(self, server: _Server) -> None:
        """
        Without allow-outdated the konvera server (OutOfDate) is refused.
        """
        agent = AttestedAgent(
            reactor,
            verifier(allow_outdated_tcb_insecure=False),
            _CountingBundle(),
        )
        with pytest.raises(Exception) as caught:
            await agent.request(b"GET", server.url)
        errors = reasons(caught.value)
        policy_error = next(e for e in errors if isinstance(e, PolicyError))
        assert "OutOfDate" in str(policy_error)
        assert server.resource.requests == 0

    def test_plain_http_refused(self) -> None:
        """
        The attested agent does not speak plain HTTP.
        """
        agent = AttestedAgent(reactor, verifier(), _CountingBundle())
        with pytest.raises(ValueError, match="https"):
            agent.request(b"GET", b"http://127.0.0.1:1/")


class TestPolicyForHTTPS:
    @pytest_twisted.ensureDeferred
    async def test_without_collateral(self, server: _Server) -> None:
        """
        A plain Agent with the policy and no collateral fails closed with
        CollateralUnavailableError, before any request is sent.
        """
        from twisted.web.client import Agent

        agent = Agent(
            reactor, contextFactory=AttestedPolicyForHTTPS(verifier())
        )
        with pytest.raises(Exception) as caught:
            await agent.request(b"GET", server.url)
        assert any(
            isinstance(e, CollateralUnavailableError)
            for e in reasons(caught.value)
        )
        assert server.resource.requests == 0


class TestRATLSVerifier:
    def test_cache_until_collateral_expiry(self) -> None:
        """
        An accepted certificate is served from the cache until the
        collateral that accepted it expires; then it is verified again,
        and refused since the collateral is stale.
        """
        clock = [float(NOW)]
        subject = verifier(clock)
        collateral = Collateral.from_json(AUTOMATA_BUNDLE.read_text())
        subject.add_collateral(
            bytes.fromhex("00606a000000"), "platform", collateral
        )
        der = KONVERA_DER.read_bytes()
        first = subject.verify(der)
        assert first is subject.verify(der)
        clock[0] = first.quote.collateral_expires.timestamp() + 1
        subject_strict = verifier(clock, allow_outdated_tcb_insecure=False)
        subject_strict.add_collateral(
            bytes.fromhex("00606a000000"), "platform", collateral
        )
        with pytest.raises(CollateralExpiredError):
            subject_strict.verify(der)
        # The lenient verifier re-verifies rather than trusting its cache.
        again = subject.verify(der)
        assert again is not first
        assert again.quote.collateral_expired

    def test_refusal_not_cached(self) -> None:
        """
        A refused certificate is refused again, not remembered as good.
        """
        subject = verifier(allow_outdated_tcb_insecure=False)
        subject.add_collateral(
            bytes.fromhex("00606a000000"),
            "platform",
            Collateral.from_json(AUTOMATA_BUNDLE.read_text()),
        )
        for _ in range(2):
            with pytest.raises(PolicyError):
                subject.verify(KONVERA_DER.read_bytes())

    def test_json(self) -> None:
        """
        The verdict serialises to JSON with the measurements.
        """
        subject = verifier()
        subject.add_collateral(
            bytes.fromhex("00606a000000"),
            "platform",
            Collateral.from_json(AUTOMATA_BUNDLE.read_text()),
        )
        document = json.loads(
            json.dumps(subject.verify(KONVERA_DER.read_bytes()).to_json_dict())
        )
        assert KONVERA["mrenclave"] in json.dumps(document)
