"""The engine under evaluation: nurture's own nightly stages, run on the training data only.

This is the one place that knows how nurture ranks. It does not rebuild the ranking: it runs
:data:`nurture.stages.NIGHTLY` (sync the content library, profile, segment, match...) on a
sandbox, a temporary database holding only what was known at ranking time, then reads the
recommendations the matcher stored. Whatever the matcher learns to use (answers, consumed
content, segments, co-engagement, popularity, freshness...) is evaluated as it is, with the
settings in force.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from nurture.orchestration import CycleReport, run_cycle
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import ContentItem, Recommendation

__all__ = ["EngineRanking", "nurture_sandbox", "rank_with_nurture"]


@contextmanager
def nurture_sandbox(settings: Settings, k: int, workspace: Path | None = None) -> Iterator[Runtime]:
    """A runtime on an empty, migrated, temporary database, deleted on exit.

    Everything else (embedding model, segmentation, ranking settings, seed) is kept from
    ``settings``; the matcher keeps ``k`` items per member.

    Args:
        settings: The settings in force.
        k: Recommendations per member.
        workspace: Workspace whose library and questionnaire the sandbox uses; none gives an
            empty ``workspace`` folder in the sandbox, for the caller to fill.

    Yields:
        The sandbox's runtime (its settings: ``runtime.settings``).
    """
    with tempfile.TemporaryDirectory(prefix="nurture-evaluation-") as folder:
        root = Path(folder)
        if workspace is None:
            workspace = root / "workspace"
            (workspace / "library").mkdir(parents=True)
        sandbox = settings.model_copy(
            update={
                "workspace": workspace,
                "data_dir": root / "data",
                "database_url": f"sqlite:///{root / 'data' / 'nurture.db'}",
                "outbox_dir": root / "data" / "outbox",
                "models_dir": settings.resolved_models_dir,  # built once, not per sandbox
                "recommendations_per_member": k,
            }
        )
        with Runtime(sandbox) as runtime:  # the database is created on first use
            yield runtime


@dataclass(frozen=True)
class EngineRanking:
    """What the engine ranked in a sandbox.

    Attributes:
        lists: ``{member id: content keys, best first}`` for every member given items.
        cycle: What the nightly stages did (profiles, segments, recommendations).
    """

    lists: dict[int, list[str]]
    cycle: CycleReport


def rank_with_nurture(sandbox: Runtime, now: dt.datetime) -> EngineRanking:
    """Run the nightly stages on the sandbox at ``now`` and read every member's ranked items.

    Args:
        sandbox: The runtime of a sandbox (see :func:`nurture_sandbox`) holding the training
            data.
        now: The time to rank at.

    Returns:
        The ranked content keys of each member, and what the stages did.
    """
    cycle = run_cycle(sandbox, now, lists=("nightly",))
    lists: dict[int, list[str]] = {}
    with sandbox.session() as session:
        rows = session.execute(
            select(Recommendation.member_id, ContentItem.key)
            .join(ContentItem, ContentItem.id == Recommendation.content_item_id)
            .order_by(Recommendation.member_id, Recommendation.rank)
        )
        for member_id, key in rows.tuples():
            lists.setdefault(member_id, []).append(key)
    return EngineRanking(lists=lists, cycle=cycle)
