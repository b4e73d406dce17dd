"""
Running Twisted work from the command line.

The C{attestd} command is an ordinary program, not a Twisted service: it
runs the reactor just long enough for one piece of work (fetching a
collateral bundle with L{attestd._pccs.CollateralClient}, or a whole
C{verify --fresh} exchange) and stops it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet.defer import ensureDeferred
from twisted.python.failure import Failure

from attestd._collateral import Collateral
from attestd._pccs import CollateralClient

_T = TypeVar("_T")


def run_reactor_once(work: Callable[[Any], Awaitable[_T]]) -> _T:
    """
    Run the global reactor until C{work(reactor)} is done.

    Call it at most once per process: the global reactor cannot be
    restarted.

    @param work: Given the reactor, returns a coroutine or C{Deferred}.
    @return: What C{work} produced.
    @raise Exception: What C{work} raised.
    """
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    outcome: list[Any] = []

    def start() -> None:
        def finish(result: object) -> None:
            outcome.append(result)
            reactor.stop()

        ensureDeferred(work(reactor)).addBoth(finish)  # type: ignore[arg-type]

    reactor.callWhenRunning(start)
    reactor.run()
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def fetch_blocking(
    base_url: str,
    fmspc: bytes,
    ca: str,
    *,
    ca_file: str | None = None,
    timeout: float = 30.0,
) -> Collateral:
    """
    Fetch collateral for one platform, running the reactor until done
    (so at most once per process, see L{run_reactor_once}).

    @param base_url: The PCCS or Intel PCS base URL.
    @param fmspc: The platform's FMSPC.
    @param ca: C{"platform"} or C{"processor"}.
    @param ca_file: PEM CA certificates that the PCCS's TLS certificate
        must chain to (default: the system's trust store).
    @param timeout: Seconds allowed for each request.
    @return: The collateral.
    @raise attestd._pccs.CollateralSourceError: If the fetch failed.
    """
    return run_reactor_once(
        lambda reactor: CollateralClient(
            reactor, base_url, tls_trust=ca_file, timeout=timeout
        ).fetch(fmspc, ca)
    )
