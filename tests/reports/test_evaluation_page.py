"""The evaluation page: every recommender's figures, the curves plotted, the data escaped."""

from __future__ import annotations

import datetime as dt
import html as html_lib
from pathlib import Path
from typing import Any

from nurture.reports import metric_at_k_chart, render_evaluation_report, write_evaluation_report
from tests.reports.pages import chart_rows, chart_specs, check_page

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
RECOMMENDERS = ("nurture", "popularity", "group_popularity", "item_knn", "ease", "random")
MARKUP = '<script>alert("x")</script>&co'


def _metrics(base: float) -> dict[str, float | None]:
    return {
        "precision@3": base,
        "recall@3": base * 2,
        "ndcg@3": base * 3,
        "hit_rate@3": base * 4,
        "coverage@3": 0.5,
    }


def _figures() -> dict[str, Any]:
    metrics = {name: _metrics(0.05 + 0.01 * index) for index, name in enumerate(RECOMMENDERS)}
    return {
        "dataset": {"source": "folder", "path": f"/data/{MARKUP}"},
        "split": {"kind": "given", "train": "train.csv", "test": "test.csv"},
        "mode": "warm",
        "k": 3,
        "seed": 42,
        "counts": {"members": 9, "items": 8, "evaluated_members": 5},
        "metrics": metrics,
        "breakdowns": {
            "language": {
                MARKUP: {"members": 3, "metrics": metrics},
                "fr": {"members": 2, "metrics": {name: _metrics(0.2) for name in RECOMMENDERS}},
            },
            "history": {"1-5": {"members": 5, "metrics": metrics}},
        },
        "curves": {
            "precision": {name: [0.4, 0.3, None] for name in RECOMMENDERS},
            "ndcg": {name: [0.4, 0.45, 0.5] for name in RECOMMENDERS},
        },
        "timings": {
            "nurture": {"seconds": 12.5},
            **{
                name: {"seconds": 0.25, "fit_seconds": 0.125, "rank_seconds": 0.125}
                for name in RECOMMENDERS[1:]
            },
        },
        "engine": {"embedding_model": f"model {MARKUP}"},
        "created_at": NOW.isoformat(),
    }


def test_the_page_shows_every_recommender_the_curves_and_the_groups(tmp_path: Path) -> None:
    written = write_evaluation_report(
        _figures(), tmp_path / "evaluation.html", generated_at=NOW, descriptions={"ease": "EASE"}
    )

    page = written.path.read_text(encoding="utf-8")
    check_page(page, charts=2)
    assert written.charts == ("precision-at-k", "ndcg-at-k")
    assert written.summary == "6 recommenders, 5 warm members, k=3"
    specs = chart_specs(page)
    precision = chart_rows(specs["precision-at-k"])
    assert {row["recommender"] for row in precision} == set(RECOMMENDERS)
    assert len(precision) == 2 * len(RECOMMENDERS)  # the None at k = 3 is not drawn
    assert len(chart_rows(specs["ndcg-at-k"])) == 3 * len(RECOMMENDERS)
    text = " ".join(html_lib.unescape(page).split())
    for name in RECOMMENDERS:
        assert f"<td>{name}</td>" in page or f'<td class="engine">{name}</td>' in page
    assert "<strong>0.1000</strong>" in page  # random: the best precision@3 of the main table
    assert "12.500" in page and "0.125" in page  # seconds
    assert "given split: train.csv / test.csv; random seed 42." in text
    assert "evaluated members" in text
    assert "<li><strong>ease</strong>: EASE</li>" in page
    assert "Every member scored is in this one group" in page  # history: one bucket only
    assert 'id="breakdown-language"' in page and 'id="breakdown-history"' in page


def test_the_page_says_how_sure_each_difference_is() -> None:
    figures = _figures()
    figures["comparisons"] = {
        "popularity": {
            "precision@3": {
                "difference": -0.0146,
                "low": -0.0354,
                "high": 0.0042,
                "members": 48,
                "verdict": "within noise",
            },
            "ndcg@3": {
                "difference": 0.05,
                "low": 0.01,
                "high": 0.09,
                "members": 48,
                "verdict": "above",
            },
        }
    }

    page = render_evaluation_report(figures, generated_at=NOW)

    text = " ".join(html_lib.unescape(page).split())
    assert 'id="comparisons"' in page
    assert "-0.0146" in text and "-0.0354 to +0.0042" in text and "within noise" in text
    assert "+0.0500" in text and "above" in text
    assert 'id="comparisons"' not in render_evaluation_report(_figures(), generated_at=NOW)


def test_data_derived_text_is_escaped() -> None:
    page = render_evaluation_report(_figures(), generated_at=NOW)

    assert MARKUP not in page
    assert "&lt;script&gt;alert(" in page  # the language, the path and the model, as text
    assert page.count("&lt;script&gt;") >= 3


def test_a_workspace_evaluation_names_its_workspace_and_temporal_split() -> None:
    figures = _figures()
    figures["dataset"] = {"source": "workspace", "workspace": "/srv/community"}
    figures["split"] = {
        "kind": "temporal",
        "cutoff": "2026-10-01T00:00:00+00:00",
        "test_share": 0.2,
    }
    del figures["engine"]

    page = render_evaluation_report(figures, generated_at=NOW)

    assert "/srv/community" in page
    assert (
        "temporal split at 2026-10-01T00:00:00+00:00 (the last 20% of interactions held out)"
        in page
    )


def test_a_report_without_scored_members_says_so() -> None:
    figures = _figures()
    figures["metrics"] = {name: dict.fromkeys(_metrics(0.0)) for name in RECOMMENDERS}
    figures["curves"] = {
        metric: {name: [None, None, None] for name in RECOMMENDERS} for metric in ("precision",)
    }
    figures["breakdowns"] = {"history": {}}

    page = render_evaluation_report(figures, generated_at=NOW)

    check_page(page, charts=0)
    assert "there is nothing to plot" in page
    assert "n/a" in page
    assert "The data gives no languages" in page


def test_the_curve_chart_draws_nurture_in_red() -> None:
    chart = metric_at_k_chart("precision", {"popularity": [0.1], "nurture": [0.2]}, members=4)

    assert chart.name == "precision-at-k" and chart.title == "Precision at k"
    colour = chart.spec["encoding"]["color"]["scale"]
    assert colour["domain"] == ["popularity", "nurture"]
    assert colour["range"][1] == "#d62728"
    assert "averaged over 4 members" in chart.caption
