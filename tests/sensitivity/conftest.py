from __future__ import annotations

import pytest

from advisor.sensitivity import SensitivityTable
from tests.sensitivity.embedded import embedded_table


@pytest.fixture(scope="session")
def embedded_sensitivity(tmp_path_factory: pytest.TempPathFactory) -> SensitivityTable:
    return embedded_table(tmp_path_factory)
