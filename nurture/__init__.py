"""nurture: a personalised content nurturing engine for communities.

The pipeline: import -> profile -> segment -> match -> journeys -> deliver. The domain lives in
the subpackages of ``nurture``; :mod:`nurture.runtime` builds the services a run needs from its
settings; :mod:`nurture.stages` declares the stages of the nightly and deliver runs once, which
:mod:`nurture.orchestration` runs in process and ``flows/`` runs as Prefect flows.
"""

__version__ = "0.1.0"
