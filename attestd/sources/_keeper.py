"""
The daemon's side of its attestation source: the source's blocking calls
run in the reactor's thread pool, the certificate is rotated on a
schedule, and fresh quotes are answered, without ever blocking the
reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from attestd._tls import ServerContextFactory, ServerIdentity
from attestd.errors import AttestdError
from attestd.sources._base import AttestationSource
from attestd.sources._log import MarkedLogger


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
    """

    def __init__(
        self,
        reactor: Any,
        source: AttestationSource,
        creator: ServerContextFactory,
        *,
        threadpool: Any = None,
    ) -> None:
        """
        @param reactor: The reactor.
        @param source: The attestation source.
        @param creator: The context factory to keep up to date.
        @param threadpool: Where the source's calls run; the reactor's
            thread pool by default.
        """
        self._reactor = reactor
        self._threadpool = threadpool
        self.source = source
        self.creator = creator
        self.rotations = 0
        self.failures = 0
        self._loop: LoopingCall | None = None
        self._done: Deferred[LoopingCall] | None = None
        self._log = MarkedLogger(
            "attestd.rotation", simulated=source.simulated
        )

    def _in_thread(self, f: Any, *args: Any) -> Deferred[Any]:
        pool = self._threadpool
        if pool is None:
            pool = self._reactor.getThreadPool()
        return deferToThreadPool(self._reactor, pool, f, *args)

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
        A quote binding C{identity}'s key and C{nonce}, made in a thread.

        @param identity: The identity the client's connection presents.
        @param nonce: The client's nonce.
        @return: Fires with the quote, or fails with
            L{attestd.errors.FreshnessUnavailableError} (a source that
            cannot quote), L{attestd.errors.NonceParseError} or the
            source's error.
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
