"""
The daemon's side of its attestation source: the source's blocking calls
run in daemon threads of their own, the certificate is rotated on a
schedule, and fresh quotes are answered, without ever blocking the
reactor.

The calls do not use the reactor's thread pool: Twisted joins its
threads when the reactor stops, so one call stuck on the attestation
device would keep the process from exiting.  A daemon thread left stuck
does not.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from attestd._tls import ServerContextFactory, ServerIdentity
from attestd.errors import AttestationBusyError, AttestdError
from attestd.sources._base import AttestationSource
from attestd.sources._log import MarkedLogger

#: Most calls to the source in progress at once; beyond, a call fails
#: at once (a fresh quote is answered 503).
MAX_SOURCE_CALLS = 10

_T = TypeVar("_T")


class IdentityKeeper:
    """
    Keeps the identity a L{ServerContextFactory} presents up to date with
    an L{AttestationSource}.

    A rotation asks the source for a new identity (in a thread) and hands
    it to the context factory: new connections get it, open ones keep the
    certificate they began with.  A rotation that fails leaves the
    current identity in place and logs why; rotations never overlap.

    @ivar source: The attestation source.
    @ivar creator: The context factory whose identity is kept.
    @ivar rotations: How many rotations replaced the identity.
    @ivar failures: How many rotations failed.
    @ivar calls: How many calls to the source are in progress.
    """

    def __init__(
        self,
        reactor: Any,
        source: AttestationSource,
        creator: ServerContextFactory,
    ) -> None:
        """
        @param reactor: The reactor.
        @param source: The attestation source.
        @param creator: The context factory to keep up to date.
        """
        self._reactor = reactor
        self.calls = 0
        self.source = source
        self.creator = creator
        self.rotations = 0
        self.failures = 0
        self._loop: LoopingCall | None = None
        self._done: Deferred[LoopingCall] | None = None
        self._log = MarkedLogger(
            "attestd.rotation", simulated=source.simulated
        )

    def _in_thread(self, f: Callable[..., _T], *args: object) -> Deferred[_T]:
        """
        Call C{f(*args)} in a daemon thread of its own.

        @return: Fires (in the reactor thread) with what it returned, or
            fails with what it raised; fails at once with
            L{AttestationBusyError} when L{MAX_SOURCE_CALLS} calls are
            in progress.
        """
        if self.calls >= MAX_SOURCE_CALLS:
            msg = (
                f"attestation source busy: {self.calls} calls already in "
                "progress"
            )
            return fail(AttestationBusyError(msg))
        d: Deferred[_T] = Deferred()
        reactor = self._reactor

        def deliver(outcome: object) -> None:
            self.calls -= 1
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)  # type: ignore[arg-type]

        def work() -> None:
            outcome: object
            try:
                outcome = f(*args)
            except BaseException:  # noqa: BLE001 (handed to the Deferred)
                outcome = Failure()
            # A reactor already gone may refuse the call: nobody waits.
            with contextlib.suppress(Exception):
                reactor.callFromThread(deliver, outcome)

        self.calls += 1
        thread = threading.Thread(
            target=work, name=f"attestd {self.source.kind} source", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            self.calls -= 1
            return fail()
        return d

    def rotate(self) -> Deferred[bool]:
        """
        Replace the identity with a new one from the source.

        @return: Fires with C{True} when the identity was replaced, with
            C{False} when the source gave the same certificate or the
            rotation failed; never fails.
        """
        previous = self.creator.identity
        d = self._in_thread(self.source.renew)

        def swap(identity: ServerIdentity) -> bool:
            if identity.certificate_der == previous.certificate_der:
                return False
            self.creator.set_identity(identity)
            self.rotations += 1
            self._log.info(
                "Rotated the RA-TLS certificate ({attestation} source): "
                "new connections get certificate_sha256="
                "{certificate_sha256}; connections already open keep "
                "{previous_certificate_sha256}",
                attestation=self.source.kind,
                certificate_sha256=identity.certificate_sha256,
                previous_certificate_sha256=previous.certificate_sha256,
            )
            return True

        def failed(failure: Failure) -> bool:
            self.failures += 1
            current = self.creator.identity.certificate_sha256
            if failure.check(AttestdError):
                self._log.warn(
                    "Certificate rotation failed ({attestation} source), "
                    "still serving certificate_sha256={certificate_sha256}: "
                    "{reason}",
                    attestation=self.source.kind,
                    certificate_sha256=current,
                    reason=str(failure.value),
                )
            else:
                self._log.failure(
                    "Certificate rotation failed unexpectedly "
                    "({attestation} source), still serving "
                    "certificate_sha256={certificate_sha256}",
                    failure=failure,
                    attestation=self.source.kind,
                    certificate_sha256=current,
                    reason=f"{type(failure.value).__name__}: {failure.value}",
                )
            return False

        return d.addCallback(swap).addErrback(failed)

    def start(self, interval: float) -> None:
        """
        Rotate every C{interval} seconds from now on (the first time
        C{interval} seconds from now).

        @param interval: Seconds between rotations; a rotation still in
            progress delays the next one.
        """
        if self._loop is not None:
            return
        loop = LoopingCall(self.rotate)
        loop.clock = self._reactor
        self._loop = loop
        self._done = loop.start(interval, now=False)

    def stop(self) -> None:
        """
        Stop rotating.
        """
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def fresh_quote(
        self, identity: ServerIdentity, nonce: bytes
    ) -> Deferred[bytes]:
        """
        A quote binding C{identity}'s key and C{nonce}, made in a daemon
        thread.

        @param identity: The identity the client's connection presents.
        @param nonce: The client's nonce.
        @return: Fires with the quote, or fails with
            L{attestd.errors.FreshnessUnavailableError} (a source that
            cannot quote), L{attestd.errors.NonceParseError},
            L{AttestationBusyError} (too many in progress, or the device
            stuck) or the source's error (such as
            L{attestd.errors.AttestationTimeoutError}).
        """
        if not self.source.in_process:
            try:
                self.source.fresh_quote(identity.spki_der, nonce)
            except AttestdError:
                return fail()
        d: Deferred[bytes] = self._in_thread(
            self.source.fresh_quote, identity.spki_der, nonce
        )
        return d
