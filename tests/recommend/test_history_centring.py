"""History that means something (centred), and popularity for members without history."""

import numpy as np

from nurture.recommend import RankingWeights, rank_content


def _unit(rows: list[list[float]]) -> np.ndarray:
    matrix = np.array(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


# A, B, C: three topics; G: a generic item near the catalogue's centre; A2: more of topic A.
ITEMS = _unit([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 1, 0], [1, 0, 0, 0.3]])


def _first(weights: RankingWeights) -> int:
    history = np.array([[1.0, 0.5, 0.5, 0.0, 0.0]], dtype=np.float32)
    indices, _ = rank_content(
        member_interest=np.zeros((1, 4), dtype=np.float32),
        segment_interest=np.zeros((1, 4), dtype=np.float32),
        excluded=np.array([[True, True, True, False, False]]),
        item_vectors=ITEMS,
        item_ok=np.ones((1, 5), dtype=bool),
        freshness=np.zeros(5),
        weights=weights,
        k=1,
        history=history,
    )
    return int(indices[0, 0])


def test_a_history_spread_over_the_catalogue_no_longer_favours_the_generic_item() -> None:
    plain = RankingWeights(centre_history=False, popularity=0, mmr_lambda=1.0)
    centred = RankingWeights(popularity=0, mmr_lambda=1.0)
    assert _first(plain) == 3  # the plain average sits near G
    assert _first(centred) == 4  # centred, the member's leaning to topic A shows


def test_members_without_history_get_popularity_at_its_own_weight() -> None:
    # item 0 is the most popular; item 1 matches both members' answers a little better
    items = _unit([[1, 0, 0, 0], [0.9, 0.5, 0, 0]])
    member = _unit([[0.2, 1, 0, 0], [0.2, 1, 0, 0]])
    history = np.array([[0.0, 0.0], [0.0, 0.0]], dtype=np.float32)

    def first(weights: RankingWeights, consumed: np.ndarray) -> list[int]:
        indices, _ = rank_content(
            member_interest=member,
            segment_interest=np.zeros((2, 4), dtype=np.float32),
            excluded=np.zeros((2, 2), dtype=bool),
            item_vectors=items,
            item_ok=np.ones((2, 2), dtype=bool),
            freshness=np.zeros(2),
            weights=weights,
            k=1,
            popularity=np.array([100.0, 1.0]),
            history=consumed,
        )
        return indices[:, 0].tolist()

    same = RankingWeights(mmr_lambda=1.0, cold_start_popularity=0.2)
    strong = RankingWeights(mmr_lambda=1.0, cold_start_popularity=2.0)
    assert first(same, history) == [1, 1]
    assert first(strong, history) == [0, 0]
