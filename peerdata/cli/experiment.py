"""`peerdata experiment`: run a scenario's sharing policies side by side and report the figures."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, say, table
from peerdata.datasets import DATA_DIR_ENV, resolve_data_dir
from peerdata.errors import ConfigError


def _csv(value: str | None, kind: type, what: str) -> tuple:
    if value is None:
        return ()
    try:
        items = tuple(kind(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--{what}: cannot parse {value!r}") from None
    if not items:
        raise ConfigError(f"--{what}: empty list")
    return items


ScenarioOption = Annotated[
    str, typer.Option("--scenario", "-s", help="shipped scenario name or path to a .toml file")
]
PoliciesOption = Annotated[
    str | None,
    typer.Option("--policies", "-p", help="comma list of gu,random,oracle,all,none"),
]
RoundsOption = Annotated[int | None, typer.Option("--rounds", "-r", help="sharing rounds")]
SeedsOption = Annotated[str | None, typer.Option("--seeds", help="comma list, e.g. 0,1,2")]
BudgetOption = Annotated[
    float | None,
    typer.Option("--budget", help="share of each round's new images a robot may send, (0, 1]"),
]
DetectorOption = Annotated[
    str | None, typer.Option("--detector", help="mc_dropout, energy, knn or mahalanobis")
]
OutOption = Annotated[
    Path, typer.Option("--out", "-o", help="output directory (written atomically)")
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help=f"dataset directory (default: ${DATA_DIR_ENV})"),
]
ForceOption = Annotated[bool, typer.Option("--force", help="replace an existing --out")]
ThreadsOption = Annotated[int, typer.Option("--threads", help="torch CPU threads")]
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="progress bar on stderr")
]

# lying members (issue #10; owner: trust): scripts/bench_liars.py measures the honest robots
LiarsOption = Annotated[float, typer.Option(
    "--liars", help="share of robots whose OoD votes lie (seeded choice; 0.2 of 3 robots is 1)")]
LieOption = Annotated[str, typer.Option(
    "--lie", help="how liars vote: invert, always-novel or never-novel")]
ReputationOption = Annotated[bool, typer.Option(
    "--reputation/--no-reputation", help="weight votes by each voter's reputation")]

# federated-learning hook: `--mode federated` hands over to peerdata.cli.federated
ModeOption = Annotated[
    str,
    typer.Option(
        "--mode",
        help="sharing (images, the default), federated (model updates; --scenario is "
        "then DATASET-SPLIT-BETA, e.g. mnist-quantity-0.5) or combined (images + models vs each "
        "alone); see docs/federated.md",
    ),
]
StrategyOption = Annotated[
    str | None,
    typer.Option(
        "--strategy",
        help="federated mode: comma list of fedavg,fedprox,median,trimmed_mean,clustered,multitier",
    ),
]


@guarded
def experiment_command(
    out: OutOption,
    scenario: ScenarioOption = "paper-3",
    policies: PoliciesOption = None,
    rounds: RoundsOption = None,
    seeds: SeedsOption = None,
    budget: BudgetOption = None,
    detector: DetectorOption = None,
    data_dir: DataDirOption = None,
    force: ForceOption = False,
    threads: ThreadsOption = 1,
    progress: ProgressOption = True,
    fmt: Format = FORMAT_OPTION,
    mode: ModeOption = "sharing",
    strategy: StrategyOption = None,
    liars: LiarsOption = 0.0,
    lie: LieOption = "invert",
    reputation: ReputationOption = False,
) -> None:
    """Run a scenario's policies side by side (see `peerdata experiment --help`)."""
    if mode == "federated":  # --- federated-learning hook (owner: peerdata/federated) ---
        from peerdata.cli.federated import DEFAULT_STRATEGIES, run_federated

        run_federated(
            scenario=scenario,
            strategies=strategy or DEFAULT_STRATEGIES,
            rounds=rounds or 10,
            seeds=seeds or "0",
            data_dir=data_dir,
            out=out,
            threads=threads,
            progress=progress,
            fmt=fmt,
        )
        return
    if mode == "combined":  # images (GU) + model averaging, vs each alone
        from peerdata.cli.federated import run_combined_mode

        run_combined_mode(
            scenario=scenario,
            rounds=rounds,
            seeds=seeds,
            data_dir=data_dir,
            out=out,
            threads=threads,
            progress=progress,
            fmt=fmt,
        )
        return
    if mode != "sharing":
        raise ConfigError(f"--mode must be sharing, federated or combined, got {mode!r}")
    import torch

    from peerdata.experiment import ExperimentPlan, check_output_dir, run_experiment
    from peerdata.experiment.report import write_results
    from peerdata.scenario import load_scenario

    spec = load_scenario(scenario)
    changes: dict[str, object] = {}
    if policies is not None:
        changes["policies"] = _csv(policies, str, "policies")
    if seeds is not None:
        changes["seeds"] = _csv(seeds, int, "seeds")
    if rounds is not None:
        changes["rounds"] = rounds
    if budget is not None:
        changes["budget"] = budget
    if detector is not None:
        changes["detector"] = detector
    if changes:
        spec = spec.with_overrides(**changes)
    if threads < 1:
        raise ConfigError("--threads must be >= 1")
    check_output_dir(out, force)
    from peerdata.sharing.liars import LIE_MODES, pick_liars

    if lie not in LIE_MODES:
        raise ConfigError(f"--lie must be one of {', '.join(LIE_MODES)}, got {lie!r}")
    pick_liars([r.name for r in spec.robots], liars, 0)  # --liars in [0, 1), else ConfigError
    plan = ExperimentPlan(spec, resolve_data_dir(data_dir), liars=liars, lie=lie,
                          reputation=reputation)
    torch.set_num_threads(threads)

    from tqdm import tqdm

    bar = tqdm(total=plan.steps, file=sys.stderr, disable=not progress, desc=spec.name, unit="step")

    def tick(message: str) -> None:
        bar.set_postfix_str(message)
        bar.update(1)

    try:
        results = run_experiment(plan, tick)
    finally:
        bar.close()
    command = "peerdata " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_results(results, out, command)
    summary = {"scenario": spec.name, "out": str(out), **results["summary"]}
    if fmt is Format.text:
        keys = ["rare_precision", "rare_recall", "accuracy", "megabytes", "accuracy_gain_per_mb"]
        rows = [[p] + [summary.get(f"{p}_{k}") for k in keys] for p in spec.policies]
        table(
            f"{spec.name}: final round (mean over seeds {list(spec.seeds)})",
            ["policy", *keys],
            rows,
        )
        headline = [
            "gu_vs_random_accuracy_round2",
            "gu_oracle_accuracy_gap_round5",
            "gu_worst_robot_vs_random",
            "ood_auroc_min",
        ]
        table("value of sharing", ["figure", "value"], [[k, summary.get(k)] for k in headline])
        say(f"wrote {out}/results.json, results.md, accuracy.png")
    emit_json(summary)


HELP = "\n\n".join(
    [
        "Run a scenario's sharing policies side by side on identical data streams and seeds.",
        "Policies: gu (learned global-utility ranker), random, oracle (ground truth: shares "
        "only what is novel to a peer), all (shares everything), none.",
        "Writes OUT/results.json, OUT/results.md, OUT/accuracy.png (accuracy on all domains vs "
        "round, one line per policy, as the paper's Fig. 2) and OUT/precision.png (rare-data "
        "precision vs round). OUT appears only when the run completes. Progress goes to "
        "stderr; the last stdout line is one JSON object (gu_rare_precision, gu_accuracy, "
        "oracle_accuracy, gu_oracle_accuracy_gap, gu_vs_random_accuracy_round2, "
        "gu_oracle_accuracy_gap_round5, ood_auroc_min, seconds, ...). results.md also holds, per "
        "round, the class and domain histograms of what each robot sent and received, and every "
        "detector's AUROC per (robot, foreign dataset) after the last round.",
        "Exit codes: 3 bad scenario or option, 4 missing or malformed dataset.",
        "Examples:",
        "  peerdata experiment --scenario synthetic-3 --out /tmp/demo",
        "  peerdata experiment --scenario paper-3 --policies gu,random,oracle --seeds 0,1,2 "
        "--out results/paper-3 --data-dir ~/data",
        "  peerdata experiment --scenario my-fleet.toml --budget 0.05 --format json --out /tmp/r",
        "  peerdata experiment --scenario paper-3 --policies gu --rounds 5 --liars 0.2 "
        "--lie invert --reputation --out /tmp/liars   (lying members; honest robots' figure: "
        "scripts/bench_liars.py)",
    ]
)


def register(app: typer.Typer) -> None:
    app.command("experiment", help=HELP)(experiment_command)
