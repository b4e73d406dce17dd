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
stops the start, a bad option included, is reported in one line on
standard error, with exit status 1.  With C{--rotate} it replaces its certificate on a schedule.
On SIGTERM it stops accepting connections, lets requests in progress
finish (for at most C{--drain-timeout} seconds), then exits.
"""

from __future__ import annotations

import ipaddress
import math
import re
import shlex
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import frozen
from twisted.application.service import MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.task import deferLater
from twisted.logger import FileLogObserver, jsonFileLogObserver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import log, usage
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
from attestd.sources._device import (
    DEFAULT_ATTESTATION_TIMEOUT,
    MAX_ATTESTATION_TIMEOUT,
)

#: Listener types accepted by C{--listen}; each is wrapped in TLS here.
LISTENER_TYPES = ("tcp", "tcp6", "systemd")

#: Address families accepted for C{systemd:} listeners.
SYSTEMD_DOMAINS = {"INET": socket.AF_INET, "INET6": socket.AF_INET6}

DEFAULT_LISTEN = "tcp:8080:interface=0.0.0.0"

#: The forms C{--listen} accepts, for messages.
LISTEN_FORMS = (
    "tcp:PORT[:interface=ADDR][:backlog=N], "
    "tcp6:PORT[:interface=ADDR][:backlog=N] or "
    "systemd:domain=INET|INET6:index=N (or :name=NAME)"
)

#: The parameters each listener type takes by name.
_LISTENER_PARAMETERS = {
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "interface", "backlog"),
    "systemd": ("domain", "index", "name"),
}

#: Where gramine-ratls writes inside the enclave: Gramine's tmpfs /tmp is
#: enclave memory, so the key never reaches the host.
DEFAULT_CERT = "/tmp/ra-tls.crt.pem"  # noqa: S108

#: The values of C{--attestation}.
ATTESTATION_KINDS = ("auto", "files", "gramine", "simulated")

#: Default of C{--drain-timeout}, in seconds.
DEFAULT_DRAIN_TIMEOUT = 10.0

#: Largest C{--drain-timeout}: one day.
MAX_DRAIN_TIMEOUT = 86400.0

#: Largest C{--rotate} interval: 365 days.
MAX_ROTATE = 365 * 86400.0
#: The shortest --rotate: each rotation makes a P-384 key and a quote, so
#: a shorter period would only burn the CPU (and the Quoting Enclave).
MIN_ROTATE = 0.1

#: Default of C{--max-body-size}: 1 MiB.
DEFAULT_MAX_BODY_SIZE = 1024 * 1024

#: Largest C{--max-body-size}: 1 TiB.
MAX_MAX_BODY_SIZE = 1024**4

#: Seconds in each unit of a C{--rotate} duration.
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?")
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")

#: Bytes in each unit of a C{--max-body-size} (powers of 1024).
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"([0-9]+)(?:([kmg])(?:ib)?|b)?", re.IGNORECASE)

#: The simulated enclave's flags without DEBUG: INIT and MODE64BIT.
_SIMULATED_FLAGS = SimulatedEnclave().flags


def json_log_observer() -> FileLogObserver:
    """
    A log observer writing one JSON object per line to standard output,
    for C{twistd --logger attestd.tap.json_log_observer}.

    @return: The observer.
    """
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


class Options(usage.Options):
    """
    Options of the C{attestd} twistd plugin.

    Parsing only collects the values: L{check_options} checks them (so
    that a bad value is reported by L{makeService} in one line, not after
    twistd's whole usage text).
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
            "attestation-timeout",
            None,
            None,
            "Seconds each operation on the attestation directory may take "
            "(more than 0, at most 3600; default "
            f"{DEFAULT_ATTESTATION_TIMEOUT:g}): a quote not read by then "
            "stops the start, fails the rotation or is answered 503.",
        ],
        [
            "rotate",
            None,
            None,
            "Mint a new key and certificate every DURATION (30s, 10m, "
            "1h; at most 365 days); with --attestation files, read the "
            "files again.",
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
            "0",
            "ISV_PROD_ID of the simulated enclave.",
        ],
        [
            "simulated-isv-svn",
            None,
            "0",
            "ISV_SVN of the simulated enclave.",
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
            "10",
            "Seconds (0 to 86400) to let requests in progress finish "
            "after SIGTERM before their connections are cut.",
        ],
        [
            "max-body-size",
            None,
            "1MiB",
            "Largest request body accepted, in bytes or with K, M or G "
            "(KiB, MiB, GiB); a larger one is answered 413 and its "
            "connection closed, before any of it is read when its length "
            "is declared.  0 refuses every body.",
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
        tcp:8080:interface=0.0.0.0).  Accepted:
        tcp:PORT[:interface=ADDR][:backlog=N], the same with tcp6:, and
        systemd:domain=INET|INET6:index=N (or :name=NAME).
        """
        self["listen"].append(description)

    # --help shows this docstring with its line breaks as runs of spaces.
    opt_listen.__doc__ = " ".join((opt_listen.__doc__ or "").split())

    def postOptions(self) -> None:
        """
        Listen on L{DEFAULT_LISTEN} when no C{--listen} is given.  The
        values are checked by L{check_options}.
        """
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]


@frozen
class Listener:
    """
    One checked C{--listen} endpoint.

    @ivar description: The description as given.
    @ivar kind: C{tcp}, C{tcp6} or C{systemd}.
    @ivar port: The TCP port (C{tcp}, C{tcp6}).
    @ivar interface: The address to bind (C{tcp}, C{tcp6}); L{None} for
        the type's default (every IPv4, or every IPv6, address).
    @ivar backlog: The listen queue length (C{tcp}, C{tcp6}).
    @ivar domain: C{INET} or C{INET6} (C{systemd}).
    @ivar index: The index of the socket systemd passed (C{systemd}).
    @ivar name: The name of the socket systemd passed (C{systemd}).
    """

    description: str
    kind: str
    port: int = 0
    interface: str | None = None
    backlog: int = 50
    domain: str | None = None
    index: int | None = None
    name: str | None = None

    def endpoint(self, reactor: Any) -> IStreamServerEndpoint:
        """
        The endpoint to listen on.

        @param reactor: The reactor to listen with.
        @return: A TCP endpoint, or the socket systemd passed.
        @raise ConfigurationError: If systemd passed no such socket.
        """
        if self.kind == "tcp":
            return endpoints.TCP4ServerEndpoint(
                reactor, self.port, self.backlog, self.interface or ""
            )
        if self.kind == "tcp6":
            return endpoints.TCP6ServerEndpoint(
                reactor, self.port, self.backlog, self.interface or "::"
            )
        if self.name is not None:
            chosen = f"name={_escape_endpoint(self.name)}"
        else:
            chosen = f"index={self.index}"
        try:
            endpoint: IStreamServerEndpoint = endpoints.serverFromString(
                reactor, f"systemd:domain={self.domain}:{chosen}"
            )
        except (IndexError, KeyError) as e:
            msg = (
                f"--listen {self.description}: systemd passed no such "
                "socket (LISTEN_FDS and LISTEN_PID name none for this "
                "process)"
            )
            raise ConfigurationError(msg) from e
        return endpoint


def _escape_endpoint(text: str) -> str:
    """
    C{text} escaped for an endpoint description.
    """
    return re.sub(r"([\\:=])", r"\\\1", text)


def _split_endpoint(description: str) -> list[tuple[str | None, str]]:
    """
    Split an endpoint description as Twisted reads one: parts separated
    by C{:}, each C{key=value} or a bare value; a backslash makes the
    next character literal.

    @return: The parts, as C{(key, value)} with C{key} L{None} for a bare
        value.
    @raise ValueError: If the description ends with a lone backslash.
    """
    parts: list[tuple[str | None, str]] = []
    key: str | None = None
    text = ""
    characters = iter(description)
    for character in characters:
        if character == "\\":
            escaped = next(characters, None)
            if escaped is None:
                msg = "it ends with a lone backslash"
                raise ValueError(msg)
            text += escaped
        elif character == ":":
            parts.append((key, text))
            key, text = None, ""
        elif character == "=" and key is None:
            key, text = text, ""
        else:
            text += character
    parts.append((key, text))
    return parts


def _listen_error(description: str, problem: str) -> ConfigurationError:
    return ConfigurationError(
        f"--listen {shlex.quote(description)}: {problem}"
    )


def parse_listener(description: str) -> Listener:
    """
    Check one C{--listen} description.

    Accepted: C{tcp:PORT[:interface=ADDR][:backlog=N]} (C{port=PORT} may
    name the port), the same with C{tcp6}, and
    C{systemd:domain=INET|INET6:index=N} or C{...:name=NAME}.  The type
    is read case-insensitively; a parameter given twice, a parameter the
    type does not take, an interface that is not an IP address and a
    port out of range are refused.  There is no other type: attestd
    wraps every listener in TLS itself.

    @param description: What C{--listen} gave.
    @return: The listener.
    @raise ConfigurationError: If it is not acceptable.
    """
    if not description.strip():
        raise _listen_error(
            description, f"the endpoint is empty; use {LISTEN_FORMS}"
        )
    try:
        parts = _split_endpoint(description)
    except ValueError as e:
        raise _listen_error(description, str(e)) from e
    first_key, first = parts[0]
    if first_key is not None:
        raise _listen_error(
            description,
            f"no listener type; every listener is TLS, configured by "
            f"attestd; use {LISTEN_FORMS}",
        )
    kind = first.lower()
    if kind not in LISTENER_TYPES:
        raise _listen_error(
            description,
            f"{first!r} is not a listener type here: every listener is "
            f"TLS, configured by attestd; use {LISTEN_FORMS}",
        )
    allowed = _LISTENER_PARAMETERS[kind]
    given: dict[str, str] = {}
    for key, value in parts[1:]:
        name = key
        if key is None:
            if kind == "systemd" or "port" in given:
                raise _listen_error(
                    description, _unexpected(value, kind, given)
                )
            name = "port"
        if name not in allowed:
            raise _listen_error(
                description,
                f"unknown parameter {name}= ({kind} listeners take "
                f"{', '.join(p + '=' for p in allowed)})",
            )
        if name in given:
            raise _listen_error(description, f"{name} given twice")
        given[name] = value
    if kind == "systemd":
        return _systemd_listener(description, given)
    return _tcp_listener(description, kind, given)


def _unexpected(value: str, kind: str, given: dict[str, str]) -> str:
    """
    What to say of a bare value where a C{key=value} is expected.
    """
    named = ", ".join(f"{p}=" for p in _LISTENER_PARAMETERS[kind])
    problem = f"unexpected {value!r}; give {named} by name"
    if "interface" in given:
        problem += " (write the colons of an IPv6 interface as \\:)"
    return problem


def _tcp_listener(
    description: str, kind: str, given: dict[str, str]
) -> Listener:
    """
    The C{tcp} or C{tcp6} listener of checked parameters.
    """
    if "port" not in given:
        raise _listen_error(description, f"no port; use {LISTEN_FORMS}")
    port = _small_number(given["port"], 0, 65535)
    if port is None:
        raise _listen_error(
            description,
            f"port {given['port']!r} is not a number from 0 to 65535",
        )
    backlog = _small_number(given.get("backlog", "50"), 1, 65535)
    if backlog is None:
        raise _listen_error(
            description,
            f"backlog {given['backlog']!r} is not a number from 1 to 65535",
        )
    interface = given.get("interface")
    if interface is not None:
        try:
            ipaddress.ip_address(interface)
        except ValueError as e:
            raise _listen_error(
                description,
                f"interface {interface!r} is not an IP address",
            ) from e
    return Listener(
        description=description,
        kind=kind,
        port=port,
        interface=interface,
        backlog=backlog,
    )


def _systemd_listener(description: str, given: dict[str, str]) -> Listener:
    """
    The C{systemd} listener of checked parameters.
    """
    domain = given.get("domain", "").upper()
    if domain not in SYSTEMD_DOMAINS:
        raise _listen_error(
            description,
            "systemd listeners need domain=INET or domain=INET6",
        )
    if ("index" in given) == ("name" in given):
        raise _listen_error(
            description,
            "systemd listeners need one of index=N and name=NAME",
        )
    index = None
    if "index" in given:
        index = _small_number(given["index"], 0, 65535)
        if index is None:
            raise _listen_error(
                description, f"index {given['index']!r} is not a number"
            )
    name = given.get("name")
    if name == "":
        raise _listen_error(description, "name= is empty")
    return Listener(
        description=description,
        kind="systemd",
        domain=domain,
        index=index,
        name=name,
    )


def _small_number(text: str, low: int, high: int) -> int | None:
    """
    The decimal number C{text} when it is from C{low} to C{high}.
    """
    if re.fullmatch(r"[0-9]{1,6}", text) is None:
        return None
    number = int(text)
    return number if low <= number <= high else None


def parse_duration(text: str) -> float:
    """
    Seconds in a C{--rotate} duration such as C{30s}, C{10m}, C{1h},
    C{500ms} or C{90} (seconds).

    @param text: The duration.
    @return: Seconds, from L{MIN_ROTATE} to L{MAX_ROTATE}.
    @raise ConfigurationError: If it is malformed or out of range.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        msg = f"--rotate {text}: a duration is a number and ms, s, m or h"
        raise ConfigurationError(msg)
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds <= 0:
        msg = f"--rotate {text}: the duration must be more than zero"
        raise ConfigurationError(msg)
    if seconds < MIN_ROTATE:
        msg = f"--rotate {text}: the duration must be at least 100ms"
        raise ConfigurationError(msg)
    if not seconds <= MAX_ROTATE:
        msg = f"--rotate {text}: the duration must be at most 365 days"
        raise ConfigurationError(msg)
    return seconds


def parse_seconds(text: str) -> float:
    """
    The C{--drain-timeout}: a decimal number of seconds from 0 to
    L{MAX_DRAIN_TIMEOUT}.

    @param text: The value given.
    @return: Seconds.
    @raise ConfigurationError: If it is malformed or out of range.
    """
    if _SECONDS.fullmatch(text.strip()) is None:
        msg = (
            f"--drain-timeout {text}: give a number of seconds from 0 to 86400"
        )
        raise ConfigurationError(msg)
    seconds = float(text)
    if not (math.isfinite(seconds) and seconds <= MAX_DRAIN_TIMEOUT):
        msg = f"--drain-timeout {text}: at most 86400 seconds (one day)"
        raise ConfigurationError(msg)
    return seconds


def parse_size(text: str) -> int:
    """
    The C{--max-body-size}: bytes, or a number with C{K}, C{M} or C{G}
    (C{KiB}, C{MiB} and C{GiB} are the same: powers of 1024).

    @param text: The value given.
    @return: Bytes, from 0 to L{MAX_MAX_BODY_SIZE}.
    @raise ConfigurationError: If it is malformed or out of range.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        msg = (
            f"--max-body-size {text}: give a number of bytes, or one "
            "with K, M or G (1048576, 512K, 1M)"
        )
        raise ConfigurationError(msg)
    unit = (match.group(2) or "").lower()
    size = int(match.group(1)) * _SIZE_UNITS[unit]
    if size > MAX_MAX_BODY_SIZE:
        msg = f"--max-body-size {text}: at most 1 TiB"
        raise ConfigurationError(msg)
    return size


def parse_attestation_timeout(text: str | None, kind: str) -> float:
    """
    The C{--attestation-timeout}: a decimal number of seconds, more than
    0 and at most L{MAX_ATTESTATION_TIMEOUT}.

    @param text: The value given, or L{None} for the default.
    @param kind: The C{--attestation} kind; only C{gramine} (and C{auto},
        which may choose it) has a device to time out.
    @return: Seconds.
    @raise ConfigurationError: If it is malformed, out of range or given
        for another kind.
    """
    if text is None:
        return DEFAULT_ATTESTATION_TIMEOUT
    if kind not in ("auto", "gramine"):
        msg = (
            f"--attestation-timeout is for --attestation gramine; the "
            f"{kind} source reads no attestation device"
        )
        raise ConfigurationError(msg)
    seconds = None
    if _SECONDS.fullmatch(text.strip()) is not None:
        seconds = float(text)
    if seconds is None or not (
        math.isfinite(seconds) and 0 < seconds <= MAX_ATTESTATION_TIMEOUT
    ):
        msg = (
            f"--attestation-timeout {text}: give a number of seconds, more "
            f"than 0 and at most {MAX_ATTESTATION_TIMEOUT:g}"
        )
        raise ConfigurationError(msg)
    return seconds


@frozen
class Settings:
    """
    The checked options.

    @ivar attestation: C{auto}, C{files}, C{gramine} or C{simulated}.
    @ivar cert: The certificate file (C{files}).
    @ivar cert_given: Whether C{--cert} was given.
    @ivar key: The key file (C{files}).
    @ivar insecure_unattested: Whether a certificate without valid
        evidence is served anyway (C{files}).
    @ivar attestation_dir: Gramine's attestation directory.
    @ivar attestation_timeout: Seconds each operation on it may take.
    @ivar listeners: Where to listen.
    @ivar rotate: Seconds between rotations, or L{None}.
    @ivar drain_timeout: Seconds requests in progress get at stop.
    @ivar max_body_size: Largest request body accepted, in bytes.
    @ivar app: C{module:attribute} of an C{IResource}, or L{None}.
    @ivar wsgi: C{module:attribute} of a WSGI application, or L{None}.
    @ivar simulated_state: The simulated state directory, or L{None} for
        the default.
    @ivar simulated_enclave: The simulated enclave (C{simulated}).
    @ivar simulated_tcb_status: The simulated platform's TCB status.
    @ivar simulated_advisory_ids: The simulated TCB level's advisories.
    """

    attestation: str
    cert: Path
    cert_given: bool
    key: Path
    insecure_unattested: bool
    attestation_dir: Path
    attestation_timeout: float
    listeners: tuple[Listener, ...]
    rotate: float | None
    drain_timeout: float
    max_body_size: int
    app: str | None
    wsgi: str | None
    simulated_state: Path | None
    simulated_enclave: SimulatedEnclave | None
    simulated_tcb_status: str
    simulated_advisory_ids: tuple[str, ...]


def check_options(options: Options) -> Settings:
    """
    Check the parsed options against each other.

    @param options: Parsed options.
    @return: What they ask for.
    @raise ConfigurationError: If they do not make sense; the message
        names the option.
    """
    kind = options["attestation"]
    if kind not in ATTESTATION_KINDS:
        msg = (
            f"--attestation {kind}: use one of {', '.join(ATTESTATION_KINDS)}"
        )
        raise ConfigurationError(msg)
    listeners = tuple(parse_listener(d) for d in options["listen"])
    if options["app"] and options["wsgi"]:
        msg = "--app and --wsgi cannot be used together"
        raise ConfigurationError(msg)
    drain_timeout = parse_seconds(str(options["drain-timeout"]))
    max_body_size = parse_size(str(options["max-body-size"]))
    rotate = None
    if options["rotate"] is not None:
        rotate = parse_duration(options["rotate"])
    _check_attestation(options, kind)
    attestation_timeout = parse_attestation_timeout(
        options["attestation-timeout"], kind
    )
    enclave = None
    if kind == "simulated":
        enclave = _simulated_enclave(options)
    state = options["simulated-state"]
    return Settings(
        attestation=kind,
        cert=Path(options["cert"]),
        cert_given=options.cert_given,
        key=Path(options["key"]),
        insecure_unattested=bool(options["insecure-unattested"]),
        attestation_dir=Path(options["attestation-dir"]),
        attestation_timeout=attestation_timeout,
        listeners=listeners,
        rotate=rotate,
        drain_timeout=drain_timeout,
        max_body_size=max_body_size,
        app=options["app"],
        wsgi=options["wsgi"],
        simulated_state=None if state is None else Path(state),
        simulated_enclave=enclave,
        simulated_tcb_status=options["simulated-tcb-status"],
        simulated_advisory_ids=tuple(
            a.strip()
            for a in options["simulated-advisory-ids"].split(",")
            if a.strip()
        ),
    )


def _check_attestation(options: Options, kind: str) -> None:
    """
    Check the attestation options against each other.

    @raise ConfigurationError: If they do not make sense.
    """
    if kind in ("gramine", "simulated"):
        if options.cert_given:
            msg = (
                f"--cert is for --attestation files; --attestation "
                f"{kind} mints its own certificate"
            )
            raise ConfigurationError(msg)
        if options["insecure-unattested"]:
            msg = (
                f"--insecure-unattested is for --attestation files; "
                f"--attestation {kind} always has evidence"
            )
            raise ConfigurationError(msg)
    given = [
        name
        for name, default in _SIMULATED_DEFAULTS.items()
        if options[name] != default
    ]
    if given and kind != "simulated":
        msg = f"--{given[0]} is for --attestation simulated only"
        raise ConfigurationError(msg)
    if kind == "simulated" and (
        options["simulated-tcb-status"] not in TCB_STATUSES
    ):
        msg = (
            f"--simulated-tcb-status {options['simulated-tcb-status']}: "
            f"use one of {', '.join(TCB_STATUSES)}"
        )
        raise ConfigurationError(msg)


def _simulated_enclave(options: Options) -> SimulatedEnclave:
    """
    The simulated enclave the options describe.

    @raise ConfigurationError: If a measurement or number is malformed.
    """
    values = {}
    for name in ("mrenclave", "mrsigner"):
        try:
            value = bytes.fromhex(options[f"simulated-{name}"])
        except ValueError:
            value = b""
        if len(value) != 32:
            msg = f"--simulated-{name} must be 64 hex digits"
            raise ConfigurationError(msg)
        values[name] = value
    numbers = {}
    for name in ("isv-prod-id", "isv-svn"):
        number = _small_number(str(options[f"simulated-{name}"]), 0, 0xFFFF)
        if number is None:
            msg = f"--simulated-{name} must be a number from 0 to 65535"
            raise ConfigurationError(msg)
        numbers[name] = number
    flags = _SIMULATED_FLAGS
    if options["simulated-debug"]:
        flags |= FLAG_DEBUG
    return SimulatedEnclave(
        mrenclave=values["mrenclave"],
        mrsigner=values["mrsigner"],
        isv_prod_id=numbers["isv-prod-id"],
        isv_svn=numbers["isv-svn"],
        flags=flags,
    )


#: The simulated options and their defaults (given only with
#: C{--attestation simulated}).
_SIMULATED_DEFAULTS: dict[str, object] = {
    "simulated-state": None,
    "simulated-mrenclave": DEFAULT_MRENCLAVE.hex(),
    "simulated-mrsigner": DEFAULT_MRSIGNER.hex(),
    "simulated-isv-prod-id": "0",
    "simulated-isv-svn": "0",
    "simulated-tcb-status": "UpToDate",
    "simulated-advisory-ids": "",
    "simulated-debug": 0,
}


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
        # XXX: attestd's events, this prefix and the port's start line say
        # "simulated"; twistd's own lines (start-up, "(TCP Port N Closed)")
        # cannot be marked.
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
        listeners: Sequence[Listener],
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
        @param listeners: Where to listen (see L{parse_listener}).
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
        self._listeners = list(listeners)
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
            for listener in self._listeners:
                description = listener.description
                endpoint = listener.endpoint(self._reactor)
                results: list[Any] = []
                # Twisted's "... starting on PORT" line is a legacy event:
                # the log context gives it the simulated field.
                context = {"simulated": True} if self.simulated else {}
                log.callWithContext(
                    context, endpoint.listen, self._factory
                ).addBoth(results.append)
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


def choose_source(settings: Settings) -> AttestationSource:
    """
    The attestation source the options ask for.

    C{auto} means C{files} when C{--cert} was given or the certificate
    file exists, else C{gramine} when the attestation directory exists;
    otherwise the start stops with L{NO_ATTESTATION}.

    @param settings: Checked options (see L{check_options}).
    @return: The source (for C{gramine} and C{simulated}, ready to
        quote).
    @raise AttestdError: If it cannot be used.
    """
    kind = settings.attestation
    cert = settings.cert
    attestation_dir = settings.attestation_dir
    if kind == "auto":
        if settings.cert_given or cert.exists():
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
            settings.key,
            insecure_unattested=settings.insecure_unattested,
        )
    if kind == "gramine":
        return GramineSource(
            attestation_dir, timeout=settings.attestation_timeout
        )
    state = settings.simulated_state
    enclave = settings.simulated_enclave
    return SimulatedSource(
        default_state_dir() if state is None else state,
        enclave=SimulatedEnclave() if enclave is None else enclave,
        tcb_status=settings.simulated_tcb_status,
        advisory_ids=list(settings.simulated_advisory_ids),
    )


def build_service(options: Options, reactor: Any) -> AttestdService:
    """
    Check the options, load the identity and the application, and make
    the service (its ports are not bound yet).

    @param options: Parsed options.
    @param reactor: The reactor to serve with.
    @return: The service.
    @raise AttestdError: If an option is wrong or something configured
        cannot be used.
    """
    settings = check_options(options)
    source = choose_source(settings)
    identity = source.load()
    creator = ServerContextFactory(identity)
    keeper = IdentityKeeper(reactor, source, creator)
    app: IResource | None = None
    try:
        if settings.app:
            app = app_resource(settings.app)
        elif settings.wsgi:
            app = wsgi_resource(
                settings.wsgi, reactor, simulated=source.simulated
            )
    except ConfigurationError as e:
        which = "--app" if settings.app else "--wsgi"
        msg = f"{which} {settings.app or settings.wsgi}: {e}"
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
    site = Site(
        root,
        reactor,
        simulated=source.simulated,
        max_body_size=settings.max_body_size,
    )
    site_holder.append(site)
    return AttestdService(
        reactor,
        site,
        creator,
        settings.listeners,
        drain_timeout=settings.drain_timeout,
        threadpool=reactor.getThreadPool() if settings.wsgi else None,
        keeper=keeper,
        rotate=settings.rotate,
    )


def makeService(options: Options) -> MultiService:
    """
    Make the daemon's service, with its ports already bound.

    Whatever stops the start (an option that makes no sense, a file that
    cannot be read or parsed, a key that does not match, missing
    evidence, a port in use) ends the process with status 1 and one line
    on standard error, without twistd's usage text.

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
