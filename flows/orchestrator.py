"""The ``prefect`` orchestrator: how ``nurture run`` and ``nurture demo`` reach the flows.

nurture never imports this package: it finds :class:`PrefectOrchestrator` by name, as the
``prefect`` entry point of the ``nurture.orchestrators`` group (``pyproject.toml``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

from nurture.runtime import Runtime

__all__ = ["PrefectOrchestrator"]


class PrefectOrchestrator:
    """Runs stage lists as Prefect flows: one ``cycle`` run, with a subflow per list.

    Without ``PREFECT_API_URL``, Prefect starts a temporary local server for the run.
    """

    def run(
        self, runtime: Runtime, lists: Sequence[str], now: dt.datetime
    ) -> dict[str, dict[str, Any]]:
        """Run the stage lists ``lists`` as flows on the runtime's workspace and data folders.

        The tasks build their settings from those folders and the ``NURTURE_*`` environment
        of this process, as in production.
        """
        # The first ephemeral Prefect server can take more than 20 s to start on a busy machine.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
        # No machine running nurture needs to phone home; offline, the attempt only logs an error.
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        # Prefect reads its settings once, when first imported: after the two lines above.
        from flows.cycle import cycle

        settings = runtime.settings
        return cycle(str(settings.workspace), str(settings.data_dir), now, list(lists))
