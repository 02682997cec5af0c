"""Aggregation rules on hand-made tensors: weights, medians, trimming, clusters, tiers."""

from __future__ import annotations

import pytest
import torch

from peerdata.ml.aggregate import (
    AggregationError,
    ClientUpdate,
    Clustered,
    CoordinateMedian,
    FedAvg,
    FedProx,
    MultiTier,
    MultiTierConfig,
    TrimmedMean,
    importance_scores,
    plan_tiers,
    proximal_term,
    rule_by_name,
)
from peerdata.ml.aggregate.multitier import data_distribution_score, data_quantity_score


def upd(peer: str, values: list[float], n: int = 1, tag: str | None = None) -> ClientUpdate:
    return ClientUpdate(
        peer,
        {"w": torch.tensor(values), "steps": torch.tensor(7, dtype=torch.int64)},
        n,
        tag,
    )


def test_fedavg_weights_by_sample_count() -> None:
    out = FedAvg().aggregate([upd("a", [0.0, 10.0], 1), upd("b", [4.0, 2.0], 3)])
    assert torch.allclose(out["w"], torch.tensor([3.0, 4.0]))
    assert out["steps"].dtype == torch.int64 and int(out["steps"]) == 7


def test_fedavg_keeps_dtype() -> None:
    a = ClientUpdate("a", {"w": torch.tensor([1.0], dtype=torch.float16)}, 1)
    b = ClientUpdate("b", {"w": torch.tensor([3.0], dtype=torch.float16)}, 1)
    out = FedAvg().aggregate([a, b])
    assert out["w"].dtype == torch.float16 and float(out["w"]) == 2.0


def test_rules_refuse_mismatched_or_empty_updates() -> None:
    with pytest.raises(AggregationError, match="no updates"):
        FedAvg().aggregate([])
    bad_shape = ClientUpdate("b", {"w": torch.zeros(3), "steps": torch.tensor(1)}, 1)
    with pytest.raises(AggregationError, match="shape"):
        CoordinateMedian().aggregate([upd("a", [1.0, 2.0]), bad_shape])
    with pytest.raises(AggregationError, match="num_samples"):
        FedAvg().aggregate([upd("a", [1.0, 2.0], 0)])
    with pytest.raises(AggregationError, match="names"):
        FedAvg().aggregate([upd("a", [1.0, 2.0]), ClientUpdate("b", {"v": torch.zeros(2)}, 1)])


def test_median_odd_and_even_and_ignores_weights() -> None:
    odd = [upd("a", [1.0, 5.0]), upd("b", [2.0, -1.0], 1000), upd("c", [100.0, 0.0])]
    assert torch.equal(CoordinateMedian().aggregate(odd)["w"], torch.tensor([2.0, 0.0]))
    even = odd + [upd("d", [3.0, 1.0])]
    assert torch.equal(CoordinateMedian().aggregate(even)["w"], torch.tensor([2.5, 0.5]))


def test_median_ignores_one_huge_peer() -> None:
    honest = [upd(f"p{i}", [1.0 + 0.1 * i]) for i in range(6)]
    attacker = upd("evil", [1e9], n=10_000)
    assert float(CoordinateMedian().aggregate(honest + [attacker])["w"]) == pytest.approx(1.3)
    assert float(FedAvg().aggregate(honest + [attacker])["w"]) > 1e8


def test_trimmed_mean_drops_extremes() -> None:
    ups = [upd(str(i), [v]) for i, v in enumerate([-50.0, 1.0, 2.0, 3.0, 60.0])]
    assert float(TrimmedMean(trim=0.2).aggregate(ups)["w"]) == pytest.approx(2.0)
    assert float(TrimmedMean(trim=0.0).aggregate(ups)["w"]) == pytest.approx(3.2)
    # trim 0.4 of 5 cuts 2 from each end: the median
    assert float(TrimmedMean(trim=0.4).aggregate(ups)["w"]) == pytest.approx(2.0)


def test_trimmed_mean_refuses_bad_trim() -> None:
    with pytest.raises(AggregationError):
        TrimmedMean(trim=0.5)
    with pytest.raises(AggregationError):
        TrimmedMean(trim=-0.1)
    # with trim < 0.5 at least one value always survives, even for two peers
    assert float(TrimmedMean(trim=0.49).aggregate([upd("a", [1.0]), upd("b", [2.0])])["w"]) == 1.5


def test_proximal_term_value_and_gradient() -> None:
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    g = torch.tensor([0.0, 0.0])
    term = proximal_term([p], [g], mu=0.5)
    assert float(term.detach()) == pytest.approx(0.25 * 5.0)
    term.backward()
    assert torch.allclose(p.grad, torch.tensor([0.5, 1.0]))  # mu * (p - g)
    assert float(FedProx(mu=0.0).loss_term([p], [g]).detach()) == 0.0
    with pytest.raises(AggregationError):
        FedProx(mu=-1.0)
    with pytest.raises(AggregationError):
        proximal_term([p], [g, g], mu=1.0)


def test_fedprox_aggregates_like_fedavg() -> None:
    ups = [upd("a", [0.0], 1), upd("b", [3.0], 2)]
    assert torch.equal(FedProx(mu=1.0).aggregate(ups)["w"], FedAvg().aggregate(ups)["w"])


def test_clustered_by_similarity_separates_opposite_updates() -> None:
    ref = {"w": torch.zeros(2), "steps": torch.tensor(0)}
    ups = [
        upd("a", [1.0, 0.1], 1),
        upd("b", [2.0, 0.0], 3),
        upd("c", [-1.0, 0.0], 1),
        upd("d", [-1.0, -0.2], 1),
    ]
    result = Clustered(threshold=0.5, max_clusters=3).aggregate_clusters(ups, ref)
    assert result.assignment == {"a": 0, "b": 0, "c": 1, "d": 1}
    assert torch.allclose(result.model_for("a")["w"], torch.tensor([1.75, 0.025]))
    assert torch.allclose(result.model_for("d")["w"], torch.tensor([-1.0, -0.1]))
    assert torch.allclose(result.global_model["w"], FedAvg().aggregate(ups)["w"])


def test_clustered_respects_max_clusters_and_tags() -> None:
    ref = {"w": torch.zeros(2), "steps": torch.tensor(0)}
    ups = [upd("a", [1.0, 0.0]), upd("b", [0.0, 1.0]), upd("c", [-1.0, 0.0])]
    one = Clustered(threshold=0.99, max_clusters=1).aggregate_clusters(ups, ref)
    assert set(one.assignment.values()) == {0}
    tagged = [upd("a", [1.0, 0.0], tag="y"), upd("b", [0.0, 1.0], tag="x"),
              upd("c", [3.0, 0.0], tag="y")]
    by_tag = Clustered(grouping="tag").aggregate_clusters(tagged)
    assert by_tag.assignment == {"a": 1, "b": 0, "c": 1}
    assert torch.allclose(by_tag.model_for("c")["w"], torch.tensor([2.0, 0.0]))
    with pytest.raises(AggregationError, match="tag"):
        Clustered(grouping="tag").aggregate_clusters(ups)
    with pytest.raises(AggregationError, match="reference"):
        Clustered().aggregate_clusters(ups)


def test_importance_scores_rank_balanced_and_large_first() -> None:
    assert data_distribution_score([5, 5, 5, 5]) == pytest.approx(1.0)
    assert data_distribution_score([9, 0, 0, 0]) == 0.0
    assert data_quantity_score(50, 200) == 0.25
    counts = {
        "rich": [100, 100, 100, 100],
        "big_skewed": [400, 0, 0, 0],
        "small_balanced": [10, 10, 10, 10],
        "poor": [5, 0, 0, 0],
    }
    scores = importance_scores(counts, MultiTierConfig(lambda_dds=0.5, lambda_dqs=0.5))
    assert scores["rich"] == pytest.approx(1.0)
    assert scores["big_skewed"] == pytest.approx(0.5)
    assert scores["small_balanced"] == pytest.approx(0.5 + 0.5 * 40 / 400)
    assert scores["poor"] == pytest.approx(0.5 * 5 / 400)
    only_quantity = importance_scores(counts, MultiTierConfig(lambda_dds=0.0, lambda_dqs=1.0))
    assert only_quantity["big_skewed"] == only_quantity["rich"] == pytest.approx(1.0)


def test_plan_tiers_is_deterministic_and_round_robin() -> None:
    counts = {f"r{i}": [10 * (7 - i)] * 4 for i in range(7)}
    plan = plan_tiers(dict(reversed(list(counts.items()))), MultiTierConfig(top_tier=3))
    assert plan.top == ("r0", "r1", "r2")
    assert dict(plan.leader) == {"r3": "r0", "r4": "r1", "r5": "r2", "r6": "r0"}
    assert plan.group("r0") == ("r0", "r3", "r6")


def test_multitier_two_step_aggregation() -> None:
    counts = {"t1": [50, 50], "t2": [40, 40], "l1": [5, 0], "l2": [0, 3]}
    plan = plan_tiers(counts, MultiTierConfig(top_tier=2))
    assert plan.top == ("t1", "t2")
    ups = [upd("t1", [0.0], 100), upd("t2", [10.0], 80), upd("l1", [2.0], 5), upd("l2", [1.0], 3)]
    result = MultiTier().aggregate_two_step(ups, plan)
    assert plan.leader == {"l1": "t1", "l2": "t2"}
    assert float(result.group_models["t1"]["w"]) == pytest.approx(10 / 105)
    assert float(result.group_models["t2"]["w"]) == pytest.approx(803 / 83)
    assert result.group_samples == {"t1": 105, "t2": 83}
    expected = (105 * (10 / 105) + 83 * (803 / 83)) / 188
    assert float(result.global_model["w"]) == pytest.approx(expected)


def test_multitier_tolerates_a_missing_group_and_refuses_strangers() -> None:
    plan = plan_tiers({"t1": [5, 5], "t2": [4, 4], "l1": [1, 0]}, MultiTierConfig(top_tier=2))
    result = MultiTier().aggregate_two_step([upd("t1", [1.0], 10), upd("l1", [3.0], 1)], plan)
    assert set(result.group_models) == {"t1"}
    with pytest.raises(AggregationError, match="not in the plan"):
        MultiTier().aggregate_two_step([upd("zz", [1.0])], plan)
    with pytest.raises(AggregationError):
        MultiTierConfig(top_tier=0)


def test_rule_by_name() -> None:
    assert rule_by_name("trimmed_mean").name == "trimmed_mean"
    with pytest.raises(AggregationError, match="unknown"):
        rule_by_name("krum")


def test_capped_shares_keep_every_peer_under_the_cap() -> None:
    from peerdata.ml.aggregate.geomed import capped_shares

    shares = capped_shares([700, 100, 100, 50, 50], 0.3)
    assert float(shares.sum()) == pytest.approx(1.0)
    assert float(shares.max()) == pytest.approx(0.3)
    # the rest keep their proportions: 100 vs 50 is still 2:1
    assert float(shares[1] / shares[3]) == pytest.approx(2.0)
    assert torch.allclose(capped_shares([5, 1], 0.3), torch.full((2,), 0.5, dtype=torch.float64))


def test_geomed_is_fedavg_like_on_agreement_and_bounded_under_a_liar() -> None:
    from peerdata.ml.aggregate import GeometricMedian

    honest = [upd("a", [1.0, 2.0], 30), upd("b", [1.2, 2.2], 30), upd("c", [0.8, 1.8], 30),
              upd("d", [1.1, 1.9], 20)]
    same = GeometricMedian().aggregate(honest[:1] * 3)
    assert torch.allclose(same["w"], torch.tensor([1.0, 2.0]))
    assert int(same["steps"]) == 7
    # a peer claiming the most samples, its update scaled by -1000: the mean follows it, the
    # geometric median stays with the honest majority
    liar = upd("x", [-1000.0, -2000.0], 1000)
    mean = FedAvg().aggregate([*honest, liar])["w"]
    robust = GeometricMedian().aggregate([*honest, liar])["w"]
    assert float(mean.norm()) > 100
    assert torch.allclose(robust, torch.tensor([1.0, 2.0]), atol=0.3)
    # exactly: the liar is left out, the rest averaged with the capped sample shares
    from peerdata.ml.aggregate.geomed import capped_shares

    shares = capped_shares([30, 30, 30, 20, 1000], 0.3)[:4].to(torch.float32)
    honest_mean = sum(s * u.state["w"] for s, u in zip(shares, honest, strict=True)) / shares.sum()
    assert torch.allclose(robust, honest_mean, atol=1e-5)
    assert rule_by_name("geomed").name == "geomed"


def test_fedbuff_steps_every_k_updates_and_discounts_stale_ones() -> None:
    from peerdata.ml.aggregate.fedbuff import FedBuff

    g0 = {"w": torch.zeros(2), "steps": torch.tensor(0, dtype=torch.int64)}
    server = FedBuff(dict(g0), buffer_size=2, staleness_exponent=1.0)
    plus = {"w": torch.tensor([1.0, 1.0]), "steps": torch.tensor(5)}
    assert not server.submit(plus, g0, 0, 10)
    assert server.submit({"w": torch.tensor([3.0, 3.0]), "steps": torch.tensor(5)}, g0, 0, 30)
    assert server.version == 1
    assert torch.allclose(server.global_state["w"], torch.tensor([2.5, 2.5]))  # (10*1+30*3)/40
    assert int(server.global_state["steps"]) == 0  # integer buffers are the server's own
    # a fresh update and one started a version ago (staleness 1: weight halves)
    g1 = dict(server.global_state)
    assert server.staleness_weight(0) == pytest.approx(0.5)
    server.submit({"w": g1["w"] + 2.0, "steps": torch.tensor(0)}, g1, 1, 10)
    server.submit({"w": torch.tensor([0.0, 0.0]) - 4.0, "steps": torch.tensor(0)}, g0, 0, 10)
    # deltas +2 (weight 10) and -4 (weight 10 * 0.5): mean = (20 - 20) / 15 = 0
    assert torch.allclose(server.global_state["w"], g1["w"])
    with pytest.raises(AggregationError):
        server.staleness_weight(5)  # from the future


def test_agree_keeps_a_dominant_honest_peer_and_drops_a_reversed_one() -> None:
    from peerdata.ml.aggregate import AgreeingMean

    g = {"w": torch.zeros(2), "steps": torch.tensor(0, dtype=torch.int64)}

    def moved(peer: str, dx: float, dy: float, n: int) -> ClientUpdate:
        return ClientUpdate(peer, {"w": torch.tensor([dx, dy]), "steps": torch.tensor(7)}, n)

    # one robot holds 90 % of the data and moves far; small ones move a little the same way
    honest = [moved("big", 10.0, 9.0, 900), moved("a", 1.0, 0.5, 40), moved("b", 0.5, 1.0, 30),
              moved("c", 1.0, 1.0, 30)]
    clean = AgreeingMean().aggregate_from(honest, g)["w"]
    assert torch.allclose(clean, FedAvg().aggregate(honest)["w"], atol=1e-5)
    # the big robot turned liar: -10x its update; it is left out, the rest averaged by samples
    liar = moved("big", -100.0, -90.0, 900)
    attacked = AgreeingMean().aggregate_from([liar, *honest[1:]], g)["w"]
    assert torch.allclose(attacked, FedAvg().aggregate(honest[1:])["w"], atol=1e-5)
