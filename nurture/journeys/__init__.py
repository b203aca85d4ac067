"""Journeys: the YAML definitions marketers write, their loader, and the engine that runs them.

``load_journeys`` reads and checks a folder of journey files; ``load_sending_rules`` the rules
all journeys share (budget, quiet hours); ``register_journeys`` keeps one ``Journey`` row per
definition version; ``advance_journeys`` enrols the members each trigger yields
(``trigger_candidates``) and queues the messages that are due.
"""

from nurture.journeys.engine import (
    CONSENT_GRANTED,
    HeldEmail,
    JourneySummary,
    PickContent,
    advance_journeys,
    recommended_content,
    register_journeys,
    upcoming_content,
    wait_until,
)
from nurture.journeys.loader import load_journey, load_journeys
from nurture.journeys.migrate import MigrationReport, migrate_enrollments
from nurture.journeys.models import (
    BranchStep,
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
from nurture.journeys.policy import SendingRules, load_sending_rules
from nurture.journeys.progress import JourneyStatus, journey_status
from nurture.journeys.schema import journey_json_schema, write_journey_json_schema
from nurture.journeys.simulate import SimulationReport, simulate_journeys
from nurture.journeys.triggers import Candidate, trigger_candidates

__all__ = [
    "CONSENT_GRANTED",
    "BranchStep",
    "Candidate",
    "ContentSlot",
    "ExitStep",
    "HeldEmail",
    "JourneyDefinition",
    "JourneyStatus",
    "JourneySummary",
    "MemberJoinedTrigger",
    "MigrationReport",
    "PickContent",
    "QuestionnaireAnsweredTrigger",
    "SendStep",
    "SendingRules",
    "SimulationReport",
    "Step",
    "Trigger",
    "WaitStep",
    "advance_journeys",
    "journey_json_schema",
    "journey_status",
    "load_journey",
    "load_journeys",
    "load_sending_rules",
    "migrate_enrollments",
    "parse_duration",
    "recommended_content",
    "register_journeys",
    "simulate_journeys",
    "trigger_candidates",
    "upcoming_content",
    "wait_until",
    "write_journey_json_schema",
]
