"""
The C{attestd} twistd plugin: C{twistd -n attestd --cert PATH --key PATH
--listen tcp:8080:interface=0.0.0.0}.

Every listener is TLS with the RA-TLS certificate; there is no way to
configure plain HTTP.  At start the daemon reads its certificate and key,
reads its own RA-TLS evidence and checks the key binding, binds its ports
and logs one event saying which enclave is serving where.  Anything that
stops the start is reported in one line on standard error, with exit
status 1.  On SIGTERM it stops accepting connections, lets requests in
progress finish (for at most C{--drain-timeout} seconds), then exits.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.task import deferLater
from twisted.logger import FileLogObserver, Logger, jsonFileLogObserver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from attestd._tls import ServerContextFactory, ServerIdentity, load_identity
from attestd._web import RootResource, Site, app_resource, wsgi_resource
from attestd.errors import AttestdError, ConfigurationError

#: Listener types accepted by C{--listen}; each is wrapped in TLS here.
LISTENER_TYPES = ("tcp", "tcp6", "systemd")

#: Address families accepted for C{systemd:} listeners.
SYSTEMD_DOMAINS = {"INET": socket.AF_INET, "INET6": socket.AF_INET6}

DEFAULT_LISTEN = "tcp:8080:interface=0.0.0.0"

_log = Logger(namespace="attestd.daemon")


def json_log_observer() -> FileLogObserver:
    """
    A log observer writing one JSON object per line to standard output,
    for C{twistd --logger attestd.tap.json_log_observer}.

    @return: The observer.
    """
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


def _listener_type(description: str) -> tuple[str, dict[str, str]]:
    """
    The type and the C{key=value} arguments of an endpoint description.
    """
    kind, _, rest = description.partition(":")
    arguments = {}
    for part in rest.split(":"):
        key, sep, value = part.partition("=")
        if sep:
            arguments[key.strip()] = value
    return kind.strip().lower(), arguments


class Options(usage.Options):
    """
    Options of the C{attestd} twistd plugin.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve HTTPS with the RA-TLS certificate that gramine-ratls wrote, "
        "and publish its SGX evidence at /.well-known/attestation.  Every "
        "listener is TLS; there is no plain HTTP."
    )
    optParameters = [
        [
            "cert",
            None,
            # Gramine's tmpfs /tmp is enclave memory: gramine-ratls writes
            # there so that the key never reaches the host.
            "/tmp/ra-tls.crt.pem",  # noqa: S108
            "RA-TLS certificate: gramine-ratls PEM (TRUSTED CERTIFICATE, "
            "trailing NUL), ordinary PEM or DER.",
        ],
        [
            "key",
            None,
            "/tmp/ra-tls.key.pem",  # noqa: S108
            "Its private key, PEM or DER (EC P-256/P-384 or RSA).",
        ],
        [
            "app",
            None,
            None,
            "module:attribute of a twisted.web IResource to serve at /.",
        ],
        [
            "wsgi",
            None,
            None,
            "module:attribute of a WSGI application to serve at / "
            "(run on the reactor's thread pool).",
        ],
        [
            "drain-timeout",
            None,
            10.0,
            "Seconds to let requests in progress finish after SIGTERM "
            "before their connections are cut.",
            float,
        ],
    ]
    optFlags = [
        [
            "insecure-unattested",
            None,
            "INSECURE, development only: serve even if the certificate "
            "has no RA-TLS evidence or its key binding does not hold.",
        ],
    ]
    compData = usage.Completions(
        optActions={
            "cert": usage.CompleteFiles(),
            "key": usage.CompleteFiles(),
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        Listen on this endpoint, with TLS (repeatable; default
        tcp:8080:interface=0.0.0.0).  Accepted: tcp:PORT[:interface=ADDR],
        tcp6:PORT[:interface=ADDR] and systemd:domain=INET|INET6:index=N.
        """
        self["listen"].append(description)

    # --help shows this docstring with its line breaks as runs of spaces.
    opt_listen.__doc__ = " ".join((opt_listen.__doc__ or "").split())

    def postOptions(self) -> None:
        """
        Check the options against each other.

        @raise usage.UsageError: If they do not make sense.
        """
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        for description in self["listen"]:
            kind, arguments = _listener_type(description)
            if kind not in LISTENER_TYPES:
                msg = (
                    f"--listen {description}: every listener is TLS here, "
                    "configured by attestd; use tcp:, tcp6: or systemd:"
                )
                raise usage.UsageError(msg)
            if kind == "systemd" and (
                arguments.get("domain") not in SYSTEMD_DOMAINS
            ):
                msg = (
                    f"--listen {description}: systemd listeners need "
                    "domain=INET or domain=INET6"
                )
                raise usage.UsageError(msg)
        if self["app"] and self["wsgi"]:
            msg = "--app and --wsgi cannot be used together"
            raise usage.UsageError(msg)
        if self["drain-timeout"] < 0:
            msg = "--drain-timeout cannot be negative"
            raise usage.UsageError(msg)


class _TLSFactory(TLSMemoryBIOFactory):
    """
    TLS around the site, whose log prefix says what is serving (and
    says so loudly when it is unattested).
    """

    def __init__(self, *args: Any, insecure: bool = False) -> None:
        """
        @param args: What L{TLSMemoryBIOFactory} takes.
        @param insecure: Whether the identity is served unattested.
        """
        super().__init__(*args)
        self._insecure = insecure

    def logPrefix(self) -> str:
        """
        C{attestd (TLS)}, marked when unattested.
        """
        if self._insecure:
            return "attestd (TLS, INSECURE UNATTESTED)"
        return "attestd (TLS)"


def _format_address(address: Any) -> str:
    """
    C{host:port} (C{[host]:port} for IPv6) of an L{IAddress}.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return str(address)
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _reason(failure: Failure) -> str:
    """
    Why a port could not be bound, in a few words.
    """
    error = failure.value
    if isinstance(error, CannotListenError) and isinstance(
        error.socketError, OSError
    ):
        return error.socketError.strerror or str(error.socketError)
    return str(error) or type(error).__name__


class AttestdService(Service):
    """
    The listening ports and the site behind them.

    L{listen} binds every port (twistd's plugin binds them while making
    the service, so that a port in use stops the start in one line);
    L{startService} logs the start event; L{stopService} stops
    listening and drains the site.

    @ivar site: The web site.
    @ivar context_factory: Makes the TLS connections; its identity is the
        one being served.
    @ivar ports: The listening ports, once bound.
    """

    def __init__(
        self,
        reactor: Any,
        site: Site,
        creator: ServerContextFactory,
        descriptions: Sequence[str],
        *,
        drain_timeout: float,
        threadpool: Any = None,
    ) -> None:
        """
        @param reactor: The reactor to listen with.
        @param site: The site to serve.
        @param creator: Makes the TLS connections.
        @param descriptions: C{--listen} endpoint descriptions.
        @param drain_timeout: Seconds in-flight requests get at stop.
        @param threadpool: The thread pool running a WSGI application, if
            any: stopping waits until its calls have returned.
        """
        self._reactor = reactor
        self._threadpool = threadpool
        self.site = site
        self.context_factory = creator
        self._descriptions = list(descriptions)
        self._drain_timeout = drain_timeout
        insecure = creator.identity.evidence is None
        self._factory = _TLSFactory(creator, False, site, insecure=insecure)
        self.ports: list[IListeningPort] = []

    @property
    def addresses(self) -> list[str]:
        """
        The bound addresses, as C{host:port}.
        """
        return [_format_address(port.getHost()) for port in self.ports]

    def _endpoint(self, description: str) -> IStreamServerEndpoint:
        """
        The endpoint of a C{--listen} description, checked to be TCP.

        @raise ConfigurationError: If it cannot be made or is not TCP.
        """
        try:
            endpoint = endpoints.serverFromString(self._reactor, description)
        except (IndexError, KeyError) as e:
            # Only the systemd parser looks sockets up by index or name.
            msg = (
                f"--listen {description}: systemd passed no such socket "
                "(LISTEN_FDS and LISTEN_PID name none for this process)"
            )
            raise ConfigurationError(msg) from e
        except Exception as e:
            msg = f"--listen {description}: {type(e).__name__}: {e}"
            raise ConfigurationError(msg) from e
        if isinstance(
            endpoint,
            (endpoints.TCP4ServerEndpoint, endpoints.TCP6ServerEndpoint),
        ) or (
            isinstance(endpoint, endpoints.AdoptedStreamServerEndpoint)
            and endpoint.addressFamily in SYSTEMD_DOMAINS.values()
        ):
            return endpoint
        msg = f"--listen {description}: not a TCP listener"
        raise ConfigurationError(msg)

    def listen(self) -> None:
        """
        Bind every listener now.

        @raise ConfigurationError: If one cannot be bound; the ones bound
            before it are closed again.
        """
        if self.ports:
            return
        ports: list[IListeningPort] = []
        try:
            for description in self._descriptions:
                endpoint = self._endpoint(description)
                results: list[Any] = []
                endpoint.listen(self._factory).addBoth(results.append)
                if not results:
                    msg = f"--listen {description}: did not bind at once"
                    raise ConfigurationError(msg)
                if isinstance(results[0], Failure):
                    msg = (
                        f"cannot listen on {description}: "
                        f"{_reason(results[0])}"
                    )
                    raise ConfigurationError(msg)
                ports.append(results[0])
        except BaseException:
            for port in ports:
                port.stopListening()
            raise
        self.ports = ports

    def privilegedStartService(self) -> None:
        """
        Bind the ports if that was not done yet.
        """
        self.listen()
        super().privilegedStartService()

    def startService(self) -> None:
        """
        Log what is serving, and where.
        """
        super().startService()
        log_start(self.context_factory.identity, self.addresses)

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting connections, let requests in progress finish for
        at most the drain timeout, then close what is left.

        @return: Fires when every connection is closed.
        """
        super().stopService()
        _log.info(
            "attestd stopping: no longer accepting connections; draining "
            "{open_connections} open connections for at most "
            "{drain_timeout} s",
            open_connections=self.site.open_channels,
            drain_timeout=self._drain_timeout,
            addresses=self.addresses,
        )
        ports, self.ports = self.ports, []
        stopped = DeferredList(
            [Deferred.fromCoroutine(_stop(port)) for port in ports]
        )

        def drain(_: object) -> Deferred[None]:
            return self.site.drain(self._drain_timeout)

        def done(result: object) -> None:
            _log.info("attestd stopped: every connection is closed")

        d: Deferred[Any] = stopped.addCallback(drain)
        d.addCallback(lambda _: Deferred.fromCoroutine(self._threads_idle()))
        return d.addCallback(done)

    async def _threads_idle(self) -> None:
        """
        Wait until the WSGI thread pool has no call running.

        Twisted stops the reactor's thread pool by joining its threads
        while the reactor no longer runs, and a WSGI call still running
        then waits for the reactor to take its output: the process would
        hang.  So the stop waits here, with the reactor running, for
        calls that outlived the drain (their connections are closed).
        """
        if self._threadpool is None:
            return
        warned = False
        while self._threadpool.working:
            if not warned:
                # XXX: threads cannot be interrupted: a WSGI call that
                # never returns keeps the process alive after the drain
                # timeout, until it is killed.
                _log.warn(
                    "Waiting for {count} WSGI calls still running after "
                    "the drain; threads cannot be interrupted",
                    count=len(self._threadpool.working),
                )
                warned = True
            await deferLater(self._reactor, 0.05)


async def _stop(port: IListeningPort) -> None:
    result = port.stopListening()
    if isinstance(result, Deferred):
        await result


def log_start(identity: ServerIdentity, addresses: Sequence[str]) -> None:
    """
    Log the one start event: what enclave is serving, and where.

    @param identity: What is served.
    @param addresses: Where, as C{host:port}.
    """
    listening = ", ".join(addresses)
    evidence = identity.evidence
    if evidence is None:
        _log.warn(
            "INSECURE UNATTESTED: attestd serving a certificate WITHOUT "
            "valid RA-TLS evidence ({reason}); certificate_sha256="
            "{certificate_sha256}; listening on {listening}",
            insecure_unattested=True,
            reason=identity.unattested_reason,
            certificate_sha256=identity.certificate_sha256,
            addresses=list(addresses),
            listening=listening,
        )
        return
    report = evidence.quote.report
    _log.info(
        "attestd serving an RA-TLS certificate with {evidence} evidence: "
        "mrenclave={mrenclave} mrsigner={mrsigner} "
        "isv_prod_id={isv_prod_id} isv_svn={isv_svn} debug={debug} "
        "certificate_sha256={certificate_sha256}; listening on {listening}",
        insecure_unattested=False,
        evidence=evidence.kind,
        mrenclave=report.mrenclave.hex(),
        mrsigner=report.mrsigner.hex(),
        isv_prod_id=report.isv_prod_id,
        isv_svn=report.isv_svn,
        debug=report.debug,
        certificate_sha256=identity.certificate_sha256,
        addresses=list(addresses),
        listening=listening,
    )


def build_service(options: Options, reactor: Any) -> AttestdService:
    """
    Load the identity and the application, and make the service (its
    ports are not bound yet).

    @param options: Parsed options.
    @param reactor: The reactor to serve with.
    @return: The service.
    @raise AttestdError: If something configured cannot be used.
    """
    identity = load_identity(
        Path(options["cert"]),
        Path(options["key"]),
        insecure_unattested=bool(options["insecure-unattested"]),
    )
    creator = ServerContextFactory(identity)
    app: IResource | None = None
    try:
        if options["app"]:
            app = app_resource(options["app"])
        elif options["wsgi"]:
            app = wsgi_resource(options["wsgi"], reactor)
    except ConfigurationError as e:
        which = "--app" if options["app"] else "--wsgi"
        msg = f"{which} {options['app'] or options['wsgi']}: {e}"
        raise ConfigurationError(msg) from e
    site_holder: list[Site] = []

    def ready() -> str | None:
        if site_holder and site_holder[0].draining:
            return "draining"
        return None

    root = RootResource(lambda: creator.identity, app, ready)
    site = Site(root, reactor)
    site_holder.append(site)
    return AttestdService(
        reactor,
        site,
        creator,
        options["listen"],
        drain_timeout=options["drain-timeout"],
        threadpool=reactor.getThreadPool() if options["wsgi"] else None,
    )


def makeService(options: Options) -> MultiService:
    """
    Make the daemon's service, with its ports already bound.

    Whatever stops the start (a file that cannot be read or parsed, a key
    that does not match, missing evidence, a port in use) ends the
    process with status 1 and one line on standard error.

    @param options: Parsed options.
    @return: A L{MultiService} holding the L{AttestdService}.
    """
    from twisted.internet import reactor

    try:
        service = build_service(options, reactor)
        service.listen()
    except AttestdError as e:
        line = " ".join(str(e).split())
        raise SystemExit(f"attestd: {line}") from None
    top = MultiService()
    service.setServiceParent(top)
    return top
