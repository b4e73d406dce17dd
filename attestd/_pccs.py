"""
Collateral sources: Intel PCS or a PCCS over HTTP (API v4), an on-disk
cache in front of either, and an offline bundle file.

Every source has one method, C{collateral_for(fmspc, ca)}, returning a
L{Deferred} that fires with a L{Collateral} (see L{CollateralSource}).
There is no hidden network access: L{CollateralClient} talks to the base
URL it is given and to nothing else (the Intel root CA CRL host only when
that base URL is Intel PCS itself, L{INTEL_PCS_URL}).

A fetch makes four GET requests under C{<base>/sgx/certification/v4}
(Intel PCS API v4; a PCCS serves the same paths):

  - C{tcb?fmspc=<hex>}: C{{"tcbInfo": {...}, "signature": "<hex>"}}, with
    the TCB Signing chain, URL-encoded PEM, in C{TCB-Info-Issuer-Chain}
    (v4) or C{SGX-TCB-Info-Issuer-Chain} (v3 and older PCCS);
  - C{qe/identity}: C{{"enclaveIdentity": {...}, "signature": "<hex>"}},
    chain in C{SGX-Enclave-Identity-Issuer-Chain};
  - C{pckcrl?ca=platform|processor&encoding=der}: the PCK CRL, chain in
    C{SGX-PCK-CRL-Issuer-Chain};
  - C{rootcacrl} (PCCS only): the Intel SGX Root CA CRL.  Intel PCS has no
    such endpoint; the root CA certificate's CRL distribution point,
    L{INTEL_ROOT_CA_CRL_URL}, serves it instead.

The signatures cover the exact bytes of the C{tcbInfo} and
C{enclaveIdentity} objects as served, so those objects are cut out of the
raw body at the offsets a JSON scan of the body finds, never re-encoded.
CRL bodies are accepted as DER, PEM, or hex text of the DER (what older
PCCS releases return for C{rootcacrl}, and for C{pckcrl} without
C{encoding=der}).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import urllib.parse
from typing import Any, Protocol, cast

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from service_identity import CertificateError
from service_identity import VerificationError as ServiceIdentityError
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    succeed,
)
from twisted.internet.error import (
    ConnectError,
    ConnectionDone,
    ConnectionLost,
    DNSLookupError,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IPushProducer,
)
from twisted.internet.protocol import Protocol as StreamProtocol
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from attestd._collateral import (
    MAX_BUNDLE_SIZE,
    Collateral,
    CollateralParseError,
)
from attestd._collateral_cache import (
    CollateralCache,
    collateral_fmspc,
    normalize_ca,
    normalize_fmspc,
)
from attestd._fetchcert import is_ip_address
from attestd._x509util import X509_PARSE_ERRORS
from attestd.errors import AttestdError, ConfigurationError

_log = Logger()

#: Intel's Provisioning Certification Service.  Used only when a caller
#: passes it as the base URL.
INTEL_PCS_URL = "https://api.trustedservices.intel.com"

#: Where Intel publishes the Intel SGX Root CA CRL (the CRL distribution
#: point of the root CA certificate).  Fetched only from an Intel PCS
#: client.
INTEL_ROOT_CA_CRL_URL = (
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
)

#: Seconds allowed for each request, from connecting to the last body
#: byte.
DEFAULT_TIMEOUT = 30.0

#: Bound on each response body.
MAX_RESPONSE_SIZE = MAX_BUNDLE_SIZE

#: Where the v4 API lives under a PCS or PCCS base URL.
API_PATH = "/sgx/certification/v4"

TCB_INFO_ISSUER_CHAIN = b"TCB-Info-Issuer-Chain"
SGX_TCB_INFO_ISSUER_CHAIN = b"SGX-TCB-Info-Issuer-Chain"
ENCLAVE_IDENTITY_ISSUER_CHAIN = b"SGX-Enclave-Identity-Issuer-Chain"
PCK_CRL_ISSUER_CHAIN = b"SGX-PCK-CRL-Issuer-Chain"

_MAX_CHAIN_CERTIFICATES = 8
_SIGNATURE_SIZE = 64
_JSON_WHITESPACE = " \t\n\r"
_PEM_CRL_BEGIN = b"-----BEGIN X509 CRL-----"
_PEM_CRL_END = b"-----END X509 CRL-----"
_PEM_CERT_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_CERT_END = "-----END CERTIFICATE-----"


class CollateralSourceError(AttestdError):
    """
    A collateral source could not give collateral for the platform asked.

    @ivar source: The URL or file the collateral was to come from.
    """

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(message)


class CollateralFetchError(CollateralSourceError):
    """
    Fetching collateral from a PCS or PCCS failed.

    @ivar url: The URL whose request failed.
    @ivar reason: What failed, without the URL.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(url, f"GET {url}: {reason}")


class CollateralHTTPError(CollateralFetchError):
    """
    The server answered with a status other than 200.

    @ivar status: The HTTP status code.
    """

    def __init__(self, url: str, status: int, reason: str) -> None:
        self.status = status
        super().__init__(url, reason)


class CollateralTimeoutError(CollateralFetchError):
    """
    No complete response arrived in time.
    """


class CollateralConnectionError(CollateralFetchError):
    """
    The server could not be reached, or the connection failed before a
    response arrived.
    """


class CollateralTLSError(CollateralConnectionError):
    """
    The TLS handshake failed, typically because the server's certificate
    is not trusted or does not name the host.
    """


class CollateralResponseError(CollateralFetchError, CollateralParseError):
    """
    A response was malformed: a missing or malformed issuer-chain header,
    a body that is not what the endpoint serves, or a truncated body.
    """


class CollateralResponseTooLargeError(CollateralResponseError):
    """
    A response body was larger than the client accepts.
    """


class CollateralFMSPCMismatchError(CollateralSourceError):
    """
    The source's TCB Info is for another platform than the one asked for.

    @ivar requested: The FMSPC asked for.
    @ivar found: The FMSPC of the TCB Info the source holds.
    """

    def __init__(self, source: str, requested: bytes, found: bytes) -> None:
        self.requested = requested
        self.found = found
        super().__init__(
            source,
            f"{source} holds TCB Info for FMSPC {found.hex()}, "
            f"not {requested.hex()}",
        )


class CollateralSource(Protocol):
    """
    Anything that gives collateral for a platform: L{CollateralClient},
    L{CachingCollateralSource} and L{BundleCollateralSource}.
    """

    def collateral_for(self, fmspc: bytes, ca: str) -> Deferred[Collateral]:
        """
        Collateral for one platform.

        @param fmspc: The platform's FMSPC, from its PCK certificate.
        @param ca: The PCK certificate's issuer, C{"platform"} or
            C{"processor"}.
        @return: A L{Deferred} firing with the collateral, or failing
            with a L{CollateralSourceError}.
        """


@frozen
class _Reply:
    """
    One complete HTTP response.
    """

    url: str
    status: int
    phrase: str
    headers: Headers
    body: bytes


class _TooLargeError(Exception):
    """
    A body went past the size bound.
    """


class _BoundedBody(StreamProtocol):
    """
    Collect a response body, giving up (and dropping the connection) as
    soon as it would exceed a bound.
    """

    def __init__(
        self, limit: int, declared: int | object, done: Deferred[bytes]
    ) -> None:
        self._limit = limit
        self._declared = declared
        self._done = done
        self._chunks: list[bytes] = []
        self._size = 0

    def connectionMade(self) -> None:
        if isinstance(self._declared, int) and self._declared > self._limit:
            self._give_up()

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._give_up()
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._chunks))
        else:
            self._done.errback(reason)

    def stop(self) -> None:
        """
        Drop the connection (on cancellation).
        """
        if self.transport is not None:
            # The response body's transport is a producer.
            cast(IPushProducer, self.transport).stopProducing()

    def _give_up(self) -> None:
        self.stop()
        self._done.errback(_TooLargeError())


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedConnectionCreator:
    """
    TLS client connections that check nothing about the server.
    """

    def __init__(self, hostname: bytes) -> None:
        self._context = CertificateOptions(
            verify=False, raiseMinimumTo=TLSVersion.TLSv1_2
        ).getContext()
        self._hostname = hostname

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if not is_ip_address(self._hostname.decode("ascii", "replace")):
            connection.set_tlsext_host_name(self._hostname)
        connection.set_connect_state()
        return connection


@implementer(IPolicyForHTTPS)
class _UnverifiedPolicy:
    """
    The C{insecure_skip_tls_verification} policy.
    """

    def creatorForNetloc(
        self, hostname: bytes, port: int
    ) -> _UnverifiedConnectionCreator:
        return _UnverifiedConnectionCreator(hostname)


def _trust_root_from_file(path: str | os.PathLike[str]) -> Any:
    """
    A Twisted trust root holding the CA certificates of a PEM file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BUNDLE_SIZE + 1)
    except OSError as e:
        msg = f"cannot read the PCCS CA file {os.fspath(path)!r}: {e}"
        raise ConfigurationError(msg) from e
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except X509_PARSE_ERRORS as e:
        msg = (
            f"the PCCS CA file {os.fspath(path)!r} holds no PEM "
            f"certificates: {e}"
        )
        raise ConfigurationError(msg) from e
    return trustRootFromCertificates(
        [
            Certificate.loadPEM(c.public_bytes(Encoding.PEM))
            for c in certificates
        ]
    )


def _base_url(url: str, *, insecure_allow_http: bool) -> str:
    """
    Check and normalise a PCS/PCCS base URL: no trailing slash, no API
    path (a PCCS URL is often written with C{/sgx/certification/v4}).
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        msg = f"a PCS/PCCS URL is https://HOST[:PORT][/PATH], not {url!r}"
        raise ConfigurationError(msg)
    if parsed.scheme == "http" and not insecure_allow_http:
        msg = (
            f"refusing plain-HTTP collateral URL {url!r} without "
            "insecure_allow_http"
        )
        raise ConfigurationError(msg)
    if parsed.query or parsed.fragment or parsed.username:
        msg = f"a PCS/PCCS URL has no query, fragment or user: {url!r}"
        raise ConfigurationError(msg)
    path = parsed.path.rstrip("/")
    if path.endswith(API_PATH):
        path = path[: -len(API_PATH)]
    return urllib.parse.urlunsplit(
        (parsed.scheme, parsed.netloc, path, "", "")
    )


def _skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in _JSON_WHITESPACE:
        index += 1
    return index


def _top_level_members(text: str) -> dict[str, tuple[int, int, Any]]:
    """
    Scan a JSON object and find where each of its members' values lies.

    @param text: The JSON text of an object.
    @return: For each member name, the start and end offsets of its value
        in C{text} and the decoded value.
    @raise ValueError: If C{text} is not one JSON object, or a name
        appears twice.
    """
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    members: dict[str, tuple[int, int, Any]] = {}
    index = _skip_whitespace(text, 0)
    if text[index : index + 1] != "{":
        msg = "not a JSON object"
        raise ValueError(msg)
    index = _skip_whitespace(text, index + 1)
    if text[index : index + 1] == "}":
        index += 1
    else:
        while True:
            if text[index : index + 1] != '"':
                msg = f"expected a member name at offset {index}"
                raise ValueError(msg)
            name, index = decoder.raw_decode(text, index)
            index = _skip_whitespace(text, index)
            if text[index : index + 1] != ":":
                msg = f"expected ':' at offset {index}"
                raise ValueError(msg)
            start = _skip_whitespace(text, index + 1)
            value, index = decoder.raw_decode(text, start)
            if name in members:
                msg = f"member {name!r} appears twice"
                raise ValueError(msg)
            members[name] = (start, index, value)
            index = _skip_whitespace(text, index)
            separator = text[index : index + 1]
            if separator == ",":
                index = _skip_whitespace(text, index + 1)
            elif separator == "}":
                index += 1
                break
            else:
                msg = f"expected ',' or '}}' at offset {index}"
                raise ValueError(msg)
    if _skip_whitespace(text, index) != len(text):
        msg = f"data after the JSON object at offset {index}"
        raise ValueError(msg)
    return members


def _reject_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def _signed_member(reply: _Reply, member: str) -> tuple[str, bytes, Any]:
    """
    Cut a signed object (C{tcbInfo} or C{enclaveIdentity}) and its
    signature out of a PCS response body.

    @return: The object's exact text, the 64-byte signature and the
        decoded object.
    @raise CollateralResponseError: If the body is not such a response.
    """
    try:
        text = reply.body.decode("utf-8")
        members = _top_level_members(text)
    except (ValueError, RecursionError) as e:
        msg = f"the body is not a JSON object: {e}"
        raise CollateralResponseError(reply.url, msg) from e
    if member not in members:
        msg = f"the body has no {member!r} member"
        raise CollateralResponseError(reply.url, msg)
    start, end, value = members[member]
    if not isinstance(value, dict):
        msg = f"{member!r} is not a JSON object"
        raise CollateralResponseError(reply.url, msg)
    signature = members.get("signature", (0, 0, None))[2]
    if not isinstance(signature, str):
        msg = "the body has no 'signature' text"
        raise CollateralResponseError(reply.url, msg)
    try:
        signature_bytes = bytes.fromhex(signature)
    except ValueError as e:
        msg = "'signature' is not hex"
        raise CollateralResponseError(reply.url, msg) from e
    if len(signature_bytes) != _SIGNATURE_SIZE:
        msg = (
            f"'signature' is {len(signature_bytes)} bytes, not a "
            f"{_SIGNATURE_SIZE}-byte r || s"
        )
        raise CollateralResponseError(reply.url, msg)
    return text[start:end], signature_bytes, value


def _issuer_chain(reply: _Reply, *names: bytes) -> str:
    """
    The PEM issuer chain a PCS response carries, URL-encoded, in a
    header.

    @param names: The header's names, the current one first.
    @raise CollateralResponseError: If the header is missing, repeated,
        or not a URL-encoded PEM certificate chain.
    """
    shown = names[0].decode("ascii")
    for name in names:
        values = reply.headers.getRawHeaders(name)
        if values:
            break
    else:
        msg = f"the {shown} header is missing"
        raise CollateralResponseError(reply.url, msg)
    if len(values) != 1:
        msg = f"the {shown} header appears {len(values)} times"
        raise CollateralResponseError(reply.url, msg)
    try:
        chain = urllib.parse.unquote(
            values[0].decode("ascii"), errors="strict"
        )
    except UnicodeDecodeError as e:
        msg = f"the {shown} header is not URL-encoded text: {e}"
        raise CollateralResponseError(reply.url, msg) from e
    stripped = chain.strip()
    count = stripped.count(_PEM_CERT_BEGIN)
    if (
        not stripped.startswith(_PEM_CERT_BEGIN)
        or not stripped.endswith(_PEM_CERT_END)
        or count != stripped.count(_PEM_CERT_END)
        or count > _MAX_CHAIN_CERTIFICATES
    ):
        msg = f"the {shown} header is not a PEM certificate chain"
        raise CollateralResponseError(reply.url, msg)
    try:
        certificates = x509.load_pem_x509_certificates(stripped.encode())
    except X509_PARSE_ERRORS as e:
        msg = f"the {shown} header holds a malformed certificate: {e}"
        raise CollateralResponseError(reply.url, msg) from e
    if len(certificates) != count:
        msg = f"the {shown} header holds a malformed certificate"
        raise CollateralResponseError(reply.url, msg)
    return chain


def _crl_der(reply: _Reply, what: str) -> bytes:
    """
    The DER of a CRL served as DER, PEM, or hex text of the DER.

    @raise CollateralResponseError: If the body is none of these, or not
        a CRL.
    """
    body = reply.body
    stripped = body.strip()
    if stripped.startswith(_PEM_CRL_BEGIN):
        if (
            not stripped.endswith(_PEM_CRL_END)
            or stripped.count(b"-----") != 4
        ):
            msg = f"the {what} is not a single PEM CRL"
            raise CollateralResponseError(reply.url, msg)
        inner = stripped[len(_PEM_CRL_BEGIN) : -len(_PEM_CRL_END)]
        try:
            der = base64.b64decode(b"".join(inner.split()), validate=True)
        except binascii.Error as e:
            msg = f"the {what} PEM is not base64: {e}"
            raise CollateralResponseError(reply.url, msg) from e
    elif body[:1] == b"\x30":
        der = body
    else:
        try:
            der = binascii.unhexlify(stripped)
        except (binascii.Error, ValueError) as e:
            msg = f"the {what} is neither DER, PEM nor hex"
            raise CollateralResponseError(reply.url, msg) from e
    try:
        x509.load_der_x509_crl(der)
    except X509_PARSE_ERRORS as e:
        msg = f"the {what} is not a CRL: {e}"
        raise CollateralResponseError(reply.url, msg) from e
    return der


def _describe(reason: Failure) -> str:
    """
    A short account of a connection failure.
    """
    nested = getattr(reason.value, "reasons", None)
    if nested:
        return "; ".join(_describe(f) for f in nested)
    return f"{type(reason.value).__name__}: {reason.value}"


def _nested_check(
    reason: Failure,
    kind: type[BaseException] | tuple[type[BaseException], ...],
) -> bool:
    """
    Whether a failure, or one it wraps (C{ResponseFailed.reasons} and
    the like), is of a kind.
    """
    nested = getattr(reason.value, "reasons", None)
    if nested:
        return any(_nested_check(f, kind) for f in nested)
    return isinstance(reason.value, kind)


class CollateralClient:
    """
    Fetch collateral from Intel PCS or a PCCS, API v4.

    HTTPS servers are verified like a browser does (a trusted CA, the
    host's name) against the platform's trust store, or against the CA
    certificates of C{tls_trust}.  Collateral is signed by Intel, so a
    server that is not verified (C{insecure_skip_tls_verification}) or
    plain HTTP (C{insecure_allow_http}) cannot forge it, but can serve
    old collateral or none; both are off unless asked for.

    Each request is logged once when its response is complete (C{url},
    C{status}, C{bytes}, C{duration}); a failed fetch is logged once as an
    error.

    @ivar base_url: The normalised base URL.
    @ivar timeout: Seconds allowed for each request.
    @ivar max_response_size: Bound on each response body, in bytes.
    """

    def __init__(
        self,
        reactor: Any,
        base_url: str,
        *,
        tls_trust: str | os.PathLike[str] | None = None,
        insecure_skip_tls_verification: bool = False,
        insecure_allow_http: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_size: int = MAX_RESPONSE_SIZE,
        root_ca_crl_url: str | None = None,
    ) -> None:
        """
        @param reactor: The reactor (C{IReactorTCP}, C{IReactorTime}).
        @param base_url: The PCS or PCCS, e.g. L{INTEL_PCS_URL} or
            C{https://pccs.example:8081}; a trailing
            C{/sgx/certification/v4} is allowed.
        @param tls_trust: A PEM file of the CA certificates to trust for
            the server instead of the platform's trust store (a PCCS's
            self-signed certificate, say).
        @param insecure_skip_tls_verification: Accept any server
            certificate.
        @param insecure_allow_http: Accept an C{http://} base URL.
        @param timeout: Seconds allowed for each request, from connecting
            to the last byte of the body.
        @param max_response_size: Bound on each response body.
        @param root_ca_crl_url: Where to get the root CA CRL instead of
            the default: the PCCS's C{rootcacrl}, or
            L{INTEL_ROOT_CA_CRL_URL} for Intel PCS.
        @raise ConfigurationError: If the URL or the TLS options cannot
            work.
        """
        if tls_trust is not None and insecure_skip_tls_verification:
            msg = (
                "give either a PCCS CA file or "
                "insecure_skip_tls_verification, not both"
            )
            raise ConfigurationError(msg)
        if timeout <= 0 or max_response_size <= 0:
            msg = "the timeout and the response size bound must be positive"
            raise ConfigurationError(msg)
        self.base_url = _base_url(
            base_url, insecure_allow_http=insecure_allow_http
        )
        if root_ca_crl_url is not None:
            _base_url(root_ca_crl_url, insecure_allow_http=insecure_allow_http)
            self._root_ca_crl_url = root_ca_crl_url
        elif self.base_url == INTEL_PCS_URL:
            self._root_ca_crl_url = INTEL_ROOT_CA_CRL_URL
        else:
            self._root_ca_crl_url = f"{self.base_url}{API_PATH}/rootcacrl"
        self.timeout = timeout
        self.max_response_size = max_response_size
        self._reactor = reactor
        policy: Any
        if insecure_skip_tls_verification:
            policy = _UnverifiedPolicy()
            _log.warn(
                "TLS verification of collateral server {base_url} is off",
                base_url=self.base_url,
            )
        elif tls_trust is not None:
            policy = BrowserLikePolicyForHTTPS(
                trustRoot=_trust_root_from_file(tls_trust)
            )
        else:
            policy = BrowserLikePolicyForHTTPS()
        self._agent = Agent(
            reactor,
            contextFactory=policy,
            connectTimeout=timeout,
            pool=HTTPConnectionPool(reactor, persistent=False),
        )

    def urls(self, fmspc: bytes | str, ca: str) -> dict[str, str]:
        """
        The URLs a fetch for one platform requests.

        @param fmspc: The FMSPC (6 bytes or 12 hex digits).
        @param ca: C{"platform"} or C{"processor"}.
        @return: The URL for C{"tcb_info"}, C{"qe_identity"},
            C{"pck_crl"} and C{"root_ca_crl"}.
        @raise ValueError: If C{fmspc} or C{ca} is not valid.
        """
        hex_fmspc = normalize_fmspc(fmspc).hex().upper()
        api = f"{self.base_url}{API_PATH}"
        return {
            "tcb_info": f"{api}/tcb?fmspc={hex_fmspc}",
            "qe_identity": f"{api}/qe/identity",
            "pck_crl": f"{api}/pckcrl?ca={normalize_ca(ca)}&encoding=der",
            "root_ca_crl": self._root_ca_crl_url,
        }

    def fetch(self, fmspc: bytes | str, ca: str) -> Deferred[Collateral]:
        """
        Fetch the collateral for one platform.

        @param fmspc: The FMSPC (6 bytes or 12 hex digits).
        @param ca: The PCK CA, C{"platform"} or C{"processor"}.
        @return: A L{Deferred} firing with the collateral, or failing with
            a L{CollateralFetchError} (L{CollateralHTTPError},
            L{CollateralTimeoutError}, L{CollateralConnectionError},
            L{CollateralTLSError}, L{CollateralResponseError}) or with
            L{CollateralFMSPCMismatchError}.
        @raise ValueError: If C{fmspc} or C{ca} is not valid.
        """
        wanted = normalize_fmspc(fmspc)
        urls = self.urls(wanted, ca)
        fetching = Deferred.fromCoroutine(self._fetch(wanted, urls))

        def failed(failure: Failure) -> Failure:
            if failure.check(CollateralSourceError):
                error = failure.value
                assert isinstance(error, CollateralSourceError)
                _log.error(
                    "Fetching collateral for FMSPC {fmspc} from {url} "
                    "failed: {error}",
                    fmspc=wanted.hex(),
                    ca=normalize_ca(ca),
                    url=error.source,
                    error=str(error),
                    error_type=type(error).__name__,
                )
            elif not failure.check(CancelledError):
                _log.failure(
                    "Unexpected error fetching collateral from {base_url}",
                    failure,
                    base_url=self.base_url,
                )
            return failure

        return fetching.addErrback(failed)

    def collateral_for(self, fmspc: bytes, ca: str) -> Deferred[Collateral]:
        """
        L{CollateralSource.collateral_for}: the same as L{fetch}.
        """
        return self.fetch(fmspc, ca)

    async def _fetch(self, fmspc: bytes, urls: dict[str, str]) -> Collateral:
        tcb = await self._get(urls["tcb_info"])
        tcb_chain = _issuer_chain(
            tcb, TCB_INFO_ISSUER_CHAIN, SGX_TCB_INFO_ISSUER_CHAIN
        )
        tcb_info, tcb_signature, tcb_object = _signed_member(tcb, "tcbInfo")
        found = tcb_object.get("fmspc")
        try:
            if not isinstance(found, str):
                raise ValueError(found)
            found_fmspc = normalize_fmspc(found)
        except ValueError as e:
            msg = f"tcbInfo fmspc {found!r} is not 12 hex digits"
            raise CollateralResponseError(tcb.url, msg) from e
        if found_fmspc != fmspc:
            raise CollateralFMSPCMismatchError(tcb.url, fmspc, found_fmspc)

        qe = await self._get(urls["qe_identity"])
        qe_chain = _issuer_chain(qe, ENCLAVE_IDENTITY_ISSUER_CHAIN)
        qe_identity, qe_signature, _ = _signed_member(qe, "enclaveIdentity")

        pck = await self._get(urls["pck_crl"])
        pck_chain = _issuer_chain(pck, PCK_CRL_ISSUER_CHAIN)
        pck_crl = _crl_der(pck, "PCK CRL")

        root = await self._get(urls["root_ca_crl"])
        root_ca_crl = _crl_der(root, "root CA CRL")

        return Collateral(
            pck_crl_issuer_chain=pck_chain,
            root_ca_crl=root_ca_crl,
            pck_crl=pck_crl,
            tcb_info_issuer_chain=tcb_chain,
            tcb_info=tcb_info,
            tcb_info_signature=tcb_signature,
            qe_identity_issuer_chain=qe_chain,
            qe_identity=qe_identity,
            qe_identity_signature=qe_signature,
        )

    async def _get(self, url: str) -> _Reply:
        """
        GET one URL within the timeout; log it; insist on 200.
        """
        started = self._reactor.seconds()
        requesting: Deferred[Any] = self._agent.request(
            b"GET",
            url.encode("ascii"),
            Headers({b"User-Agent": [b"attestd"]}),
        )
        requesting.addCallback(self._receive, url)
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            requesting.cancel()

        timer = self._reactor.callLater(self.timeout, expire)
        try:
            reply: _Reply = await requesting
        except Exception as e:
            if timed_out:
                msg = f"no complete response within {self.timeout:g} s"
                raise CollateralTimeoutError(url, msg) from None
            translated = self._translate(url, e)
            if translated is e:
                raise
            raise translated from e
        finally:
            if timer.active():
                timer.cancel()
        _log.info(
            "GET {url}: HTTP {status}, {bytes} bytes in {duration:.3f} s",
            url=url,
            status=reply.status,
            bytes=len(reply.body),
            duration=self._reactor.seconds() - started,
        )
        if reply.status != 200:
            raise CollateralHTTPError(url, reply.status, _status_reason(reply))
        return reply

    def _translate(self, url: str, error: Exception) -> Exception:
        """
        The collateral error for a failed request, or C{error} itself if
        it is not one a network or a server can cause.
        """
        failure = Failure(error)
        if isinstance(error, _TooLargeError):
            msg = (
                "the response body is larger than "
                f"{self.max_response_size} bytes"
            )
            return CollateralResponseTooLargeError(url, msg)
        if _nested_check(failure, CancelledError):
            return CancelledError()
        if _nested_check(
            failure, (SSL.Error, ServiceIdentityError, CertificateError)
        ):
            msg = f"TLS handshake failed: {_describe(failure)}"
            return CollateralTLSError(url, msg)
        if isinstance(error, ResponseFailed):
            msg = (
                "the response was cut short or malformed: "
                f"{_describe(failure)}"
            )
            return CollateralResponseError(url, msg)
        if isinstance(error, (ConnectError, DNSLookupError)):
            return CollateralConnectionError(url, f"cannot connect: {error}")
        if isinstance(
            error,
            (
                ConnectionLost,
                ConnectionDone,
                ResponseNeverReceived,
                RequestTransmissionFailed,
            ),
        ):
            msg = f"the connection failed: {_describe(failure)}"
            return CollateralConnectionError(url, msg)
        return error

    def _receive(self, response: Any, url: str) -> Deferred[_Reply]:
        """
        Read a whole response within the size bound.
        """

        def cancel(_: Deferred[bytes]) -> None:
            body.stop()

        done: Deferred[bytes] = Deferred(cancel)
        body = _BoundedBody(self.max_response_size, response.length, done)
        response.deliverBody(body)

        def complete(data: bytes) -> _Reply:
            return _Reply(
                url=url,
                status=response.code,
                phrase=response.phrase.decode("latin-1"),
                headers=response.headers,
                body=data,
            )

        return done.addCallback(complete)


def _status_reason(reply: _Reply) -> str:
    """
    Describe an error status, with the PCS's C{Error-Code} and
    C{Error-Message} headers when it sends them.
    """
    reason = f"HTTP {reply.status} {reply.phrase}".rstrip()
    details = []
    for name in (b"Error-Code", b"Error-Message", b"Request-ID"):
        values = reply.headers.getRawHeaders(name)
        if values:
            text = values[0][:200].decode("ascii", "replace")
            details.append(f"{name.decode()}: {text}")
    if details:
        reason += f" ({', '.join(details)})"
    return reason


class CachingCollateralSource:
    """
    Serve collateral from a L{CollateralCache} while it is current, and
    fetch (and store) it from another source when it is not.

    Concurrent requests for a platform whose collateral must be fetched
    share one fetch.
    """

    def __init__(
        self, client: CollateralSource, cache: CollateralCache, clock: Any
    ) -> None:
        """
        @param client: Where to fetch from, usually a L{CollateralClient}.
        @param cache: The cache.
        @param clock: An C{IReactorTime} giving the time that freshness is
            judged at.
        """
        self._client = client
        self._cache = cache
        self._clock = clock
        self._waiting: dict[tuple[bytes, str], list[Deferred[Collateral]]] = {}

    def collateral_for(self, fmspc: bytes, ca: str) -> Deferred[Collateral]:
        """
        L{CollateralSource.collateral_for}, from the cache when it is
        current.

        A bundle that cannot be stored is still returned; the failure to
        store it is logged.  Requests that wait for another's fetch get
        its outcome, cancellation included.
        """
        key = (normalize_fmspc(fmspc), normalize_ca(ca))
        cached = self._cache.load(key[0], key[1], now=self._clock.seconds())
        if cached is not None:
            _log.debug(
                "Collateral for FMSPC {fmspc} ({ca} CA) served from cache",
                fmspc=key[0].hex(),
                ca=key[1],
            )
            return succeed(cached)
        if key in self._waiting:
            waiter: Deferred[Collateral] = Deferred()
            self._waiting[key].append(waiter)
            return waiter
        self._waiting[key] = []
        try:
            fetching = self._client.collateral_for(key[0], key[1])
        except BaseException:
            del self._waiting[key]
            raise

        def store(collateral: Collateral) -> Collateral:
            try:
                path = self._cache.store(key[0], key[1], collateral)
            except OSError as e:
                _log.error(
                    "Cannot store collateral for FMSPC {fmspc} in the "
                    "cache: {error}",
                    fmspc=key[0].hex(),
                    ca=key[1],
                    error=str(e),
                )
            else:
                _log.info(
                    "Stored collateral for FMSPC {fmspc} ({ca} CA) in {path}",
                    fmspc=key[0].hex(),
                    ca=key[1],
                    path=str(path),
                )
            return collateral

        def release(result: Collateral | Failure) -> Collateral | Failure:
            for waiter in self._waiting.pop(key, []):
                if not waiter.called:
                    if isinstance(result, Failure):
                        waiter.errback(result)
                    else:
                        waiter.callback(result)
            return result

        return fetching.addCallback(store).addBoth(release)


class BundleCollateralSource:
    """
    Collateral from an offline bundle file (dcap-qvl's
    C{QuoteCollateralV3} JSON layout), read once.

    It serves the same collateral for any PCK CA, but only for the FMSPC
    its TCB Info is for.

    @ivar path: The bundle file.
    @ivar collateral: The bundle.
    @ivar fmspc: The FMSPC of the bundle's TCB Info.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """
        @param path: The bundle file.
        @raise OSError: If the file cannot be read.
        @raise CollateralParseError: If it is not a valid bundle.
        """
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            data = f.read(MAX_BUNDLE_SIZE + 1)
        try:
            self.collateral = Collateral.from_json(data)
            self.fmspc = collateral_fmspc(self.collateral)
        except CollateralParseError as e:
            msg = f"collateral bundle {self.path}: {e}"
            raise CollateralParseError(msg) from e

    def collateral_for(self, fmspc: bytes, ca: str) -> Deferred[Collateral]:
        """
        L{CollateralSource.collateral_for}: the bundle, if its TCB Info is
        for C{fmspc}; otherwise a failure with
        L{CollateralFMSPCMismatchError}.
        """
        wanted = normalize_fmspc(fmspc)
        normalize_ca(ca)
        if wanted != self.fmspc:
            return fail(
                CollateralFMSPCMismatchError(self.path, wanted, self.fmspc)
            )
        return succeed(self.collateral)
