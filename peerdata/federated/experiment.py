"""The federated experiment: 7 simulated robots, one strategy per run, honest and attacked.

Rule: a deterministic simulation (seeded splits, seeded training, sequential robots) with no
printing and no network: rounds are played in-process, the aggregation rules are the real ones
from `peerdata.ml.aggregate`, and bytes per round are measured on real encoded ModelUpdates
(`peerdata.federated.traffic`). Each robot's accuracy is that of the model it holds after its
last local training (what it runs between rounds), on the same held-out test set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from peerdata.datasets.images import LabelledImages
from peerdata.errors import ConfigError
from peerdata.federated.exchange import elect_aggregator
from peerdata.federated.local import LocalTraining, accuracy, local_seed, new_state, train_from
from peerdata.federated.partition import SplitSpec, label_histogram, split_indices
from peerdata.federated.tensors import BlobOptions
from peerdata.federated.traffic import (
    Transfer,
    multitier_transfers,
    robot_identity,
    star_transfers,
    transfer_bytes,
)
from peerdata.ml.aggregate import (
    ClientUpdate,
    Clustered,
    FedProx,
    MultiTier,
    MultiTierConfig,
    StateDict,
    aggregate_from,
    plan_tiers,
    rule_by_name,
)
from peerdata.ml.aggregate.trimmed_mean import TrimmedMean
from peerdata.ml.vision import VisionConfig

STRATEGIES = ("fedavg", "fedprox", "median", "trimmed_mean", "clustered", "multitier", "geomed",
              "agree")
ROBUST_CAPABLE = ("fedavg", "fedprox", "median", "trimmed_mean", "geomed", "agree")
ATTACKS = ("scaled", "random")
NUM_CLASSES = 10


@dataclass(frozen=True)
class FederatedExperimentConfig:
    """Everything one federated experiment needs; the CLI builds it from its options."""

    split: SplitSpec = SplitSpec()
    dataset: str = "mnist"
    rounds: int = 10
    local_epochs: int = 1
    test_images: int = 2000
    strategies: tuple[str, ...] = STRATEGIES
    attacked: tuple[str, ...] = ("fedavg", "median", "trimmed_mean")
    attack: str = "scaled"  # scaled: g + attack_scale * delta; random: g + N(0, attack_scale)
    attack_scale: float = -10.0
    fedprox_mu: float = 0.01
    trim: float = 0.2
    clustered: Clustered = Clustered(threshold=0.0, max_clusters=3)
    # et = er = local_epochs by default: every robot trains as many epochs as under FedAvg
    multitier: MultiTierConfig = MultiTierConfig(top_tier=3, et=1, er=1)
    vision: VisionConfig = field(default_factory=lambda: VisionConfig(
        num_classes=NUM_CLASSES, width=4, embedding_dim=32, dropout=0.0))
    training: LocalTraining = LocalTraining()
    update_dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.strategies) - set(STRATEGIES))
        if unknown:
            raise ConfigError(f"unknown strategies {unknown}; choose from {STRATEGIES}")
        if not set(self.attacked) <= set(ROBUST_CAPABLE):
            raise ConfigError(f"attacked runs are supported for {ROBUST_CAPABLE}")
        if self.attack not in ATTACKS:
            raise ConfigError(f"attack must be one of {ATTACKS}")
        if self.rounds < 1 or self.local_epochs < 1 or self.test_images < 1:
            raise ConfigError("rounds, local_epochs and test_images must be >= 1")


@dataclass(frozen=True)
class StrategyResult:
    """One run of one strategy: final accuracies, per-round global accuracy, and traffic."""

    strategy: str
    attacked: bool
    global_accuracy: float
    robot_accuracies: tuple[float, ...]
    curve: tuple[float, ...]
    bytes_per_round: int

    @property
    def worst_accuracy(self) -> float:
        """The weakest robot's accuracy."""
        return min(self.robot_accuracies)

    @property
    def mean_accuracy(self) -> float:
        """The robots' mean accuracy."""
        return float(np.mean(self.robot_accuracies))


@dataclass(frozen=True)
class Fleet:
    """The robots' data, their label histograms, and the shared test set."""

    robots: tuple[LabelledImages, ...]
    histograms: tuple[tuple[int, ...], ...]
    test: LabelledImages

    def train(self, cfg: FederatedExperimentConfig, index: int, start: StateDict, step: int, *,
              epochs: int | None = None, prox: FedProx | None = None) -> StateDict:
        """Robot `index`'s local training from `start` at `step` (`cfg.local_epochs` unless
        `epochs` is given), seeded by `local_seed` in every in-process run."""
        data = self.robots[index]
        return train_from(cfg.vision, start, data.images, data.labels,
                          epochs=cfg.local_epochs if epochs is None else epochs,
                          training=cfg.training, prox=prox,
                          seed=local_seed(cfg.seed, step, index))

    def accuracy(self, cfg: FederatedExperimentConfig, state: StateDict) -> float:
        """Accuracy of the model `state` on the fleet's shared test set."""
        return accuracy(cfg.vision, state, self.test.images, self.test.labels)


def build_fleet(train: LabelledImages, test: LabelledImages,
                cfg: FederatedExperimentConfig) -> Fleet:
    """Split `train` over the robots and draw the test subset (both seeded)."""
    parts = split_indices(train.labels, cfg.split, cfg.seed)
    robots = tuple(train.take(p) for p in parts)
    rng = np.random.default_rng(cfg.seed + 10_000)
    pick = np.sort(rng.permutation(len(test))[: cfg.test_images])
    return Fleet(robots, tuple(label_histogram(r.labels, NUM_CLASSES) for r in robots),
                 test.take(pick))


def attacker_of(fleet: Fleet) -> int:
    """The attacked runs' attacker: the robot with the most data (the worst case: it also
    claims the most samples)."""
    return max(range(len(fleet.robots)), key=lambda i: len(fleet.robots[i]))


def without_robot(fleet: Fleet, index: int) -> Fleet:
    """`fleet` with robot `index` left out (the honest-only bound of an attacked run)."""
    keep = [i for i in range(len(fleet.robots)) if i != index]
    return Fleet(tuple(fleet.robots[i] for i in keep), tuple(fleet.histograms[i] for i in keep),
                 fleet.test)


class _Run:
    """The state of one strategy run; `round` plays one round."""

    def __init__(self, strategy: str, attacked: bool, fleet: Fleet,
                 cfg: FederatedExperimentConfig) -> None:
        self.strategy, self.attacked, self.fleet, self.cfg = strategy, attacked, fleet, cfg
        self.ids = [robot_identity(i, cfg.seed) for i in range(len(fleet.robots))]
        self.peers = [i.peer_id for i in self.ids]
        self.identities = {i.peer_id: i for i in self.ids}
        self.global_state = new_state(cfg.vision, cfg.seed)
        self.starts: dict[str, StateDict] = {}  # clustered: each robot's cluster model
        self.locals: dict[str, StateDict] = {}
        self.options = BlobOptions(cfg.update_dtype)
        self.plan = plan_tiers(dict(zip(self.peers, fleet.histograms, strict=True)),
                               cfg.multitier)
        self.attacker = attacker_of(fleet)

    def _train(self, index: int, start: StateDict, epochs: int, round_id: int) -> StateDict:
        prox = FedProx(self.cfg.fedprox_mu) if self.strategy == "fedprox" else None
        return self.fleet.train(self.cfg, index, start, round_id, epochs=epochs, prox=prox)

    def _poison(self, local: StateDict, round_id: int) -> StateDict:
        g, scale = self.global_state, self.cfg.attack_scale
        if self.cfg.attack == "scaled":
            return {k: g[k] + scale * (v - g[k]) if v.is_floating_point() else v
                    for k, v in local.items()}
        gen = torch.Generator().manual_seed(self.cfg.seed + round_id)
        return {k: g[k] + abs(scale) * torch.randn(v.shape, generator=gen)
                if v.is_floating_point() else v for k, v in local.items()}

    def round(self, round_id: int) -> int:
        """Play one round; return the bytes it put on the wire."""
        if self.strategy == "multitier":
            return self._multitier_round(round_id)
        base = self.global_state
        updates: list[ClientUpdate] = []
        for i, peer in enumerate(self.peers):
            start = self.starts.get(peer, base)
            local = self._train(i, start, self.cfg.local_epochs, round_id)
            self.locals[peer] = local
            n = len(self.fleet.robots[i])
            if self.attacked and i == self.attacker:
                local, n = self._poison(local, round_id), max(len(r) for r in self.fleet.robots)
            updates.append(ClientUpdate(peer, local, n))
        aggregator = elect_aggregator(round_id, self.peers)
        if self.strategy == "clustered":
            starts = {p: self.starts.get(p, base) for p in self.peers}
            result = self.cfg.clustered.aggregate_clusters(updates, starts=starts)
            self.global_state = result.global_model
            self.starts = {p: result.model_for(p) for p in self.peers}
            replies: Mapping[str, StateDict] = self.starts
        else:
            rule = TrimmedMean(self.cfg.trim) if self.strategy == "trimmed_mean" else (
                rule_by_name(self.strategy))
            self.global_state = aggregate_from(rule, updates, base)
            replies = {p: self.global_state for p in self.peers}
        sent = {u.peer: u.state for u in updates}
        return self._bytes(star_transfers(aggregator, self.peers, sent, replies, base), round_id)

    def _multitier_round(self, round_id: int) -> int:
        base, plan, mt = self.global_state, self.plan, self.cfg.multitier
        index = {p: i for i, p in enumerate(self.peers)}
        seeds = {t: self._train(index[t], base, mt.et, round_id) for t in plan.top}
        self.locals = dict(seeds)
        for low, top in plan.leader.items():
            self.locals[low] = self._train(index[low], seeds[top], mt.er, round_id)
        updates = [ClientUpdate(p, self.locals[p], len(self.fleet.robots[index[p]]))
                   for p in self.peers]
        result = MultiTier(mt).aggregate_two_step(updates, plan)
        self.global_state = result.global_model
        aggregator = elect_aggregator(round_id, plan.top)
        return self._bytes(multitier_transfers(aggregator, plan, seeds, self.locals,
                                               result.group_models, result.global_model, base),
                           round_id)

    def _bytes(self, transfers: list[Transfer], round_id: int) -> int:
        return transfer_bytes(transfers, self.identities, round_id, self.options)


def run_strategy(strategy: str, fleet: Fleet, cfg: FederatedExperimentConfig, *,
                 attacked: bool = False,
                 progress: Callable[[str], None] | None = None) -> StrategyResult:
    """Play `cfg.rounds` rounds of `strategy` over `fleet` and measure the outcome."""
    run = _Run(strategy, attacked, fleet, cfg)
    curve, traffic = [], []
    for round_id in range(1, cfg.rounds + 1):
        traffic.append(run.round(round_id))
        curve.append(fleet.accuracy(cfg, run.global_state))
        if progress is not None:
            label = f"{strategy}{' (attacked)' if attacked else ''}"
            progress(f"{label} round {round_id}/{cfg.rounds}: global accuracy {curve[-1]:.3f}")
    robots = tuple(fleet.accuracy(cfg, run.locals[p]) for p in run.peers)
    return StrategyResult(strategy, attacked, curve[-1], robots, tuple(curve),
                          int(round(float(np.mean(traffic)))))


def parse_scenario(name: str) -> tuple[str, str, float]:
    """`DATASET-SPLIT[-BETA]` (e.g. `mnist-quantity-0.5`, `fashion_mnist-class-0.1`,
    `mnist-iid`) -> (dataset, split kind, beta).

    Raises:
        ConfigError: not of that form.
    """
    if name.endswith("-iid") and len(name) > 4:
        return name[:-4], "iid", 1.0
    parts = name.rsplit("-", 2)
    try:
        if len(parts) == 3 and parts[1] in ("quantity", "class") and parts[0]:
            return parts[0], parts[1], float(parts[2])
    except ValueError:
        pass
    raise ConfigError(
        f"federated scenario {name!r} must be DATASET-SPLIT-BETA (SPLIT: quantity or class) "
        "or DATASET-iid, e.g. mnist-quantity-0.5, fashion_mnist-class-0.1, mnist-iid"
    )


def summarize(results: list[StrategyResult]) -> dict[str, float | int]:
    """The flat JSON summary: `<strategy>_global_accuracy`, `_worst_accuracy`,
    `_mean_accuracy`, `_bytes_per_round`, and for attacked runs `_attacked_accuracy` and
    `_attacked_accuracy_drop` (honest global accuracy minus attacked, in points of 0..1)."""
    out: dict[str, float | int] = {}
    honest = {r.strategy: r for r in results if not r.attacked}
    for r in results:
        if r.attacked:
            out[f"{r.strategy}_attacked_accuracy"] = round(r.global_accuracy, 4)
            if r.strategy in honest:
                drop = honest[r.strategy].global_accuracy - r.global_accuracy
                out[f"{r.strategy}_attacked_accuracy_drop"] = round(drop, 4)
            continue
        out[f"{r.strategy}_global_accuracy"] = round(r.global_accuracy, 4)
        out[f"{r.strategy}_worst_accuracy"] = round(r.worst_accuracy, 4)
        out[f"{r.strategy}_mean_accuracy"] = round(r.mean_accuracy, 4)
        out[f"{r.strategy}_bytes_per_round"] = r.bytes_per_round
    return out


def run_experiment(train: LabelledImages, test: LabelledImages, cfg: FederatedExperimentConfig,
                   progress: Callable[[str], None] | None = None) -> list[StrategyResult]:
    """Every configured strategy honestly, then the attacked ones, on one fleet."""
    fleet = build_fleet(train, test, cfg)
    results = [run_strategy(s, fleet, cfg, progress=progress) for s in cfg.strategies]
    results += [run_strategy(s, fleet, cfg, attacked=True, progress=progress)
                for s in cfg.attacked]
    return results
