"""What the flows share: settings overrides and run names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["chunk_name", "overrides"]


def overrides(workspace: str | None, data_dir: str | None) -> dict[str, Any]:
    """The settings a flow run was given; everything else comes from ``NURTURE_*``.

    The database URL is deliberately not a flow parameter: it can hold a password, and flow
    parameters show in the Prefect UI. Set ``NURTURE_DATABASE_URL`` where the flow runs.
    """
    values: dict[str, Any] = {}
    if workspace is not None:
        values["workspace"] = workspace
    if data_dir is not None:
        values["data_dir"] = data_dir
    return values


def chunk_name(ids: Sequence[int]) -> str:
    """A readable name for a chunk of ids, for task run names."""
    if not ids:
        return "empty"
    return f"{ids[0]}-{ids[-1]} ({len(ids)})"
