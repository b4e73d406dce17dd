"""
Attestation sources: where the daemon's RA-TLS certificate comes from.

  - L{FilesSource} (C{--attestation files}): the certificate and key that
    C{gramine-ratls} wrote;
  - L{GramineSource} (C{--attestation gramine}): certificates minted in
    the enclave with quotes from Gramine's C{/dev/attestation};
  - L{SimulatedSource} (C{--attestation simulated}): certificates minted
    with simulated quotes, for machines without SGX.

The in-process sources (L{InProcessSource}) also rotate certificates and
answer fresh quotes; L{IdentityKeeper} runs them for the daemon.
"""

from attestd.sources._base import AttestationSource, InProcessSource
from attestd.sources._files import FilesSource
from attestd.sources._gramine import (
    DEFAULT_ATTESTATION_DIR,
    MAX_QUOTE_SIZE,
    GramineSource,
)
from attestd.sources._keeper import IdentityKeeper
from attestd.sources._log import SIMULATED_PREFIX, MarkedLogger
from attestd.sources._simulated import (
    COLLATERAL_FILE,
    ROOT_FILE,
    SimulatedSource,
    default_state_dir,
)

__all__ = [
    "COLLATERAL_FILE",
    "DEFAULT_ATTESTATION_DIR",
    "MAX_QUOTE_SIZE",
    "ROOT_FILE",
    "SIMULATED_PREFIX",
    "AttestationSource",
    "FilesSource",
    "GramineSource",
    "IdentityKeeper",
    "InProcessSource",
    "MarkedLogger",
    "SimulatedSource",
    "default_state_dir",
]
