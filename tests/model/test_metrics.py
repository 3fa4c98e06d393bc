"""Ranking metrics: hand-computed groups, ties, groups without positives, sklearn and a plain-Python reference."""

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score, roc_auc_score

from shoprank.errors import ContractError
from training.metrics import (
    auc,
    average_precision,
    ndcg_at,
    ndcg_curve,
    ranking_metrics,
    recall_at,
    reciprocal_rank,
)

INV_LOG2_3 = 1 / math.log2(3)  # the discount of rank 2


def random_groups(seed: int, n_groups: int = 300, max_size: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups of 1..max_size rows, graded labels (many zeros, some groups all zero) and tied scores."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, n_groups)
    groups = np.repeat(np.array([f"q{i}" for i in range(n_groups)]), sizes)
    labels = rng.integers(0, 4, len(groups)) * (rng.random(len(groups)) < 0.3)
    scores = rng.integers(0, 5, len(groups)) / 4
    return labels, scores, groups


def reference(labels: list, scores: list, k: int) -> dict[str, float]:
    """AP, RR and recall@k of one group in plain Python: a stable sort keeps tied rows in row order."""
    relevant = [labels[i] > 0 for i in sorted(range(len(scores)), key=lambda i: -scores[i])]
    ranks = [rank for rank, hit in enumerate(relevant, 1) if hit]
    if not ranks:
        return {"ap": math.nan, "rr": math.nan, "recall": math.nan}
    return {
        "ap": sum(hits / rank for hits, rank in enumerate(ranks, 1)) / len(ranks),
        "rr": 1 / ranks[0],
        "recall": sum(rank <= k for rank in ranks) / len(ranks),
    }


def test_ndcg_of_hand_computed_groups():
    # group q: labels [3, 0, 1] scored [0.2, 0.9, 0.5] rank as labels 0, 1, 3, gains 2**l - 1 = 0, 1, 7
    #   DCG@3 = 0/log2(2) + 1/log2(3) + 7/log2(4) = 1/log2(3) + 3.5
    #   ideal order 3, 1, 0: IDCG@3 = 7/1 + 1/log2(3) + 0; IDCG@1 = 7, DCG@1 = 0
    #   DCG@2 = 1/log2(3), IDCG@2 = 7 + 1/log2(3)
    # group r: labels [1, 2] scored [0.1, 0.3] rank as 2, 1 (the ideal order): NDCG = 1 at every k
    labels, scores, groups = [3, 0, 1, 1, 2], [0.2, 0.9, 0.5, 0.1, 0.3], ["q", "q", "q", "r", "r"]
    q = {
        1: 0.0,
        2: INV_LOG2_3 / (7 + INV_LOG2_3),
        3: (INV_LOG2_3 + 3.5) / (7 + INV_LOG2_3),
        20: (INV_LOG2_3 + 3.5) / (7 + INV_LOG2_3),  # k beyond the group: the whole group
    }
    for k, expected in q.items():
        np.testing.assert_allclose(ndcg_at(labels, scores, groups, k), [expected, 1.0])


def test_average_precision_reciprocal_rank_and_recall_of_hand_computed_groups():
    # group q is ranked as given (scores descending), relevance label > 0: 0, 1, 0, 1, 1
    #   precision at the relevant ranks 2, 4, 5 = 1/2, 2/4, 3/5: AP = (0.5 + 0.5 + 0.6) / 3
    #   first relevant rank 2: RR = 1/2
    #   relevant rows in the top 1, 2, 4, 5: 0, 1, 2, 3 of 3
    # group r: labels [0, 1] scored [0.1, 0.9]: the relevant row ranks first, AP = RR = recall@1 = 1
    labels = [0, 2, 0, 1, 3, 0, 1]
    scores = [5, 4, 3, 2, 1, 0.1, 0.9]
    groups = [7, 7, 7, 7, 7, 8, 8]
    np.testing.assert_allclose(average_precision(labels, scores, groups), [1.6 / 3, 1.0])
    np.testing.assert_allclose(reciprocal_rank(labels, scores, groups), [0.5, 1.0])
    for k, expected in {1: 0.0, 2: 1 / 3, 4: 2 / 3, 5: 1.0, 10: 1.0}.items():
        np.testing.assert_allclose(recall_at(labels, scores, groups, k), [expected, 1.0])


def test_ties_rank_in_row_order():
    # both rows score 0.5, so the earlier row takes rank 1
    groups = ["q", "q"]
    assert reciprocal_rank([0, 1], [0.5, 0.5], groups).tolist() == [0.5]
    assert reciprocal_rank([1, 0], [0.5, 0.5], groups).tolist() == [1.0]
    assert ndcg_at([0, 1], [0.5, 0.5], groups, 1).tolist() == [0.0]
    assert recall_at([1, 0], [0.5, 0.5], groups, 1).tolist() == [1.0]


def test_groups_without_a_positive_are_nan_and_left_out_of_the_means():
    # only group b has a positive; its relevant row scores 1 < 2, so it ranks second:
    #   NDCG = (1/log2(3)) / 1, AP = RR = 1/2, recall@1 = 0, recall@5 = 1
    labels = [0, 0, 1, 0, 0, 0]
    scores = [1, 2, 1, 2, 1, 2]
    groups = ["a", "a", "b", "b", "c", "c"]
    nan = math.nan
    np.testing.assert_allclose(ndcg_at(labels, scores, groups, 5), [nan, INV_LOG2_3, nan])
    np.testing.assert_allclose(average_precision(labels, scores, groups), [nan, 0.5, nan])
    np.testing.assert_allclose(reciprocal_rank(labels, scores, groups), [nan, 0.5, nan])
    np.testing.assert_allclose(recall_at(labels, scores, groups, 1), [nan, 0.0, nan])
    metrics = ranking_metrics(labels, scores, groups, ks=(1, 5))
    assert metrics["groups"] == 1
    assert metrics["ndcg@5"] == pytest.approx(INV_LOG2_3)
    assert (metrics["map"], metrics["mrr"], metrics["recall@1"], metrics["recall@5"]) == (0.5, 0.5, 0.0, 1.0)
    assert ndcg_curve(labels, scores, groups, ks=[1, 2]) == {1: 0.0, 2: pytest.approx(INV_LOG2_3)}


@pytest.mark.filterwarnings("error")
def test_no_positive_at_all_gives_nan_means_without_warnings():
    metrics = ranking_metrics([0, 0, 0], [0.3, 0.2, 0.1], ["a", "a", "b"])
    assert metrics["groups"] == 0
    assert all(math.isnan(value) for name, value in metrics.items() if name != "groups")
    assert math.isnan(ranking_metrics([], [], [])["ndcg@10"])


@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("graded", ["int", "float"])
def test_ndcg_matches_sklearn_given_exponential_gains(k, graded):
    # sklearn's gain is the label itself: give it 2**label - 1; continuous scores have no ties
    rng = np.random.default_rng(k)
    shape = (200, 10)
    labels = rng.integers(0, 4, shape) if graded == "int" else rng.uniform(0, 3, shape)
    labels = labels * (rng.random(shape) < 0.3)
    labels[:20] = 0
    scores = rng.random(shape)
    groups = np.repeat(np.arange(shape[0]), shape[1])
    ours = ndcg_at(labels.ravel(), scores.ravel(), groups, k)
    positive = labels.max(axis=1) > 0
    assert np.isnan(ours[~positive]).all()
    assert not np.isnan(ours[positive]).any()
    sklearn = [
        ndcg_score([2.0**row - 1], [score], k=k) for row, score in zip(labels[positive], scores[positive], strict=True)
    ]
    np.testing.assert_allclose(ours[positive], sklearn)


@pytest.mark.parametrize("k", [2, 5])
def test_mean_ndcg_of_binary_labels_matches_sklearn_over_groups_with_a_positive(k):
    # binary labels: 2**l - 1 == l, sklearn's linear gain; sklearn scores groups without a positive 0, so drop them
    rng = np.random.default_rng(k)
    labels = (rng.random((300, 8)) < 0.15).astype(int)
    scores = rng.random((300, 8))
    groups = np.repeat(np.arange(300), 8)
    positive = labels.max(axis=1) > 0
    metrics = ranking_metrics(labels.ravel(), scores.ravel(), groups, ks=[k])
    assert metrics["groups"] == positive.sum()
    assert metrics[f"ndcg@{k}"] == pytest.approx(ndcg_score(labels[positive], scores[positive], k=k))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_mrr_and_recall_match_a_plain_python_reference_on_unequal_tied_groups(seed):
    labels, scores, groups = random_groups(seed)
    k = 3
    cuts = np.flatnonzero(groups[1:] != groups[:-1]) + 1
    split = zip(np.split(labels, cuts), np.split(scores, cuts), strict=True)
    expected = [reference(list(group_labels), list(group_scores), k) for group_labels, group_scores in split]
    for name, ours in [
        ("ap", average_precision(labels, scores, groups)),
        ("rr", reciprocal_rank(labels, scores, groups)),
        ("recall", recall_at(labels, scores, groups, k)),
    ]:
        np.testing.assert_allclose(ours, [group[name] for group in expected], err_msg=name)


def test_auc_of_a_hand_computed_example():
    # positives score 0.8, 0.3; negatives 0.8, 0.1. Pairs (positive, negative):
    #   (0.8, 0.8) tie = 1/2, (0.8, 0.1) = 1, (0.3, 0.8) = 0, (0.3, 0.1) = 1: AUC = 2.5 / 4
    assert auc([2, 0, 1, 0], [0.8, 0.8, 0.3, 0.1]) == 0.625
    assert math.isnan(auc([1, 2], [0.1, 0.2]))
    assert math.isnan(auc([0, 0], [0.1, 0.2]))


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_matches_sklearn_with_ties(seed):
    labels, scores, groups = random_groups(seed)
    assert len(np.unique(scores)) < len(scores) / 10  # many ties
    expected = roc_auc_score(labels > 0, scores)
    assert auc(labels, scores) == pytest.approx(expected)
    assert ranking_metrics(labels, scores, groups)["auc"] == pytest.approx(expected)


def test_ranking_metrics_are_the_means_of_the_per_group_metrics():
    labels, scores, groups = random_groups(3)
    metrics = ranking_metrics(labels, scores, groups)
    assert list(metrics) == [
        *["ndcg@5", "ndcg@10", "ndcg@20", "map", "mrr"],
        *["recall@5", "recall@10", "recall@20", "auc", "groups"],
    ]
    per_group = {
        **{f"ndcg@{k}": ndcg_at(labels, scores, groups, k) for k in (5, 10, 20)},
        "map": average_precision(labels, scores, groups),
        "mrr": reciprocal_rank(labels, scores, groups),
        **{f"recall@{k}": recall_at(labels, scores, groups, k) for k in (5, 10, 20)},
    }
    positive = ~np.isnan(per_group["map"])
    assert metrics["groups"] == positive.sum() < len(positive)
    for name, values in per_group.items():
        assert (np.isnan(values) == ~positive).all(), name
        assert metrics[name] == pytest.approx(values[positive].mean()), name
    curve = ndcg_curve(labels, scores, groups)
    assert list(curve) == list(range(1, 21))
    assert curve[5] == metrics["ndcg@5"]
    assert curve[12] == curve[20]  # no group is longer than 12 rows


def test_perfect_and_reversed_rankings():
    labels, _, groups = random_groups(4)
    best = ranking_metrics(labels, labels, groups, ks=[1, 12])
    assert best == {
        **{name: pytest.approx(1.0) for name in best},
        "recall@1": best["recall@1"],
        "groups": best["groups"],
    }
    assert best["recall@1"] < 1  # some groups have more than one positive
    worst = ranking_metrics(labels, -labels, groups, ks=[1])
    assert worst["auc"] == 0.0
    assert worst["mrr"] < 1


def test_group_ids_of_any_dtype_and_group_order_do_not_change_the_result():
    labels, scores, groups = random_groups(5, n_groups=50)
    codes = np.cumsum(np.r_[True, groups[1:] != groups[:-1]])  # 1, 2, ... in order of appearance
    expected = ranking_metrics(labels, scores, groups)
    assert ranking_metrics(labels, scores, codes) == expected
    assert ranking_metrics(labels, scores, groups.astype(object)) == expected
    # whole groups in reverse order: the same per-group values, reversed
    order = np.argsort(-codes, kind="stable")
    moved = ranking_metrics(labels[order], scores[order], groups[order])
    assert moved == {name: pytest.approx(value) for name, value in expected.items()}
    np.testing.assert_allclose(
        ndcg_at(labels[order], scores[order], groups[order], 3), ndcg_at(labels, scores, groups, 3)[::-1]
    )


def test_non_contiguous_groups_are_rejected():
    with pytest.raises(ContractError, match=r"\['a'\] \(1 in all\).*contiguous"):
        ndcg_at([1, 0, 1], [0.3, 0.2, 0.1], ["a", "b", "a"], 10)
    with pytest.raises(ContractError, match=r"\[1, 2\] \(2 in all\)"):
        ranking_metrics([1, 0, 1, 0], [0.4, 0.3, 0.2, 0.1], [1, 2, 1, 2])


@pytest.mark.parametrize(
    ("labels", "scores", "groups", "k", "message"),
    [
        ([1, 0], [0.1, 0.2, 0.3], ["a", "a"], 5, r"shapes \{'labels': \(2,\), 'scores': \(3,\)"),
        ([[1, 0]], [[0.1, 0.2]], [["a", "a"]], 5, "1-D arrays"),
        ([1, -1], [0.1, 0.2], ["a", "a"], 5, r"finite and >= 0, got \[-1.0\]"),
        ([1, math.nan], [0.1, 0.2], ["a", "a"], 5, r"got \[nan\]"),
        ([1, 0], [0.1, math.nan], ["a", "a"], 5, "1 NaN values"),
        ([1, 0], [0.1, 0.2], ["a", "a"], 0, "k=0 is not a positive integer"),
        ([1, 0], [0.1, 0.2], ["a", "a"], 2.5, "k=2.5"),
    ],
)
def test_bad_inputs_are_contract_errors(labels, scores, groups, k, message):
    with pytest.raises(ContractError, match=message):
        ndcg_at(labels, scores, groups, k)
