"""Generate a seeded synthetic community: members, answers, activity, and the hidden personas.

Everything comes from one ``random.Random(seed)``, and files are written with fixed line endings
and key order, so the same arguments always give byte-identical files.

Given the library's dates, activity is possible activity: members read or click an item only
once it is published, and attend an event only once it has started (while they were members),
at the time it takes place, as the import requires.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import json
import random
import re
import unicodedata
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from nurture.demo.names import COUNTRIES, FIRST_NAMES, LAST_NAMES, TIME_ZONES
from nurture.demo.personas import OPTIONS, PERSONAS, Persona
from nurture.ingest.answers import AnswerValidator
from nurture.storage.models import ConsentStatus

__all__ = [
    "DatedContent",
    "DemoFiles",
    "LibraryItem",
    "generate_demo_community",
    "generate_library_community",
]

NOISE = 0.12
"""Share of answers that stray from the member's persona."""
SKIP_QUESTIONNAIRE = 0.10
SKIP_FREE_TEXT = 0.15
FRENCH_SHARE = 0.45
RECENT_JOINERS = 0.08
ACTIVITY_DAYS = 180

ACTIVITY_TYPES = ("post", "comment", "event_attended", "content_view", "email_open", "email_click")
_NEEDS_CONTENT = frozenset({"content_view", "email_click"})
_NEEDS_LIBRARY = _NEEDS_CONTENT | {"event_attended"}
_EVENT_WORDS = (
    "event",
    "meetup",
    "webinar",
    "conference",
    "masterclass",
    "workshop",
    "live",
    "hackathon",
    "sprint",
    "evenement",
    "webinaire",
    "rencontre",
    "atelier",
)
# (share of members, smallest and largest number of events over a full 180 days)
_ENGAGEMENT = ((0.15, 0, 0), (0.35, 2, 7), (0.35, 8, 22), (0.15, 25, 60))

_OPENERS = {
    "en": (
        "I'd like to",
        "I hope to",
        "Mostly I want to",
        "I'm here to",
        "I expect to",
        "My goal is to",
        "Above all, I want to",
    ),
    "fr": (
        "J'aimerais",
        "J'espère",
        "Je souhaite surtout",
        "Je suis là pour",
        "Je compte",
        "Mon objectif :",
        "Avant tout, je veux",
    ),
}
_JOINERS = {
    "en": (" and ", " and also ", ", and ideally ", ", then "),
    "fr": (" et ", " et aussi ", ", et idéalement ", ", puis "),
}
_CLOSERS = {
    "en": (
        "",
        "",
        " Thanks!",
        " Happy to help others too.",
        " Glad to be here.",
        " Any tips welcome.",
    ),
    "fr": (
        "",
        "",
        " Merci !",
        " Ravi d'aider les autres aussi.",
        " Au plaisir d'échanger.",
        " Tous les conseils sont bienvenus.",
    ),
}
_CHANNELS = {
    "b2b_founder": ("growth", "founders-lounge", "general"),
    "employee_comms": ("announcements", "general", "watercooler"),
    "event_organiser": ("events", "meetups", "general"),
    "customer_educator": ("help", "tutorials", "general"),
    "oss_maintainer": ("contributors", "code-review", "general"),
}
# Posts each persona writes, by language: (title, excerpt), as journeys quote them.
_POSTS: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "b2b_founder": {
        "en": (
            (
                "When did you hire your first community manager?",
                "We are 12 people and I still run the community myself. Curious how others "
                "knew it was time.",
            ),
            (
                "Community-led growth: what actually moved our pipeline",
                "Six months in, three things brought us qualified leads and two did nothing.",
            ),
            (
                "How do you report community ROI to your board?",
                "Our board asks for numbers every quarter. Here is the one-page report we "
                "settled on.",
            ),
            (
                "Customer community vs. partner community: which first?",
                "We sell through resellers and directly. Which community would you start with?",
            ),
        ),
        "fr": (
            (
                "Quand avez-vous recruté votre premier community manager ?",
                "Nous sommes 12 et j'anime encore la communauté moi-même. Comment avez-vous su "
                "que c'était le moment ?",
            ),
            (
                "Croissance portée par la communauté : ce qui a vraiment marché",
                "Après six mois, trois actions nous ont apporté des prospects qualifiés, deux "
                "n'ont rien donné.",
            ),
            (
                "Comment présentez-vous le ROI de la communauté à votre conseil ?",
                "Notre conseil veut des chiffres chaque trimestre. Voici le rapport d'une page "
                "que nous avons retenu.",
            ),
            (
                "Communauté clients ou partenaires : par laquelle commencer ?",
                "Nous vendons en direct et via des revendeurs. Vous commenceriez par laquelle ?",
            ),
        ),
    },
    "employee_comms": {
        "en": (
            (
                "Our buddy programme, one year on",
                "Pairing newcomers with a colleague from another team changed their first "
                "month. What we learnt.",
            ),
            (
                "Getting remote colleagues to join the conversation",
                "Half our people never come to the office. These rituals got them talking on "
                "the intranet.",
            ),
            (
                "Ideas for a lively internal newsletter?",
                "Open rates are falling. How do you keep an internal newsletter worth reading?",
            ),
        ),
        "fr": (
            (
                "Notre programme de parrainage, un an après",
                "Associer chaque arrivant à un collègue d'une autre équipe a changé son premier "
                "mois. Ce que nous en retenons.",
            ),
            (
                "Faire participer les collègues en télétravail",
                "La moitié de nos équipes ne vient jamais au bureau. Ces rituels les ont fait "
                "parler sur l'intranet.",
            ),
            (
                "Des idées pour une newsletter interne vivante ?",
                "Le taux d'ouverture baisse. Comment garder une newsletter interne qui donne "
                "envie d'être lue ?",
            ),
        ),
    },
    "event_organiser": {
        "en": (
            (
                "Our first meetup: 40 people and a lot of pizza",
                "What went well, what we would change, and the checklist we will reuse next time.",
            ),
            (
                "Looking for co-organisers for a spring meetup",
                "Anyone up for co-hosting a meetup in the spring? Venue sorted, speakers wanted.",
            ),
            (
                "Hybrid events: is it worth the trouble?",
                "We streamed our last meetup. Half the remote audience stayed to the end. Your "
                "experience?",
            ),
        ),
        "fr": (
            (
                "Notre premier meetup : 40 personnes et beaucoup de pizzas",
                "Ce qui a marché, ce que nous changerions, et la check-list que nous "
                "réutiliserons.",
            ),
            (
                "Je cherche des co-organisateurs pour un meetup au printemps",
                "Qui veut co-animer un meetup ce printemps ? La salle est trouvée, il manque des "
                "intervenants.",
            ),
            (
                "Événements hybrides : est-ce que ça vaut le coup ?",
                "Nous avons diffusé notre dernier meetup en direct. La moitié du public à "
                "distance est restée jusqu'au bout.",
            ),
        ),
    },
    "customer_educator": {
        "en": (
            (
                "How we cut support tickets with a peer forum",
                "Customers now answer a third of the questions themselves. Here is how we "
                "seeded the forum.",
            ),
            (
                "Certification for customers: worth it?",
                "We are thinking of certifying power users. Did it help your academy?",
            ),
            (
                "The onboarding webinar our customers actually finish",
                "Thirty minutes, three exercises, no slides after minute five.",
            ),
        ),
        "fr": (
            (
                "Comment un forum d'entraide a réduit nos tickets de support",
                "Nos clients répondent désormais eux-mêmes à un tiers des questions. Voici "
                "comment nous avons lancé le forum.",
            ),
            (
                "Certifier ses clients : bonne idée ?",
                "Nous pensons certifier nos utilisateurs avancés. Est-ce que ça a aidé votre "
                "académie ?",
            ),
            (
                "Le webinaire d'onboarding que nos clients suivent jusqu'au bout",
                "Trente minutes, trois exercices, plus aucune diapo après la cinquième minute.",
            ),
        ),
    },
    "oss_maintainer": {
        "en": (
            (
                "Good first issues that newcomers actually pick up",
                "We rewrote our good-first-issue labels. Newcomer pull requests doubled.",
            ),
            (
                "Maintainer burnout: how do you say no?",
                "Three maintainers, four hundred open issues. How do you protect your time?",
            ),
            (
                "Our first contributor sprint",
                "Twelve people, two days, thirty merged pull requests, and a few lessons.",
            ),
        ),
        "fr": (
            (
                "Des « good first issues » que les nouveaux prennent vraiment",
                "Nous avons réécrit nos étiquettes pour débutants : les pull requests de "
                "nouveaux venus ont doublé.",
            ),
            (
                "Épuisement des mainteneurs : comment dire non ?",
                "Trois mainteneurs, quatre cents tickets ouverts. Comment protégez-vous votre "
                "temps ?",
            ),
            (
                "Notre premier sprint de contributeurs",
                "Douze personnes, deux jours, trente pull requests fusionnées, et quelques leçons.",
            ),
        ),
    },
}
_MEMBER_COLUMNS = (
    "external_id",
    "email",
    "first_name",
    "last_name",
    "language",
    "time_zone",
    "birthday",
    "joined_at",
    "consent_status",
    "consent_source",
    "country",
)


@dataclass(frozen=True)
class DemoFiles:
    """The files of a demo community.

    Attributes:
        members: ``members.csv``, for ``import_members``.
        answers: ``answers.jsonl``, for ``import_answers``.
        activity: ``activity.jsonl``, for ``import_activity``.
        personas: ``personas.csv`` (external_id, email, persona): the hidden truth, for tests.
    """

    members: Path
    answers: Path
    activity: Path
    personas: Path


class DatedContent(Protocol):
    """The dates of a content item (``nurture.workspace.ContentItemSpec`` has them)."""

    @property
    def published_at(self) -> dt.datetime | None:
        """When the item was published (timezone-aware), if known."""
        ...

    @property
    def event_start(self) -> dt.datetime | None:
        """When the event begins (timezone-aware), for an event."""
        ...


class LibraryItem(DatedContent, Protocol):
    """A content item of the library (``nurture.workspace.ContentItemSpec`` is one)."""

    @property
    def key(self) -> str:
        """The item's key."""
        ...

    @property
    def language(self) -> str:
        """The language the item is written in."""
        ...


@dataclass(frozen=True)
class _Member:
    external_id: str
    email: str
    language: str
    zone: zoneinfo.ZoneInfo
    joined_at: dt.datetime
    persona: Persona


def generate_demo_community(
    out_dir: Path | str,
    n_members: int = 2000,
    seed: int = 7,
    *,
    now: dt.datetime,
    content_keys: Sequence[str] = (),
    content_languages: Mapping[str, str] | None = None,
    content_dates: Mapping[str, DatedContent] | None = None,
    questionnaire: AnswerValidator | None = None,
) -> DemoFiles:
    """Write a synthetic community whose members follow five hidden personas.

    Members are split evenly between the personas (``b2b_founder``, ``employee_comms``,
    ``event_organiser``, ``customer_educator``, ``oss_maintainer``); their answers follow their
    persona with some noise, about 10 % skip the questionnaire, and their activity over the last
    180 days (some are dormant) leans to their persona's kinds of events and content.

    Args:
        out_dir: Folder to write into (created if missing); existing demo files are replaced.
        n_members: How many members.
        seed: Seed of every random choice: the same arguments give byte-identical files.
        now: The current time (timezone-aware): members joined in the two years before it.
        content_keys: Keys of the content library; content views, clicks and attended events
            name them. With none, no event names a content item and there are no views or
            clicks.
        content_languages: Language of each content key; members then mostly see content in
            their own language.
        content_dates: The dates of each content key (``{spec.key: spec for spec in specs}``
            from the library); members then read or click an item only once it is published,
            and attend only events that began while they were members, at the event's time.
            Without them, any item may be read and any event attended at any time.
        questionnaire: When given, every generated answer is checked with it.

    Returns:
        The paths of the written files.

    Raises:
        ValueError: ``now`` is naive or ``n_members`` is negative.
        ImportRecordError: ``questionnaire`` refuses a generated answer.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, found {now!r}")
    if n_members < 0:
        raise ValueError(f"n_members must be at least 0, found {n_members}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = DemoFiles(
        members=out / "members.csv",
        answers=out / "answers.jsonl",
        activity=out / "activity.jsonl",
        personas=out / "personas.csv",
    )
    rng = random.Random(seed)
    now = now.astimezone(dt.UTC)
    library = _Library(sorted(set(content_keys)), content_languages or {}, content_dates)
    personas = [PERSONAS[index % len(PERSONAS)] for index in range(n_members)]
    rng.shuffle(personas)
    emails: set[str] = set()
    with (
        files.members.open("w", encoding="utf-8", newline="") as members_file,
        files.answers.open("w", encoding="utf-8", newline="") as answers_file,
        files.activity.open("w", encoding="utf-8", newline="") as activity_file,
        files.personas.open("w", encoding="utf-8", newline="") as personas_file,
    ):
        members_csv = csv.writer(members_file, lineterminator="\n")
        personas_csv = csv.writer(personas_file, lineterminator="\n")
        members_csv.writerow(_MEMBER_COLUMNS)
        personas_csv.writerow(("external_id", "email", "persona"))
        for index, persona in enumerate(personas, start=1):
            member = _write_member(rng, members_csv, index, persona, now, emails)
            personas_csv.writerow((member.external_id, member.email, persona.key))
            _write_answers(rng, answers_file, member, now, questionnaire)
            _write_activity(rng, activity_file, member, now, library)
    return files


def generate_library_community(
    out_dir: Path | str,
    n_members: int = 2000,
    seed: int = 7,
    *,
    now: dt.datetime,
    library: Sequence[LibraryItem],
    questionnaire: AnswerValidator | None = None,
    dated: bool = True,
) -> DemoFiles:
    """Write the demo community of a workspace: its members read its library, answer its questions.

    :func:`generate_demo_community` given the keys, languages and dates of the library's items,
    as ``nurture demo``, the benchmarks and the tests generate it.

    Args:
        out_dir: Folder to write into (created if missing); existing demo files are replaced.
        n_members: How many members.
        seed: Seed of every random choice: the same arguments give byte-identical files.
        now: The current time (timezone-aware): members joined in the two years before it.
        library: The workspace's content items.
        questionnaire: When given, every generated answer is checked with it.
        dated: Whether members read an item only once published and attend events at their
            time (``content_dates``); without, any item is read and any event attended at any
            time.

    Returns:
        The paths of the written files.

    Raises:
        ValueError: ``now`` is naive or ``n_members`` is negative.
        ImportRecordError: ``questionnaire`` refuses a generated answer.
    """
    return generate_demo_community(
        out_dir,
        n_members,
        seed,
        now=now,
        content_keys=[item.key for item in library],
        content_languages={item.key: item.language for item in library},
        content_dates={item.key: item for item in library} if dated else None,
        questionnaire=questionnaire,
    )


def _write_member(
    rng: random.Random,
    writer: Any,
    index: int,
    persona: Persona,
    now: dt.datetime,
    emails: set[str],
) -> _Member:
    language = "fr" if rng.random() < FRENCH_SHARE else "en"
    first_name = rng.choice(FIRST_NAMES[language])
    last_name = rng.choice(LAST_NAMES[language])
    zones, weights = zip(*TIME_ZONES[language], strict=True)
    zone_name = rng.choices(zones, weights)[0]
    email = _unique_email(rng, first_name, last_name, emails)
    birthday = None
    if rng.random() >= 0.05:
        birthday = now.date() - dt.timedelta(days=rng.randint(22 * 365, 66 * 365))
    if rng.random() < RECENT_JOINERS:
        seconds_ago = rng.randint(3600, 30 * 86400)
    else:
        seconds_ago = rng.randint(30 * 86400, 730 * 86400)
    zone = zoneinfo.ZoneInfo(zone_name)
    joined_at = now - dt.timedelta(seconds=seconds_ago)
    member = _Member(f"demo-{index:05d}", email, language, zone, joined_at, persona)
    writer.writerow(
        (
            member.external_id,
            email,
            first_name,
            last_name,
            language,
            zone_name,
            birthday.isoformat() if birthday else "",
            _timestamp(joined_at, zone),
            ConsentStatus.GRANTED,
            rng.choice(("signup_form", "signup_form", "event_badge", "crm_import")),
            COUNTRIES[zone_name],
        )
    )
    return member


def _unique_email(rng: random.Random, first: str, last: str, taken: set[str]) -> str:
    first_ascii, last_ascii = _ascii(first), _ascii(last)
    local = rng.choice(
        (
            f"{first_ascii}.{last_ascii}",
            f"{first_ascii}.{last_ascii}",
            f"{first_ascii[0]}{last_ascii}",
            f"{first_ascii}_{last_ascii}",
            f"{first_ascii}{last_ascii[0]}",
        )
    )
    domain = rng.choice(("example.org", "example.com"))
    email, number = f"{local}@{domain}", 1
    while email in taken:
        number += 1
        email = f"{local}{number}@{domain}"
    taken.add(email)
    return email


def _ascii(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return re.sub(r"[^a-z]", "", decomposed.encode("ascii", "ignore").decode().lower())


def _write_answers(
    rng: random.Random,
    out: TextIO,
    member: _Member,
    now: dt.datetime,
    questionnaire: AnswerValidator | None,
) -> None:
    if rng.random() < SKIP_QUESTIONNAIRE:
        return
    persona = member.persona
    answered_at = min(now, member.joined_at + dt.timedelta(seconds=rng.randint(60, 14 * 86400)))
    answers: list[tuple[str, Any]] = [
        ("role", _single_choice(rng, persona, "role")),
        ("community_kind", _single_choice(rng, persona, "community_kind")),
        ("goals", _multiple_choice(rng, persona, "goals")),
        ("formats", _multiple_choice(rng, persona, "formats")),
        ("experience", _experience(rng, persona)),
    ]
    if rng.random() >= SKIP_FREE_TEXT:
        answers.append(("expectations", _expectations(rng, persona, member.language)))
    for question, value in answers:
        if questionnaire is not None:
            questionnaire.validate_answer(question, value)
        record = {
            "member": member.external_id,
            "question": question,
            "value": value,
            "answered_at": _timestamp(answered_at, member.zone),
        }
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _single_choice(rng: random.Random, persona: Persona, question: str) -> str:
    weights = persona.choices[question]
    if rng.random() < NOISE:
        return rng.choice([option for option in OPTIONS[question] if option not in weights])
    options = list(weights)
    return rng.choices(options, [weights[option] for option in options])[0]


def _multiple_choice(rng: random.Random, persona: Persona, question: str) -> list[str]:
    weights = persona.choices[question]
    chosen = {option for option, weight in weights.items() if rng.random() < weight}
    if not chosen:
        options = list(weights)
        chosen.add(rng.choices(options, [weights[option] for option in options])[0])
    if rng.random() < NOISE:
        others = [option for option in OPTIONS[question] if option not in weights]
        chosen.add(rng.choice(others))
        if len(chosen) > 2 and rng.random() < 0.5:
            chosen.discard(rng.choice(sorted(chosen & set(weights))))
    return [option for option in OPTIONS[question] if option in chosen]


def _experience(rng: random.Random, persona: Persona) -> int:
    if rng.random() < NOISE:
        return rng.randint(1, 5)
    return rng.choices(range(1, 6), persona.experience)[0]


def _expectations(rng: random.Random, persona: Persona, language: str) -> str:
    own = list(persona.fragments[language])
    count = rng.choices((1, 2, 3), (0.35, 0.5, 0.15))[0]
    fragments = rng.sample(own, count)
    if rng.random() < NOISE:
        other = rng.choice([p for p in PERSONAS if p is not persona])
        fragments[-1] = rng.choice(other.fragments[language])
    text = fragments[0]
    for fragment in fragments[1:]:
        text += rng.choice(_JOINERS[language]) + fragment
    sentence = f"{rng.choice(_OPENERS[language])} {text}."
    return sentence + rng.choice(_CLOSERS[language])


class _Pool:
    """Content keys in the order they become available, to pick one available at a moment."""

    def __init__(self, keys: Sequence[str], available: Mapping[str, dt.datetime]) -> None:
        ordered = sorted(keys, key=lambda key: available[key])  # stable: key order on ties
        self.keys = ordered
        self.times = [available[key] for key in ordered]

    def span(self, moment: dt.datetime, since: dt.datetime | None = None) -> tuple[int, int]:
        """The indexes ``[lo, hi)`` of the keys available at ``moment`` (and since ``since``)."""
        lo = bisect.bisect_left(self.times, since) if since is not None else 0
        return lo, bisect.bisect_right(self.times, moment)


class _Library:
    """The content keys, grouped by theme and language for quick picks.

    With the library's dates, each key is available from its publication (to read) or its
    event's start (to attend; a key without one cannot be attended); without, from always.
    """

    def __init__(
        self,
        keys: list[str],
        languages: Mapping[str, str],
        dates: Mapping[str, DatedContent] | None = None,
    ) -> None:
        self.keys = keys
        self.languages = languages
        self.dated = dates is not None
        self.events = [key for key in keys if _matches(key, _EVENT_WORDS)]
        self._event_set = frozenset(self.events)
        self.themes = {
            persona.key: [key for key in keys if _matches(key, persona.keywords)]
            for persona in PERSONAS
        }
        always = dt.datetime.min.replace(tzinfo=dt.UTC)
        self.published: dict[str, dt.datetime] = {key: always for key in keys}
        self.starts: dict[str, dt.datetime] = {key: always for key in keys}
        if dates is not None:
            for key in keys:
                item = dates.get(key)
                published = item.published_at if item is not None else None
                start = item.event_start if item is not None else None
                self.published[key] = published or always
                if start is None:
                    del self.starts[key]  # not an event: nobody attends it
                else:
                    self.starts[key] = start
        self._pools: dict[tuple[str, ...], _Pool] = {}

    def event_start(self, key: str) -> dt.datetime:
        """When the event ``key`` begins (only for a dated library)."""
        return self.starts[key]

    def pick(
        self,
        rng: random.Random,
        persona: Persona,
        language: str,
        *,
        moment: dt.datetime,
        event: bool = False,
        since: dt.datetime | None = None,
    ) -> str | None:
        """A key to read at ``moment``, or an event begun by then (and since ``since``)."""
        themed = self.themes[persona.key]
        if event:
            since = since if self.dated else None
            pool = self._pool("events", persona.key)
            lo, hi = pool.span(moment, since)
            if lo >= hi:
                pool = self._pool("events")
                lo, hi = pool.span(moment, since)
            name = "events"
            theme = persona.key if pool is self._pool("events", persona.key) else ""
        else:
            since = None
            name, theme = "read", ""
            if themed and rng.random() >= NOISE:
                theme = persona.key
            pool = self._pool(name, theme)
            lo, hi = pool.span(moment)
        if lo >= hi:
            return None
        if self.languages and rng.random() < 0.85:
            local = self._pool(name, theme, language)
            local_lo, local_hi = local.span(moment, since)
            if local_lo < local_hi:
                pool, lo, hi = local, local_lo, local_hi
        return pool.keys[lo + rng.randrange(hi - lo)]

    def _pool(self, name: str, theme: str = "", language: str = "") -> _Pool:
        """The keys to read (``read``) or attend (``events``) of a theme, in a language.

        An empty ``theme`` (a persona's key) or ``language`` means any.
        """
        cache_key = (name, theme, language)
        pool = self._pools.get(cache_key)
        if pool is None:
            if name == "events":
                pool_keys = self.themes[theme] if theme else self.events
                keys = [key for key in pool_keys if key in self._event_set and key in self.starts]
                available = self.starts
            else:
                keys = self.themes[theme] if theme else self.keys
                available = self.published
            if language:
                keys = [key for key in keys if self.languages.get(key, language) == language]
            pool = self._pools[cache_key] = _Pool(keys, available)
        return pool


def _matches(key: str, keywords: Sequence[str]) -> bool:
    lowered = key.lower()
    tokens = [token for token in re.split(r"[^a-z0-9]+", lowered) if token]
    for keyword in keywords:
        if "-" in keyword and keyword in lowered:
            return True
        for token in tokens:
            if token == keyword or (len(keyword) >= 4 and token.startswith(keyword)):
                return True
    return False


def _write_activity(
    rng: random.Random, out: TextIO, member: _Member, now: dt.datetime, library: _Library
) -> None:
    persona = member.persona
    shares, lows, highs = zip(*((s, lo, hi) for s, lo, hi in _ENGAGEMENT), strict=True)
    level = rng.choices(range(len(_ENGAGEMENT)), shares)[0]
    start = max(member.joined_at, now - dt.timedelta(days=ACTIVITY_DAYS))
    span = (now - start).total_seconds()
    if span < 3600:
        return
    full = rng.randint(lows[level], highs[level])
    count = round(full * span / (ACTIVITY_DAYS * 86400))
    kinds = list(ACTIVITY_TYPES)
    weights = list(persona.activity)
    if not library.keys:
        weights = [
            0.0 if kind in _NEEDS_CONTENT else weight
            for kind, weight in zip(kinds, weights, strict=True)
        ]
    moments = sorted(start + dt.timedelta(seconds=rng.uniform(0, span)) for _ in range(count))
    for number, moment in enumerate(moments, start=1):
        moment = moment.replace(microsecond=0)
        kind = rng.choices(kinds, weights)[0]
        content_key = None
        if kind in _NEEDS_CONTENT:
            content_key = library.pick(rng, persona, member.language, moment=moment)
        elif kind == "event_attended":
            content_key = library.pick(
                rng, persona, member.language, moment=moment, event=True, since=start
            )
            if content_key is not None and library.dated:
                # Attendance is recorded while the event takes place, not at a random moment.
                begins = library.event_start(content_key).astimezone(dt.UTC)
                moment = min(now, begins + dt.timedelta(minutes=rng.randint(0, 45)))
        if content_key is None and library.dated and kind in _NEEDS_LIBRARY:
            kind = "comment"  # nothing published or begun yet to read, click or attend
        record = {
            "member": member.external_id,
            "type": kind,
            "occurred_at": _timestamp(moment, member.zone),
            "content_key": content_key,
            "properties": _properties(rng, kind, persona, moment, member.language),
            "idempotency_key": f"demo:{member.external_id}:{number:04d}",
        }
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _properties(
    rng: random.Random, kind: str, persona: Persona, moment: dt.datetime, language: str
) -> dict[str, Any]:
    if kind == "post":
        title, excerpt = rng.choice(_POSTS[persona.key][language])
        return {
            "channel": rng.choice(_CHANNELS[persona.key]),
            "words": rng.randint(15, 400),
            "title": title,
            "excerpt": excerpt,
        }
    if kind == "comment":
        return {"channel": rng.choice(_CHANNELS[persona.key])}
    if kind == "event_attended":
        return {"format": rng.choice(("in_person", "online"))}
    if kind == "content_view":
        return {"source": rng.choice(("web", "email", "app"))}
    return {"campaign": f"newsletter-{moment:%Y-%m}"}


def _timestamp(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds")
