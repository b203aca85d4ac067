"""The checks of the issue on the demo community, with the real embedding model.

Segments recover the hidden personas (adjusted Rand index >= 0.7); a re-run after 1 % of the
members changed their answers keeps >= 95 % of the others in a segment with the same id; a
profile re-run with no new text embeds nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

import pytest
from sklearn.metrics import adjusted_rand_score
from sqlalchemy import select

from nurture.demo import OPTIONS, PERSONAS, generate_library_community
from nurture.embedding import load_embedder
from nurture.ingest import import_activity, import_answers, import_members
from nurture.profiling import build_profiles
from nurture.segmentation import current_segments, load_segment_rules, segment_members
from nurture.settings import DEFAULT_EMBEDDING_MODEL
from nurture.storage.models import Answer, Member
from nurture.workspace import load_content_library, load_questionnaire

pytestmark = [pytest.mark.e2e, pytest.mark.model]

CONTENT = Path(__file__).resolve().parents[2] / "content"
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
N_MEMBERS = 1000
"""Enough for five personas of 200 members, small enough for a test under a minute."""


def test_demo_segments_recover_the_personas_and_keep_their_ids(session, tmp_path) -> None:
    questionnaire = load_questionnaire(CONTENT / "questionnaire.yaml")
    specs = load_content_library(CONTENT / "library")
    files = generate_library_community(
        tmp_path,
        N_MEMBERS,
        3,
        now=NOW - dt.timedelta(days=1),
        library=specs,
        dated=False,
        questionnaire=questionnaire,
    )
    import_members(session, files.members)
    import_answers(session, files.answers, questionnaire)
    import_activity(session, files.activity)
    session.commit()
    rules = load_segment_rules(
        CONTENT / "segments.yaml", question_keys=[q.key for q in questionnaire.questions]
    )
    embedder = load_embedder(DEFAULT_EMBEDDING_MODEL)

    first = build_profiles(session, embedder, questionnaire, NOW)
    session.commit()
    assert first.profiled == N_MEMBERS and first.texts_embedded > 0
    summary = segment_members(session, questionnaire=questionnaire, now=NOW, rules=rules)
    session.commit()

    # Segments recover the hidden personas.
    with files.personas.open(encoding="utf-8") as handle:
        persona_of = {row["email"]: row["persona"] for row in csv.DictReader(handle)}
    email_of = dict(session.execute(select(Member.id, Member.email)).tuples().all())
    before = current_segments(session)
    ids = sorted(before)
    ari = adjusted_rand_score(
        [persona_of[email_of[member_id]] for member_id in ids], [before[i] for i in ids]
    )
    print(f"\nARI {ari:.3f} over {summary.n_segments} segments: {summary.labels}")
    assert ari >= 0.7, (ari, summary)
    assert all(summary.rule_sizes[r.key] > 0 for r in rules), summary.rule_sizes

    # A profile re-run with no new text embeds nothing.
    again = build_profiles(session, embedder, questionnaire, NOW + dt.timedelta(hours=1))
    session.commit()
    assert again.texts_embedded == 0

    # 1 % of the members change their answers: another persona's choices and words.
    rng = random.Random(11)
    changed = set(rng.sample(ids, N_MEMBERS // 100))
    for answer in session.scalars(select(Answer).where(Answer.member_id.in_(changed))):
        persona = rng.choice(PERSONAS)
        if answer.question_key in ("role", "community_kind"):
            answer.value = max(persona.choices[answer.question_key].items(), key=lambda o: o[1])[0]
        elif answer.question_key in ("goals", "formats"):
            wanted = persona.choices[answer.question_key]
            answer.value = [o for o in OPTIONS[answer.question_key] if wanted.get(o, 0) >= 0.5]
        elif answer.question_key == "expectations":
            answer.value = f"Now I want to {rng.choice(persona.fragments['en'])}."
    session.commit()
    later = NOW + dt.timedelta(days=1)
    third = build_profiles(session, embedder, questionnaire, later)
    assert third.texts_embedded <= len(changed)  # only the new texts
    rerun = segment_members(session, questionnaire=questionnaire, now=later, rules=rules)
    session.commit()
    after = current_segments(session)
    others = [member_id for member_id in ids if member_id not in changed]
    kept = sum(before[m] == after.get(m) for m in others) / len(others)
    print(f"kept {kept:.1%} of the others; new {rerun.new}, merged {rerun.merged}")
    assert kept >= 0.95
