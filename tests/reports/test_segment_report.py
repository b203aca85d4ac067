import datetime as dt
import re

from markupsafe import escape
from sqlalchemy import select, update

from nurture.reports import (
    MapPoint,
    SegmentCard,
    SegmentSize,
    render_segment_report,
    segment_cards,
    segment_colours,
    segment_map,
    segment_size_history,
)
from nurture.runtime import Runtime
from nurture.stages import segment
from nurture.storage import Segment
from nurture.workspace import load_questionnaire
from tests.pipeline_helpers import NOW

from .conftest import N_MEMBERS, add_founders_rule_segment, member_emails
from .pages import chart_rows, chart_specs, check_page, without_library

CHARTS = ["segment-map", "segment-sizes", "lifecycle-mix"]


def _report(
    runtime: Runtime, sample_size: int = 3000
) -> tuple[str, list[MapPoint], list[SegmentCard], list[SegmentSize]]:
    questionnaire = load_questionnaire(runtime.settings.questionnaire_path)
    with runtime.session() as session:
        cards = segment_cards(session, NOW, questionnaire=questionnaire)
        points = segment_map(session, cards, questionnaire=questionnaire, sample_size=sample_size)
        history = segment_size_history(session)
    html = render_segment_report(cards, points, title="Segments", generated_at=NOW, history=history)
    return html, points, cards, history


def test_the_report_maps_every_member_with_the_cards(community: Runtime) -> None:
    html, points, cards, _ = _report(community)

    specs = chart_specs(html)
    assert list(specs) == CHARTS
    dots = chart_rows(specs["segment-map"])
    assert len(dots) == len(points) == N_MEMBERS
    assert [(dot["x"], dot["y"], dot["segment"]) for dot in dots] == [
        (round(point.x, 4), round(point.y, 4), point.segment) for point in points
    ]
    colour = specs["segment-map"]["encoding"]["color"]["scale"]
    colours = segment_colours([card.key for card in cards])
    assert dict(zip(colour["domain"], colour["range"], strict=True)) == colours
    by_key = {card.key: card for card in cards}
    for dot in dots:  # the tooltip names the dot's segment and its size
        card = by_key[dot["segment"]]
        assert dot["label"] == card.label
        assert dot["members"] == f"{card.size} ({card.share:.1%})"
    tooltip = specs["segment-map"]["encoding"]["tooltip"]
    assert [field["field"] for field in tooltip] == ["label", "segment", "members"]
    for card in cards:
        assert f"<h2>{escape(card.label)}</h2>" in html
        for feature in card.distinctive:
            assert str(escape(feature.describe())) in html
        for example in card.examples:
            assert example in html
    assert html.count("<article") == len(cards)
    check_page(html, charts=3)


def test_the_lifecycle_mix_counts_each_segment_by_stage(community: Runtime) -> None:
    html, _, cards, _ = _report(community)

    rows = chart_rows(chart_specs(html)["lifecycle-mix"])

    expected = [
        (f"{card.label} · {card.key}", stage.replace("_", " "), count)
        for card in cards
        for stage, count in card.lifecycle.items()
    ]
    assert [(row["segment"], row["stage"], row["members"]) for row in rows] == expected
    for card in cards:
        shares = [row["share"] for row in rows if row["segment"].endswith(f"· {card.key}")]
        assert abs(sum(shares) - 1) < 0.01


def test_sizes_over_time_follow_each_segmentation_run(community: Runtime) -> None:
    # A clustering run, not the incremental nightly's placing of changed members in the last one.
    refit = community.settings.model_copy(update={"incremental_nightly": False})
    segment(Runtime(refit, engine=community.engine), NOW + dt.timedelta(days=1))

    html, _, cards, history = _report(community)

    runs = sorted({entry.run_id for entry in history})
    assert len(runs) == 2
    for run in runs:
        clusters = [e for e in history if e.run_id == run and e.kind == "cluster"]
        assert sum(entry.size for entry in clusters) == N_MEMBERS
        assert abs(sum(entry.share or 0 for entry in clusters) - 1) < 0.01
    latest = {e.key: e.size for e in history if e.run_id == runs[-1]}
    assert latest == {card.key: card.size for card in cards}
    rows = chart_rows(chart_specs(html)["segment-sizes"])
    assert [(row["run"], row["segment"], row["members"]) for row in rows] == [
        (entry.run_id, entry.key, entry.size) for entry in history
    ]
    assert history == sorted(history, key=lambda entry: (entry.run_id, entry.key))


def test_a_member_in_a_cluster_and_a_rule_segment_is_one_dot(community: Runtime) -> None:
    add_founders_rule_segment(community)

    html, points, cards, _ = _report(community)

    assert [card.key for card in cards][-1] == "founders"
    assert len(points) == len(chart_rows(chart_specs(html)["segment-map"])) == N_MEMBERS
    assert "founders" not in {point.segment for point in points}  # coloured by their cluster
    assert "role == &#34;founder&#34;" in html  # a rule segment shows its description


def test_the_map_samples_members_reproducibly(community: Runtime) -> None:
    html, points, cards, _ = _report(community, sample_size=25)
    again, _, _, _ = _report(community, sample_size=25)

    assert len(points) == 25
    assert len(chart_rows(chart_specs(html)["segment-map"])) == 25
    assert html == again
    assert {point.segment for point in points} <= {card.key for card in cards}


def test_no_full_email_appears_in_the_report(community: Runtime) -> None:
    html, _, _, _ = _report(community)

    emails = member_emails(community)
    assert len(emails) == N_MEMBERS
    assert [email for email in emails if email in html] == []
    assert "***@" in html


def test_labels_from_free_text_are_escaped(community: Runtime) -> None:
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with community.session() as session:
        key = session.scalars(select(Segment.key).order_by(Segment.key)).first()
        session.execute(update(Segment).where(Segment.key == key).values(label=attack))

    html, _, _, _ = _report(community)

    page = without_library(html)
    assert "<img" not in page and "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    check_page(html, charts=3)  # no tag, no handler, no script came through
    labels = {row["label"] for row in chart_rows(chart_specs(html)["segment-map"])}
    assert attack in labels  # in the chart data as text, drawn as text


def test_a_report_without_segments_says_what_to_run() -> None:
    html = render_segment_report(
        [], [], title="Segments <of> us", generated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    assert "Segments &lt;of&gt; us" in html
    assert "nurture segment" in html
    assert chart_specs(html) == {}
    check_page(html, charts=0)  # no chart: no script either


def test_colours_stay_distinct_past_the_palette() -> None:
    colours = segment_colours([f"seg-{n}" for n in range(25)])
    assert len(set(colours.values())) == 25
    assert all(re.fullmatch(r"#[0-9a-f]{6}", colour) for colour in colours.values())
