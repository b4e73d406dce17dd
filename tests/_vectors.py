"""
Paths and expected values of the real test vectors in C{tests/vectors}
(see C{tests/vectors/PROVENANCE.md}).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors"
CERTS = VECTORS / "gramine-ratls-certs"

KONVERA_DER = CERTS / "konvera_gramine_legacy_cert.der"
KONVERA_PEM = CERTS / "konvera_gramine_legacy_cert.pem"
KONVERA_TRUSTED_PEM = CERTS / "konvera_gramine_legacy_cert.trusted.pem"
KONVERA_KEY_DER = CERTS / "konvera_gramine_legacy_key.der"
KONVERA_KEY_PEM = CERTS / "konvera_gramine_legacy_key.pem"
KONVERA_QUOTE = CERTS / "konvera_gramine_legacy_quote.bin"
CCC_DER = CERTS / "ccc_gramine_dualoid_debug_cert.der"
CCC_PEM = CERTS / "ccc_gramine_dualoid_debug_cert.pem"
CCC_LEGACY_QUOTE = CERTS / "ccc_gramine_legacy_ext_quote.bin"
CCC_DICE_QUOTE = CERTS / "ccc_gramine_dice_quote.bin"
DCAP_QVL_QUOTE = VECTORS / "dcap-qvl" / "sgx_quote.bin"
DCAP_QVL_COLLATERAL = VECTORS / "dcap-qvl" / "sgx_quote_collateral.json"
AUTOMATA_BUNDLE = (
    VECTORS / "automata-0825" / "collateral_00606a000000_20250815.dcapqvl.json"
)
INTEL_ROOT_DER = (
    VECTORS / "intel-root" / "Intel_SGX_Provisioning_Certification_RootCA.der"
)


def expected() -> Any:
    """
    The parsed C{EXPECTED.json}.
    """
    return json.loads((VECTORS / "EXPECTED.json").read_text())
