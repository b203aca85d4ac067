from __future__ import annotations

import pytest

from tests.ingest.ingest_helpers import FakeQuestionnaire


@pytest.fixture
def questionnaire() -> FakeQuestionnaire:
    return FakeQuestionnaire()
