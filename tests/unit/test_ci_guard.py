"""Under --require-integration (CI) a skipped test fails: the end-to-end test cannot pass by skipping."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT


def test_skip_fails_under_require_integration(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        """
        import pytest
        def test_needs_binary():
            pytest.skip("prometheus not installed")
        def test_fine():
            pass
        """
    )
    pytester.runpytest("--require-integration").assert_outcomes(failed=1, passed=1)
    pytester.runpytest().assert_outcomes(skipped=1, passed=1)
