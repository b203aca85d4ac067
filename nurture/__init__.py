"""nurture: a personalised content nurturing engine for communities.

The pipeline: import -> profile -> segment -> match -> journeys -> deliver. Each stage is a
plain function in a subpackage of ``nurture``; ``flows/`` wraps them as Prefect flows.
"""

__version__ = "0.1.0"
