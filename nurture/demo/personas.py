"""The hidden personas of the demo community: how each answers, talks and behaves.

A persona is what the segmentation should rediscover: a distribution over the questionnaire's
choices, sentence fragments for the free-text answer in English and French, content themes and
an activity mix. The options are exactly those of ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["OPTIONS", "PERSONAS", "Persona"]

OPTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "role": (
            "founder",
            "community_manager",
            "marketer",
            "customer_success",
            "developer_advocate",
            "internal_comms",
        ),
        "community_kind": ("customer", "partner", "employee", "open_source", "association"),
        "goals": (
            "grow_members",
            "improve_engagement",
            "onboard_newcomers",
            "measure_roi",
            "run_events",
            "create_content",
            "reduce_churn",
            "build_ambassadors",
        ),
        "formats": ("article", "webinar", "event", "masterclass", "discussion"),
    }
)
"""Choice options of the questionnaire, by question key."""


@dataclass(frozen=True)
class Persona:
    """One hidden persona.

    Attributes:
        key: Its name (``b2b_founder``...).
        choices: Weights over the options of each single or multiple choice question.
        experience: Weights of the answers 1..5 to ``experience``.
        fragments: Sentence fragments about what the member expects, by language.
        keywords: Words that content keys of the persona's themes contain.
        activity: Relative weights of ``post``, ``comment``, ``event_attended``,
            ``content_view``, ``email_open``, ``email_click``.
    """

    key: str
    choices: Mapping[str, Mapping[str, float]]
    experience: tuple[float, float, float, float, float]
    fragments: Mapping[str, tuple[str, ...]]
    keywords: tuple[str, ...]
    activity: tuple[float, float, float, float, float, float]


PERSONAS: tuple[Persona, ...] = (
    Persona(
        key="b2b_founder",
        choices={
            "role": {"founder": 0.85, "marketer": 0.15},
            "community_kind": {"customer": 0.65, "partner": 0.35},
            "goals": {
                "grow_members": 0.9,
                "measure_roi": 0.8,
                "build_ambassadors": 0.5,
                "reduce_churn": 0.4,
            },
            "formats": {"masterclass": 0.8, "article": 0.5, "webinar": 0.4},
        },
        experience=(0.15, 0.35, 0.3, 0.15, 0.05),
        fragments={
            "en": (
                "learn how other founders grow a B2B community from zero",
                "prove the ROI of our community to the board",
                "turn our best customers into ambassadors",
                "find a repeatable playbook for community-led growth",
                "swap notes with SaaS founders on pricing communities",
                "reduce churn by connecting customers with each other",
                "benchmark our community metrics against other startups",
                "get feedback on our go-to-market from peers",
            ),
            "fr": (
                "apprendre comment d'autres fondateurs lancent une communauté B2B",
                "prouver le ROI de notre communauté auprès des investisseurs",
                "transformer nos meilleurs clients en ambassadeurs",
                "trouver une méthode de croissance portée par la communauté",
                "échanger avec des fondateurs SaaS sur la monétisation",
                "réduire le churn en faisant se rencontrer nos clients",
                "comparer nos indicateurs avec ceux d'autres startups",
                "avoir des retours de pairs sur notre stratégie commerciale",
            ),
        },
        keywords=(
            "b2b",
            "founder",
            "roi",
            "growth",
            "grow",
            "ambassador",
            "churn",
            "saas",
            "startup",
            "metrics",
            "croissance",
            "fondateur",
            "ambassadeur",
        ),
        activity=(0.10, 0.15, 0.10, 0.35, 0.20, 0.10),
    ),
    Persona(
        key="employee_comms",
        choices={
            "role": {"internal_comms": 0.85, "community_manager": 0.15},
            "community_kind": {"employee": 0.9, "association": 0.1},
            "goals": {
                "improve_engagement": 0.9,
                "onboard_newcomers": 0.6,
                "create_content": 0.5,
            },
            "formats": {"article": 0.8, "discussion": 0.5, "webinar": 0.4},
        },
        experience=(0.1, 0.3, 0.35, 0.2, 0.05),
        fragments={
            "en": (
                "keep remote employees engaged with company news",
                "make our intranet feel like a real community",
                "help new hires find their place in the first weeks",
                "get managers to share stories with their teams",
                "run internal campaigns that people actually read",
                "connect colleagues across sites and countries",
                "measure engagement on our internal channels",
                "find ideas for newsletters our staff look forward to",
            ),
            "fr": (
                "garder les salariés en télétravail impliqués dans la vie de l'entreprise",
                "faire de notre intranet une vraie communauté",
                "aider les nouveaux arrivants à trouver leur place",
                "encourager les managers à partager des histoires avec leurs équipes",
                "mener des campagnes internes que les collaborateurs lisent vraiment",
                "relier les collègues de sites et de pays différents",
                "mesurer l'engagement sur nos canaux internes",
                "trouver des idées de lettres internes attendues par les équipes",
            ),
        },
        keywords=(
            "employee",
            "internal",
            "intranet",
            "engagement",
            "onboarding",
            "hybrid",
            "remote",
            "newsletter",
            "staff",
            "collaborateur",
            "interne",
            "salarie",
        ),
        activity=(0.05, 0.10, 0.05, 0.35, 0.35, 0.10),
    ),
    Persona(
        key="event_organiser",
        choices={
            "role": {"community_manager": 0.8, "marketer": 0.2},
            "community_kind": {"association": 0.55, "customer": 0.3, "partner": 0.15},
            "goals": {"run_events": 0.95, "grow_members": 0.5, "improve_engagement": 0.5},
            "formats": {"event": 0.9, "webinar": 0.5, "masterclass": 0.3},
        },
        experience=(0.05, 0.15, 0.3, 0.3, 0.2),
        fragments={
            "en": (
                "organise meetups that people want to come back to",
                "find speakers and venues for our monthly events",
                "run hybrid events that work for remote attendees too",
                "keep the conversation going between two events",
                "learn how to grow attendance without a big budget",
                "meet other organisers and share checklists",
                "get better at hosting webinars and live sessions",
                "turn event attendees into active members",
            ),
            "fr": (
                "organiser des rencontres où les gens ont envie de revenir",
                "trouver des intervenants et des lieux pour nos événements mensuels",
                "animer des événements hybrides qui marchent aussi à distance",
                "faire vivre les échanges entre deux événements",
                "augmenter la participation sans gros budget",
                "rencontrer d'autres organisateurs et partager nos checklists",
                "progresser dans l'animation de webinaires et de lives",
                "transformer les participants en membres actifs",
            ),
        },
        keywords=(
            "event",
            "events",
            "meetup",
            "conference",
            "webinar",
            "venue",
            "speaker",
            "hybrid",
            "live",
            "evenement",
            "webinaire",
            "rencontre",
        ),
        activity=(0.10, 0.15, 0.35, 0.15, 0.15, 0.10),
    ),
    Persona(
        key="customer_educator",
        choices={
            "role": {"customer_success": 0.85, "marketer": 0.15},
            "community_kind": {"customer": 0.9, "partner": 0.1},
            "goals": {"onboard_newcomers": 0.85, "reduce_churn": 0.7, "create_content": 0.6},
            "formats": {"webinar": 0.8, "article": 0.5, "masterclass": 0.5},
        },
        experience=(0.1, 0.25, 0.35, 0.2, 0.1),
        fragments={
            "en": (
                "help customers get value from the product faster",
                "build an academy with tutorials and certifications",
                "cut support tickets by letting customers help each other",
                "onboard new accounts with a clear learning path",
                "create training content that customers finish",
                "spot at-risk customers before they churn",
                "run office hours and product webinars",
                "share best practices from our most successful customers",
            ),
            "fr": (
                "aider les clients à tirer parti du produit plus vite",
                "construire une académie avec des tutoriels et des certifications",
                "réduire les tickets de support grâce à l'entraide entre clients",
                "accompagner les nouveaux comptes avec un parcours de formation clair",
                "créer des formations que les clients vont jusqu'au bout",
                "repérer les clients à risque avant qu'ils ne partent",
                "animer des permanences et des webinaires produit",
                "partager les bonnes pratiques de nos meilleurs clients",
            ),
        },
        keywords=(
            "customer",
            "education",
            "academy",
            "onboarding",
            "success",
            "training",
            "tutorial",
            "support",
            "learning",
            "client",
            "academie",
            "formation",
        ),
        activity=(0.05, 0.15, 0.10, 0.40, 0.20, 0.10),
    ),
    Persona(
        key="oss_maintainer",
        choices={
            "role": {"developer_advocate": 0.8, "founder": 0.2},
            "community_kind": {"open_source": 0.95, "association": 0.05},
            "goals": {
                "onboard_newcomers": 0.7,
                "build_ambassadors": 0.6,
                "improve_engagement": 0.5,
                "create_content": 0.3,
            },
            "formats": {"discussion": 0.85, "article": 0.5, "event": 0.3},
        },
        experience=(0.05, 0.1, 0.25, 0.35, 0.25),
        fragments={
            "en": (
                "turn first-time contributors into regular maintainers",
                "write contribution guides that newcomers understand",
                "avoid maintainer burnout on our open source project",
                "grow a healthy contributor community on GitHub",
                "run a friendly code review culture",
                "find sponsors and funding for the project",
                "organise sprints and hackathons for contributors",
                "keep the issue tracker welcoming for beginners",
            ),
            "fr": (
                "transformer les premiers contributeurs en mainteneurs réguliers",
                "écrire des guides de contribution clairs pour les débutants",
                "éviter l'épuisement des mainteneurs de notre projet open source",
                "faire grandir une communauté de contributeurs sur GitHub",
                "installer une culture de relecture de code bienveillante",
                "trouver des sponsors et des financements pour le projet",
                "organiser des sprints et des hackathons pour les contributeurs",
                "garder le suivi des tickets accueillant pour les débutants",
            ),
        },
        keywords=(
            "open-source",
            "opensource",
            "oss",
            "contributor",
            "contributors",
            "maintainer",
            "github",
            "developer",
            "code",
            "hackathon",
            "contributeur",
            "mainteneur",
        ),
        activity=(0.30, 0.35, 0.05, 0.15, 0.10, 0.05),
    ),
)
"""The five hidden personas, in a fixed order."""
