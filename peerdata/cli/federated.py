"""`peerdata federated` (also `peerdata experiment --mode federated`): compare FL strategies.

Rule: this module only parses options, calls `peerdata.federated.experiment`, and prints; the
last stdout line is one JSON object (means over seeds).
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, say, table
from peerdata.datasets import DATA_DIR_ENV, resolve_data_dir
from peerdata.errors import ConfigError

DEFAULT_STRATEGIES = "fedavg,fedprox,median,trimmed_mean,clustered,multitier"
DEFAULT_ATTACKED = "fedavg,median,trimmed_mean"


def _names(value: str, what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise ConfigError(f"--{what}: empty list")
    return () if items == ("none",) else items


def _seeds(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _names(value, "seeds"))
    except ValueError:
        raise ConfigError(f"--seeds: cannot parse {value!r}") from None


def _reporter(enabled: bool, prefix: str = "") -> Callable[[str], None]:
    """Progress lines to stderr (or nowhere)."""
    return (lambda m: print(prefix + m, file=sys.stderr, flush=True)) if enabled else (
        lambda _m: None)


def run_federated(
    *, scenario: str, strategies: str = DEFAULT_STRATEGIES, attacked: str = DEFAULT_ATTACKED,
    attack: str = "scaled", attack_scale: float = -10.0, rounds: int = 10,
    local_epochs: int = 1, robots: int = 7, images: int = 4200, test_images: int = 2000,
    seeds: str = "0", top_tier: int = 3, et: int | None = None, er: int | None = None,
    mu: float = 0.01, trim: float = 0.2,
    dtype: str = "float32", data_dir: Path | None = None, out: Path | None = None,
    threads: int = 1, progress: bool = True, fmt: Format = Format.text,
) -> dict[str, object]:
    """Run the federated experiment, print the table and the JSON line; return the summary."""
    import dataclasses

    import numpy as np
    import torch

    from peerdata.datasets import load_dataset
    from peerdata.federated.experiment import (
        FederatedExperimentConfig,
        parse_scenario,
        run_experiment,
        summarize,
    )
    from peerdata.federated.partition import SplitSpec
    from peerdata.ml.aggregate import MultiTierConfig

    if threads < 1:
        raise ConfigError("--threads must be >= 1")
    dataset, kind, beta = parse_scenario(scenario)
    chosen = _names(strategies, "strategy")
    # an attacked run is only meaningful beside the same strategy's honest run
    under_attack = tuple(a for a in _names(attacked, "attacked") if a in chosen)
    base = FederatedExperimentConfig(
        dataset=dataset, split=SplitSpec(kind, beta, robots, images), rounds=rounds,
        local_epochs=local_epochs, test_images=test_images,
        strategies=chosen, attacked=under_attack,
        attack=attack, attack_scale=attack_scale, fedprox_mu=mu, trim=trim,
        multitier=MultiTierConfig(top_tier=top_tier, et=et or local_epochs,
                                  er=local_epochs if er is None else er),
        update_dtype=dtype,
    )
    splits = load_dataset(dataset, resolve_data_dir(data_dir))
    if splits.train is None:
        raise ConfigError(f"dataset {dataset!r} has no train split to give the robots")
    torch.set_num_threads(threads)

    per_seed: list[dict[str, Any]] = []
    for seed in _seeds(seeds):
        cfg = dataclasses.replace(base, seed=seed)
        results = run_experiment(splits.train, splits.test, cfg, progress=_reporter(progress))
        per_seed.append({"seed": seed, "summary": summarize(results),
                         "robots": {f"{r.strategy}{'_attacked' if r.attacked else ''}":
                                    list(r.robot_accuracies) for r in results}})
    keys = per_seed[0]["summary"].keys()
    summary: dict[str, object] = {}
    for k in keys:
        mean = float(np.mean([s["summary"][k] for s in per_seed]))
        summary[k] = int(round(mean)) if k.endswith("bytes_per_round") else round(mean, 4)
    summary = {"scenario": scenario, "seeds": len(per_seed), **summary}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        command = "peerdata " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        (out / "federated.json").write_text(json.dumps(
            {"command": command, "summary": summary, "per_seed": per_seed}, indent=2))
    if fmt is Format.text:
        rows = []
        for s in base.strategies:
            rows.append([s] + [summary.get(f"{s}_{k}") for k in (
                "global_accuracy", "worst_accuracy", "mean_accuracy", "bytes_per_round",
                "attacked_accuracy", "attacked_accuracy_drop")])
        table(f"{scenario}: {rounds} rounds, {robots} robots, mean over {len(per_seed)} seed(s)",
              ["strategy", "global acc", "worst-robot acc", "mean robot acc", "bytes/round",
               f"acc under {attack} attack", "drop"], rows)
        if out is not None:
            say(f"wrote {out}/federated.json")
    emit_json(summary)
    return summary


def federated(
    scenario: Annotated[str, typer.Option(
        "--scenario", "-s", help="DATASET-SPLIT-BETA or DATASET-iid, e.g. mnist-quantity-0.5")
    ] = "mnist-quantity-0.5",
    strategy: Annotated[str, typer.Option(
        "--strategy", help="comma list of fedavg,fedprox,median,trimmed_mean,clustered,multitier")
    ] = DEFAULT_STRATEGIES,
    attacked: Annotated[str, typer.Option(
        "--attacked", help="strategies also run with one bad peer (or none)")
    ] = DEFAULT_ATTACKED,
    attack: Annotated[str, typer.Option(
        "--attack", help="scaled (sends g + scale*delta) or random (g + N(0, |scale|))")
    ] = "scaled",
    attack_scale: Annotated[float, typer.Option("--attack-scale")] = -10.0,
    rounds: Annotated[int, typer.Option("--rounds", "-r", min=1)] = 10,
    local_epochs: Annotated[int, typer.Option(
        "--local-epochs", min=1, help="epochs per round (also multi-tier et and er)")] = 1,
    robots: Annotated[int, typer.Option("--robots", min=2)] = 7,
    images: Annotated[int, typer.Option("--images", min=14, help="train images, all robots")
                      ] = 4200,
    test_images: Annotated[int, typer.Option("--test-images", min=1)] = 2000,
    seeds: Annotated[str, typer.Option("--seeds", help="comma list, e.g. 0,1,2")] = "0",
    top_tier: Annotated[int, typer.Option("--top-tier", min=1, help="multi-tier top peers")
                        ] = 3,
    et: Annotated[int | None, typer.Option(
        "--et", min=1, help="multi-tier: top-tier epochs [default: --local-epochs]")] = None,
    er: Annotated[int | None, typer.Option(
        "--er", min=0, help="multi-tier: low-tier fine-tune epochs [default: --local-epochs]")
    ] = None,
    mu: Annotated[float, typer.Option("--mu", min=0.0, help="FedProx proximal weight")] = 0.01,
    trim: Annotated[float, typer.Option("--trim", help="trimmed-mean fraction per end")] = 0.2,
    dtype: Annotated[str, typer.Option("--dtype", help="float32 or float16 on the wire")
                     ] = "float32",
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help=f"dataset directory (default: ${DATA_DIR_ENV})")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write federated.json here")
                   ] = None,
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads")] = 1,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Federated learning over 7 simulated robots: FedAvg, FedProx, median, trimmed mean,
    clustered and multi-tier, honest and with one bad peer; global and worst-robot accuracy
    and measured bytes per round. Last stdout line: one JSON object. See docs/federated.md.

    Examples:

      peerdata federated --scenario mnist-quantity-0.5 --seeds 0,1,2

      peerdata experiment --mode federated --strategy fedavg,multitier \\
          --scenario mnist-class-0.1 --out /tmp/fed
    """
    run_federated(scenario=scenario, strategies=strategy, attacked=attacked, attack=attack,
                  attack_scale=attack_scale, rounds=rounds, local_epochs=local_epochs,
                  robots=robots, images=images, test_images=test_images, seeds=seeds,
                  top_tier=top_tier, et=et, er=er, mu=mu, trim=trim, dtype=dtype,
                  data_dir=data_dir, out=out, threads=threads, progress=progress, fmt=fmt)


def register(app: typer.Typer) -> None:
    app.command("federated")(guarded(federated))


def run_combined_mode(
    *, scenario: str, rounds: int | None = None, seeds: str | None = None,
    data_dir: Path | None = None, out: Path | None = None, threads: int = 1,
    progress: bool = True, fmt: Format = Format.text,
) -> dict[str, object]:
    """Images alone, models alone, both, and neither on a sharing scenario (e.g. paper-3)."""
    import torch

    from peerdata.federated.combined import VARIANTS, run_combined
    from peerdata.scenario import load_scenario

    if threads < 1:
        raise ConfigError("--threads must be >= 1")
    spec = load_scenario(scenario)
    changes: dict[str, Any] = {}
    if rounds is not None:
        changes["rounds"] = rounds
    if seeds is not None:
        changes["seeds"] = _seeds(seeds)
    if changes:
        spec = spec.with_overrides(**changes)
    torch.set_num_threads(threads)

    results = run_combined(spec, resolve_data_dir(data_dir), progress=_reporter(progress))
    summary: dict[str, object] = {"scenario": spec.name, "mode": "combined",
                                  **results["summary"]}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        command = "peerdata " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        (out / "combined.json").write_text(json.dumps(
            {"command": command, **results}, indent=2, default=str))
    if fmt is Format.text:
        labels = {"none": "neither", "images": "images (GU)", "models": "models (FedAvg)",
                  "combined": "images + models"}
        table(f"{spec.name}: {spec.rounds} rounds, mean over seeds {list(spec.seeds)}",
              ["variant", "mean robot acc", "worst robot acc", "MB moved"],
              [[labels[v]] + [summary[f"{v}_{k}"] for k in
                              ("accuracy", "worst_accuracy", "megabytes")] for v in VARIANTS])
    emit_json(summary)
    return summary


def run_swarm_federation(
    *, scenario: str, strategy: str, robots: int, rounds: int, seed: int = 0,
    images: int = 4200, out: Path | None = None, data_dir: Path | None = None,
    interval_s: float = 40.0, deadline_s: float = 15.0, mode: str = "aggregator",
    progress: bool = True, fmt: Format = Format.text,
) -> dict[str, object]:
    """`peerdata swarm --federation`: the federated experiment between real processes, and the
    same seed in-process; print both and `swarm_vs_inprocess_accuracy_diff`."""
    import tempfile

    import torch

    from peerdata.datasets import load_dataset
    from peerdata.federated.experiment import (
        STRATEGIES,
        FederatedExperimentConfig,
        build_fleet,
        parse_scenario,
        run_strategy,
    )
    from peerdata.federated.partition import SplitSpec
    from peerdata.testing.fedswarm import (
        FedSwarmSettings,
        RobotJob,
        run_federation_swarm,
        summarize_swarm,
    )

    if strategy not in STRATEGIES:
        raise ConfigError(f"--federation: unknown strategy {strategy!r}; one of {STRATEGIES}")
    if robots < 2:
        raise ConfigError("--federation needs --robots >= 2")
    dataset, kind, beta = parse_scenario(scenario)
    cfg = FederatedExperimentConfig(dataset=dataset, split=SplitSpec(kind, beta, robots, images),
                                    rounds=rounds, strategies=(strategy,), attacked=(),
                                    seed=seed)
    splits = load_dataset(dataset, resolve_data_dir(data_dir))
    if splits.train is None:
        raise ConfigError(f"dataset {dataset!r} has no train split to give the robots")
    torch.set_num_threads(1)

    say = _reporter(progress, "swarm: ")
    fleet = build_fleet(splits.train, splits.test, cfg)
    jobs = [RobotJob(i, robots, cfg, strategy, r.images, r.labels)
            for i, r in enumerate(fleet.robots)]
    out_dir = out if out is not None else Path(tempfile.mkdtemp(prefix="peerdata-fedswarm-"))
    settings = FedSwarmSettings(interval_s=interval_s, deadline_s=deadline_s, mode=mode)
    results = run_federation_swarm(jobs, out_dir, settings, say)

    swarm = summarize_swarm(results, partial(fleet.accuracy, cfg))
    say("in-process run with the same seed")
    inproc = run_strategy(strategy, fleet, cfg, progress=say)
    summary: dict[str, object] = {
        "scenario": scenario, "strategy": strategy, "robots": robots, "rounds": rounds,
        "seed": seed, "out": str(out_dir),
        f"{strategy}_global_accuracy": round(swarm["global_accuracy"], 4),
        f"{strategy}_worst_accuracy": round(swarm["worst_accuracy"], 4),
        f"{strategy}_mean_accuracy": round(swarm["mean_accuracy"], 4),
        f"{strategy}_bytes_per_round": swarm["bytes_per_round"],
        "inprocess_global_accuracy": round(inproc.global_accuracy, 4),
        "inprocess_worst_accuracy": round(inproc.worst_accuracy, 4),
        "inprocess_bytes_per_round": inproc.bytes_per_round,
        "swarm_vs_inprocess_accuracy_diff": round(
            swarm["global_accuracy"] - inproc.global_accuracy, 4),
        "rounds_completed": swarm["rounds_completed"], "updates_rejected": swarm["rejected"],
        "swarm_wall_s": round(swarm["wall_s"], 1),
    }
    if fmt is Format.text:
        table(f"{scenario}: {strategy}, {robots} real daemons vs in-process, {rounds} rounds",
              ["run", "global acc", "worst-robot acc", "bytes/round"],
              [["swarm", summary[f"{strategy}_global_accuracy"],
                summary[f"{strategy}_worst_accuracy"], summary[f"{strategy}_bytes_per_round"]],
               ["in-process", summary["inprocess_global_accuracy"],
                summary["inprocess_worst_accuracy"], summary["inprocess_bytes_per_round"]]])
    emit_json(summary)
    return summary
