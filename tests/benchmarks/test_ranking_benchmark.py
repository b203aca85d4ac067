"""The ranking benchmark on a small community: a smoke test that both sides run and are reported.

It asserts nothing about speed (``make bench`` measures it).
"""

from benchmarks.ranking import render_ranking_section, run_ranking_benchmark


def test_the_ranking_benchmark_runs_every_signal_and_checks_the_same_work() -> None:
    result = run_ranking_benchmark(
        n_members=600, n_items=300, dim=32, k=5, chunk_size=250, repeats=1, seed=3
    )
    assert result.check_overlap >= 0.999
    assert result.engagements > 0 and result.co_engagement_pairs > 0
    for measurement in (result.baseline, result.learning, result.ranking, result.total):
        assert len(measurement.samples) == 1 and measurement.median > 0
    description, notes = render_ranking_section(result)
    assert "600 synthetic members" in description[0]
    assert any("Same work" in line for line in notes)
