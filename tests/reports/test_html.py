import datetime as dt
import re
from html.parser import HTMLParser

from markupsafe import escape
from sqlalchemy import select, update

from nurture.reports import (
    MapPoint,
    render_segment_report,
    segment_cards,
    segment_colours,
    segment_map,
)
from nurture.runtime import Runtime
from nurture.storage import Segment
from nurture.workspace import load_questionnaire
from tests.pipeline_helpers import NOW

from .conftest import N_MEMBERS, add_founders_rule_segment, member_emails

POINT = re.compile(r'<circle class="pt" cx="([-\d.]+)" cy="([-\d.]+)" r="3" fill="(#[0-9a-f]{6})"')


def _report(runtime: Runtime, sample_size: int = 3000) -> tuple[str, list[MapPoint], list]:
    questionnaire = load_questionnaire(runtime.settings.questionnaire_path)
    with runtime.session() as session:
        cards = segment_cards(session, NOW, questionnaire=questionnaire)
        points = segment_map(session, cards, questionnaire=questionnaire, sample_size=sample_size)
    html = render_segment_report(cards, points, title="Segments", generated_at=NOW)
    return html, points, cards


class _Checker(HTMLParser):
    """Collects tags; fails on anything that loads from elsewhere or runs code."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href"):
                raise AssertionError(f"{tag} loads {value}")


def test_the_report_maps_every_member_with_the_cards(community: Runtime) -> None:
    html, points, cards = _report(community)

    assert len(points) == N_MEMBERS
    dots = POINT.findall(html)
    assert len(dots) == len(points) == html.count("<circle")
    colours = segment_colours([card.key for card in cards])
    assert {fill for _, _, fill in dots} == {colours[card.key] for card in cards}
    for cx, cy, _ in dots:
        assert 0 <= float(cx) <= 640 and 0 <= float(cy) <= 420
    for card in cards:
        assert f"<h2>{escape(card.label)}</h2>" in html
        for feature in card.distinctive:
            assert str(escape(feature.describe())) in html
        for example in card.examples:
            assert example in html
    checker = _Checker()
    checker.feed(html)
    assert "svg" in checker.tags
    assert "script" not in checker.tags and "link" not in checker.tags
    assert html.count("<article") == len(cards)


def test_a_member_in_a_cluster_and_a_rule_segment_is_one_dot(community: Runtime) -> None:
    add_founders_rule_segment(community)

    html, points, cards = _report(community)

    assert [card.key for card in cards][-1] == "founders"
    assert len(points) == len(POINT.findall(html)) == N_MEMBERS
    assert "founders" not in {point.segment for point in points}  # coloured by their cluster
    assert "role == &#34;founder&#34;" in html  # a rule segment shows its description


def test_the_map_samples_members_reproducibly(community: Runtime) -> None:
    html, points, cards = _report(community, sample_size=25)
    again, _, _ = _report(community, sample_size=25)

    assert len(points) == 25
    assert len(POINT.findall(html)) == 25
    assert html == again
    assert {point.segment for point in points} <= {card.key for card in cards}


def test_no_full_email_appears_in_the_report(community: Runtime) -> None:
    html, _, _ = _report(community)

    emails = member_emails(community)
    assert len(emails) == N_MEMBERS
    assert [email for email in emails if email in html] == []
    assert "***@" in html


def test_labels_from_free_text_are_escaped(community: Runtime) -> None:
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with community.session() as session:
        key = session.scalars(select(Segment.key).order_by(Segment.key)).first()
        session.execute(update(Segment).where(Segment.key == key).values(label=attack))

    html, _, _ = _report(community)

    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    checker = _Checker()
    checker.feed(html)  # no tag, no handler came through


def test_a_report_without_segments_says_what_to_run() -> None:
    html = render_segment_report(
        [], [], title="Segments <of> us", generated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    assert "Segments &lt;of&gt; us" in html
    assert "nurture segment" in html
    assert "<circle" not in html


def test_colours_stay_distinct_past_the_palette() -> None:
    colours = segment_colours([f"seg-{n}" for n in range(25)])
    assert len(set(colours.values())) == 25
    assert all(re.fullmatch(r"#[0-9a-f]{6}", colour) for colour in colours.values())
