"""Behavior of the rankers on synthetic groups: a dominant feature drives the ranking, row order
within a group does not matter, categoricals are read by their training vocabulary, position is
fixed when scoring, and the leakage guard rejects a feature computed from the label."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from shoprank.errors import ConfigError, ContractError
from training.contracts import check_leakage
from training.metrics import ndcg_at
from training.rankers import RankerConfig, load, train

FEATURES = ("signal", "noise", "brand")


def synthetic(groups: int, seed: int, size: int = 10) -> pl.DataFrame:
    """Groups whose label follows ``signal`` (plus a little noise) and the brand "b" (+1 grade)."""
    rng = np.random.default_rng(seed)
    n = groups * size
    signal = rng.random(n)
    brand = rng.choice(["a", "b", "c"], n)
    label = np.clip(np.floor(signal * 3 + rng.normal(0, 0.2, n)).astype(int) + (brand == "b"), 0, 3)
    return pl.DataFrame(
        {
            "query_id": np.repeat([f"q{seed}-{g:04d}" for g in range(groups)], size),
            "label": label.astype("int32"),
            "position": np.tile(np.arange(size), groups),
            "signal": signal,
            "noise": rng.random(n),
            "brand": brand,
        }
    )


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return synthetic(300, 1), synthetic(100, 2), synthetic(100, 3)


CONFIGS = [RankerConfig(algorithm="lightgbm", rounds=60), RankerConfig(algorithm="xgboost", rounds=60, max_depth=4)]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: c.algorithm)
def trained(request, frames):
    train_rows, valid_rows, _ = frames
    return train(request.param, train_rows, valid_rows, FEATURES)


def test_dominant_feature_drives_the_ranking(trained, frames):
    test = frames[2]
    scores = trained.predict(test)
    groups = test["query_id"].to_numpy()
    model_ndcg = np.nanmean(ndcg_at(test["label"].to_numpy(), scores, groups, 5))
    signal_ndcg = np.nanmean(ndcg_at(test["label"].to_numpy(), test["signal"].to_numpy(), groups, 5))
    assert model_ndcg > 0.9 and model_ndcg >= signal_ndcg  # learns the signal, and the brand on top of it
    importance = trained.importance()
    assert importance["feature"][0] == "signal"
    assert importance.filter(pl.col("feature") == "noise")["gain"][0] < importance["gain"][0] / 10
    assert trained.curve.filter(pl.col("dataset") == "valid").height >= trained.best_iteration


def test_predictions_do_not_depend_on_row_order_within_a_group(trained, frames):
    test = frames[2].with_row_index("row")
    shuffled = test.sample(fraction=1.0, shuffle=True, seed=5).sort("query_id", maintain_order=True)
    again = dict(zip(shuffled["row"], trained.predict(shuffled), strict=True))
    np.testing.assert_array_equal(trained.predict(test), [again[row] for row in test["row"]])


def test_categories_follow_the_training_vocabulary(trained, frames):
    assert trained.categories == {"brand": ["a", "b", "c"]}
    test = frames[2].head(30)
    unseen = test.with_columns(pl.lit("zz").alias("brand"))
    missing = test.with_columns(pl.lit(None, pl.Utf8).alias("brand"))
    np.testing.assert_array_equal(trained.predict(unseen), trained.predict(missing))  # unknown = missing
    as_b = trained.predict(test.with_columns(pl.lit("b").alias("brand")))
    as_a = trained.predict(test.with_columns(pl.lit("a").alias("brand")))
    assert (as_b > as_a).mean() > 0.9


def test_contributions_sum_to_the_score(trained, frames):
    test = frames[2].head(50)
    contributions = trained.contributions(test)
    assert contributions.columns == [*trained.features, "bias"]
    np.testing.assert_allclose(contributions.sum_horizontal().to_numpy(), trained.predict(test), rtol=1e-5, atol=1e-5)


def test_position_is_a_feature_in_training_and_constant_when_scoring(trained, frames):
    assert trained.features[-1] == "position"
    test = frames[2]
    moved = test.with_columns((pl.col("position") * 7 + 3).alias("position"))
    np.testing.assert_array_equal(trained.predict(test), trained.predict(moved))


def test_saved_model_reproduces_predictions_exactly(trained, frames, tmp_path):
    trained.save(tmp_path)
    again = load(tmp_path, trained.config, trained.features, trained.categories)
    np.testing.assert_array_equal(again.predict(frames[2]), trained.predict(frames[2]))
    assert again.best_iteration == trained.best_iteration


def test_leakage_guard_rejects_a_feature_computed_from_the_label(frames):
    rows = frames[0].with_columns((pl.col("label") * 2.0 + 1).alias("clicked_later"))
    with pytest.raises(ContractError, match=r"clicked_later \(AUC 1\.000\).*leak the label"):
        check_leakage(rows, ("signal", "noise", "clicked_later"))
    check_leakage(rows, ("signal", "noise"))  # an honest strong feature passes


def test_bad_hyperparameters_are_config_errors():
    with pytest.raises(ConfigError, match='Unknown algorithm "catboost"; use one of lightgbm, xgboost'):
        RankerConfig(algorithm="catboost")
    with pytest.raises(ConfigError, match='Unknown position mode "ipw"'):
        RankerConfig(position="ipw")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.algorithm)
def test_a_prior_starts_every_score_and_the_trees_learn_the_correction(config, frames, tmp_path):
    train_rows, valid_rows, test = frames
    boosted = train(replace(config, prior="signal", prior_weight=20.0), train_rows, valid_rows, FEATURES)
    importance = dict(boosted.importance().select("feature", "gain").iter_rows())
    assert importance["brand"] > importance["signal"]  # the signal is given: the trees learn the brand
    contributions = boosted.contributions(test)
    assert contributions.columns == [*boosted.features, "prior", "bias"]
    np.testing.assert_allclose(contributions["prior"].to_numpy(), 20.0 * test["signal"].to_numpy())
    np.testing.assert_allclose(contributions.sum_horizontal().to_numpy(), boosted.predict(test), rtol=1e-5, atol=1e-5)
    boosted.save(tmp_path)
    again = load(tmp_path, boosted.config, boosted.features, boosted.categories)
    np.testing.assert_array_equal(again.predict(test), boosted.predict(test))


def test_an_unknown_prior_names_the_feature_it_may_mean(frames):
    with pytest.raises(
        ConfigError, match=r'The prior "title_bm25" is not a feature of the service; did you mean q__title_bm25\?'
    ):
        train(RankerConfig(prior="title_bm25"), frames[0], frames[1], ("signal", "q__title_bm25"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.algorithm)
def test_scoring_one_requests_columns_equals_predicting_its_frame(config, frames):
    train_rows, valid_rows, test = frames
    test = test.head(40).with_columns(  # missing values, as an online store gives them
        pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("signal")).alias("signal")
    )
    numeric = train(replace(config, prior="noise", prior_weight=3.0), train_rows, valid_rows, ("signal", "noise"))
    categorical = train(config, train_rows, valid_rows, FEATURES)
    for ranker in (numeric, categorical):
        columns = test.drop("position").to_dict(as_series=False)  # serving has no position: it is constant
        np.testing.assert_array_equal(ranker.score(columns), ranker.predict(test))
