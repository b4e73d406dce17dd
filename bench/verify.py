"""
Benchmark: DCAP verification throughput of attestd beside dcap-qvl.

Runs, in one process and on the same inputs (the real konvera RA-TLS
certificate and quote with the automata-0825 collateral bundle, at a fixed
time inside its window):

  - attestd cold: full RA-TLS verification of the certificate (evidence,
    binding, PCK chain, CRLs, TCB Info, QE Identity, signatures, policy),
    once with attestd's parse caches (PEM chains and PCK extensions by
    content) cleared before every call, and once with them warm, as for a
    client that meets several servers of the same platforms;
  - attestd cached: the same through L{RATLSVerifier}, which remembers an
    accepted certificate until its collateral expires;
  - attestd quote only: L{verify_quote} on the raw quote;
  - dcap-qvl: C{dcap_qvl.verify} on the raw quote (Rust core).

Each figure is the best of several rounds of timed loops; ratios are
against dcap-qvl.  Usage: C{python bench/verify.py [--seconds S]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "tests" / "vectors"
CERT = VECTORS / "gramine-ratls-certs" / "konvera_gramine_legacy_cert.der"
QUOTE = VECTORS / "gramine-ratls-certs" / "konvera_gramine_legacy_quote.bin"
BUNDLE = (
    VECTORS / "automata-0825" / "collateral_00606a000000_20250815.dcapqvl.json"
)
NOW = 1755236700


def rate(fn: Callable[[], object], seconds: float, rounds: int = 3) -> float:
    """
    Best calls-per-second of C{fn} over C{rounds} loops of C{seconds}.
    """
    fn()
    best = 0.0
    for _ in range(rounds):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            fn()
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args(argv)

    from datetime import datetime, timezone

    import dcap_qvl

    from attestd import _dcap, _pck
    from attestd._client import RATLSVerifier
    from attestd._collateral import Collateral
    from attestd._dcap import verify_quote
    from attestd._platform import pck_identity
    from attestd._policy import Policy
    from attestd._quote import Quote
    from attestd._verifier import verify_ratls_certificate

    der = CERT.read_bytes()
    quote = QUOTE.read_bytes()
    text = BUNDLE.read_text()
    collateral = Collateral.from_json(text)
    qvl_collateral = dcap_qvl.QuoteCollateralV3.from_json(text)
    when = datetime.fromtimestamp(NOW, timezone.utc)
    policy = Policy(
        mrenclave=bytes.fromhex(
            "f94ccbe6a504676b2edbefdcb8781a512913f7d8864c6f88592a843d0f9d4a66"
        ),
        mrsigner=None,
        isv_prod_id=0,
        isv_svn=0,
        allow_outdated_tcb_insecure=True,
    )
    verifier = RATLSVerifier(policy=policy, clock=lambda: float(NOW))
    verifier.add_collateral(*pck_identity(Quote.from_bytes(quote)), collateral)

    def cleared() -> object:
        _dcap._parse_pem_chain.cache_clear()
        _pck._parse_extension.cache_clear()
        return verify_ratls_certificate(der, collateral, policy, now=when)

    cases: list[tuple[str, Callable[[], object]]] = [
        (
            "dcap-qvl verify (quote)",
            lambda: dcap_qvl.verify(quote, qvl_collateral, NOW),
        ),
        (
            "attestd verify_quote (quote)",
            lambda: verify_quote(quote, collateral, now=when),
        ),
        ("attestd RA-TLS cold, caches cleared", cleared),
        (
            "attestd RA-TLS cold, parse caches warm",
            lambda: verify_ratls_certificate(
                der, collateral, policy, now=when
            ),
        ),
        (
            "attestd RA-TLS verified-certificate cache",
            lambda: verifier.verify(der),
        ),
    ]
    results = {name: rate(fn, args.seconds) for name, fn in cases}
    baseline = results["dcap-qvl verify (quote)"]
    print(f"{'case':40} {'per second':>12} {'vs dcap-qvl':>12}")
    for name, value in results.items():
        print(f"{name:40} {value:12.1f} {value / baseline:11.2f}x")
    print(json.dumps({k: round(v, 1) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
