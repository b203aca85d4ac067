"""The engine's newcomers ranked by long-run popularity alone get the popularity baseline's list."""

from __future__ import annotations

from pathlib import Path

from nurture.evaluation import item_popularity, load_dataset_folder, recommend_popular
from nurture.evaluation.folder import stage_folder
from nurture.evaluation.ranker import nurture_sandbox, rank_with_nurture
from nurture.recommend import RankingWeights
from nurture.settings import Settings

POPULARITY_ALONE = {
    "member": 0.0,
    "history": 0.0,
    "co_engagement": 0.0,
    "collaborative": 0.0,
    "segment": 0.0,
    "freshness": 0.0,
    "format": 0.0,
    "mmr_lambda": 1.0,
    "community_popularity": 1.0,
}

ITEMS = """id,title,text
i1,Castles of Wales,Stone fortresses built along the coast of Wales.
i2,Roman roads,How legions paved routes across the empire.
i3,Silk trade,Merchants crossing deserts with caravans of silk.
i4,Printing press,Movable type changed how books were made.
i5,Viking ships,Longboats and the raids of the north.
"""
# i1: four members five years ago; i2: three members last week; i3: two; i4: one; i5: none.
TRAIN = """member_id,item_id,timestamp
m1,i1,2020-01-01T00:00:00Z
m2,i1,2020-01-02T00:00:00Z
m3,i1,2020-01-03T00:00:00Z
m4,i1,2020-01-04T00:00:00Z
m5,i2,2024-12-24T00:00:00Z
m6,i2,2024-12-25T00:00:00Z
m7,i2,2024-12-26T00:00:00Z
m1,i3,2024-06-01T00:00:00Z
m2,i3,2024-06-02T00:00:00Z
m3,i4,2025-01-01T00:00:00Z
"""


def _folder(path: Path) -> Path:
    members = ["id,text", *(f"m{i},I read about history {i}" for i in range(1, 8))]
    members += ["n1,Medieval castles and sieges", "n2,Trade routes of the ancient world"]
    files = {
        "members": "\n".join(members) + "\n",
        "items": ITEMS,
        "train": TRAIN,
        "test": "member_id,item_id\nn1,i2\nn2,i3\n",
    }
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / f"{name}.csv").write_text(text, encoding="utf-8")
    return path


def _newcomer_lists(settings: Settings, folder: Path, newcomers: RankingWeights) -> list[list[str]]:
    dataset = load_dataset_folder(folder)
    with nurture_sandbox(settings, 5, weights=(RankingWeights(), newcomers)) as sandbox:
        member_ids = stage_folder(dataset, sandbox)
        lists = rank_with_nurture(sandbox, dataset.now).lists
    data = dataset.evaluation_data()
    column = {key: position for position, key in enumerate(data.item_keys)}
    return [[dataset.item_ids[column[key]] for key in lists[member_ids[n]]] for n in ("n1", "n2")]


def test_newcomers_ranked_by_long_run_popularity_alone_get_the_baselines_list(
    settings: Settings, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "data")
    data = load_dataset_folder(folder).evaluation_data()
    rows = data.members_to_evaluate("cold-start")
    popularity = item_popularity(data.train.item, data.train.weight, data.n_items)
    assert popularity.tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]
    baseline = recommend_popular(popularity, data.candidates(rows), 5)
    expected = [["i1", "i2", "i3", "i4", "i5"]] * 2
    assert [[data.item_keys[i] for i in ranked] for ranked in baseline] == [
        [f"item-{n}" for n in range(1, 6)]
    ] * 2

    long_run = RankingWeights(**POPULARITY_ALONE, decay_popularity=False)
    assert _newcomer_lists(settings, folder, long_run) == expected

    # Decayed, even over ten years, last week's three readers outweigh the four of 2020.
    decayed = RankingWeights(**POPULARITY_ALONE, interest_half_life_days=3650.0)
    assert _newcomer_lists(settings, folder, decayed)[0][:2] == ["i2", "i1"]
