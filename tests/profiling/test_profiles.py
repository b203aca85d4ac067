from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Sequence

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.embedding import HashingEmbedder
from nurture.profiling import (
    EVENT_TYPES,
    FeatureLayout,
    MemberFacts,
    build_profiles,
    lifecycle_stages,
    load_activity_summaries,
    plan_profiles,
)
from nurture.storage.models import ActivityEvent, Answer, Member, MemberProfile

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


class CountingEmbedder(HashingEmbedder):
    def __init__(self, dim: int = 16) -> None:
        super().__init__(dim)
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return super().embed(texts)


def add_member(session: Session, email: str, joined_days_ago: float, answers: dict) -> Member:
    member = Member(email=email, joined_at=NOW - dt.timedelta(days=joined_days_ago))
    session.add(member)
    session.flush()
    for key, value in answers.items():
        session.add(Answer(member_id=member.id, question_key=key, value=value))
    return member


def add_event(session: Session, member: Member, kind: str, days_ago: float) -> None:
    session.add(
        ActivityEvent(
            member_id=member.id,
            type=kind,
            occurred_at=NOW - dt.timedelta(days=days_ago),
            idempotency_key=f"{member.id}-{kind}-{days_ago}",
        )
    )


@pytest.fixture
def community(session: Session) -> dict[str, Member]:
    alice = add_member(
        session,
        "alice@example.org",
        200,
        {
            "role": "founder",
            "goals": ["grow_members", "measure_roi"],
            "experience": 5,
            "expectations": "Grow a B2B community with measurable ROI",
            "secret": "yes",
        },
    )
    bob = add_member(session, "bob@example.org", 3, {"role": "developer", "expectations": ""})
    carol = add_member(session, "carol@example.org", 400, {})
    for days_ago in (1, 6.9, 7, 20, 60, 100):
        add_event(session, alice, "post", days_ago)
    add_event(session, alice, "email_open", 10)
    add_event(session, alice, "email_open", 11)
    add_event(session, alice, "email_click", 10)
    add_event(session, alice, "comment", -1)  # in the future: ignored
    add_event(session, carol, "content_view", 45)
    session.commit()
    return {"alice": alice, "bob": bob, "carol": carol}


def profile_of(session: Session, member: Member) -> MemberProfile:
    return session.scalars(select(MemberProfile).where(MemberProfile.member_id == member.id)).one()


def test_build_profiles_features_interest_and_stage(session, questionnaire, community) -> None:
    embedder = CountingEmbedder()
    summary = build_profiles(session, embedder, questionnaire, NOW)
    session.commit()
    layout = FeatureLayout.from_questionnaire(questionnaire, embedder.dim)

    assert summary.profiled == 3
    assert summary.feature_names_hash == layout.hash
    assert summary.lifecycle == {"at_risk": 1, "contributor": 1, "new": 1}
    # 3 goal labels (interest) + alice's text; bob's empty text is not embedded.
    assert summary.texts_embedded == 4

    alice = profile_of(session, community["alice"])
    assert alice.lifecycle_stage == "contributor"
    assert alice.feature_names_hash == layout.hash
    assert alice.features.shape == (layout.n_features,)
    names = dict(zip(layout.names, alice.features, strict=True))
    assert [names[n] for n in ("role=founder", "role=marketer", "role=developer")] == [1, 0, 0]
    assert [names[n] for n in ("goals=grow_members", "goals=run_events", "goals=measure_roi")] == [
        1,
        0,
        1,
    ]
    assert names["experience"] == 1.0
    text = alice.features[layout.blocks["text"]]
    expected_text = HashingEmbedder(16).embed(["Grow a B2B community with measurable ROI"])[0]
    np.testing.assert_allclose(text, expected_text, atol=1e-6)
    assert names["activity:recency_log_days"] == pytest.approx(math.log1p(1))
    assert names["activity:post:7d"] == pytest.approx(math.log1p(2))  # 1 and 6.9 days ago
    assert names["activity:post:30d"] == pytest.approx(math.log1p(4))
    assert names["activity:post:90d"] == pytest.approx(math.log1p(5))
    assert names["activity:comment:90d"] == 0.0
    assert names["activity:email_click_per_open"] == pytest.approx(0.5)
    # 90-day mix: 5 posts (100 days ago is out), 2 opens, 1 click.
    assert names["activity:mix:post"] == pytest.approx(5 / 8)
    assert names["activity:mix:email_open"] == pytest.approx(2 / 8)
    assert names["activity:mix:comment"] == 0.0
    assert np.linalg.norm(alice.interest) == pytest.approx(1.0, abs=1e-5)

    bob = profile_of(session, community["bob"])
    assert bob.lifecycle_stage == "new"
    assert not np.any(bob.features[layout.blocks["text"]])
    assert bob.interest is None  # no text, no goals

    carol = profile_of(session, community["carol"])
    assert carol.lifecycle_stage == "at_risk"
    assert dict(zip(layout.names, carol.features, strict=True))["experience"] == 0.5
    assert len(EVENT_TYPES) == 6


def test_rerun_embeds_nothing_new_and_replaces_rows(session, questionnaire, community) -> None:
    embedder = CountingEmbedder()
    build_profiles(session, embedder, questionnaire, NOW)
    session.commit()
    before = profile_of(session, community["alice"]).features.copy()

    embedder.calls.clear()
    later = NOW + dt.timedelta(days=1)
    summary = build_profiles(session, embedder, questionnaire, later)
    session.commit()
    assert summary.texts_embedded == 0
    assert embedder.calls == []
    assert summary.profiled == 3
    assert session.query(MemberProfile).count() == 3
    after = profile_of(session, community["alice"])
    assert after.computed_at == later
    layout = FeatureLayout.from_questionnaire(questionnaire, embedder.dim)
    answers = slice(0, layout.blocks["text"].stop)  # answers did not change; activity aged a day
    np.testing.assert_array_equal(after.features[answers], before[answers])


def test_build_profiles_for_some_members(session, questionnaire, community) -> None:
    ids = [community["bob"].id, 999_999]
    summary = build_profiles(session, HashingEmbedder(16), questionnaire, NOW, member_ids=ids)
    session.commit()
    assert summary.profiled == 1
    assert session.scalars(select(MemberProfile.member_id)).all() == [community["bob"].id]


def test_identical_texts_are_embedded_once_across_members(session, questionnaire) -> None:
    text = "Meet other founders"
    for index in range(3):
        add_member(session, f"m{index}@example.org", 10, {"expectations": text})
    add_member(session, "other@example.org", 10, {"expectations": "Something else"})
    session.commit()
    embedder = CountingEmbedder()
    summary = build_profiles(session, embedder, questionnaire, NOW)
    session.commit()
    # 3 goal labels + 2 distinct texts, in calls that never repeat a text.
    assert summary.texts_embedded == 5
    assert sum(embedder.calls) == 5


def test_a_chunk_is_read_while_its_free_texts_are_embedded(
    session, questionnaire, community
) -> None:
    """The free texts are embedded in another thread while the chunk's activity is read; the
    profiles are those of embedding first (the same rows as ``plan_profiles`` gives)."""
    embedded_in: list[str] = []

    class ThreadNoting(HashingEmbedder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            embedded_in.append(threading.current_thread().name)
            return super().embed(texts)

    build_profiles(session, ThreadNoting(16), questionnaire, NOW)
    session.commit()
    # The option labels before the chunks, in this thread; the chunk's free text in another.
    assert embedded_in[0] == threading.current_thread().name
    assert embedded_in[1].startswith("nurture-embed")
    alice = profile_of(session, community["alice"])
    layout = FeatureLayout.from_questionnaire(questionnaire, 16)
    planned = plan_profiles(
        {
            1: MemberFacts(
                joined_at=community["alice"].joined_at,
                answers={
                    "role": "founder",
                    "goals": ["grow_members", "measure_roi"],
                    "experience": 5,
                    "expectations": "Grow a B2B community with measurable ROI",
                },
                activity=load_activity_summaries(session, [community["alice"].id], NOW)[
                    community["alice"].id
                ],
                text_vectors={
                    "expectations": HashingEmbedder(16).embed(
                        ["Grow a B2B community with measurable ROI"]
                    )[0]
                },
            )
        },
        layout=layout,
        label_vectors={
            ("goals", option.key): HashingEmbedder(16).embed([option.labels["en"]])[0]
            for question in questionnaire.questions
            if question.key == "goals"
            for option in question.options
        },
        interest_keys=["goals"],
        now=NOW,
    )[1]
    np.testing.assert_array_equal(alice.features, planned.features)
    np.testing.assert_array_equal(alice.interest, planned.interest)


def test_an_embedding_error_in_a_chunk_stores_no_profile(session, questionnaire, community) -> None:
    class FailingOnTexts(HashingEmbedder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            if any("B2B" in text for text in texts):
                raise RuntimeError("the model is gone")
            return super().embed(texts)

    with pytest.raises(RuntimeError, match="the model is gone"):
        build_profiles(session, FailingOnTexts(16), questionnaire, NOW)
    session.rollback()
    assert session.scalars(select(MemberProfile)).all() == []


def test_lifecycle_stages_for_journeys(session, questionnaire, community) -> None:
    build_profiles(session, HashingEmbedder(16), questionnaire, NOW)
    session.commit()
    stages = lifecycle_stages(session)
    assert stages == {
        community["alice"].id: "contributor",
        community["bob"].id: "new",
        community["carol"].id: "at_risk",
    }
    assert lifecycle_stages(session, [community["bob"].id, 999_999]) == {community["bob"].id: "new"}


def test_a_new_embedding_model_replaces_the_vectors(session, questionnaire, community) -> None:
    build_profiles(session, HashingEmbedder(16), questionnaire, NOW)
    session.commit()
    summary = build_profiles(session, HashingEmbedder(32), questionnaire, NOW)
    session.commit()
    assert summary.profiled == 3
    assert profile_of(session, community["alice"]).features.shape == (summary.n_features,)


def test_a_profile_the_session_holds_shows_the_rebuilt_values(
    session, questionnaire, community
) -> None:
    build_profiles(session, HashingEmbedder(16), questionnaire, NOW)
    held = profile_of(session, community["carol"])
    assert held.computed_at == NOW and held.lifecycle_stage == "at_risk"

    later = NOW + dt.timedelta(days=400)  # no commit between: the session still holds it
    build_profiles(session, HashingEmbedder(16), questionnaire, later)

    assert held.computed_at == later
    assert held.lifecycle_stage == "dormant"
    assert session.query(MemberProfile).count() == 3
