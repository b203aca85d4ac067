"""Journeys: the YAML definitions marketers write, their loader, and the engine that runs them.

``load_journeys`` reads and checks a folder of journey files; ``load_sending_rules`` the rules
all journeys share (budget, quiet hours, backfill limit); ``register_journeys`` keeps one
``Journey`` row per definition version; ``advance_journeys`` enrols the members each trigger yields
(``trigger_candidates``, each recording a typed ``TriggerContext``) and queues the messages
that are due, their ``MessageContext`` filled by a ``ContentPicker`` (as ``nurture preview``
fills its emails); ``measure_backfill`` tells a run that would start emailing much of the
community at once (a ``Backfill``), which ``advance_journeys`` refuses when given a limit.
"""

from nurture.delivery.suppression import CONSENT_GRANTED
from nurture.journeys.backfill import Backfill, measure_backfill
from nurture.journeys.content import (
    ContentPick,
    ContentPicker,
    MessageContext,
    PickContent,
    RecommendedContent,
    recommended_content,
    upcoming_content,
)
from nurture.journeys.engine import JourneySummary, advance_journeys, wait_until
from nurture.journeys.holds import HeldEmail
from nurture.journeys.journey_status import JourneyStatus, journey_status
from nurture.journeys.loader import load_journey, load_journeys, read_journeys
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
from nurture.journeys.policy import (
    BackfillLimit,
    SendingRules,
    load_sending_rules,
    read_sending_rules,
)
from nurture.journeys.schema import journey_json_schema, write_journey_json_schema
from nurture.journeys.simulate import SimulationReport, simulate_journeys
from nurture.journeys.triggers import (
    TRIGGER_CONTEXTS,
    Candidate,
    TriggerContext,
    trigger_candidates,
    trigger_sample,
)
from nurture.journeys.versions import register_journeys

__all__ = [
    "CONSENT_GRANTED",
    "TRIGGER_CONTEXTS",
    "Backfill",
    "BackfillLimit",
    "BranchStep",
    "Candidate",
    "ContentPick",
    "ContentPicker",
    "ContentSlot",
    "ExitStep",
    "HeldEmail",
    "JourneyDefinition",
    "JourneyStatus",
    "JourneySummary",
    "MemberJoinedTrigger",
    "MessageContext",
    "MigrationReport",
    "PickContent",
    "QuestionnaireAnsweredTrigger",
    "RecommendedContent",
    "SendStep",
    "SendingRules",
    "SimulationReport",
    "Step",
    "Trigger",
    "TriggerContext",
    "WaitStep",
    "advance_journeys",
    "journey_json_schema",
    "journey_status",
    "load_journey",
    "load_journeys",
    "load_sending_rules",
    "measure_backfill",
    "migrate_enrollments",
    "parse_duration",
    "read_journeys",
    "read_sending_rules",
    "recommended_content",
    "register_journeys",
    "simulate_journeys",
    "trigger_candidates",
    "trigger_sample",
    "upcoming_content",
    "wait_until",
    "write_journey_json_schema",
]
