"""What every test may ask for: the real captures, one fixture for them.

The real captures are not committed; they live in ``../shared/pcaps/real`` beside the
repository root (``testkit.paths.REAL_PCAPS``). Without them only the tests that ask
for them skip, each with the reason:

- ``real_pcaps``: the folder;
- ``real_capture``: one test per real capture file (parametrized here).

Everything else a test needs from outside tests/ comes from the ``testkit`` package
(the root is on ``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.paths import REAL_MISSING, REAL_PCAPS, real_captures


@pytest.fixture(scope="session")
def real_pcaps() -> Path:
    """The folder of real captures; the test skips, saying why, when it is absent."""
    if not REAL_PCAPS.is_dir():
        pytest.skip(REAL_MISSING)
    return REAL_PCAPS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking ``real_capture`` runs once per real capture (skipped when none)."""
    if "real_capture" not in metafunc.fixturenames:
        return
    files = real_captures()
    if files:
        metafunc.parametrize("real_capture", files, ids=[p.name for p in files])
    else:
        skipped = pytest.param(None, marks=pytest.mark.skip(reason=REAL_MISSING))
        metafunc.parametrize("real_capture", [skipped], ids=["no-real-captures"])
