"""Prefect flows: thin wrappers that run the stages of :mod:`nurture.pipeline` as tasks.

``nightly`` profiles, segments and matches every member; ``deliver`` advances the journeys and
sends the due messages. Tasks receive plain values only (settings overrides, ids, a time) and
open their own database sessions; members and messages go one task per chunk, never per member.
"""

from flows.cycle import cycle
from flows.deliver import deliver
from flows.nightly import nightly

__all__ = ["cycle", "deliver", "nightly"]
