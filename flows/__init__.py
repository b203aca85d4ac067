"""Prefect flows: thin wrappers that run the stages of :mod:`nurture.pipeline` as tasks.

``nightly`` imports the files waiting in ``<data_dir>/imports``, then profiles, segments and
matches every member; ``deliver`` advances the journeys and sends the due messages. Both publish
artifacts under stable keys (:mod:`flows.reports`). Tasks receive plain values only (settings
overrides, ids, paths, a time) and open their own database sessions; members and messages go one
task per chunk, never per member, on the task runner the settings choose (threads or Dask).
``python -m flows.serve`` serves both as scheduled deployments (:mod:`flows.serve`).
"""

from flows.cycle import cycle
from flows.deliver import deliver
from flows.nightly import nightly

__all__ = ["cycle", "deliver", "nightly"]
