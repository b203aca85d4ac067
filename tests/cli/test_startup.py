"""``nurture --help`` and ``--version`` stay quick: the command line imports no heavy part.

Speed itself is measured, not asserted (``python -X importtime -c "import nurture.cli.app"``,
docs/operations.md); what is checked is the cause: which modules starting the command loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nurture.cli.reports import DELIVERY_DAYS
from nurture.reports import DEFAULT_DELIVERY_DAYS

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "sklearn",
    "scipy",
    "torch",
    "sentence_transformers",
    "altair",
    "pandas",
    "prefect",
    "nurture.stages",
    "nurture.orchestration",
    "nurture.journeys",
    "nurture.segmentation",
    "nurture.recommend",
    "nurture.reports",
    "nurture.evaluation",
    "nurture.operations",
    "nurture.delivery",
)
"""What the commands import when they run, and starting the command line must not."""


def test_starting_the_command_line_imports_no_heavy_module() -> None:
    probe = (
        "import json, sys; import nurture.cli.app; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        f"or any(m == h or m.startswith(h + '.') for h in {HEAVY!r}))))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )

    assert json.loads(done.stdout) == []


def test_the_default_days_of_the_delivery_report_are_the_reports_own() -> None:
    assert DELIVERY_DAYS == DEFAULT_DELIVERY_DAYS
