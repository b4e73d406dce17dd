"""
The public API: each exported name is the object of the private module
that defines it, and importing C{attestd} does not load Twisted.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import attestd
import attestd.collateral
from attestd import _client, _dcap, _evidence, _policy, _verifier


class TestExports:
    @pytest.mark.parametrize("name", attestd.__all__)
    def test_every_name_resolves(self, name: str) -> None:
        """
        Every name in attestd.__all__ is importable.
        """
        assert getattr(attestd, name) is not None

    def test_same_objects(self) -> None:
        """
        Public names are the private originals, not copies.
        """
        assert attestd.verify_quote is _dcap.verify_quote
        assert attestd.Policy is _policy.Policy
        assert attestd.RATLSEvidence is _evidence.RATLSEvidence
        assert attestd.verify_ratls_certificate is (
            _verifier.verify_ratls_certificate
        )
        assert attestd.AttestedAgent is _client.AttestedAgent

    @pytest.mark.parametrize("name", attestd.collateral.__all__)
    def test_collateral_names(self, name: str) -> None:
        """
        Every name in attestd.collateral.__all__ is importable.
        """
        assert getattr(attestd.collateral, name) is not None

    def test_unknown_name(self) -> None:
        """
        An unknown attribute is an AttributeError, as for any module.
        """
        with pytest.raises(AttributeError):
            attestd.NoSuchThing  # noqa: B018

    def test_pure_import(self) -> None:
        """
        Importing attestd and verifying loads no Twisted module.
        """
        code = (
            "import sys, attestd; "
            "print(sorted(m for m in sys.modules if m.startswith('twisted')))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "[]" == out.strip()
