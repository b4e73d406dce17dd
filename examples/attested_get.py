"""
Fetch a page from an attestd server through the attested agent.

Against the server that C{scripts/serve} starts (simulated attestation),
from the repository root::

    .venv/bin/python examples/attested_get.py https://127.0.0.1:8443/ \\
        .attestd-simulated MRENCLAVE_HEX

The request is sent only if the server's RA-TLS certificate verifies
against the simulated root and collateral that the server wrote into its
state directory, and its MRENCLAVE is the one given.  For a real enclave,
leave out the trust root (Intel's is pinned) and use real collateral, for
example C{attestd.collateral.CachingCollateralSource} over a PCCS.
"""

from __future__ import annotations

import sys
from pathlib import Path

import treq
from twisted.internet.task import react

from attestd import AttestedAgent, Policy, RATLSVerifier, TrustRoot
from attestd.collateral import BundleCollateralSource


async def main(reactor: object, url: str, state: str, mrenclave: str) -> None:
    policy = Policy(
        mrenclave=bytes.fromhex(mrenclave),
        mrsigner=None,
        isv_prod_id=None,
        isv_svn=None,
    )
    verifier = RATLSVerifier(
        policy=policy,
        trust_root=TrustRoot.from_pem(Path(state, "root.pem").read_bytes()),
    )
    agent = AttestedAgent(
        reactor,
        verifier,
        BundleCollateralSource(Path(state, "collateral.json")),
    )
    response = await treq.client.HTTPClient(agent).get(url)
    print(response.code, await response.text())


if __name__ == "__main__":
    react(lambda reactor: main(reactor, *sys.argv[1:4]))
