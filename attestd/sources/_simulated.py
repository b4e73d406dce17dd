"""
The simulated source (C{--attestation simulated}): attestd's stand-in for
Intel's infrastructure (L{attestd._simulated}) quotes a configurable
enclave, so that the daemon, its clients and the verifier run unchanged
on machines without SGX.

Its state directory keeps the simulated PKI (so clients can keep
trusting its root across restarts) and two files for clients, written at
start and at every rotation: C{root.pem}, the simulated root to pass to
C{attestd verify --trust-root}, and C{collateral.json}, collateral for
the simulated platform (C{--collateral}).  The evidence is simulated:
Intel's root never accepts it, and everything the daemon says about it
says so.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from attestd._policy import TCB_STATUS_REQUIREMENTS
from attestd._quote import FLAG_DEBUG
from attestd._simulated import (
    TCB_STATUSES,
    CollateralOptions,
    SimulatedCollateral,
    SimulatedEnclave,
    SimulatedPKI,
    tcb_levels_with_status,
)
from attestd._tls import ServerIdentity
from attestd.errors import AttestationSourceError, ConfigurationError
from attestd.sources._base import InProcessSource

#: The files written for clients in the state directory.
COLLATERAL_FILE = "collateral.json"
ROOT_FILE = "root.pem"

#: Collateral is issued this long before "now", so that a verifier whose
#: clock is a little behind still accepts it.
_ISSUE_BACKDATE = datetime.timedelta(minutes=5)

#: The C{attestd verify} flag that allows each policy switch.
_ALLOW_FLAGS = {
    "allow_outdated_tcb_insecure": "--allow-outdated",
    "allow_hw_config_needed": "--allow-hw-config",
    "allow_sw_hardening_needed": "--allow-sw-hardening",
}


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """
    Where the simulated state lives unless told:
    C{$XDG_STATE_HOME/attestd-simulated}, or
    C{~/.local/state/attestd-simulated}.

    @param environ: The environment (default: C{os.environ}).
    @return: The directory.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "attestd-simulated"


def _write(path: Path, data: bytes) -> None:
    """
    Replace C{path} with C{data} atomically (mode 0644: nothing secret).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


class SimulatedSource(InProcessSource):
    """
    Quotes through a simulated quoting enclave whose PKI is kept in a
    state directory.

    @ivar state_dir: The state directory.
    @ivar enclave: The simulated enclave (measurements, attributes).
    @ivar tcb_status: The TCB status the published collateral gives the
        platform.
    @ivar advisory_ids: The advisories of that TCB level.
    @ivar pki: The simulated PKI.
    """

    kind = "simulated"
    simulated = True

    def __init__(
        self,
        state_dir: Path,
        *,
        enclave: SimulatedEnclave | None = None,
        tcb_status: str = "UpToDate",
        advisory_ids: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        Load (or create) the PKI in C{state_dir}.

        @param state_dir: The state directory; created if missing.
        @param enclave: The enclave to quote; the default simulated one
            if L{None}.
        @param tcb_status: One of Intel's seven TCB statuses.
        @param advisory_ids: Advisory IDs of the platform's TCB level.
        @param clock: Returns the current time, as POSIX seconds.
        @raise ConfigurationError: If the status is unknown.
        @raise AttestationSourceError: If the state cannot be loaded or
            created.
        """
        if tcb_status not in TCB_STATUSES:
            msg = (
                f"unknown TCB status {tcb_status!r}; one of "
                f"{', '.join(TCB_STATUSES)}"
            )
            raise ConfigurationError(msg)
        self.state_dir = state_dir.absolute()
        self.enclave = SimulatedEnclave() if enclave is None else enclave
        self.tcb_status = tcb_status
        self.advisory_ids = tuple(advisory_ids)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.pki = SimulatedPKI.load_or_create(self.state_dir, now=clock())
        except (ConfigurationError, OSError) as e:
            msg = f"simulated state {self.state_dir}: {e}"
            raise AttestationSourceError(msg) from e
        self._quoting_enclave = self.pki.quoting_enclave(self.enclave)

    @property
    def root_path(self) -> Path:
        """
        The simulated root certificate (PEM) for clients.
        """
        return self.state_dir / ROOT_FILE

    @property
    def collateral_path(self) -> Path:
        """
        The collateral bundle for clients.
        """
        return self.state_dir / COLLATERAL_FILE

    def quote(self, report_data: bytes) -> bytes:
        """
        A simulated quote of the enclave with C{report_data}.
        """
        return self._quoting_enclave.quote_for(report_data)

    def collateral(self) -> SimulatedCollateral:
        """
        Collateral for the platform, issued now, with the configured TCB
        status and advisories.

        @return: The collateral.
        """
        now = datetime.datetime.fromtimestamp(
            self._clock(), datetime.timezone.utc
        )
        options = CollateralOptions(
            tcb_levels=tcb_levels_with_status(
                self.tcb_status, self.advisory_ids, platform=self.pki.platform
            )
        )
        return self.pki.issue_collateral(now - _ISSUE_BACKDATE, options)

    def publish(self) -> SimulatedCollateral:
        """
        Write C{root.pem} and a new C{collateral.json} into the state
        directory.

        @return: The collateral written.
        @raise AttestationSourceError: If they cannot be written.
        """
        collateral = self.collateral()
        with self._lock:
            try:
                _write(self.root_path, self.pki.root_certificate_pem())
                _write(
                    self.collateral_path,
                    collateral.collateral_json().encode("utf-8"),
                )
            except OSError as e:
                msg = (
                    f"cannot write the simulated root and collateral in "
                    f"{self.state_dir}: {e.strerror or e}"
                )
                raise AttestationSourceError(msg) from e
        return collateral

    def mint(self) -> ServerIdentity:
        """
        Publish fresh collateral, then mint a new identity.
        """
        self.publish()
        return super().mint()

    def verify_arguments(self, url: str) -> list[str] | None:
        """
        The C{attestd verify} command line that accepts this source's
        certificates at C{url}.

        @param url: The server's C{https://} URL.
        @return: The arguments, beginning with C{attestd}; L{None} when
            no policy accepts the configured TCB status (C{Revoked}).
        """
        required = TCB_STATUS_REQUIREMENTS.get(self.tcb_status)
        if required is None:
            return None
        enclave = self.enclave
        arguments = [
            "attestd",
            "verify",
            url,
            "--trust-root",
            str(self.root_path),
            "--collateral",
            str(self.collateral_path),
            "--mrenclave",
            enclave.mrenclave.hex(),
            "--mrsigner",
            enclave.mrsigner.hex(),
            "--isv-prod-id",
            str(enclave.isv_prod_id),
            "--isv-svn",
            str(enclave.isv_svn),
        ]
        arguments.extend(_ALLOW_FLAGS[name] for name in required)
        if self.enclave_is_debug:
            arguments.append("--allow-debug")
        return arguments

    @property
    def enclave_is_debug(self) -> bool:
        """
        Whether the simulated enclave is a debug enclave.
        """
        return bool(self.enclave.flags & FLAG_DEBUG)
