"""Journeys: the YAML definitions marketers write, their loader, and the engine that runs them.

``load_journeys`` reads and checks a folder of journey files; ``register_journeys`` keeps one
``Journey`` row per definition version; ``advance_journeys`` enrols members and queues the
messages that are due.
"""

from nurture.journeys.engine import (
    CONSENT_GRANTED,
    JourneySummary,
    PickContent,
    advance_journeys,
    enrollment_condition,
    recommended_content,
    register_journeys,
)
from nurture.journeys.loader import load_journey, load_journeys
from nurture.journeys.models import (
    ContentSlot,
    ExitStep,
    JourneyDefinition,
    MemberJoinedTrigger,
    QuestionnaireAnsweredTrigger,
    SendStep,
    Step,
    Trigger,
    WaitStep,
    parse_duration,
)
from nurture.journeys.schema import journey_json_schema, write_journey_json_schema

__all__ = [
    "CONSENT_GRANTED",
    "ContentSlot",
    "ExitStep",
    "JourneyDefinition",
    "JourneySummary",
    "MemberJoinedTrigger",
    "PickContent",
    "QuestionnaireAnsweredTrigger",
    "SendStep",
    "Step",
    "Trigger",
    "WaitStep",
    "advance_journeys",
    "enrollment_condition",
    "journey_json_schema",
    "load_journey",
    "load_journeys",
    "parse_duration",
    "recommended_content",
    "register_journeys",
    "write_journey_json_schema",
]
