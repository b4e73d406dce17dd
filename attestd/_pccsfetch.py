"""
Blocking collateral fetch for the command line.

The C{attestd} command is an ordinary program, not a Twisted service: it
runs the reactor just long enough to fetch one bundle with
L{attestd._pccs.CollateralClient} and stops it again.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

from attestd._collateral import Collateral
from attestd._pccs import CollateralClient


def fetch_blocking(
    base_url: str,
    fmspc: bytes,
    ca: str,
    *,
    ca_file: str | None = None,
    timeout: float = 30.0,
) -> Collateral:
    """
    Fetch collateral for one platform, running the reactor until done.

    Call it at most once per process: the global reactor cannot be
    restarted.

    @param base_url: The PCCS or Intel PCS base URL.
    @param fmspc: The platform's FMSPC.
    @param ca: C{"platform"} or C{"processor"}.
    @param ca_file: PEM CA certificates that the PCCS's TLS certificate
        must chain to (default: the system's trust store).
    @param timeout: Seconds allowed for each request.
    @return: The collateral.
    @raise attestd._pccs.CollateralSourceError: If the fetch failed.
    """
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    outcome: list[Any] = []
    client = CollateralClient(
        reactor, base_url, tls_trust=ca_file, timeout=timeout
    )

    def start() -> None:
        def finish(result: object) -> None:
            outcome.append(result)
            reactor.stop()

        client.fetch(fmspc, ca).addBoth(finish)

    reactor.callWhenRunning(start)
    reactor.run()
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    assert isinstance(result, Collateral)
    return result
