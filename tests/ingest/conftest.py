from __future__ import annotations

import pytest
from ingest_helpers import FakeQuestionnaire


@pytest.fixture
def questionnaire() -> FakeQuestionnaire:
    return FakeQuestionnaire()
