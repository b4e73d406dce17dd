"""
The client half of RA-TLS for Twisted: an C{IPolicyForHTTPS} that admits
a server only when its certificate carries evidence that verifies and
satisfies a policy, and an agent that fetches the collateral that needs.

RA-TLS certificates are self-signed and name no host, so neither a CA nor
the host name means anything here: the certificate is accepted exactly
when L{attestd._verifier.verify_ratls_certificate} accepts it.  The check
runs inside the TLS handshake (OpenSSL's verify callback, at depth 0), so
no request byte is sent to a server that has not passed.

Verification needs collateral for the server's platform, which may have
to be fetched.  A handshake cannot wait for that, so the policy only uses
collateral it already holds; when it lacks some, the handshake fails with
L{CollateralUnavailableError}, and L{AttestedAgent} fetches it and retries the
request once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from attrs import define, field, frozen
from OpenSSL import SSL, crypto
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from attestd._collateral import Collateral
from attestd._dcap import TrustRoot
from attestd._evidence import RATLSEvidence
from attestd._fetchcert import is_ip_address
from attestd._pccs import CollateralSource
from attestd._platform import pck_identity
from attestd._policy import Policy
from attestd._verifier import RATLSVerdict, verify_ratls_certificate
from attestd.errors import AttestdError

_log = Logger()


class CollateralUnavailableError(AttestdError):
    """
    The server's platform needs collateral the verifier does not hold.

    @ivar fmspc: The platform's FMSPC.
    @ivar ca: C{"platform"} or C{"processor"}: which PCK CA issued the
        platform's PCK certificate.
    """

    def __init__(self, fmspc: bytes, ca: str) -> None:
        self.fmspc = fmspc
        self.ca = ca
        super().__init__(
            f"no collateral held for FMSPC {fmspc.hex()} ({ca} CA)"
        )


@frozen
class _Cached:
    verdict: RATLSVerdict
    expires: datetime


@define
class RATLSVerifier:
    """
    Verifies RA-TLS certificates against one policy, with the collateral
    it was given, and remembers what it accepted.

    Accepted certificates are cached by SHA-256 until the collateral that
    accepted them expires; refusals are never cached.

    @ivar policy: What a server must be to be accepted.
    @ivar trust_root: The root the PCK chain must end in (Intel's unless
        told otherwise).
    @ivar clock: Returns the current time as a POSIX timestamp.
    """

    policy: Policy
    trust_root: TrustRoot | None = None
    clock: Callable[[], float] = field(
        factory=lambda: lambda: datetime.now(timezone.utc).timestamp()
    )
    _collateral: dict[tuple[bytes, str], Collateral] = field(
        factory=dict, init=False
    )
    _accepted: dict[bytes, _Cached] = field(factory=dict, init=False)

    def add_collateral(
        self, fmspc: bytes, ca: str, collateral: Collateral
    ) -> None:
        """
        Hold C{collateral} for the platform C{fmspc} under C{ca}.
        """
        self._collateral[(fmspc, ca)] = collateral

    def verify(self, certificate_der: bytes) -> RATLSVerdict:
        """
        Verify a server certificate now.

        @param certificate_der: The peer's certificate, DER.
        @return: The verdict, when accepted.
        @raise CollateralUnavailableError: If no collateral is held for the
            server's platform.
        @raise attestd.errors.AttestdError: Any other subclass, when the
            certificate is malformed or refused.
        """
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        digest = hashlib.sha256(certificate_der).digest()
        cached = self._accepted.get(digest)
        if cached is not None and now <= cached.expires:
            return cached.verdict
        self._accepted.pop(digest, None)
        evidence = RATLSEvidence.from_certificate(certificate_der)
        fmspc, ca = pck_identity(evidence.quote)
        collateral = self._collateral.get((fmspc, ca))
        if collateral is None:
            raise CollateralUnavailableError(fmspc, ca)
        verdict = verify_ratls_certificate(
            certificate_der,
            collateral,
            self.policy,
            now=now,
            trust_root=self.trust_root,
        )
        self._accepted[digest] = _Cached(
            verdict=verdict, expires=verdict.quote.collateral_expires
        )
        return verdict


def _client_context() -> SSL.Context:
    """
    A client context: TLS 1.2 or later, forward-secret AEAD suites, no
    compression or renegotiation, ALPN C{http/1.1}.  Certificate checks
    are left to the RA-TLS verify callback.
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    context.set_cipher_list(b"ECDHE+AESGCM:ECDHE+CHACHA20")
    context.set_alpn_protos([b"http/1.1"])
    return context


@implementer(IOpenSSLClientConnectionCreator)
class _AttestedConnectionCreator:
    """
    Makes client TLS connections that accept the server's certificate only
    through an L{RATLSVerifier}.
    """

    def __init__(
        self,
        verifier: RATLSVerifier,
        context: SSL.Context,
        hostname: bytes,
        on_verdict: Callable[[RATLSVerdict], None] | None = None,
    ) -> None:
        self._verifier = verifier
        self._context = context
        self._hostname = hostname
        self._on_verdict = on_verdict

    def clientConnectionForTLS(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> SSL.Connection:
        """
        Create the connection and hook the RA-TLS check into it.
        """
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if self._hostname and not is_ip_address(
            self._hostname.decode("ascii", "replace")
        ):
            connection.set_tlsext_host_name(self._hostname)
        connection.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
            self._make_callback(tlsProtocol),
        )
        return connection

    def _make_callback(
        self, protocol: TLSMemoryBIOProtocol
    ) -> Callable[[SSL.Connection, Any, int, int, int], bool]:
        verifier = self._verifier
        on_verdict = self._on_verdict
        host = self._hostname.decode("ascii", "replace")
        state: dict[str, bool | None] = {"result": None}

        def callback(
            connection: SSL.Connection,
            certificate: Any,
            error: int,
            depth: int,
            ok: int,
        ) -> bool:
            # OpenSSL asks about each certificate and each error; only the
            # leaf matters, and its verdict is reached once.
            if depth != 0:
                return True
            if state["result"] is not None:
                return bool(state["result"])
            state["result"] = False
            try:
                der = crypto.dump_certificate(
                    crypto.FILETYPE_ASN1, certificate
                )
                verdict = verifier.verify(der)
            except AttestdError as e:
                _log.warn(
                    "Refused RA-TLS server {peer}: {reason}",
                    peer=host,
                    reason=str(e),
                    error_type=type(e).__name__,
                )
                protocol.failVerification(Failure(e))
                return False
            except BaseException:  # noqa: BLE001 (fail closed)
                # A bug must close the connection, never admit the peer.
                _log.failure("while verifying RA-TLS server {peer}", peer=host)
                protocol.failVerification(Failure())
                return False
            state["result"] = True
            _log.info(
                "Accepted RA-TLS server {peer}: mrenclave={mrenclave} "
                "tcb_status={tcb_status}",
                peer=host,
                mrenclave=verdict.evidence.quote.report.mrenclave.hex(),
                tcb_status=verdict.quote.status.value,
            )
            if on_verdict is not None:
                on_verdict(verdict)
            return True

        return callback


@implementer(IPolicyForHTTPS)
class AttestedPolicyForHTTPS:
    """
    An C{IPolicyForHTTPS} for C{Agent} and treq that trusts a server only
    through RA-TLS verification.

    @ivar verifier: The verifier that decides.
    """

    def __init__(self, verifier: RATLSVerifier) -> None:
        self.verifier = verifier
        self._context = _client_context()

    def creatorForNetloc(
        self, hostname: bytes, port: int
    ) -> IOpenSSLClientConnectionCreator:
        """
        A connection creator for C{hostname:port}.
        """
        creator: IOpenSSLClientConnectionCreator = _AttestedConnectionCreator(
            self.verifier, self._context, hostname
        )
        return creator


def _missing_collateral(failure: Failure) -> CollateralUnavailableError | None:
    """
    The L{CollateralUnavailableError} behind a failed request, if that is why.
    """
    if failure.check(CollateralUnavailableError):
        value = failure.value
        assert isinstance(value, CollateralUnavailableError)
        return value
    if isinstance(failure.value, ResponseNeverReceived):
        for reason in failure.value.reasons:
            if reason.check(CollateralUnavailableError):
                found = reason.value
                assert isinstance(found, CollateralUnavailableError)
                return found
    return None


@implementer(IAgent)
class AttestedAgent:
    """
    An C{IAgent} (usable with C{treq.client.HTTPClient}) whose requests
    reach only servers that pass RA-TLS verification.

    When the verifier lacks collateral for a server's platform, the first
    handshake fails before any request byte is sent; the agent then gets
    the collateral from C{source} and tries the request once more.
    """

    def __init__(
        self,
        reactor: Any,
        verifier: RATLSVerifier,
        source: CollateralSource,
        **agent_kwargs: Any,
    ) -> None:
        self._verifier = verifier
        self._source = source
        self._agent = Agent(
            reactor,
            contextFactory=AttestedPolicyForHTTPS(verifier),
            **agent_kwargs,
        )

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        """
        Issue a request; see C{IAgent.request}.
        """
        if not uri.startswith(b"https://"):
            msg = "an attested request must use https://"
            raise ValueError(msg)
        first = self._agent.request(method, uri, headers, bodyProducer)

        def retry(failure: Failure) -> Deferred[IResponse]:
            missing = _missing_collateral(failure)
            if missing is None:
                return fail(failure)
            fetched = self._source.collateral_for(missing.fmspc, missing.ca)

            def again(collateral: Collateral) -> Deferred[IResponse]:
                self._verifier.add_collateral(
                    missing.fmspc, missing.ca, collateral
                )
                return self._agent.request(method, uri, headers, bodyProducer)

            return fetched.addCallback(again)

        return first.addErrback(retry)
