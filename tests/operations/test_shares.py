"""``share_of`` and ``count_with_share``: shares as the reports and artifacts show them."""

from nurture.operations import count_with_share, share_of


def test_a_share_is_rounded_to_a_tenth_of_a_percent() -> None:
    assert share_of(1, 3) == 0.333
    assert share_of(500, 2000) == 0.25
    assert share_of(3, 0) is None


def test_a_count_shows_its_share_beside_it() -> None:
    assert count_with_share(500, 2000) == "500 (25.0%)"
    assert count_with_share(1, 3) == "1 (33.3%)"
    assert count_with_share(0, 0) == "0"
