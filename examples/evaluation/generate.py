"""Write the example evaluation dataset of this folder (``python examples/evaluation/generate.py``).

A small learning platform for community builders: 35 items on five topics, 100 members who each
lean to one topic (their role, interests and free text say so, with some noise), and their
interactions over the first half of 2025. Each member's last one or two interactions are the
test set; 15 members joined late and have test interactions only (cold start). The output is the
same on every run (one seeded random generator), so the committed files can be checked against
it.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 11
START = dt.datetime(2025, 1, 6, 9, 0, tzinfo=dt.UTC)
SPAN_DAYS = 170

# topic -> items (title, text, tags)
ITEMS: dict[str, list[tuple[str, str, str]]] = {
    "events": [
        (
            "Run a local meetup people come back to",
            "A checklist for venues, speakers and the follow-up email that turns a first "
            "visit into a habit.",
            "events|meetups|checklist",
        ),
        (
            "Hybrid events that work for remote attendees",
            "How to give people watching online the same voice as those in the room: "
            "moderated chat, remote speakers and shorter sessions.",
            "events|hybrid|remote",
        ),
        (
            "Finding speakers for a monthly event series",
            "Where good speakers come from, how to brief them and how to build a bench of "
            "members ready to talk.",
            "events|speakers",
        ),
        (
            "Webinar formats beyond the slide deck",
            "Panels, live teardown sessions and office hours: webinar formats that keep the "
            "audience talking.",
            "webinars|events|formats",
        ),
        (
            "Growing event attendance without a budget",
            "Partner communities, member invitations and reminders that lift attendance at "
            "no cost.",
            "events|attendance",
        ),
        (
            "What to do between two events",
            "Keep the conversation going after a meetup: recap posts, photo threads and "
            "small follow-up groups.",
            "events|engagement",
        ),
        (
            "Planning a yearly community conference",
            "A twelve-month plan for a community conference: call for papers, sponsors, "
            "volunteers and the day itself.",
            "conference|events|planning",
        ),
    ],
    "onboarding": [
        (
            "Designing the first week of a new member",
            "The welcome email, the first question to answer and the first person to meet: "
            "a new member's first week, step by step.",
            "onboarding|newcomers|welcome",
        ),
        (
            "Building a customer academy people finish",
            "Short learning paths tied to a role, lessons that end in the product and "
            "certifications that mean something.",
            "academy|customer education|training",
        ),
        (
            "Documentation as a community onboarding tool",
            "Docs that invite questions and contributions help newcomers find their way and "
            "the community find its helpers.",
            "documentation|onboarding",
        ),
        (
            "Tutorials customers actually complete",
            "Why most tutorials are abandoned halfway and how to write ones that customers "
            "finish and share.",
            "tutorials|customer education",
        ),
        (
            "A buddy programme for newcomers",
            "Pairing each newcomer with an experienced member: who to pick, what to ask of "
            "them and how long it lasts.",
            "onboarding|buddy|newcomers",
        ),
        (
            "Office hours that help customers get value",
            "Weekly office hours where customers bring real problems and leave with an "
            "answer and a contact.",
            "customer success|office hours",
        ),
        (
            "Measuring onboarding: time to first contribution",
            "The one onboarding metric worth tracking, how to compute it and what moves it.",
            "onboarding|metrics",
        ),
    ],
    "growth": [
        (
            "Proving the ROI of your community to the board",
            "Tie community activity to retention, support costs and revenue with figures a "
            "board accepts.",
            "roi|metrics|board",
        ),
        (
            "Your first hundred members in a B2B community",
            "Founders share how they found their first hundred members: personal invitations, "
            "customer advisory boards and a clear promise.",
            "b2b|growth|founders",
        ),
        (
            "Turning your best customers into ambassadors",
            "An ambassador programme that recognises helpers, gives them early access and "
            "asks them to speak.",
            "ambassadors|advocacy|customers",
        ),
        (
            "Reducing churn with peer support",
            "Customers who help each other stay longer: how to connect them and measure the "
            "effect on churn.",
            "churn|retention|peer support",
        ),
        (
            "Community-led growth: a playbook for SaaS",
            "How community drives acquisition and expansion in a SaaS company, with the "
            "numbers to watch at each stage.",
            "growth|saas|playbook",
        ),
        (
            "Community health scores that predict renewals",
            "Combine activity, sentiment and support signals into a health score account "
            "managers trust.",
            "health score|metrics|renewals",
        ),
        (
            "Benchmarking community metrics against peers",
            "Which engagement and growth metrics to compare with other communities, and "
            "which comparisons mislead.",
            "benchmark|metrics",
        ),
    ],
    "open_source": [
        (
            "From first-time contributor to maintainer",
            "The path that turns someone fixing a typo into a trusted maintainer, and how to "
            "make each step easier.",
            "open source|contributors|maintainers",
        ),
        (
            "Writing a contribution guide newcomers understand",
            "A contributing guide with a clear first issue, a local setup that works and a "
            "friendly review promise.",
            "open source|contributing|documentation",
        ),
        (
            "Avoiding maintainer burnout",
            "Share the load, say no to scope creep and take breaks: keeping maintainers "
            "healthy on a busy project.",
            "maintainers|burnout|open source",
        ),
        (
            "A kind code review culture",
            "Review comments that teach rather than judge, and response times that keep "
            "contributors coming back.",
            "code review|contributors",
        ),
        (
            "Funding an open source project",
            "Sponsors, foundations and paid support: the ways open source projects pay for "
            "their maintainers.",
            "open source|funding|sponsors",
        ),
        (
            "Running a contributor sprint",
            "Plan a two-day contributor sprint online or in person: issue lists, mentors and "
            "a demo at the end.",
            "sprint|hackathon|contributors",
        ),
        (
            "Project governance for growing communities",
            "When a project outgrows its founder: steering committees, decision records and "
            "transparent roadmaps.",
            "governance|open source",
        ),
    ],
    "moderation": [
        (
            "Writing a code of conduct you can enforce",
            "A short code of conduct, a reporting channel and a response process the "
            "moderators actually follow.",
            "code of conduct|moderation|safety",
        ),
        (
            "Training volunteer moderators",
            "Recruit, train and support volunteer moderators so that they stay and stay "
            "consistent.",
            "moderation|volunteers|training",
        ),
        (
            "Handling a heated discussion",
            "De-escalate a thread that turns hostile: when to step in, what to say and when "
            "to lock it.",
            "moderation|conflict",
        ),
        (
            "Spam and bots in online communities",
            "Sign-up checks, rate limits and review queues that keep spam out without "
            "blocking real members.",
            "spam|moderation|safety",
        ),
        (
            "Transparent moderation decisions",
            "Publish moderation guidelines and anonymised decisions to build trust in the "
            "moderators.",
            "moderation|transparency|trust",
        ),
        (
            "Safe spaces for sensitive topics",
            "Private groups, content warnings and trained hosts for communities that talk "
            "about difficult subjects.",
            "safety|moderation|wellbeing",
        ),
        (
            "Moderation metrics worth tracking",
            "Response time, repeat reports and member sentiment: measuring whether moderation "
            "works.",
            "moderation|metrics",
        ),
    ],
}

PERSONAS: dict[str, dict[str, list[str]]] = {
    "events": {
        "roles": ["community manager", "event organiser", "marketer"],
        "interests": ["events", "webinars", "engagement", "speakers"],
        "texts": [
            "I organise monthly meetups and want more people to come back",
            "looking for ideas to run hybrid events and better webinars",
            "I need speakers and venues for our event series",
            "keen to grow attendance at our community events",
        ],
    },
    "onboarding": {
        "roles": ["customer success", "community manager", "trainer"],
        "interests": ["onboarding", "customer education", "documentation", "tutorials"],
        "texts": [
            "I want new customers to get value from the product faster",
            "building an academy with tutorials and certifications",
            "help newcomers find their place in the first weeks",
            "our onboarding is weak and members drop off after joining",
        ],
    },
    "growth": {
        "roles": ["founder", "marketer", "head of community"],
        "interests": ["growth", "roi", "ambassadors", "metrics"],
        "texts": [
            "I must prove the ROI of our community to the board",
            "we are a B2B startup trying to grow our first community",
            "turn our best customers into ambassadors",
            "reduce churn and show the impact on renewals",
        ],
    },
    "open_source": {
        "roles": ["maintainer", "developer advocate", "founder"],
        "interests": ["open source", "contributors", "code review", "governance"],
        "texts": [
            "I maintain an open source project and need more contributors",
            "how to turn first-time contributors into maintainers",
            "avoid burnout among the maintainers of our project",
            "find sponsors and funding for our open source library",
        ],
    },
    "moderation": {
        "roles": ["moderator", "community manager", "trust and safety lead"],
        "interests": ["moderation", "safety", "code of conduct", "volunteers"],
        "texts": [
            "our forum needs better moderation and a code of conduct",
            "training volunteer moderators who stay",
            "keep discussions civil and spam out",
            "make our community a safe space for sensitive topics",
        ],
    },
}

NOISE = 0.15
N_WARM = 85
N_COLD = 15


def _write(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    """Write members.csv, items.csv, train.csv and test.csv next to this script."""
    rng = random.Random(SEED)
    topics = list(ITEMS)
    items: list[tuple[str, str]] = []  # (id, topic)
    item_rows: list[list[object]] = []
    for topic in topics:
        for number, (title, text, tags) in enumerate(ITEMS[topic], start=1):
            item_id = f"{topic}-{number}"
            items.append((item_id, topic))
            item_rows.append([item_id, title, text, tags])
    by_topic = {topic: [item for item, t in items if t == topic] for topic in topics}

    member_rows: list[list[object]] = []
    train_rows: list[list[object]] = []
    test_rows: list[list[object]] = []
    for number in range(1, N_WARM + N_COLD + 1):
        member_id = f"m{number:03d}"
        topic = topics[(number - 1) % len(topics)]
        persona = PERSONAS[topic]
        shown = topic if rng.random() >= NOISE else rng.choice(topics)
        roles = PERSONAS[shown]["roles"]
        interests = rng.sample(PERSONAS[shown]["interests"], rng.randint(1, 3))
        text = rng.choice(persona["texts"]) if rng.random() >= 0.2 else ""
        member_rows.append(
            [
                member_id,
                rng.choice(roles),
                "|".join(interests),
                rng.randint(1, 10),
                text,
            ]
        )
        cold = number > N_WARM
        count = rng.randint(1, 3) if cold else rng.randint(3, 8)
        start = START + dt.timedelta(days=SPAN_DAYS - 30 if cold else rng.randint(0, 60))
        moments = sorted(
            start + dt.timedelta(minutes=rng.randint(0, 30 * 24 * 60)) for _ in range(count)
        )
        seen: set[str] = set()
        picks: list[tuple[dt.datetime, str, int]] = []
        for moment in moments:
            pool = by_topic[topic] if rng.random() >= NOISE else [item for item, _ in items]
            fresh = [item for item in pool if item not in seen] or pool
            item = rng.choice(fresh)
            seen.add(item)
            picks.append((moment, item, 2 if rng.random() < 0.3 else 1))
        held_out = len(picks) if cold else rng.randint(1, 2)
        for position, (moment, item, weight) in enumerate(picks):
            row = [member_id, item, weight, moment.isoformat().replace("+00:00", "Z")]
            (test_rows if position >= len(picks) - held_out else train_rows).append(row)

    _write(HERE / "items.csv", ["id", "title", "text", "tags"], item_rows)
    _write(
        HERE / "members.csv", ["id", "role", "interests", "experience_years", "text"], member_rows
    )
    header = ["member_id", "item_id", "weight", "timestamp"]
    _write(HERE / "train.csv", header, train_rows)
    _write(HERE / "test.csv", header, test_rows)


if __name__ == "__main__":
    main()
