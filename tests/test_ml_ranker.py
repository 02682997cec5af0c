"""The GU ranker: random until trained, learns utilities, round-trips its state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from peerdata.errors import DataError
from peerdata.ml.ranker import (
    GlobalUtilityRanker,
    RankerConfig,
    feature_dim,
    ranker_features,
    select_covering,
)
from peerdata.ml.vision import Prediction

torch.set_num_threads(1)


def _features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    utility = (x[:, 0] > 0.5).astype(np.float64)  # a rare, learnable "domain"
    return x, utility


def test_untrained_ranker_is_seeded_random() -> None:
    x, _ = _features(50, 0)
    a, b = GlobalUtilityRanker(8, seed=1), GlobalUtilityRanker(8, seed=1)
    pa, pb = a.predict(x), b.predict(x)
    assert np.array_equal(pa, pb) and not a.trained
    assert np.all((pa >= 0) & (pa <= 1)) and len(np.unique(pa)) == 50


def test_fit_learns_to_rank_rare_high() -> None:
    x, u = _features(300, 0)
    ranker = GlobalUtilityRanker(8, RankerConfig(epochs=200), seed=0)
    ranker.fit(x, u)
    assert ranker.trained and ranker.fits == 1
    test_x, test_u = _features(200, 1)
    predicted = ranker.predict(test_x)
    assert np.all((predicted >= 0) & (predicted <= 1))
    top = np.argsort(-predicted)[: int(test_u.sum())]
    assert test_u[top].mean() > 0.75  # base rate is ~0.3


def test_fit_rejects_bad_utilities_and_shapes() -> None:
    ranker = GlobalUtilityRanker(8)
    x, u = _features(10, 0)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        ranker.fit(x, u + 2)
    with pytest.raises(DataError, match="N x 8"):
        ranker.predict(np.zeros((3, 5), np.float32))
    with pytest.raises(DataError, match="non-zero"):
        ranker.fit(x[:0], u[:0])


def test_state_round_trip() -> None:
    x, u = _features(100, 0)
    ranker = GlobalUtilityRanker(8, RankerConfig(epochs=50))
    ranker.fit(x, u)
    twin = GlobalUtilityRanker(8)
    twin.load_state_bytes(ranker.state_bytes())
    assert twin.trained and np.allclose(twin.predict(x), ranker.predict(x))


def test_features_layout() -> None:
    pred = Prediction(
        logits=np.zeros((2, 3), np.float32),
        probabilities=np.full((2, 3), 1 / 3, np.float32),
        embedding=np.ones((2, 4), np.float32),
    )
    f = ranker_features(pred)
    assert f.shape == (2, feature_dim(4, 3))
    assert f[0, -1] == pytest.approx(np.log(3), rel=1e-5)


def _two_clusters() -> tuple[np.ndarray, np.ndarray]:
    """40 near-identical images with utility ~0.9, 20 of another kind with ~0.8, 40 unwanted."""
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 5.0 + 0.1
    embeddings = np.concatenate(
        [centres[k] + rng.normal(0, 0.05, (n, 3)) for k, n in ((0, 40), (1, 20), (2, 40))]
    )
    utilities = np.concatenate(
        [0.9 + rng.uniform(0, 0.05, 40), 0.8 + rng.uniform(0, 0.05, 20), rng.uniform(0, 0.1, 40)]
    )
    return utilities, embeddings


def test_covering_selection_spreads_over_wanted_kinds() -> None:
    utilities, embeddings = _two_clusters()
    top = np.argsort(-utilities)[:10]
    assert np.all(top < 40)  # plain top-k takes only the most novel-looking kind
    chosen = select_covering(utilities, embeddings, 10, min_utility=0.15)
    assert len(chosen) == len(set(chosen.tolist())) == 10
    kinds = np.bincount(np.searchsorted([40, 60], chosen, side="right"), minlength=3)
    assert kinds[0] >= 1 and kinds[1] >= 1 and kinds[2] == 0  # both wanted kinds, no unwanted
    assert chosen[0] < 40  # the first pick comes from the kind wanted most


def test_covering_selection_limits_and_threshold() -> None:
    utilities, embeddings = _two_clusters()
    few = select_covering(utilities, embeddings, 100, min_utility=0.85)
    assert sorted(few.tolist()) == list(range(40))  # all above the floor fit: by utility
    assert np.all(np.diff(utilities[few]) <= 0)
    assert len(select_covering(utilities, embeddings, 0)) == 0
    with pytest.raises(DataError):
        select_covering(utilities, embeddings[:3], 5)


def test_covering_keeps_its_share_of_the_top_utility() -> None:
    """Unbounded covering takes an isolated, less wanted image; `keep` near 1 does not."""
    rng = np.random.default_rng(1)
    embeddings = np.concatenate(
        [
            [1.0, 0.0, 0.0] + rng.normal(0, 0.01, (30, 3)),
            [[0.0, 1.0, 0.0]],
            np.tile([0.0, 0.0, 1.0], (30, 1)),
        ]
    )
    utilities = np.concatenate([0.95 + rng.uniform(0, 0.04, 30), [0.6], rng.uniform(0, 0.1, 30)])
    isolated, top = 30, np.sort(utilities)[::-1][:10].sum()
    assert isolated in select_covering(utilities, embeddings, 10, 0.15).tolist()
    bounded = select_covering(utilities, embeddings, 10, 0.15, keep=0.99)
    assert isolated not in bounded.tolist() and len(set(bounded.tolist())) == 10
    assert utilities[bounded].sum() >= 0.99 * top
    with pytest.raises(DataError, match="keep"):
        select_covering(utilities, embeddings, 10, keep=1.5)


def test_spread_shares_every_wanted_kind_not_only_the_most_wanted() -> None:
    """Above `spread_above`, coverage spreads the budget over all wanted kinds; below it, never."""
    rng = np.random.default_rng(2)
    centres = np.eye(4)
    embeddings = np.concatenate(
        [centres[k] + rng.normal(0, 0.05, (40, 4)) for k in range(3)] + [centres[3:]]
    )
    # kind 0 looks most novel, kind 1 is wanted too, kind 2 is common, one isolated odd image
    utilities = np.concatenate(
        [rng.uniform(0.95, 1.0, 40), rng.uniform(0.6, 0.7, 40), rng.uniform(0, 0.1, 40), [0.3]]
    )
    kinds = np.repeat([0, 1, 2, 3], [40, 40, 40, 1])
    plain = select_covering(utilities, embeddings, 20, 0.15, keep=0.99)
    assert np.all(kinds[plain] == 0)  # near-top-k: only the most novel-looking kind
    spread = select_covering(utilities, embeddings, 20, 0.15, keep=0.99, spread_above=0.5)
    assert len(set(spread.tolist())) == 20
    assert min(np.bincount(kinds[spread], minlength=4)[:2]) >= 5  # both wanted kinds, fairly
    assert set(kinds[spread].tolist()) <= {0, 1}  # nothing below the spread line
    # fewer than the budget reach the line: the keep-bounded covering decides, as without it
    wide = select_covering(utilities, embeddings, 100, 0.15, keep=0.99, spread_above=0.5)
    assert wide.tolist() == select_covering(utilities, embeddings, 100, 0.15, keep=0.99).tolist()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 30), st.floats(0.0, 1.0))
def test_covering_never_loses_more_utility_than_allowed(seed: int, limit: int, keep: float) -> None:
    rng = np.random.default_rng(seed)
    utilities, embeddings = rng.uniform(size=40), rng.normal(size=(40, 5))
    chosen = select_covering(utilities, embeddings, limit, 0.2, keep)
    eligible = np.sort(utilities[utilities >= 0.2])[::-1]
    assert len(chosen) == len(set(chosen.tolist())) == min(limit, len(eligible))
    assert utilities[chosen].sum() >= keep * eligible[:limit].sum() - 1e-9
