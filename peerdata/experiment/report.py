"""Writes an experiment's results: results.json, results.md, and Figure-2-style PNG plots.

Rule: outputs appear atomically. Everything is built in a temporary directory beside the target
and renamed into place only when complete, so a failure leaves no half-written output directory.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from peerdata.errors import ConfigError

_COLOURS = {
    "gu": "tab:blue",
    "random": "tab:orange",
    "oracle": "tab:green",
    "all": "tab:red",
    "none": "tab:grey",
}


def _fmt(cell: Mapping[str, float | None], scale: float = 100.0, digits: int = 1) -> str:
    mean, std = cell["mean"], cell["std"]
    if mean is None or std is None:
        return "n/a"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def markdown_report(results: Mapping[str, Any], command: str | None = None) -> str:
    """The results as markdown tables (accuracy in %, mean ± std over seeds)."""
    sc = results["scenario"]
    lines = [f"# Experiment `{sc['name']}`", "", sc["description"], ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += [
        f"Seeds {results['seeds']}, {results['rounds']} rounds, budget {sc['budget']:.0%}, "
        f"detector `{sc['detector']}`, bootstrap {sc['bootstrap_images']} images, "
        f"{sc['images_per_round']} new images per robot per round, "
        f"{results['summary'].get('seconds')} s.",
        "",
        "Data: " + "; ".join(f"`{k}`: {v}" for k, v in results.get("data_notes", {}).items()),
        "",
    ]
    domains = [*sc["datasets"], "all"]
    rounds = results["rounds"]
    lines += [
        "## Final-round accuracy (%)",
        "",
        "| policy | robot | " + " | ".join(domains) + " | MB sent |",
        "|---" * (len(domains) + 3) + "|",
    ]
    for policy, per_robot in results["per_policy"].items():
        for robot, rec in per_robot.items():
            mb = sum(p["mean"] or 0.0 for p in rec["bytes"]) / 1e6
            cells = [_fmt(rec["accuracy"][d][-1]) for d in domains]
            lines.append(f"| {policy} | {robot} | " + " | ".join(cells) + f" | {mb:.3f} |")
    lines += [
        "",
        "## 3-domain accuracy per round (%, round 0 = after local bootstrap)",
        "",
        "| policy | robot | " + " | ".join(str(r) for r in range(rounds + 1)) + " |",
        "|---" * (rounds + 3) + "|",
    ]
    for policy, per_robot in results["per_policy"].items():
        for robot, rec in per_robot.items():
            cells = [_fmt(c) for c in rec["accuracy"]["all"]]
            lines.append(f"| {policy} | {robot} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Rare-data precision / recall per round (%)",
        "",
        "Precision: share of what the robot sent that was novel to at least one peer. "
        "Recall: share of its rare images that round that it sent.",
        "",
        "| policy | robot | measure | " + " | ".join(str(r) for r in range(1, rounds + 1)) + " |",
        "|---" * (rounds + 3) + "|",
    ]
    for policy, per_robot in results["per_policy"].items():
        for robot in sc["rare_robots"]:
            for measure in ("rare_precision", "rare_recall"):
                cells = [_fmt(c) for c in per_robot[robot][measure]]
                lines.append(
                    f"| {policy} | {robot} | {measure.split('_')[1]} | " + " | ".join(cells) + " |"
                )
    lines += [
        "",
        "## OoD detector AUROC (%, after bootstrap: own held-out data vs foreign)",
        "",
        "| detector | robot | foreign dataset | AUROC |",
        "|---|---|---|---|",
    ]
    for det, per_robot in results["auroc"].items():
        for robot, per_ds in per_robot.items():
            for ds, cell in per_ds.items():
                lines.append(f"| {det} | {robot} | {ds} | {_fmt(cell)} |")
    lines += _final_auroc_lines(results)
    lines += _histogram_lines(results)
    lines += [
        "",
        "## Summary (final round, mean over seeds)",
        "",
        "```",
        json.dumps(results["summary"], indent=1, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def _counts(histogram: Mapping[str, float]) -> str:
    return " ".join(f"{k}:{v:g}" for k, v in histogram.items() if v) or "-"


def _histogram_lines(results: Mapping[str, Any]) -> list[str]:
    """Per policy, robot and round: domains and classes a robot sent and received."""
    lines = [
        "",
        "## What moved: domain and class histograms per round (mean count over seeds)",
        "",
        "Received = what the other robots shared that round. Classes are unified labels.",
        "",
        "| policy | robot | round | sent: domains | sent: classes | received: domains "
        "| received: classes |",
        "|---|---|---|---|---|---|---|",
    ]
    for policy, per_robot in results["per_policy"].items():
        for robot, rec in per_robot.items():
            for i, h in enumerate(rec.get("histograms", []), start=1):
                cells = [
                    _counts(h[d][k]) for d in ("shared", "received") for k in ("domain", "class")
                ]
                lines.append(f"| {policy} | {robot} | {i} | " + " | ".join(cells) + " |")
    return lines


def _final_auroc_lines(results: Mapping[str, Any]) -> list[str]:
    """Per policy: every detector's AUROC per (robot, foreign dataset) after the last round."""
    finals = results.get("auroc_final", {})
    if not finals:
        return []
    lines = [
        "",
        f"## OoD detector AUROC after round {results['rounds']} (%, own held-out vs foreign)",
        "",
        f"The vote uses `{results['scenario']['detector']}`; the others are measured for "
        "comparison on the same models.",
        "",
    ]
    for policy, per_det in finals.items():
        pairs = [(r, d) for r, per_ds in next(iter(per_det.values())).items() for d in per_ds]
        lines += [
            f"**{policy}**",
            "",
            "| detector | " + " | ".join(f"{r} vs {d}" for r, d in pairs) + " | min |",
            "|---" * (len(pairs) + 2) + "|",
        ]
        for det, per_robot in per_det.items():
            cells = [per_robot[r][d] for r, d in pairs]
            means = [c["mean"] for c in cells if c["mean"] is not None]
            low = f"{min(means) * 100:.1f}" if means else "n/a"
            lines.append(f"| {det} | " + " | ".join(_fmt(c) for c in cells) + f" | {low} |")
        lines.append("")
    return lines


def _band(
    ax: Any,
    xs: Sequence[int],
    series: Sequence[Mapping[str, float | None]],
    label: str,
    colour: str,
) -> None:
    mean = [float("nan") if c["mean"] is None else c["mean"] for c in series]
    std = [0.0 if c["std"] is None else c["std"] for c in series]
    ax.plot(xs, mean, marker="o", ms=3, label=label, color=colour)
    ax.fill_between(
        xs,
        [m - s for m, s in zip(mean, std, strict=True)],
        [m + s for m, s in zip(mean, std, strict=True)],
        alpha=0.2,
        color=colour,
    )


def write_plots(results: Mapping[str, Any], folder: Path) -> list[str]:
    """accuracy.png (3-domain accuracy vs round per robot) and precision.png; returns names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc = results["scenario"]
    robots = list(sc["robots"])
    per_policy = results["per_policy"]
    rounds = results["rounds"]
    fig, axes = plt.subplots(
        1, len(robots), figsize=(3.2 * len(robots), 3.0), sharey=True, squeeze=False
    )
    for ax, robot in zip(axes[0], robots, strict=True):
        for policy, per_robot in per_policy.items():
            _band(
                ax,
                list(range(rounds + 1)),
                per_robot[robot]["accuracy"]["all"],
                policy,
                _COLOURS.get(policy, "black"),
            )
        ax.set_title(f"robot {robot}")
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy on all domains")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "accuracy.png", dpi=120)
    plt.close(fig)
    names = ["accuracy.png"]
    rare = sc["rare_robots"]
    if rare:
        fig, axes = plt.subplots(
            1, len(rare), figsize=(3.2 * len(rare), 3.0), sharey=True, squeeze=False
        )
        for ax, robot in zip(axes[0], rare, strict=True):
            for policy, per_robot in per_policy.items():
                _band(
                    ax,
                    list(range(1, rounds + 1)),
                    per_robot[robot]["rare_precision"],
                    policy,
                    _COLOURS.get(policy, "black"),
                )
            ax.set_title(f"robot {robot}: rare-data precision")
            ax.set_xlabel("round")
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "precision.png", dpi=120)
        plt.close(fig)
        names.append("precision.png")
    return names


def check_output_dir(out: Path, force: bool) -> None:
    """Refuse an existing non-empty output directory unless `force` (checked before running)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"{out}: already exists and is not empty (pass --force to replace it)")
    if not out.parent.exists():
        raise ConfigError(f"{out.parent}: parent directory does not exist")


def write_atomically(out: Path, build: Callable[[Path], None]) -> None:
    """Call `build(tmp)` on a fresh temp dir beside `out`, then move it into place.

    On any failure the temp dir is removed and `out` is left as it was.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        build(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_results(results: Mapping[str, Any], out: Path, command: str | None = None) -> None:
    """results.json, results.md and the plots, written atomically into `out`."""

    def build(tmp: Path) -> None:
        (tmp / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        (tmp / "results.md").write_text(markdown_report(results, command))
        write_plots(results, tmp)

    write_atomically(out, build)
