"""
The C{attestd} twistd plugin: C{twistd -n attestd --cert PATH --key PATH
--listen tcp:8080:interface=0.0.0.0}, or C{twistd -n attestd
--attestation simulated} on a machine without SGX.

Every listener is TLS with the RA-TLS certificate; there is no way to
configure plain HTTP.  At start the daemon gets its certificate from its
attestation source (files that C{gramine-ratls} wrote, a certificate
minted through Gramine's C{/dev/attestation}, or a simulated one), reads
its own RA-TLS evidence and checks the key binding, binds its ports and
logs one event saying which enclave is serving where.  Anything that
stops the start is reported in one line on standard error, with exit
status 1.  With C{--rotate} it replaces its certificate on a schedule.
On SIGTERM it stops accepting connections, lets requests in progress
finish (for at most C{--drain-timeout} seconds), then exits.
"""

from __future__ import annotations

import re
import shlex
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
from twisted.logger import FileLogObserver, jsonFileLogObserver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from attestd._quote import FLAG_DEBUG
from attestd._simulated import (
    DEFAULT_MRENCLAVE,
    DEFAULT_MRSIGNER,
    TCB_STATUSES,
    SimulatedEnclave,
)
from attestd._tls import ServerContextFactory, ServerIdentity
from attestd._web import RootResource, Site, app_resource, wsgi_resource
from attestd.errors import AttestdError, ConfigurationError
from attestd.sources import (
    DEFAULT_ATTESTATION_DIR,
    AttestationSource,
    FilesSource,
    GramineSource,
    IdentityKeeper,
    MarkedLogger,
    SimulatedSource,
    default_state_dir,
)

#: Listener types accepted by C{--listen}; each is wrapped in TLS here.
LISTENER_TYPES = ("tcp", "tcp6", "systemd")

#: Address families accepted for C{systemd:} listeners.
SYSTEMD_DOMAINS = {"INET": socket.AF_INET, "INET6": socket.AF_INET6}

DEFAULT_LISTEN = "tcp:8080:interface=0.0.0.0"

#: Where gramine-ratls writes inside the enclave: Gramine's tmpfs /tmp is
#: enclave memory, so the key never reaches the host.
DEFAULT_CERT = "/tmp/ra-tls.crt.pem"  # noqa: S108

#: The values of C{--attestation}.
ATTESTATION_KINDS = ("auto", "files", "gramine", "simulated")

#: Seconds in each unit of a C{--rotate} duration.
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?")

#: The simulated enclave's flags without DEBUG: INIT and MODE64BIT.
_SIMULATED_FLAGS = SimulatedEnclave().flags


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
        "Serve HTTPS with an RA-TLS certificate and publish its SGX "
        "evidence at /.well-known/attestation.  Every listener is TLS; "
        "there is no plain HTTP.  --attestation says where the "
        "certificate comes from: files (what gramine-ratls wrote, --cert "
        "and --key), gramine (minted in the enclave through Gramine's "
        "/dev/attestation), simulated (minted with simulated quotes, for "
        "development without SGX), or auto (the default: files if --cert "
        "is given or exists, else gramine if /dev/attestation exists)."
    )
    optParameters = [
        [
            "attestation",
            None,
            "auto",
            "Where the certificate comes from: auto, files, gramine or "
            "simulated.",
        ],
        [
            "attestation-dir",
            None,
            str(DEFAULT_ATTESTATION_DIR),
            "Gramine's attestation directory (--attestation gramine).",
        ],
        [
            "rotate",
            None,
            None,
            "Mint a new key and certificate every DURATION (30s, 10m, "
            "1h); with --attestation files, read the files again.",
        ],
        [
            "simulated-state",
            None,
            None,
            "State directory of --attestation simulated (default "
            "$XDG_STATE_HOME/attestd-simulated, or "
            "~/.local/state/attestd-simulated); it receives root.pem and "
            "collateral.json for clients.",
        ],
        [
            "simulated-mrenclave",
            None,
            DEFAULT_MRENCLAVE.hex(),
            "MRENCLAVE of the simulated enclave (64 hex digits).",
        ],
        [
            "simulated-mrsigner",
            None,
            DEFAULT_MRSIGNER.hex(),
            "MRSIGNER of the simulated enclave (64 hex digits).",
        ],
        [
            "simulated-isv-prod-id",
            None,
            0,
            "ISV_PROD_ID of the simulated enclave.",
            int,
        ],
        [
            "simulated-isv-svn",
            None,
            0,
            "ISV_SVN of the simulated enclave.",
            int,
        ],
        [
            "simulated-tcb-status",
            None,
            "UpToDate",
            "TCB status the simulated collateral gives the platform: "
            + ", ".join(TCB_STATUSES)
            + ".",
        ],
        [
            "simulated-advisory-ids",
            None,
            "",
            "Comma-separated advisory IDs of the simulated TCB level.",
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
        [
            "simulated-debug",
            None,
            "Make the simulated enclave a debug enclave.",
        ],
    ]
    compData = usage.Completions(
        optActions={
            "cert": usage.CompleteFiles(),
            "key": usage.CompleteFiles(),
            "attestation": usage.CompleteList(ATTESTATION_KINDS),
            "attestation-dir": usage.CompleteDirs(),
            "simulated-state": usage.CompleteDirs(),
            "simulated-tcb-status": usage.CompleteList(TCB_STATUSES),
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["cert"] = DEFAULT_CERT
        self.cert_given = False

    def opt_cert(self, path: str) -> None:
        """
        RA-TLS certificate (--attestation files): gramine-ratls PEM
        (TRUSTED CERTIFICATE, trailing NUL), ordinary PEM or DER (default
        /tmp/ra-tls.crt.pem).  Naming it selects the files source.
        """
        self["cert"] = path
        self.cert_given = True

    opt_cert.__doc__ = " ".join((opt_cert.__doc__ or "").split())

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
        self._check_attestation()

    def _check_attestation(self) -> None:
        """
        Check the attestation options against each other.

        @raise usage.UsageError: If they do not make sense.
        """
        kind = self["attestation"]
        if kind not in ATTESTATION_KINDS:
            msg = (
                f"--attestation {kind}: use one of "
                f"{', '.join(ATTESTATION_KINDS)}"
            )
            raise usage.UsageError(msg)
        if self["rotate"] is not None:
            self["rotate"] = parse_duration(self["rotate"])
        if kind in ("gramine", "simulated"):
            if self.cert_given:
                msg = (
                    f"--cert is for --attestation files; --attestation "
                    f"{kind} mints its own certificate"
                )
                raise usage.UsageError(msg)
            if self["insecure-unattested"]:
                msg = (
                    f"--insecure-unattested is for --attestation files; "
                    f"--attestation {kind} always has evidence"
                )
                raise usage.UsageError(msg)
        given = [
            name
            for name, default in _SIMULATED_DEFAULTS.items()
            if self[name] != default
        ]
        if given and kind != "simulated":
            msg = f"--{given[0]} is for --attestation simulated only"
            raise usage.UsageError(msg)
        if kind == "simulated":
            if self["simulated-tcb-status"] not in TCB_STATUSES:
                msg = (
                    f"--simulated-tcb-status "
                    f"{self['simulated-tcb-status']}: use one of "
                    f"{', '.join(TCB_STATUSES)}"
                )
                raise usage.UsageError(msg)
            self["simulated-enclave"] = self._simulated_enclave()

    def _simulated_enclave(self) -> SimulatedEnclave:
        """
        The simulated enclave the options describe.

        @raise usage.UsageError: If a measurement or number is malformed.
        """
        values = {}
        for name in ("mrenclave", "mrsigner"):
            try:
                value = bytes.fromhex(self[f"simulated-{name}"])
            except ValueError:
                value = b""
            if len(value) != 32:
                msg = f"--simulated-{name} must be 64 hex digits"
                raise usage.UsageError(msg)
            values[name] = value
        for name in ("isv-prod-id", "isv-svn"):
            if not 0 <= self[f"simulated-{name}"] <= 0xFFFF:
                msg = f"--simulated-{name} must be from 0 to 65535"
                raise usage.UsageError(msg)
        flags = _SIMULATED_FLAGS
        if self["simulated-debug"]:
            flags |= FLAG_DEBUG
        return SimulatedEnclave(
            mrenclave=values["mrenclave"],
            mrsigner=values["mrsigner"],
            isv_prod_id=self["simulated-isv-prod-id"],
            isv_svn=self["simulated-isv-svn"],
            flags=flags,
        )


#: The simulated options and their defaults (given only with
#: C{--attestation simulated}).
_SIMULATED_DEFAULTS: dict[str, object] = {
    "simulated-state": None,
    "simulated-mrenclave": DEFAULT_MRENCLAVE.hex(),
    "simulated-mrsigner": DEFAULT_MRSIGNER.hex(),
    "simulated-isv-prod-id": 0,
    "simulated-isv-svn": 0,
    "simulated-tcb-status": "UpToDate",
    "simulated-advisory-ids": "",
    "simulated-debug": 0,
}


def parse_duration(text: str) -> float:
    """
    Seconds in a duration such as C{30s}, C{10m}, C{1h}, C{500ms} or
    C{90} (seconds).

    @param text: The duration.
    @return: Seconds, more than zero.
    @raise usage.UsageError: If it is malformed or not positive.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        msg = f"--rotate {text}: a duration is a number and ms, s, m or h"
        raise usage.UsageError(msg)
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds <= 0:
        msg = f"--rotate {text}: the duration must be more than zero"
        raise usage.UsageError(msg)
    return seconds


class _TLSFactory(TLSMemoryBIOFactory):
    """
    TLS around the site, whose log prefix says what is serving (and
    says so loudly when it is unattested or simulated).
    """

    def __init__(
        self, *args: Any, insecure: bool = False, simulated: bool = False
    ) -> None:
        """
        @param args: What L{TLSMemoryBIOFactory} takes.
        @param insecure: Whether the identity is served unattested.
        @param simulated: Whether the evidence is simulated.
        """
        super().__init__(*args)
        self._insecure = insecure
        self._simulated = simulated

    def logPrefix(self) -> str:
        """
        C{attestd (TLS)}, marked when unattested or simulated.
        """
        # XXX: attestd's events and this prefix say "simulated"; twistd's
        # own lines (start-up, "(TCP Port N Closed)") cannot be marked.
        if self._insecure:
            return "attestd (TLS, INSECURE UNATTESTED)"
        if self._simulated:
            return "attestd (TLS, simulated attestation)"
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
    @ivar keeper: Rotates the identity and makes fresh quotes; L{None}
        when the service was made without a source.
    @ivar rotate: Seconds between rotations, or L{None}.
    @ivar simulated: Whether the evidence served is simulated.
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
        keeper: IdentityKeeper | None = None,
        rotate: float | None = None,
    ) -> None:
        """
        @param reactor: The reactor to listen with.
        @param site: The site to serve.
        @param creator: Makes the TLS connections.
        @param descriptions: C{--listen} endpoint descriptions.
        @param drain_timeout: Seconds in-flight requests get at stop.
        @param threadpool: The thread pool running a WSGI application, if
            any: stopping waits until its calls have returned.
        @param keeper: Keeps the identity up to date with its source.
        @param rotate: Seconds between rotations (needs C{keeper}), or
            L{None} for none.
        """
        self._reactor = reactor
        self._threadpool = threadpool
        self.site = site
        self.context_factory = creator
        self.keeper = keeper
        self.rotate = rotate
        self._descriptions = list(descriptions)
        self._drain_timeout = drain_timeout
        insecure = creator.identity.evidence is None
        self.simulated = creator.identity.simulated
        self._log = MarkedLogger("attestd.daemon", simulated=self.simulated)
        self._factory = _TLSFactory(
            creator, False, site, insecure=insecure, simulated=self.simulated
        )
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
        Log what is serving, and where; start rotating if asked to.
        """
        super().startService()
        source = None if self.keeper is None else self.keeper.source
        log_start(
            self.context_factory.identity,
            self.addresses,
            attestation=None if source is None else source.kind,
        )
        if isinstance(source, SimulatedSource):
            self._log_simulated(source)
        if self.keeper is not None and self.rotate is not None:
            self._log.info(
                "Rotating the certificate every {rotate_seconds} s "
                "({attestation} source)",
                rotate_seconds=self.rotate,
                attestation=self.keeper.source.kind,
            )
            self.keeper.start(self.rotate)

    def _log_simulated(self, source: SimulatedSource) -> None:
        """
        Log the command that verifies this server's simulated evidence.
        """
        url = verify_url(self.ports[0].getHost()) if self.ports else None
        arguments = None if url is None else source.verify_arguments(url)
        if arguments is None:
            self._log.warn(
                "The simulated platform's TCB status is {tcb_status}: no "
                "verifier policy accepts this server",
                tcb_status=source.tcb_status,
                trust_root=str(source.root_path),
                collateral=str(source.collateral_path),
            )
            return
        self._log.info(
            "This server's attestation is SIMULATED, not real SGX; "
            "verify it with: {verify_command}",
            verify_command=shlex.join(arguments),
            trust_root=str(source.root_path),
            collateral=str(source.collateral_path),
            tcb_status=source.tcb_status,
        )

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting connections, let requests in progress finish for
        at most the drain timeout, then close what is left.

        @return: Fires when every connection is closed.
        """
        super().stopService()
        if self.keeper is not None:
            self.keeper.stop()
        self._log.info(
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
            self._log.info("attestd stopped: every connection is closed")

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
                self._log.warn(
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


def verify_url(address: Any) -> str:
    """
    The C{https://} URL a local client reaches a bound address at (the
    loopback address for a wildcard one).

    @param address: The port's L{IAddress}.
    @return: The URL.
    """
    host = getattr(address, "host", "127.0.0.1")
    if host in ("0.0.0.0", ""):  # noqa: S104 (a bound wildcard)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{getattr(address, 'port', 443)}"


def log_start(
    identity: ServerIdentity,
    addresses: Sequence[str],
    *,
    attestation: str | None = None,
) -> None:
    """
    Log the one start event: what enclave is serving, and where.

    @param identity: What is served.
    @param addresses: Where, as C{host:port}.
    @param attestation: The attestation source's kind, if known.
    """
    log = MarkedLogger("attestd.daemon", simulated=identity.simulated)
    listening = ", ".join(addresses)
    evidence = identity.evidence
    if evidence is None:
        log.warn(
            "INSECURE UNATTESTED: attestd serving a certificate WITHOUT "
            "valid RA-TLS evidence ({reason}); certificate_sha256="
            "{certificate_sha256}; listening on {listening}",
            insecure_unattested=True,
            attestation=attestation,
            reason=identity.unattested_reason,
            certificate_sha256=identity.certificate_sha256,
            addresses=list(addresses),
            listening=listening,
        )
        return
    report = evidence.quote.report
    text = _SIMULATED_START_FORMAT if identity.simulated else _START_FORMAT
    log.info(
        text,
        insecure_unattested=False,
        attestation=attestation,
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


_START_FORMAT = (
    "attestd serving an RA-TLS certificate with {evidence} evidence: "
    "mrenclave={mrenclave} mrsigner={mrsigner} "
    "isv_prod_id={isv_prod_id} isv_svn={isv_svn} debug={debug} "
    "certificate_sha256={certificate_sha256}; listening on {listening}"
)

_SIMULATED_START_FORMAT = (
    "attestd serving a SIMULATED RA-TLS certificate (simulated "
    "attestation, not real SGX) with {evidence} evidence: "
    "mrenclave={mrenclave} mrsigner={mrsigner} "
    "isv_prod_id={isv_prod_id} isv_svn={isv_svn} debug={debug} "
    "certificate_sha256={certificate_sha256}; listening on {listening}"
)

#: What C{auto} says when there is nothing to attest with.
NO_ATTESTATION = (
    "no RA-TLS certificate at {cert} and no {attestation_dir}: run "
    "inside Gramine (gramine-ratls writing {cert}, or --attestation "
    "gramine), or use --attestation simulated for development "
    "(simulated evidence, not real SGX)"
)


def choose_source(options: Options) -> AttestationSource:
    """
    The attestation source the options ask for.

    C{auto} means C{files} when C{--cert} was given or the certificate
    file exists, else C{gramine} when the attestation directory exists;
    otherwise the start stops with L{NO_ATTESTATION}.

    @param options: Parsed options.
    @return: The source (for C{gramine} and C{simulated}, ready to
        quote).
    @raise AttestdError: If it cannot be used.
    """
    kind = options["attestation"]
    cert = Path(options["cert"])
    attestation_dir = Path(options["attestation-dir"])
    if kind == "auto":
        if options.cert_given or cert.exists():
            kind = "files"
        elif attestation_dir.exists():
            kind = "gramine"
        else:
            msg = NO_ATTESTATION.format(
                cert=cert, attestation_dir=attestation_dir
            )
            raise ConfigurationError(msg)
    if kind == "files":
        return FilesSource(
            cert,
            Path(options["key"]),
            insecure_unattested=bool(options["insecure-unattested"]),
        )
    if kind == "gramine":
        return GramineSource(attestation_dir)
    state = options["simulated-state"]
    advisories = [
        a.strip()
        for a in options["simulated-advisory-ids"].split(",")
        if a.strip()
    ]
    return SimulatedSource(
        default_state_dir() if state is None else Path(state),
        enclave=options["simulated-enclave"],
        tcb_status=options["simulated-tcb-status"],
        advisory_ids=advisories,
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
    source = choose_source(options)
    identity = source.load()
    creator = ServerContextFactory(identity)
    keeper = IdentityKeeper(reactor, source, creator)
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

    root = RootResource(
        lambda: creator.identity,
        app,
        ready,
        connection_identity=creator.identity_for,
        fresh=keeper.fresh_quote if source.in_process else None,
        simulated=source.simulated,
    )
    site = Site(root, reactor, simulated=source.simulated)
    site_holder.append(site)
    return AttestdService(
        reactor,
        site,
        creator,
        options["listen"],
        drain_timeout=options["drain-timeout"],
        threadpool=reactor.getThreadPool() if options["wsgi"] else None,
        keeper=keeper,
        rotate=options["rotate"],
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
