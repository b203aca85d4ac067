import datetime as dt
import random
import re

import numpy as np
import pytest
from sqlalchemy import func, select

from nurture.embedding import HashingEmbedder, embed_texts_cached
from nurture.recommend import (
    RankingWeights,
    content_text,
    embed_content_items,
    load_content_vectors,
    load_ranking_signals,
    recommend_for_members,
    recommendations_for,
    start_match_run,
)
from nurture.recommend.content_vectors import LIBRARY_COLUMNS, load_library_vectors
from nurture.storage.models import (
    ActivityEvent,
    Answer,
    ContentItem,
    EmbeddingCacheEntry,
    Enrollment,
    Journey,
    MatchRun,
    Member,
    MemberProfile,
    Message,
    MessageStatus,
    Recommendation,
    Segment,
    SegmentationRun,
    SegmentMembership,
)
from tests.ranking_helpers import POPULARITY_ALONE

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)

LIBRARY = {
    "b2b-masterclass": (
        "masterclass",
        "en",
        "Grow your B2B customer community",
        "A masterclass on B2B customer community growth.",
        ["b2b", "growth"],
    ),
    "events-playbook": (
        "article",
        "en",
        "Run memorable community events",
        "Plan, host and follow up on meetups and events.",
        ["events"],
    ),
    "oss-maintainers": (
        "article",
        "en",
        "Open source maintainers and contributors",
        "Keep open source contributors engaged.",
        ["open_source"],
    ),
    "churn-guide": (
        "article",
        "en",
        "Reduce churn with onboarding",
        "Onboard newcomers well to reduce churn.",
        ["churn", "onboarding"],
    ),
    "roi-webinar": (
        "webinar",
        "en",
        "Measure community ROI",
        "Metrics and dashboards to measure ROI.",
        ["roi"],
    ),
    "b2b-masterclass-fr": (
        "masterclass",
        "fr",
        "Développer votre communauté clients B2B",
        "Une masterclass sur la croissance B2B.",
        ["b2b"],
    ),
    "evenements-fr": (
        "article",
        "fr",
        "Organiser des événements communautaires",
        "Préparer et animer des événements.",
        ["evenements"],
    ),
}


def _item(key, kind, language, title, summary, tags, **times):
    return ContentItem(
        key=key,
        title=title,
        url=f"https://example.org/{key}",
        kind=kind,
        language=language,
        tags=tags,
        summary=summary,
        body=f"{summary} More about {title.lower()}.",
        published_at=times.pop("published_at", NOW - 10 * DAY),
        text_hash=key,
        source_path=f"library/{key}.md",
        **times,
    )


def _member(session, email, language="en"):
    member = Member(email=email, first_name=email.split("@")[0], language=language, joined_at=NOW)
    session.add(member)
    session.flush()
    return member


def _profile(session, member, interest):
    session.add(
        MemberProfile(
            member_id=member.id,
            features=np.zeros(3, np.float32),
            interest=interest,
            lifecycle_stage="active",
            feature_names_hash="x",
        )
    )


def _event(session, member, type_, key, days_ago=1):
    session.add(
        ActivityEvent(
            member_id=member.id,
            type=type_,
            occurred_at=NOW - days_ago * DAY,
            content_key=key,
            idempotency_key=f"{member.id}-{type_}-{key}-{days_ago}",
        )
    )


@pytest.fixture
def embedder():
    return HashingEmbedder(256)


@pytest.fixture
def library(session):
    items = [_item(key, *spec) for key, spec in LIBRARY.items()]
    items += [
        _item(
            "past-meetup",
            "event",
            "en",
            "B2B customer community meetup",
            "A meetup.",
            ["b2b"],
            event_start=NOW - DAY,
        ),
        _item(
            "future-meetup",
            "event",
            "en",
            "Community events meetup in Paris",
            "Meet organisers of community events.",
            ["events"],
            event_start=NOW + 5 * DAY,
        ),
        _item(
            "expired-offer",
            "article",
            "en",
            "B2B customer community offer",
            "Expired.",
            ["b2b"],
            expires_at=NOW - DAY,
        ),
        _item(
            "not-yet",
            "article",
            "en",
            "B2B customer community preview",
            "Later.",
            ["b2b"],
            published_at=NOW + DAY,
        ),
    ]
    session.add_all(items)
    session.flush()
    return {item.key: item for item in items}


def _vector(session, embedder, text):
    return embed_texts_cached(session, embedder, [text])[0]


def _keys(session, member):
    return [item.key for item in recommendations_for(session, member.id)]


def test_content_text_holds_title_summary_tags_and_body_start(library):
    text = content_text(library["oss-maintainers"])
    assert text.startswith("Open source maintainers and contributors\nKeep open source")
    assert "open source" in text.splitlines()[2]
    long = ContentItem(key="k", title="T", tags=[], summary="", body="word " * 1000)
    assert len(content_text(long)) < 1100


class _CountingEmbedder(HashingEmbedder):
    def __init__(self):
        super().__init__(64)
        self.embedded = 0

    def embed(self, texts):
        self.embedded += len(texts)
        return super().embed(texts)


def test_content_is_embedded_once_per_model(session, library):
    embedder = _CountingEmbedder()
    assert embed_content_items(session, embedder) == len(library)
    assert embedder.embedded == len(library)
    embed_content_items(session, embedder)
    items, matrix = load_content_vectors(session, embedder)
    assert embedder.embedded == len(library)
    assert matrix.shape == (len(library), 64)
    assert [item.id for item in items] == sorted(item.id for item in library.values())
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    count = session.scalar(select(func.count()).select_from(EmbeddingCacheEntry))
    assert count == len(library)


def test_member_interest_puts_obvious_match_first_and_filters(session, embedder, library):
    member = _member(session, "ada@example.org")
    _profile(session, member, _vector(session, embedder, "grow our B2B customer community"))
    summary = recommend_for_members(session, embedder, [member.id], NOW, k=10)
    keys = _keys(session, member)
    assert keys[0] == "b2b-masterclass"
    assert summary.members == 1 and summary.recommendations == len(keys)
    assert summary.members_without_items == 0
    # language, past event, expiry, publication date
    assert not {"b2b-masterclass-fr", "evenements-fr"} & set(keys)
    assert not {"past-meetup", "expired-offer", "not-yet"} & set(keys)
    assert "future-meetup" in keys
    ranks = session.scalars(
        select(Recommendation.rank)
        .where(Recommendation.member_id == member.id)
        .order_by(Recommendation.rank)
    ).all()
    assert ranks == list(range(1, len(keys) + 1))


def test_french_member_gets_french_items_and_reasons(session, embedder, library):
    member = _member(session, "zoe@example.org", language="fr")
    session.add(
        Answer(
            member_id=member.id,
            question_key="expectations",
            value="Développer votre communauté clients B2B",
        )
    )
    recommend_for_members(session, embedder, [member.id], NOW)
    items = recommendations_for(session, member.id)
    assert [item.language for item in items] == ["fr", "fr"]
    assert items[0].key == "b2b-masterclass-fr"
    assert items[0].reason == "Vous avez dit : « Développer votre communauté clients B2B »"


def test_consumed_and_already_sent_items_are_excluded(session, embedder, library):
    member = _member(session, "bob@example.org")
    _event(session, member, "content_view", "b2b-masterclass")
    _event(session, member, "event_attended", "future-meetup")
    _event(session, member, "email_open", "roi-webinar")  # an open is not a consumption
    journey = Journey(
        key="welcome",
        version=1,
        definition_hash="h",
        definition={},
        source_path="journeys/welcome.yaml",
    )
    session.add(journey)
    session.flush()
    enrollment = Enrollment(journey_id=journey.id, journey_key="welcome", member_id=member.id)
    session.add(enrollment)
    session.flush()
    session.add_all(
        [
            Message(
                enrollment_id=enrollment.id,
                step_id="s1",
                member_id=member.id,
                journey_key="welcome",
                template="t",
                subject="s",
                scheduled_at=NOW,
                status=MessageStatus.SENT,
                context={"items": [{"key": "churn-guide"}]},
            ),
            Message(
                enrollment_id=enrollment.id,
                step_id="s2",
                member_id=member.id,
                journey_key="welcome",
                template="t",
                subject="s",
                scheduled_at=NOW,
                status=MessageStatus.FAILED,
                context={"items": ["events-playbook"]},
            ),
        ]
    )
    recommend_for_members(session, embedder, [member.id], NOW)
    keys = _keys(session, member)
    assert not {"b2b-masterclass", "future-meetup", "churn-guide"} & set(keys)
    assert {"roi-webinar", "events-playbook"} <= set(keys)


def test_near_duplicates_are_not_listed_together(session, embedder, library):
    twin = _item("b2b-masterclass-copy", *LIBRARY["b2b-masterclass"])
    session.add(twin)
    member = _member(session, "cy@example.org")
    _profile(session, member, _vector(session, embedder, "grow our B2B customer community"))
    session.flush()
    recommend_for_members(session, embedder, [member.id], NOW)
    keys = _keys(session, member)
    assert len({"b2b-masterclass", "b2b-masterclass-copy"} & set(keys)) == 1


def _segment(session, key, members, *, run=None, interest=None, kind="cluster"):
    run = run or SegmentationRun(algorithm="kmeans", n_segments=1)
    segment = Segment(key=key, label=f"Label of {key}", interest=interest, kind=kind)
    session.add_all([run, segment])
    session.flush()
    for member in members:
        session.add(SegmentMembership(run_id=run.id, member_id=member.id, segment_id=segment.id))
    session.flush()
    return run, segment


def test_member_with_nothing_gets_their_segments_favourites(session, embedder, library):
    """Cold start: no answers, no history; the segment's most engaged items come first."""
    data_people = [_member(session, f"data{i}@example.org") for i in range(3)]
    event_people = [_member(session, f"events{i}@example.org") for i in range(3)]
    for person in data_people:
        _event(session, person, "content_view", "roi-webinar")
    for person in event_people:
        _event(session, person, "content_view", "events-playbook")
        _event(session, person, "content_view", "events-playbook", days_ago=2)
    newcomer = _member(session, "new@example.org")
    run, _ = _segment(session, "seg-data", [*data_people, newcomer])
    _segment(session, "seg-events", event_people, run=run)

    summary = recommend_for_members(session, embedder, [newcomer.id], NOW, k=3)

    items = recommendations_for(session, newcomer.id)
    assert summary.recommendations == 3 and summary.cold_start == 1
    assert items[0].key == "roi-webinar"  # the segment's favourite, not the community's
    assert items[0].reason == "Popular with members like you"


def test_member_with_nothing_and_no_segment_gets_the_communitys_best(session, embedder, library):
    for i in range(3):
        _event(session, _member(session, f"fan{i}@example.org"), "content_view", "churn-guide")
    _event(session, _member(session, "one@example.org"), "content_view", "roi-webinar")
    newcomer = _member(session, "new@example.org")
    session.flush()

    recommend_for_members(session, embedder, [newcomer.id], NOW, k=3)

    items = recommendations_for(session, newcomer.id)
    assert [item.key for item in items[:2]] == ["churn-guide", "roi-webinar"]
    assert {item.reason for item in items} == {"Popular in the community"}


def test_french_cold_start_reason_is_in_french(session, embedder, library):
    newcomer = _member(session, "lea@example.org", language="fr")
    recommend_for_members(session, embedder, [newcomer.id], NOW, k=1)
    [item] = recommendations_for(session, newcomer.id)
    assert item.language == "fr" and item.reason == "Populaire dans la communauté"


def test_member_with_only_answers_gets_items_from_their_answers(session, embedder, library):
    """Cold start: answers, no activity; the answers rank and explain the list."""
    for i in range(5):  # the community's favourite is elsewhere
        _event(session, _member(session, f"fan{i}@example.org"), "content_view", "oss-maintainers")
    member = _member(session, "ana@example.org")
    answer = "We run community events and meetups"
    session.add_all(
        [
            Answer(member_id=member.id, question_key="expectations", value=answer),
            Answer(member_id=member.id, question_key="goals", value=["measure_roi"]),
        ]
    )
    _profile(session, member, _vector(session, embedder, f"{answer} measure roi"))
    session.flush()

    # popularity at the weight it has for members with history: the answers lead
    weights = RankingWeights(cold_start_popularity=RankingWeights().popularity)
    summary = recommend_for_members(session, embedder, [member.id], NOW, k=4, weights=weights)

    items = recommendations_for(session, member.id)
    assert summary.cold_start == 0
    assert [item.key for item in items[:2]] == ["events-playbook", "roi-webinar"]
    reasons = {item.key: item.reason for item in items}
    assert reasons["events-playbook"] == f"You said: “{answer}”"
    assert reasons["roi-webinar"] == "You want to: measure ROI"


def test_a_tie_between_segments_goes_to_the_oldest_segment(session, embedder, library):
    newcomer = _member(session, "tie@example.org")
    run = SegmentationRun(algorithm="rules", n_segments=2)
    older = Segment(key="rule-a", label="Older segment", kind="rule")
    newer = Segment(key="rule-b", label="Newer segment", kind="rule")
    session.add_all([run, older, newer])
    session.flush()
    for segment in (older, newer):  # neither has a distance nor an interest: a tie
        session.add(SegmentMembership(run_id=run.id, member_id=newcomer.id, segment_id=segment.id))
        session.flush()
    old_fan, new_fan = _member(session, "old@example.org"), _member(session, "new@example.org")
    _event(session, old_fan, "content_view", "churn-guide")
    for days_ago in (1, 2):
        _event(session, new_fan, "content_view", "roi-webinar", days_ago=days_ago)
    session.add(SegmentMembership(run_id=run.id, member_id=old_fan.id, segment_id=older.id))
    session.add(SegmentMembership(run_id=run.id, member_id=new_fan.id, segment_id=newer.id))
    session.flush()
    recommend_for_members(session, embedder, [newcomer.id], NOW, k=1)
    [item] = recommendations_for(session, newcomer.id)
    assert item.key == "churn-guide"  # the older segment's favourite
    assert item.reason == "Popular with members like you"


def test_segment_interest_of_latest_run_is_the_fallback(session, embedder, library):
    member = _member(session, "dee@example.org")
    old_run = SegmentationRun(algorithm="kmeans", n_segments=2)
    new_run = SegmentationRun(algorithm="kmeans", n_segments=2)
    oss = Segment(
        key="oss",
        label="Maintainers",
        interest=_vector(session, embedder, "open source maintainers contributors"),
    )
    churn = Segment(
        key="churn",
        label="Retention",
        interest=_vector(session, embedder, "reduce churn onboarding newcomers"),
    )
    session.add_all([old_run, new_run, oss, churn])
    session.flush()
    session.add_all(
        [
            SegmentMembership(run_id=old_run.id, member_id=member.id, segment_id=churn.id),
            SegmentMembership(run_id=new_run.id, member_id=member.id, segment_id=oss.id),
        ]
    )
    recommend_for_members(session, embedder, [member.id], NOW)
    assert _keys(session, member)[0] == "oss-maintainers"


def test_reasons_quote_answer_name_goal_and_past_reading(session, embedder, library):
    member = _member(session, "eve@example.org")
    answer = (
        "I want to grow our B2B customer community, and I would love to hear how others "
        "have done it across many different markets"
    )
    session.add_all(
        [
            Answer(member_id=member.id, question_key="expectations", value=answer),
            Answer(member_id=member.id, question_key="goals", value=["measure_roi", "run_events"]),
        ]
    )
    _event(session, member, "content_view", "oss-maintainers")
    _profile(session, member, _vector(session, embedder, answer))
    session.add(
        _item(
            "oss-governance",
            "article",
            "en",
            "Open source governance",
            "Governance for open source maintainers and contributors.",
            ["open_source"],
        )
    )
    session.flush()
    recommend_for_members(session, embedder, [member.id], NOW)
    reasons = {item.key: item.reason for item in recommendations_for(session, member.id)}
    assert reasons["b2b-masterclass"].startswith("You said: “I want to grow our B2B customer")
    assert reasons["b2b-masterclass"].endswith("…”")
    assert len(reasons["b2b-masterclass"]) < 100
    assert reasons["roi-webinar"] == "You want to: measure ROI"
    assert (
        reasons["oss-governance"] == "Because you read “Open source maintainers and contributors”"
    )


def test_rerun_replaces_recommendations_and_records_runs(session, embedder, library):
    members = [_member(session, f"m{i}@example.org") for i in range(3)]
    ids = [member.id for member in members]
    first = recommend_for_members(session, embedder, ids, NOW, k=2)
    run_id = start_match_run(session, embedder, RankingWeights(member=0.7), k=4)
    second = recommend_for_members(session, embedder, [*ids, 999_999], NOW, k=4, run_id=run_id)
    assert second.run_id == run_id != first.run_id
    assert second.members == 3 and second.recommendations == 12
    rows = session.scalars(select(Recommendation)).all()
    assert len(rows) == 12 and {row.run_id for row in rows} == {run_id}
    run = session.get(MatchRun, run_id)
    assert run.model == embedder.name and run.params["weights"]["member"] == 0.7
    assert len(recommendations_for(session, ids[0], limit=3)) == 3


def test_member_without_eligible_items_is_counted(session, embedder, library):
    member = _member(session, "de@example.org", language="de")
    summary = recommend_for_members(session, embedder, [member.id], NOW)
    assert summary.members_without_items == 1 and summary.recommendations == 0


def test_recommendations_for_leaves_out_items_past_their_date(session, embedder, library):
    member = _member(session, "fay@example.org")
    _profile(session, member, _vector(session, embedder, "community events meetup Paris"))
    recommend_for_members(session, embedder, [member.id], NOW)
    assert "future-meetup" in _keys(session, member)
    later = [item.key for item in recommendations_for(session, member.id, now=NOW + 6 * DAY)]
    assert "future-meetup" not in later
    event = next(i for i in recommendations_for(session, member.id) if i.key == "future-meetup")
    assert event.event_start == NOW + 5 * DAY and event.url.endswith("future-meetup")


def test_empty_library_gives_empty_lists(session, embedder):
    member = _member(session, "gil@example.org")
    summary = recommend_for_members(session, embedder, [member.id], NOW)
    assert (summary.members, summary.recommendations, summary.members_without_items) == (1, 0, 1)
    assert recommendations_for(session, member.id) == []


def _oss_governance():
    return _item(
        "oss-governance",
        "article",
        "en",
        "Open source governance",
        "Governance for open source maintainers and contributors.",
        ["open_source"],
    )


@pytest.mark.parametrize(
    ("oss_days_ago", "events_days_ago", "first"),
    [(400, 1, "future-meetup"), (1, 400, "oss-governance")],
)
def test_recent_history_counts_more_than_old(
    session, embedder, library, oss_days_ago, events_days_ago, first
):
    session.add(_oss_governance())
    member = _member(session, "hal@example.org")
    _event(session, member, "content_view", "oss-maintainers", days_ago=oss_days_ago)
    _event(session, member, "content_view", "events-playbook", days_ago=events_days_ago)
    session.flush()
    weights = RankingWeights(interest_half_life_days=30, freshness=0.0, popularity=0.0)
    recommend_for_members(session, embedder, [member.id], NOW, weights=weights)
    keys = _keys(session, member)
    assert keys[0] == first
    assert not {"oss-maintainers", "events-playbook"} & set(keys)  # consumed, however long ago


def test_co_engagement_recommends_what_similar_readers_read(session, embedder, library):
    for i in range(4):
        reader = _member(session, f"reader{i}@example.org")
        _event(session, reader, "content_view", "churn-guide")
        _event(session, reader, "content_view", "roi-webinar")
    for i in range(4):
        organiser = _member(session, f"organiser{i}@example.org")
        _event(session, organiser, "content_view", "oss-maintainers")
        _event(session, organiser, "content_view", "events-playbook")
        _event(session, organiser, "content_view", "events-playbook", days_ago=3)
    member = _member(session, "ivy@example.org")
    _event(session, member, "content_view", "churn-guide")
    session.flush()
    weights = RankingWeights(popularity=0.0, freshness=0.0)

    recommend_for_members(session, embedder, [member.id], NOW, weights=weights)

    [first, *_] = recommendations_for(session, member.id)
    assert first.key == "roi-webinar"
    assert first.reason == "Members who read “Reduce churn with onboarding” also liked this"


def test_activity_after_now_is_ignored(session, embedder, library):
    member = _member(session, "jo@example.org")
    _event(session, member, "content_view", "b2b-masterclass", days_ago=-1)  # tomorrow
    session.flush()
    summary = recommend_for_members(session, embedder, [member.id], NOW)
    assert "b2b-masterclass" in _keys(session, member)
    assert summary.cold_start == 1


def test_kinds_filter_the_items(session, embedder, library):
    member = _member(session, "kim@example.org")
    session.flush()
    run_id = start_match_run(session, embedder, kinds={"webinar", "event"})
    recommend_for_members(session, embedder, [member.id], NOW, run_id=run_id, kinds={"webinar"})
    assert _keys(session, member) == ["roi-webinar"]
    assert session.get(MatchRun, run_id).params["kinds"] == ["event", "webinar"]


def test_what_the_run_shares_is_learned_once_per_run(session, embedder, library, monkeypatch):
    from nurture.recommend import run_state

    builds = []
    build = run_state.build_run_state
    monkeypatch.setattr(
        run_state, "build_run_state", lambda *args: builds.append(1) or build(*args)
    )
    members = [_member(session, f"n{i}@example.org") for i in range(4)]
    run_id = start_match_run(session, embedder)
    for chunk in (members[:2], members[2:]):
        recommend_for_members(session, embedder, [m.id for m in chunk], NOW, run_id=run_id)
    assert len(builds) == 1
    next_run = start_match_run(session, embedder)
    recommend_for_members(session, embedder, [members[0].id], NOW, run_id=next_run)
    assert len(builds) == 2
    recommend_for_members(session, embedder, [members[0].id], NOW)  # a run of its own
    assert len(builds) == 3


def test_every_reason_names_the_members_own_evidence(session, embedder, library):
    session.add(_oss_governance())
    member = _member(session, "lou@example.org")
    answer = "Open source contributors and maintainers"
    session.add_all(
        [
            Answer(member_id=member.id, question_key="expectations", value=answer),
            Answer(member_id=member.id, question_key="goals", value=["reduce_churn"]),
        ]
    )
    _event(session, member, "event_attended", "events-playbook")
    _profile(session, member, _vector(session, embedder, answer))
    session.flush()
    recommend_for_members(session, embedder, [member.id], NOW)
    allowed = {
        f"You said: “{answer}”",
        "You want to: reduce churn",
        "Because you attended “Run memorable community events”",
        "Members who attended “Run memorable community events” also liked this",
        "Popular in the community",
    }
    reasons = [item.reason for item in recommendations_for(session, member.id)]
    assert reasons and set(reasons) <= allowed
    assert {f"You said: “{answer}”", "You want to: reduce churn"} <= set(reasons)


def test_no_two_items_give_the_same_evidence_as_their_reason(session, embedder, library):
    """One answer explains one item: the others say something of their own."""
    session.add(_oss_governance())
    member = _member(session, "noa@example.org")
    answer = "Open source contributors and maintainers"
    session.add(Answer(member_id=member.id, question_key="expectations", value=answer))
    _event(session, member, "event_attended", "events-playbook")
    _profile(session, member, _vector(session, embedder, answer))
    session.flush()
    recommend_for_members(session, embedder, [member.id], NOW)
    reasons = [item.reason for item in recommendations_for(session, member.id)]
    evidence = [reason for reason in reasons if not reason.startswith(("Popular", "Members"))]
    assert reasons.count(f"You said: “{answer}”") == 1
    assert len(evidence) == len(set(evidence))


def test_distinct_evidence_serves_items_in_rank_order() -> None:
    from nurture.recommend.reasons import distinct_evidence

    x, y = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    evidence = np.stack([np.stack([x, y, x])])  # the third slot is padding
    mask = np.array([[True, True, False]])
    items = np.stack([np.stack([x, x, y, x])])  # two items close to x, one to y
    best, similarity = distinct_evidence(evidence, mask, items, 0.5)
    assert best.tolist() == [[0, -1, 1, -1]]
    assert similarity[0, 0] == pytest.approx(1.0) and similarity[0, 1] == -np.inf
    empty, _ = distinct_evidence(np.zeros((1, 0, 2)), np.zeros((1, 0), bool), items, 0.5)
    assert empty.tolist() == [[-1, -1, -1, -1]]


def test_distinct_evidence_of_many_members_is_each_members_own() -> None:
    from nurture.recommend.reasons import distinct_evidence

    rng = np.random.default_rng(3)
    m, e, k = 40, 6, 5
    evidence = rng.normal(size=(m, e, 8)).astype(np.float32)
    evidence /= np.linalg.norm(evidence, axis=-1, keepdims=True)
    items = rng.normal(size=(m, k, 8)).astype(np.float32)
    items /= np.linalg.norm(items, axis=-1, keepdims=True)
    mask = rng.random((m, e)) < 0.7
    best, similarity = distinct_evidence(evidence, mask, items, 0.1)
    for row in range(m):  # one member alone: each item, in rank order, takes the closest free
        free = mask[row].copy()
        for position in range(k):
            cosines = np.where(free, evidence[row] @ items[row, position], -np.inf)
            slot = int(np.argmax(cosines))
            if cosines[slot] >= 0.1:
                assert best[row, position] == slot
                assert similarity[row, position] == pytest.approx(cosines[slot], abs=1e-5)
                free[slot] = False
            else:
                assert best[row, position] == -1 and similarity[row, position] == -np.inf


def test_recommendation_rows_are_written_whole(session, embedder, library):
    members = [_member(session, f"w{i}@example.org") for i in range(2)]
    summary = recommend_for_members(session, embedder, [member.id for member in members], NOW, k=3)
    rows = session.scalars(select(Recommendation).order_by(Recommendation.id)).all()
    assert len(rows) == summary.recommendations == 6
    for member in members:
        mine = [row for row in rows if row.member_id == member.id]
        assert [row.rank for row in mine] == [1, 2, 3]
        assert all(row.run_id == summary.run_id and row.created_at is not None for row in mine)
        assert all(row.reason and np.isfinite(row.score) for row in mine)
        assert [row.score for row in mine] == sorted((row.score for row in mine), reverse=True)
        assert [item.key for item in recommendations_for(session, member.id)] == [
            session.get(ContentItem, row.content_item_id).key for row in mine
        ]


def test_a_reason_never_names_an_item_in_another_language(session, embedder, library):
    """What an English member read in French is not named in their English reasons."""
    member = _member(session, "sam@example.org")
    _event(session, member, "content_view", "b2b-masterclass-fr")
    session.flush()
    recommend_for_members(session, embedder, [member.id], NOW)
    reasons = [item.reason for item in recommendations_for(session, member.id)]
    assert reasons
    assert not any("Développer votre communauté clients B2B" in reason for reason in reasons)


def test_a_newcomer_gets_what_members_with_the_same_answers_engage_with(session, embedder, library):
    # moderators read the churn guide, founders the ROI webinar; founders are more numerous
    for i in range(2):
        moderator = _member(session, f"mod{i}@example.org")
        session.add(Answer(member_id=moderator.id, question_key="role", value="moderator"))
        _event(session, moderator, "content_view", "churn-guide")
    for i in range(4):
        founder = _member(session, f"founder{i}@example.org")
        session.add(Answer(member_id=founder.id, question_key="role", value="founder"))
        _event(session, founder, "content_view", "roi-webinar")
    newcomer = _member(session, "new@example.org")
    session.add(Answer(member_id=newcomer.id, question_key="role", value="moderator"))
    unknown = _member(session, "other@example.org")
    session.flush()

    recommend_for_members(
        session, embedder, [newcomer.id, unknown.id], NOW, k=2, choice_questions=["role"]
    )

    assert _keys(session, newcomer)[0] == "churn-guide"
    assert _keys(session, unknown)[0] == "roi-webinar"  # no answer: the community's favourite

    # The community's popularity mixes into segment popularity only: answer groups keep theirs.
    recommend_for_members(
        session,
        embedder,
        [newcomer.id, unknown.id],
        NOW,
        k=2,
        choice_questions=["role"],
        weights=RankingWeights(community_popularity=1.0),
    )
    assert _keys(session, newcomer)[0] == "churn-guide"


def test_members_who_answered_alike_share_a_row_ranked_as_one_row_each_would(
    session, embedder, library
):
    """Answer groups' popularity: one table row per combination of answers in the chunk, which
    ranks as one row per member (the community's mix left out of the groups') would."""
    from nurture.recommend import rank_content
    from nurture.recommend.matching import _with_community

    members = []
    for i, (role, read) in enumerate(
        [
            ("moderator", "churn-guide"),
            ("moderator", "churn-guide"),
            ("founder", "roi-webinar"),
            ("founder", "events-playbook"),
            ("moderator", None),
            (None, None),
            (None, "roi-webinar"),
        ]
    ):
        member = _member(session, f"member{i}@example.org")
        if role is not None:
            session.add(Answer(member_id=member.id, question_key="role", value=role))
        if read is not None:
            _event(session, member, "content_view", read)
        members.append(member)
    session.flush()
    ids = [member.id for member in members]

    signals = load_ranking_signals(
        session, embedder, ids, NOW, RankingWeights(), choice_questions=["role"]
    )

    table = signals.arguments["popularity"]
    rows = signals.arguments["popularity_rows"]
    assert signals.by_group.tolist() == [True] * 5 + [False] * 2
    assert len(table) == signals.group_rows + 2  # moderators' and founders'
    assert rows[0] == rows[1] == rows[4] != rows[2] == rows[3]
    assert (rows[signals.by_group] >= signals.group_rows).all()
    assert (rows[~signals.by_group] < signals.group_rows).all()
    for weights in (RankingWeights(), RankingWeights(community_popularity=0.5)):
        per_member = np.asarray(table, dtype=np.float32)[rows]
        if weights.community_popularity > 0:
            mixed = _with_community(per_member, signals.community, weights.community_popularity)
            mixed[signals.by_group] = per_member[signals.by_group]
            per_member = mixed
        reference = dict(signals.arguments, popularity=per_member, popularity_rows=None)
        expected_indices, expected_scores = rank_content(weights=weights, k=4, **reference)

        indices, scores = signals.rank(weights, 4)

        assert indices.tolist() == expected_indices.tolist()
        assert np.array_equal(scores, expected_scores, equal_nan=True)
        subset = np.array([4, 6])
        subset_indices, _ = signals.rank(weights, 4, subset)
        assert subset_indices.tolist() == expected_indices[subset].tolist()


def test_newcomers_are_ranked_with_their_own_weights(session, embedder, library):
    """``newcomer_weights`` rank members without history; the others keep ``weights``."""
    data_people = [_member(session, f"data{i}@example.org") for i in range(3)]
    event_people = [_member(session, f"events{i}@example.org") for i in range(3)]
    for person in data_people:
        _event(session, person, "content_view", "roi-webinar")
    for person in event_people:
        _event(session, person, "content_view", "events-playbook")
        _event(session, person, "content_view", "churn-guide", days_ago=2)
    newcomer = _member(session, "new@example.org")
    run, _ = _segment(session, "seg-data", [*data_people, newcomer])
    _segment(session, "seg-events", event_people, run=run)
    regular = data_people[0]
    ids = [newcomer.id, regular.id]

    recommend_for_members(session, embedder, ids, NOW, k=3)
    before = {member.id: _keys(session, member) for member in (newcomer, regular)}
    assert before[newcomer.id][0] == "roi-webinar"  # the segment's favourite

    community = RankingWeights(community_popularity=1.0)
    recommend_for_members(session, embedder, ids, NOW, k=3, newcomer_weights=community)
    after = {member.id: _keys(session, member) for member in (newcomer, regular)}
    assert after[regular.id] == before[regular.id]  # ranked with the weights as before
    assert after[newcomer.id][0] in {"events-playbook", "churn-guide"}  # the community's
    run_params = session.scalars(select(MatchRun.params).order_by(MatchRun.id.desc())).first()
    assert run_params["newcomer_weights"]["community_popularity"] == 1.0


def test_signals_loaded_once_rank_as_the_matcher_does(session, embedder, library):
    members = [_member(session, f"reader{i}@example.org") for i in range(4)]
    _event(session, members[0], "content_view", "roi-webinar")
    _event(session, members[1], "content_view", "roi-webinar")
    _event(session, members[1], "content_view", "churn-guide")
    _profile(session, members[2], _vector(session, embedder, "open source maintainers"))
    session.flush()
    ids = [member.id for member in members]
    weights = RankingWeights(mmr_lambda=0.9)

    recommend_for_members(session, embedder, ids, NOW, k=4, weights=weights)
    signals = load_ranking_signals(session, embedder, ids, NOW, weights)
    indices, _ = signals.rank(weights, 4)

    assert signals.member_ids == ids
    assert signals.has_history.tolist() == [True, True, False, False]
    for member, ranked in zip(members, indices, strict=True):
        assert [signals.item_keys[column] for column in ranked if column >= 0] == _keys(
            session, member
        )
    rows = np.array([1, 3])
    subset, _ = signals.rank(weights, 4, rows)
    assert subset.tolist() == indices[rows].tolist()


def test_long_run_popularity_counts_every_engagement_once_however_old(session, embedder, library):
    """``decay_popularity`` off: each member who engaged counts 1 (repeats once), at any age."""
    readers = [_member(session, f"reader{i}@example.org") for i in range(5)]
    for reader in readers[:3]:  # long ago: three members, one of them twice
        _event(session, reader, "content_view", "roi-webinar", days_ago=800)
    _event(session, readers[0], "content_view", "roi-webinar", days_ago=700)
    for reader in readers[3:]:  # yesterday: two members
        _event(session, reader, "content_view", "churn-guide")
    newcomer = _member(session, "new@example.org")
    session.flush()
    ids = [newcomer.id]
    alone = POPULARITY_ALONE

    recent = load_ranking_signals(session, embedder, ids, NOW, RankingWeights(**alone))
    long_run = load_ranking_signals(
        session, embedder, ids, NOW, RankingWeights(**alone, decay_popularity=False)
    )

    counts = dict(zip(long_run.item_keys, long_run.community.tolist(), strict=True))
    assert counts["roi-webinar"] == 3.0 and counts["churn-guide"] == 2.0
    assert sum(counts.values()) == 5.0
    decayed = dict(zip(recent.item_keys, recent.community.tolist(), strict=True))
    assert decayed["roi-webinar"] < 0.01 < decayed["churn-guide"] < 2.0
    recommend_for_members(
        session, embedder, ids, NOW, k=2, newcomer_weights=RankingWeights(**alone)
    )
    assert _keys(session, newcomer) == ["churn-guide", "roi-webinar"]
    recommend_for_members(
        session,
        embedder,
        ids,
        NOW,
        k=2,
        newcomer_weights=RankingWeights(**alone, decay_popularity=False),
    )
    assert _keys(session, newcomer) == ["roi-webinar", "churn-guide"]


def _clean_by_regex(text: str) -> str:
    """The cleaning of an item's text as one regular expression, then the spaces collapsed."""
    markup = re.sub(r"[#*_`>|]+|\]\([^)]*\)|!\[|\[", " ", text)
    return re.sub(r"\s+", " ", markup).strip()


def test_content_text_cleans_markup_as_the_regular_expression_does():
    alphabet = list("ab !#*_`>|[]()\n\t\x0b\x1c\u00a0\u2003")
    rng = random.Random(5)
    texts = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(20_000)
    ]
    texts += ["![logo](img.png) # Title\n\n**bold** [link](http://x_y) `code` | >", "](", "!!["]
    for text in texts:
        expected = _clean_by_regex(text)
        assert content_text(ContentItem(key="k", title=text, tags=[], summary="", body="")) == (
            expected
        )
        body = ContentItem(key="k", title="T", tags=[], summary="", body=text)
        assert content_text(body) == "\n".join(part for part in ("T", expected) if part)


def test_library_rows_and_vectors_are_those_of_the_items(session, library):
    embedder = HashingEmbedder(64)
    items, matrix = load_content_vectors(session, embedder)
    rows, vectors = load_library_vectors(session, embedder)
    assert np.array_equal(vectors, matrix)
    columns = [column.key for column in LIBRARY_COLUMNS]
    assert [tuple(row) for row in rows] == [
        tuple(getattr(item, name) for name in columns) for item in items
    ]


def test_evidence_groups_gather_members_of_similar_width():
    from nurture.recommend.matching import evidence_groups

    groups = evidence_groups(np.array([0, 3, 1, 2, 19, 4, 5, 8, 0, 9]))
    assert [group.tolist() for group in groups] == [[2, 3], [1, 5], [6, 7], [9], [4]]
    assert evidence_groups(np.zeros(3, dtype=np.int64)) == []


def test_distinct_evidence_by_group_is_that_of_the_whole_padding():
    from nurture.recommend.matching import evidence_groups
    from nurture.recommend.reasons import distinct_evidence

    rng = np.random.default_rng(3)
    m, k, dim = 40, 5, 16
    widths = rng.integers(0, 12, m)
    widths[0] = 19
    mask = np.arange(19)[None, :] < widths[:, None]
    vectors = rng.standard_normal((m, 19, dim)).astype(np.float32) * mask[:, :, None]
    vectors /= np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-9)
    items = rng.standard_normal((m, k, dim)).astype(np.float32)
    items /= np.linalg.norm(items, axis=-1, keepdims=True)
    whole, _ = distinct_evidence(vectors, mask, items, 0.1)
    grouped = np.full((m, k), -1, dtype=np.int64)
    for rows in evidence_groups(widths):
        width = int(widths[rows].max())
        grouped[rows], _ = distinct_evidence(
            vectors[rows, :width], mask[rows, :width], items[rows], 0.1
        )
    assert (whole >= 0).any()
    np.testing.assert_array_equal(grouped, whole)
