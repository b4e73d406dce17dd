"""
The web side of the daemon: the attestation document (with fresh
quotes for a client's nonce), health checks, the operator's application
mounted at C{/}, and a L{Site} that logs one access event per request,
never shows a traceback, sends HSTS on every response, bounds request
bodies, answers requests its parser refuses with a plain error and
closes them, logs failed TLS handshakes, and can drain its connections
when the daemon stops.

Resources read the server identity through callables on every request:
the identity the request's own connection presents when that is known,
otherwise the one new connections get, so that a rotated certificate is
described as soon as it is served and an open connection keeps being
described by the certificate it presents.
"""

from __future__ import annotations

import base64
import importlib
import json
import sys
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, pages, server
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource, Resource
from twisted.web.wsgi import WSGIResource
from zope.interface import implementer

from attestd._fresh import parse_nonce
from attestd._tls import ServerIdentity, handshake_failure
from attestd.errors import (
    ConfigurationError,
    FreshnessUnavailableError,
    NonceParseError,
)
from attestd.sources._log import MarkedLogger

#: Path segments of the attestation document, under the site root.
ATTESTATION_PATH = (b".well-known", b"attestation")

#: Strict-Transport-Security value sent with every response.
HSTS = b"max-age=63072000"

#: Format of the access log event (namespace C{attestd.access}).
ACCESS_LOG_FORMAT = (
    '{client} "{method} {path}" {status} {bytes} {duration:.3f}s '
    '"{user_agent}"'
)

#: Format of the event for a request refused before it reached a resource
#: (namespace C{attestd.web}).
REFUSED_FORMAT = (
    'Refused a request from {client} ("{method} {path}") with {status}: '
    "{reason}"
)

#: Format of the event for a failed TLS handshake (namespace
#: C{attestd.tls}).
HANDSHAKE_FAILED_FORMAT = "TLS handshake with {client} failed: {reason}"

#: Default largest request body, in bytes (C{--max-body-size}).
DEFAULT_MAX_BODY_SIZE = 1024 * 1024

#: The body of every error attestd writes itself, by status.
_ERROR_PHRASES = {
    http.BAD_REQUEST: b"Bad Request",
    http.REQUEST_ENTITY_TOO_LARGE: b"Content Too Large",
    http.REQUEST_URI_TOO_LONG: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    http.INTERNAL_SERVER_ERROR: b"Internal Server Error",
}

IdentitySource = Callable[[], ServerIdentity]

#: The identity a connection presents, given the connection's transport
#: (its TLS protocol); L{None} when unknown.
ConnectionIdentity = Callable[[object], "ServerIdentity | None"]

#: Makes a fresh quote binding an identity's key and a nonce.
FreshQuote = Callable[[ServerIdentity, bytes], Deferred[bytes]]


def attestation_document(identity: ServerIdentity) -> dict[str, Any]:
    """
    Describe the evidence an identity presents.

    @param identity: An identity with evidence.
    @return: The JSON-able document: C{mrenclave}, C{mrsigner} and
        C{report_data} in hex, C{isv_prod_id}, C{isv_svn}, C{debug},
        C{evidence} (C{"legacy"} or C{"dice"}), C{quote} in base64 and
        C{certificate_sha256} in hex; and C{"simulated": true} when the
        evidence is simulated.
    @raise ValueError: If C{identity} has no evidence.
    """
    evidence = identity.evidence
    if evidence is None:
        msg = "identity carries no RA-TLS evidence"
        raise ValueError(msg)
    report = evidence.quote.report
    document: dict[str, Any] = {
        "mrenclave": report.mrenclave.hex(),
        "mrsigner": report.mrsigner.hex(),
        "isv_prod_id": report.isv_prod_id,
        "isv_svn": report.isv_svn,
        "debug": report.debug,
        "report_data": report.report_data.hex(),
        "evidence": evidence.kind,
        "quote": base64.b64encode(evidence.quote.raw).decode("ascii"),
        "certificate_sha256": identity.certificate_sha256,
    }
    if identity.simulated:
        document["simulated"] = True
        document["warning"] = (
            "SIMULATED attestation: made by attestd's stand-in for "
            "Intel's infrastructure, not by SGX hardware"
        )
    return document


def _not_found(request: server.Request) -> bytes:
    body: bytes = pages.notFound().render(request)
    return body


def _json(request: server.Request, code: int, body: object) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, indent=2).encode("ascii") + b"\n"


def _error(
    request: server.Request, code: int, error: str, reason: str
) -> bytes:
    return _json(request, code, {"error": error, "reason": reason})


def _text(request: server.Request, code: int, body: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return body.encode("utf-8")


def _identity_of(
    request: server.Request,
    current: IdentitySource,
    connection: ConnectionIdentity | None,
) -> ServerIdentity:
    """
    The identity the request's connection presents if known, otherwise
    the current one.
    """
    if connection is not None:
        channel = getattr(request, "channel", None)
        transport = getattr(channel, "transport", None)
        if transport is not None:
            found = connection(transport)
            if found is not None:
                return found
    return current()


#: Why a server reading its certificate from files gives no fresh quote.
FRESHNESS_UNAVAILABLE = (
    "fresh quotes need an in-process attestation source (--attestation "
    "gramine inside Gramine, or --attestation simulated); this server "
    "reads its certificate from files"
)


class AttestationResource(Resource):
    """
    C{/.well-known/attestation}: the RA-TLS evidence of the certificate
    that this connection presents, as JSON (see L{attestation_document}).
    A server running without evidence answers 404 with a JSON reason.

    With C{?nonce=HEX} (16 to 64 bytes) the document also holds
    C{nonce} (as given, in lower-case hex) and C{fresh_quote}: a new
    quote, in base64, whose report data is SHA-256 of the certificate's
    SubjectPublicKeyInfo DER followed by SHA-256 of the nonce.  A
    malformed nonce gets 400; a server that cannot quote (files source)
    501; a quote that fails 503; each with a JSON C{error} and
    C{reason}.

    @ivar _identity: Where the current identity comes from.
    @ivar _connection: Where a connection's identity comes from.
    @ivar _fresh: Makes fresh quotes; L{None} when the source cannot.
    @ivar _log: Where failed fresh quotes are logged.
    """

    isLeaf = True

    def __init__(
        self,
        identity: IdentitySource,
        *,
        connection_identity: ConnectionIdentity | None = None,
        fresh: FreshQuote | None = None,
        simulated: bool = False,
    ) -> None:
        """
        @param identity: Returns the identity new connections present.
        @param connection_identity: Returns the identity a connection
            presents.
        @param fresh: Makes fresh quotes; L{None} if the source cannot.
        @param simulated: Whether the evidence is simulated (log events
            say so).
        """
        super().__init__()
        self._identity = identity
        self._connection = connection_identity
        self._fresh = fresh
        self._log = MarkedLogger("attestd.web", simulated=simulated)

    def render_GET(self, request: server.Request) -> bytes | int:
        """
        Answer with the document, and a fresh quote when a nonce is
        given.
        """
        if request.postpath not in ([], [b""]):
            return _not_found(request)
        identity = _identity_of(request, self._identity, self._connection)
        if identity.evidence is None:
            return _json(
                request,
                http.NOT_FOUND,
                {
                    "error": "unattested",
                    "reason": identity.unattested_reason,
                    "certificate_sha256": identity.certificate_sha256,
                },
            )
        document = attestation_document(identity)
        nonces = (request.args or {}).get(b"nonce")
        if nonces is None:
            return _json(request, http.OK, document)
        if len(nonces) != 1:
            return _error(
                request, http.BAD_REQUEST, "bad_nonce", "give one nonce"
            )
        try:
            nonce = parse_nonce(nonces[0])
        except NonceParseError as e:
            return _error(request, http.BAD_REQUEST, "bad_nonce", str(e))
        if self._fresh is None:
            return _error(
                request,
                http.NOT_IMPLEMENTED,
                "freshness_unavailable",
                FRESHNESS_UNAVAILABLE,
            )
        # XXX: fresh quotes are not rate-limited: each nonce costs one quote
        # from the Quoting Enclave, bounded only by the source's limit of
        # calls in progress (503 beyond it).
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(quote: bytes) -> None:
            if gone:
                return
            document["nonce"] = nonce.hex()
            document["fresh_quote"] = base64.b64encode(quote).decode("ascii")
            request.write(_json(request, http.OK, document))
            request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(FreshnessUnavailableError):
                code, error = http.NOT_IMPLEMENTED, "freshness_unavailable"
            elif failure.check(NonceParseError):
                code, error = http.BAD_REQUEST, "bad_nonce"
            else:
                code, error = http.SERVICE_UNAVAILABLE, "fresh_quote_failed"
                self._log.warn(
                    "No fresh quote for a client: {reason}",
                    reason=str(failure.value) or type(failure.value).__name__,
                    certificate_sha256=identity.certificate_sha256,
                )
            if gone:
                return
            request.write(_error(request, code, error, str(failure.value)))
            request.finish()

        self._fresh(identity, nonce).addCallbacks(answer, failed)
        return server.NOT_DONE_YET


class HealthResource(Resource):
    """
    A plain-text health check: 200 C{ok} when C{check} says so, otherwise
    503 with the reason it gives.

    @ivar _check: Returns L{None} when healthy, or why not.
    """

    isLeaf = True

    def __init__(self, check: Callable[[], str | None]) -> None:
        """
        @param check: Returns L{None} when healthy, or the reason it is
            not.
        """
        super().__init__()
        self._check = check

    def render_GET(self, request: server.Request) -> bytes:
        """
        Answer the check.
        """
        if request.postpath not in ([], [b""]):
            return _not_found(request)
        problem = self._check()
        if problem is None:
            return _text(request, http.OK, "ok\n")
        return _text(request, http.SERVICE_UNAVAILABLE, problem + "\n")


_ENCLAVE_INTRO = (
    "This HTTPS server runs inside an Intel SGX enclave under Gramine. "
    "Its TLS certificate is an RA-TLS certificate: it carries an SGX "
    "quote that binds the certificate's key to the enclave's "
    "measurements."
)

_SIMULATED_INTRO = (
    "This HTTPS server runs with SIMULATED attestation: its RA-TLS "
    "certificate carries a quote made by attestd's stand-in for Intel's "
    "infrastructure, not by SGX hardware.  It is for development only "
    "and proves nothing about a real enclave."
)

_DEFAULT_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>attestd</title></head>
<body>
<h1>attestd</h1>
<p>{intro}</p>
<p>{status}</p>
<p>Evidence: <a href="/.well-known/attestation">/.well-known/attestation</a>
</p>
</body>
</html>
"""


class DefaultPage(Resource):
    """
    What C{/} shows when no application is mounted.

    @ivar _identity: Where the current identity comes from.
    """

    isLeaf = True

    def __init__(self, identity: IdentitySource) -> None:
        """
        @param identity: Returns the identity new connections present.
        """
        super().__init__()
        self._identity = identity

    def render_GET(self, request: server.Request) -> bytes:
        """
        Show the page at C{/}; anything below it does not exist.
        """
        if request.postpath not in ([], [b""]):
            return _not_found(request)
        identity = self._identity()
        intro = _SIMULATED_INTRO if identity.simulated else _ENCLAVE_INTRO
        if identity.evidence is None:
            status = (
                "<strong>This server is running UNATTESTED (insecure "
                "development mode): its certificate proves nothing."
                "</strong>"
            )
        elif identity.simulated:
            status = (
                "<strong>SIMULATED attestation: trust it only with the "
                "simulated root, never for real secrets.</strong>"
            )
        else:
            status = "Check the quote before trusting this server."
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return _DEFAULT_PAGE.format(intro=intro, status=status).encode("utf-8")


class RootResource(Resource):
    """
    The site root: attestd's own paths, and the application for
    everything else.

    C{/healthz}, C{/readyz} and C{/.well-known/attestation} belong to
    attestd; every other path, including the rest of C{/.well-known/},
    goes to the application with its path untouched.

    @ivar _app: The application resource.
    """

    def __init__(
        self,
        identity: IdentitySource,
        app: IResource | None = None,
        ready: Callable[[], str | None] = lambda: None,
        *,
        connection_identity: ConnectionIdentity | None = None,
        fresh: FreshQuote | None = None,
        simulated: bool = False,
    ) -> None:
        """
        @param identity: Returns the identity new connections present.
        @param app: The application mounted at C{/}; L{DefaultPage} when
            L{None}.
        @param ready: The readiness check of C{/readyz}.
        @param connection_identity: Returns the identity a connection
            presents (see L{AttestationResource}).
        @param fresh: Makes fresh quotes; L{None} if the source cannot.
        @param simulated: Whether the evidence is simulated.
        """
        super().__init__()
        self._app: IResource = (
            app if app is not None else DefaultPage(identity)
        )
        well_known = Resource()
        well_known.putChild(
            ATTESTATION_PATH[1],
            AttestationResource(
                identity,
                connection_identity=connection_identity,
                fresh=fresh,
                simulated=simulated,
            ),
        )
        self.putChild(b"healthz", HealthResource(lambda: None))
        self.putChild(b"readyz", HealthResource(ready))
        self.putChild(ATTESTATION_PATH[0], well_known)

    def getChildWithDefault(
        self, path: bytes, request: server.Request
    ) -> IResource:
        """
        Route a first path segment to attestd's resources or to the
        application.
        """
        postpath = request.postpath or []
        ours = path in (b"healthz", b"readyz") or (
            path == ATTESTATION_PATH[0]
            and postpath[:1] == [ATTESTATION_PATH[1]]
        )
        if ours:
            child: IResource = self.children[path]
            return child
        # Give the segment back: the application sees the whole path.
        prepath = request.prepath or []
        request.postpath = [prepath.pop(), *postpath]
        app: IResource = self._app
        return app

    def render(self, request: server.Request) -> bytes:
        """
        Not reached: every request is routed to a child.
        """
        body: bytes = self._app.render(request)
        return body


def load_object(spec: str) -> object:
    """
    Import C{module:attribute} (the attribute may be dotted).

    @param spec: What to import.
    @return: The object.
    @raise ConfigurationError: If it cannot be imported.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        msg = f"{spec!r} is not of the form module:attribute"
        raise ConfigurationError(msg)
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as e:
        msg = f"cannot import {module_name}: {type(e).__name__}: {e}"
        raise ConfigurationError(msg) from e
    for name in attribute.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError as e:
            msg = f"{module_name} has no attribute {attribute}"
            raise ConfigurationError(msg) from e
    return obj


def app_resource(spec: str) -> IResource:
    """
    The L{IResource} named by C{--app module:attribute}.

    @param spec: C{module:attribute}.
    @return: The resource.
    @raise ConfigurationError: If it cannot be imported or is not an
        L{IResource}.
    """
    obj = load_object(spec)
    if not IResource.providedBy(obj):
        msg = f"{spec} is {type(obj).__name__}, not an IResource"
        raise ConfigurationError(msg)
    return obj


def wsgi_resource(
    spec: str, reactor: Any, *, simulated: bool = False
) -> IResource:
    """
    A resource running the WSGI application named by C{--wsgi
    module:attribute} on the reactor's thread pool (see L{WSGIFailures}
    for its failures).

    @param spec: C{module:attribute}.
    @param reactor: The reactor whose thread pool runs the application.
    @param simulated: Whether the evidence served is simulated (log
        events say so).
    @return: The resource.
    @raise ConfigurationError: If it cannot be imported or is not
        callable.
    """
    app = load_object(spec)
    if not callable(app):
        msg = f"{spec} is {type(app).__name__}, not a WSGI application"
        raise ConfigurationError(msg)
    return WSGIResource(
        reactor,
        reactor.getThreadPool(),
        WSGIFailures(app, reactor, simulated=simulated),
    )


class WSGIFailures:
    """
    A WSGI application wrapped so that its failures are answered and
    logged as an C{--app} resource's are: an exception raised before any
    body byte was handed to the server becomes a plain 500 and one
    C{attestd.web} failure event (Twisted would send an empty 500 and log
    under its own namespace).  One raised after the body began is left to
    Twisted, which cuts the connection and logs it as C{WSGI application
    error} (namespace C{twisted.web.wsgi._WSGIResponse}).

    @ivar app: The application.
    @ivar _reactor: Where events are logged from (the application runs in
        a thread).
    @ivar _log: Emits the failure events.
    """

    def __init__(
        self, app: Callable[..., Any], reactor: Any, *, simulated: bool
    ) -> None:
        """
        @param app: The application.
        @param reactor: The reactor whose thread pool runs it.
        @param simulated: Whether the evidence served is simulated.
        """
        self.app = app
        self._reactor = reactor
        self._log = MarkedLogger("attestd.web", simulated=simulated)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Any:
        """
        Run the application, in a thread of the pool.
        """
        try:
            result = self.app(environ, start_response)
        except Exception:  # noqa: BLE001 (any failure is answered 500)
            return self._failed(environ, start_response)
        return self._iterate(result, environ, start_response)

    def _iterate(
        self,
        result: Any,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
    ) -> Any:
        """
        Hand on the application's body, answering a failure before its
        first byte.
        """
        begun = False
        try:
            for chunk in result:
                begun = begun or bool(chunk)
                yield chunk
        except Exception:
            if begun:
                raise
            yield from self._failed(environ, start_response)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _failed(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        """
        Log the exception being handled and answer a plain 500.
        """
        failure = Failure()
        self._reactor.callFromThread(
            self._log.failure,
            "Unhandled error answering {method} {path}",
            failure=failure,
            method=environ.get("REQUEST_METHOD", "-"),
            path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
        )
        body = error_body(http.INTERNAL_SERVER_ERROR)
        start_response(
            "500 Internal Server Error",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ],
            sys.exc_info(),
        )
        return [body]


def error_body(status: int) -> bytes:
    """
    The plain-text body of an error attestd answers itself, such as
    C{500 Internal Server Error}.

    @param status: The status code.
    @return: The body, ending with a newline.
    """
    phrase = _ERROR_PHRASES.get(status) or http.RESPONSES.get(status, b"")
    return b"%d %s\n" % (status, phrase)


class _CheckedRender:
    """
    A resource as L{Request.render} hands it to Twisted: what it renders
    is checked on the way out.  A body that is not C{bytes} becomes a
    plain 500 (Twisted's own page would show the request, the resource
    and the value); the body of an answer to C{HEAD} is dropped here,
    after its length is set, so that Twisted has none to complain about.

    @ivar resource: The resource rendering.
    """

    def __init__(self, resource: IResource) -> None:
        self.resource = resource

    def __repr__(self) -> str:
        return repr(self.resource)

    def render(self, request: Request) -> bytes | int:
        """
        Render the resource and check what it gives.
        """
        body = self.resource.render(request)
        if not isinstance(body, bytes) and body is not server.NOT_DONE_YET:
            body = request.render_failed(self.resource, body)
        if not isinstance(body, bytes):
            return server.NOT_DONE_YET
        if request.method == b"HEAD" and body:
            request.setHeader(b"content-length", b"%d" % (len(body),))
            return b""
        return body


class Request(server.Request):
    """
    A request that always sends HSTS, answers failures with a plain 500
    and no traceback, refuses a body larger than its site allows, and
    knows when it started.

    @ivar started: When the request object was made (C{time.monotonic}).
    @ivar body_bytes: How many body bytes were received.
    @ivar refused: Whether the request was refused while its body was
        arriving.
    """

    def __init__(self, channel: http.HTTPChannel, *args: Any) -> None:
        super().__init__(channel, *args)
        self.started = time.monotonic()
        self.body_bytes = 0
        self.refused = False

    def _max_body_size(self) -> int | None:
        site = getattr(self.channel, "site", None)
        return site.max_body_size if isinstance(site, Site) else None

    def gotLength(self, length: int | None) -> None:
        """
        Refuse a declared body larger than the site allows before any of
        it is read; otherwise get ready to receive it.

        @param length: The declared length, or L{None} when chunked.
        """
        limit = self._max_body_size()
        if length is not None and limit is not None and length > limit:
            # Twisted answers "Expect: 100-continue" after this call; the
            # client must not be invited to send what is refused.
            self.requestHeaders.removeHeader(b"expect")
            self.content = BytesIO()
            self._refuse_body(limit, length, chunked=False)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """
        Keep a piece of the body; refuse the request once its body is
        larger than the site allows (a chunked body declares no length).

        @param data: The piece.
        """
        if self.refused:
            return
        self.body_bytes += len(data)
        limit = self._max_body_size()
        if limit is not None and self.body_bytes > limit:
            self._refuse_body(limit, self.body_bytes, chunked=True)
            return
        super().handleContentChunk(data)

    def _refuse_body(self, limit: int, size: int, *, chunked: bool) -> None:
        self.refused = True
        channel = self.channel
        if isinstance(channel, HTTPChannel):
            channel.refuse(
                http.REQUEST_ENTITY_TOO_LARGE,
                f"request body larger than {limit} bytes",
                max_body_size=limit,
                body_bytes=size,
                chunked=chunked,
            )
        else:
            channel.loseConnection()

    def render(self, resrc: IResource) -> None:
        """
        Render C{resrc}, checking what it gives (see L{_CheckedRender}).
        """
        super().render(_CheckedRender(resrc))

    def render_failed(self, resource: IResource, body: object) -> bytes | int:
        """
        Log a resource that rendered something other than C{bytes}, and
        answer a plain 500 (or cut the connection if the response has
        begun).

        @param resource: The resource.
        @param body: What it rendered (logged by type only).
        @return: The body to send, or C{NOT_DONE_YET} once cut.
        """
        self._error_log().error(
            "Resource {resource_class} rendered {returned_type}, not "
            "bytes, for {method} {path}: answered 500",
            resource_class=_qualified_name(type(resource)),
            returned_type=type(body).__name__,
            method=_text_of(self.method),
            path=_text_of(self.path),
        )
        if self.startedWriting:
            transport: Any = self.channel.transport
            transport.abortConnection()
            return server.NOT_DONE_YET
        return self._plain_error(http.INTERNAL_SERVER_ERROR)

    def _plain_error(self, status: int) -> bytes:
        body = error_body(status)
        self.setResponseCode(status)
        self.responseHeaders.setRawHeaders(
            b"content-type", [b"text/plain; charset=utf-8"]
        )
        self.setHeader(b"content-length", b"%d" % (len(body),))
        return body

    def _error_log(self) -> MarkedLogger:
        site = getattr(self, "site", None)
        if site is None:
            site = getattr(self.channel, "site", None)
        return site.error_log if isinstance(site, Site) else _error_log

    def write(self, data: bytes) -> None:
        """
        Add HSTS before the headers go out, then write.
        """
        if not self.startedWriting:
            self.setHeader(b"strict-transport-security", HSTS)
        super().write(data)

    def processingFailed(self, reason: Failure) -> Failure:
        """
        Log the failure and answer 500 with a plain body; if the response
        has already begun, cut the connection instead, so the client does
        not take a partial response for a whole one.
        """
        _log_failure(self._error_log(), self, reason)
        if self.startedWriting:
            transport: Any = self.channel.transport
            transport.abortConnection()
            return reason
        self.write(self._plain_error(http.INTERNAL_SERVER_ERROR))
        self.finish()
        return reason


_error_log = MarkedLogger("attestd.web")


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _log_failure(
    log: MarkedLogger, request: server.Request, reason: Failure
) -> None:
    log.failure(
        "Unhandled error answering {method} {path}",
        failure=reason,
        method=_text_of(request.method),
        path=_text_of(request.path),
    )


def _text_of(value: bytes | None) -> str:
    if value is None:
        return "-"
    return value.decode("utf-8", "backslashreplace")


@implementer(IHandshakeListener)
class HTTPChannel(http.HTTPChannel):
    """
    An HTTP/1.1 channel that its L{Site} can drain (once draining, it
    finishes the request in progress, then closes; an idle channel closes
    at once), that reports a TLS handshake that fails, and that answers a
    request it refuses before any resource sees it (a body too large, a
    header line too long, a malformed request) with a plain error, then
    closes.

    A refused connection sends TLS's close_notify at once and is cut
    after L{linger} seconds if the client has not closed it by then;
    what the client sends meanwhile is dropped.

    @ivar site: The site that made this channel.
    @ivar linger: Seconds a refused connection is left for the client to
        read the answer.
    @ivar _draining: Whether L{drain} was called.
    @ivar _refused: Whether L{refuse} was called.
    @ivar _handshake_done: Whether the TLS handshake completed.
    @ivar _timed_out: Whether the idle timeout closed the connection.
    @ivar _linger_call: Cuts a refused connection.
    """

    site: Site
    linger = 2.0
    _draining = False
    _refused = False
    _handshake_done = False
    _timed_out = False
    _linger_call: IDelayedCall | None = None

    def connectionMade(self) -> None:
        """
        Register with the site; a simulated site's channel marks its
        own events (Twisted's "Timing out client") as simulated.
        """
        super().connectionMade()
        if self.site.error_log.simulated:
            self._log = MarkedLogger(self._log.namespace, simulated=True)
        self.site.channel_opened(self)

    def handshakeCompleted(self) -> None:
        """
        Note that the TLS handshake completed.
        """
        self._handshake_done = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Forget the connection; report a TLS handshake that never
        completed (unless the server itself was stopping).
        """
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        if not self._handshake_done and not self._draining:
            self.site.handshake_failed(
                self,
                "no TLS handshake before the idle timeout"
                if self._timed_out
                else handshake_failure(reason),
            )
        super().connectionLost(reason)
        self.site.channel_closed(self)

    def timeoutConnection(self) -> None:
        """
        Note the idle timeout, then close as Twisted does.
        """
        self._timed_out = True
        super().timeoutConnection()

    def dataReceived(self, data: bytes) -> None:
        """
        Parse what the client sends, unless its request was refused.
        """
        if self._refused:
            return
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        """
        Hand a complete request on, unless it was refused.
        """
        if self._refused:
            return
        super().allContentReceived()

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        Answer a request line or header line longer than C{MAX_LENGTH}
        with 414 or 431 (Twisted's L{LineReceiver} would close without an
        answer).

        @param line: What was buffered (dropped).
        """
        # A request object exists once its request line has arrived.
        if self.requests:
            self.refuse(
                431, f"header line longer than {self.MAX_LENGTH} bytes"
            )
        else:
            self.refuse(
                http.REQUEST_URI_TOO_LONG,
                f"request line longer than {self.MAX_LENGTH} bytes",
            )

    def _respondToBadRequestAndDisconnect(self) -> None:
        """
        Answer a request Twisted's parser refuses, and close.

        Twisted calls this for every malformed request, and when the
        headers are larger than C{totalHeadersSize} in all or more than
        C{maxHeaders} in number (431 then; 400 otherwise).  It is a
        private hook of Twisted's: should it be renamed, Twisted's bare
        400 comes back and C{TestHeaderLimits} in
        C{tests/test_daemon_hardening.py} fails.
        """
        # Twisted's own counters tell the header limits from the rest.
        if getattr(self, "_receivedHeaderSize", 0) > self.totalHeadersSize:
            self.refuse(
                431,
                f"request headers larger than {self.totalHeadersSize} "
                "bytes in all",
            )
        elif getattr(self, "_receivedHeaderCount", 0) > self.maxHeaders:
            self.refuse(431, f"more than {self.maxHeaders} header lines")
        else:
            self.refuse(http.BAD_REQUEST, "malformed request")

    def refuse(self, status: int, reason: str, **fields: object) -> None:
        """
        Answer C{status} with a plain body, log one event, and close the
        connection (see the class docstring).

        @param status: The status code.
        @param reason: Why, for the log event.
        @param fields: More fields for the log event.
        """
        if self._refused:
            return
        self._refused = True
        self.persistent = False
        body = error_body(status)
        phrase = body[4:-1]
        headers = Headers(
            {
                b"content-type": [b"text/plain; charset=utf-8"],
                b"content-length": [b"%d" % (len(body),)],
                b"connection": [b"close"],
                b"strict-transport-security": [HSTS],
            }
        )
        self.writeHeaders(b"HTTP/1.1", b"%d" % (status,), phrase, headers)
        self.write(body)
        self.site.request_refused(self, status, reason, **fields)
        self.setTimeout(None)
        self.loseConnection()
        # connectionLost cancels this when the client closes first.
        self._linger_call = self.site.clock.callLater(self.linger, self.abort)

    def checkPersistence(self, request: http.Request, version: bytes) -> bool:
        """
        Keep the connection open after this request only when not
        draining.
        """
        if self._draining:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        persistent: bool = super().checkPersistence(request, version)
        return persistent

    def loseConnection(self) -> None:
        """
        Close the connection.  When draining, also close the TCP
        connection under TLS right after TLS's close_notify, rather than
        wait for the client's close_notify, which an idle keep-alive
        client would only send when it next uses the connection.
        """
        super().loseConnection()
        if self._draining:
            tls: Any = self.transport
            tcp = getattr(tls, "transport", None)
            if tcp is not None:
                tcp.loseConnection()

    def drain(self) -> None:
        """
        Close now if idle; otherwise close after the current response.
        """
        self._draining = True
        self.persistent = False
        if not self.requests:
            self.loseConnection()
            return
        for request in self.requests:
            if not request.startedWriting:
                request.responseHeaders.setRawHeaders(
                    b"connection", [b"close"]
                )

    def abort(self) -> None:
        """
        Close at once, whatever is in progress.
        """
        transport: Any = self.transport
        transport.abortConnection()

    def client(self) -> str:
        """
        The client's address, for log events.
        """
        transport: Any = self.transport
        peer = transport.getPeer() if transport is not None else None
        return str(getattr(peer, "host", peer))


class Site(server.Site):
    """
    attestd's site: tracebacks are never shown, every finished request
    is one access event, every refused request and failed TLS handshake
    one event, request bodies are bounded, and its connections can be
    drained.

    @ivar clock: The reactor's clock (drain deadline, lingering refused
        connections).
    @ivar max_body_size: Largest request body accepted, in bytes.
    @ivar draining: Whether L{drain} was called.
    @ivar access_log: Emits the access events.
    @ivar error_log: Emits failures, refusals and drain events.
    @ivar tls_log: Emits the failed TLS handshake events.
    @ivar _channels: The channels open now.
    @ivar _idle: Deferreds waiting for the last channel to close.
    """

    # Twisted types this as making its HTTP/2-capable wrapper; plain
    # HTTP/1.1 channels are what ALPN negotiates here.
    protocol = HTTPChannel  # type: ignore[assignment]
    displayTracebacks = False
    noisy = False

    def __init__(
        self,
        resource: IResource,
        clock: IReactorTime,
        *,
        simulated: bool = False,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        """
        @param resource: The root resource.
        @param clock: The reactor's clock.
        @param simulated: Whether the evidence served is simulated (every
            log event says so).
        @param max_body_size: Largest request body accepted, in bytes (0
            refuses every body): a larger one is answered 413 and its
            connection closed, before it is read when its length is
            declared.
        """
        super().__init__(resource, requestFactory=Request, reactor=clock)
        self.clock = clock
        self.max_body_size = max_body_size
        self.access_log = MarkedLogger("attestd.access", simulated=simulated)
        self.error_log = MarkedLogger("attestd.web", simulated=simulated)
        self.tls_log = MarkedLogger("attestd.tls", simulated=simulated)
        self.draining = False
        self._channels: set[HTTPChannel] = set()
        self._idle: list[Deferred[None]] = []

    def log(self, request: http.Request) -> None:
        """
        Emit one access event for a finished request.

        Fields: C{client} (peer address), C{method}, C{path} (without
        the query string), C{status}, C{bytes} (body bytes sent),
        C{duration} (seconds) and C{user_agent}.
        """
        peer = request.getClientAddress()
        started = getattr(request, "started", None)
        duration = time.monotonic() - started if started is not None else 0.0
        self.access_log.info(
            ACCESS_LOG_FORMAT,
            client=getattr(peer, "host", str(peer)),
            method=_text_of(request.method),
            path=_text_of(request.path),
            status=request.code,
            bytes=request.sentLength,
            duration=duration,
            user_agent=_text_of(request.getHeader(b"user-agent")),
        )

    def request_refused(
        self,
        channel: HTTPChannel,
        status: int,
        reason: str,
        **fields: object,
    ) -> None:
        """
        Emit the one event of a request refused before it reached a
        resource: a warning with C{client}, C{method} and C{path} (C{-}
        when not known yet), C{status} and C{reason}; for a body too
        large, also C{max_body_size}, C{body_bytes} (the declared length,
        or what had arrived of a chunked body) and C{chunked}.
        """
        # The request line, as Twisted's parser keeps it until the
        # request is complete.
        method = getattr(channel, "_command", None)
        path = getattr(channel, "_path", None)
        if isinstance(path, bytes):
            path = path.split(b"?", 1)[0]
        self.error_log.warn(
            REFUSED_FORMAT,
            client=channel.client(),
            method=_text_of(method if isinstance(method, bytes) else None),
            path=_text_of(path if isinstance(path, bytes) else None),
            status=status,
            reason=reason,
            **fields,
        )

    def handshake_failed(self, channel: HTTPChannel, reason: str) -> None:
        """
        Emit the one event of a connection whose TLS handshake did not
        complete: at info level, with C{client} and C{reason}.
        """
        self.tls_log.info(
            HANDSHAKE_FAILED_FORMAT, client=channel.client(), reason=reason
        )

    def channel_opened(self, channel: HTTPChannel) -> None:
        """
        Track a new channel; drain it at once if the site is draining.
        """
        self._channels.add(channel)
        if self.draining:
            channel.drain()

    def channel_closed(self, channel: HTTPChannel) -> None:
        """
        Forget a closed channel; wake L{drain} when none are left.
        """
        self._channels.discard(channel)
        if not self._channels:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    @property
    def open_channels(self) -> int:
        """
        How many connections are open now.
        """
        return len(self._channels)

    def drain(self, timeout: float) -> Deferred[None]:
        """
        Let every connection finish the request it is handling, then
        close it; close idle ones at once; after C{timeout} seconds cut
        whatever is left.

        @param timeout: Seconds to wait before cutting connections.
        @return: Fires when every connection is closed.
        """
        self.draining = True
        for channel in list(self._channels):
            channel.drain()
        if not self._channels:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._idle.append(done)
        deadline = self.clock.callLater(timeout, self._cut)
        done.addBoth(_cancel_call, deadline)
        return done

    def _cut(self) -> None:
        if self._channels:
            self.error_log.warn(
                "Drain timeout: cutting {count} connections still open",
                count=len(self._channels),
            )
        for channel in list(self._channels):
            channel.abort()


def _cancel_call(result: object, call: IDelayedCall) -> object:
    if call.active():
        call.cancel()
    return result
