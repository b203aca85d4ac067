"""Prefect flows: the stage lists of :mod:`nurture.stages`, each stage run as Prefect tasks.

:mod:`flows.nightly` imports the files waiting in ``<data_dir>/imports``, then profiles,
segments and matches every member; :mod:`flows.deliver` advances the journeys and sends the due
messages; :mod:`flows.cycle` runs both. They publish artifacts under stable keys
(:mod:`flows.reports`). Tasks (:mod:`flows.tasks`) receive plain values only (settings
overrides, ids, paths, a time) and build their own runtime; members and messages go one task per
chunk, never per member, on the task runner the settings choose (threads or Dask).
``python -m flows.serve`` serves nightly and deliver as scheduled deployments
(:mod:`flows.serve`); :mod:`flows.orchestrator` is how ``nurture run`` reaches them.

Importing the package imports no flow, and so not Prefect: the orchestrator sets Prefect's
environment before Prefect reads it.
"""

__all__: list[str] = []
