"""
Where DCAP collateral comes from.

Collateral is only ever fetched from where the caller says:

  - L{BundleCollateralSource}: an offline bundle file (the JSON layout of
    dcap-qvl's C{QuoteCollateralV3});
  - L{CollateralClient}: a PCCS or Intel PCS (API v4) over HTTPS, with
    Twisted's HTTP client;
  - L{CachingCollateralSource}: a client behind an on-disk
    L{CollateralCache} that serves each bundle until its earliest
    C{nextUpdate}.

Each has C{collateral_for(fmspc, ca)}, returning a C{Deferred} that fires
with a L{Collateral}; that is the L{CollateralSource} interface the
attested agent uses.
"""

from __future__ import annotations

from attestd._collateral import Collateral, CollateralParseError
from attestd._collateral_cache import CollateralCache
from attestd._pccs import (
    INTEL_PCS_URL,
    BundleCollateralSource,
    CachingCollateralSource,
    CollateralClient,
    CollateralConnectionError,
    CollateralFetchError,
    CollateralFMSPCMismatchError,
    CollateralHTTPError,
    CollateralResponseError,
    CollateralSource,
    CollateralSourceError,
    CollateralTimeoutError,
    CollateralTLSError,
)

__all__ = [
    "INTEL_PCS_URL",
    "BundleCollateralSource",
    "CachingCollateralSource",
    "Collateral",
    "CollateralCache",
    "CollateralClient",
    "CollateralConnectionError",
    "CollateralFMSPCMismatchError",
    "CollateralFetchError",
    "CollateralHTTPError",
    "CollateralParseError",
    "CollateralResponseError",
    "CollateralSource",
    "CollateralSourceError",
    "CollateralTLSError",
    "CollateralTimeoutError",
]
