"""`peerdata swarm`: a local fleet of real daemons on 127.0.0.1 that share images all-to-all,
or (with --scenario) the paper's experiment run as one daemon per robot."""

from __future__ import annotations

import shlex
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, say, table
from peerdata.errors import ConfigError
from peerdata.exit_codes import ExitCode

HELP = """Run a local fleet of N real daemons that share images all-to-all, or, with --scenario,
the paper's experiment as real processes (one daemon per robot).

Starts N `peerdata run` daemons on 127.0.0.1, a home each under --out. They find each other
through robot 0 (the bootstrap); every robot offers a few generated PNG images to every other;
the command waits until each arrived verified, prints a per-robot table, and stops them all
(SIGTERM, then SIGKILL after a timeout), also on Ctrl-C or SIGTERM.

Exit code 0 when every robot received and verified every image, 1 otherwise.

With --netem SPEC (root only): each daemon runs in its own network namespace whose one link
delays, drops and rate-limits its packets as `tc netem` would (SPEC: "delay 50ms [jitter]
loss 2% rate 10mbit", any subset). The namespaces are deleted on exit, Ctrl-C included;
see docs/swarm.md "Emulated networks".

With --faults SEED: while the robots share (--rounds rounds, 3 by default), a plan drawn from
SEED hits them: 10 kill -9 at random moments, each followed by a restart from the same home;
2 SIGSTOPs past a round; 2 partitions that heal (with --netem); 30% of the robots leaving for
each round and rejoining. Then every home is checked (PRAGMA integrity_check, every blob
against its content ID, every sample's blob present, no temp files, the learner checkpoint
loads) and the ledger of offered vs arrived images printed. With --fault-work gu the robots
run GU sharing rounds instead of plain sends (small synthetic-3 learners: learn, observe,
round_now each round), so the kills also hit learning, offering and voting; the ledger then
adds votes cast vs recorded by their origins (lost_votes), shared images vs those with a
utility, and the GU rare precision. --fault-free runs the same seed's rounds with an empty
plan: the reference to compare them with. Exit 0 when nothing is corrupt or lost, 1
otherwise.

With --scenario (e.g. paper-3): the same data streams, evaluation split and seeds as
`peerdata experiment`; for each policy of --policy a fresh swarm, one daemon per robot (manual
rounds, the scenario's budget), driven over the control sockets: observe the bootstrap, then
per round observe, round_now, wait_round, learn, evaluate on every robot. Writes OUT/results.json,
results.md, accuracy.png, precision.png (the experiment's schema, plus a `swarm` section), the
robots' data files and homes, atomically. The last stdout line is one JSON object: the
experiment's summary plus rounds_completed, vote_latency_p50_s, vote_latency_p99_s and
feedback_received (per robot). Exit codes: 3 bad scenario or option, 4 missing dataset, 5 a
daemon unreachable or too slow. See docs/swarm.md.

Examples:

  peerdata swarm --robots 3

  peerdata swarm --robots 5 --rounds 2 --images 4 --out /tmp/fleet --format json

  sudo peerdata swarm --robots 5 --netem "delay 50ms loss 2% rate 10mbit"

  sudo peerdata swarm --robots 10 --rounds 10 --faults 7 --netem "delay 20ms"

  peerdata swarm --robots 10 --rounds 10 --faults 7 --fault-work gu --format json

  peerdata swarm --robots 10 --rounds 10 --faults 7 --fault-work gu --fault-free

  peerdata swarm --scenario paper-3 --policy gu,random,oracle --seed 0 --out /tmp/paper3-swarm

With --federation STRATEGY and a federated --scenario (DATASET-SPLIT-BETA, as `peerdata
federated`): one process per robot runs the daemon's node and federation service on the fleet
clock for --rounds rounds; prints the same figures as `peerdata federated` plus
swarm_vs_inprocess_accuracy_diff (swarm minus the in-process run with the same seed). See
docs/federated.md.

  peerdata swarm --scenario mnist-quantity-0.5 --federation fedavg --robots 5 --rounds 10 \
      --format json
"""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def swarm(
    robots: Annotated[
        int, typer.Option("--robots", "-n", min=1, max=64, help="how many daemons")
    ] = 3,
    rounds: Annotated[int | None, typer.Option(
        "--rounds", min=1, help="sharing rounds [default: 1, or the scenario's]",
        show_default=False,
    )] = None,
    images: Annotated[
        int, typer.Option("--images", min=1, help="images per robot pair and round")
    ] = 2,
    out: Annotated[Path | None, typer.Option(
        "--out", help="where homes and images go [default: a new temp dir]", show_default=False
    )] = None,
    timeout_s: Annotated[float | None, typer.Option(
        "--timeout", help="seconds allowed for each wait [default: 60; scenario: 600 per "
        "command]", show_default=False,
    )] = None,
    vote_deadline_s: Annotated[float, typer.Option(
        "--vote-deadline", min=1, max=570,
        help="scenario: seconds a round waits for its feedback (round.vote_deadline_s)",
    )] = 60.0,
    scenario: Annotated[str | None, typer.Option(
        "--scenario", "-s", help="run this experiment scenario (name or .toml) as a swarm"
    )] = None,
    policy: Annotated[str, typer.Option(
        "--policy", "-p", help="scenario: comma list of gu,random,oracle,all,none"
    )] = "gu,random,oracle",
    seed: Annotated[int, typer.Option("--seed", help="scenario: run seed")] = 0,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="scenario: dataset directory (default: $PEERDATA_DATA_DIR)"
    )] = None,
    force: Annotated[bool, typer.Option("--force", help="scenario: replace an existing --out")
                     ] = False,
    federation: Annotated[str | None, typer.Option(
        "--federation", help="federate real daemons with this strategy on a DATASET-SPLIT-BETA "
        "--scenario (e.g. fedavg)")] = None,
    netem: Annotated[str | None, typer.Option(
        "--netem", help="emulate links: each daemon in its own network namespace, its packets "
        "shaped by this netem spec, e.g. \"delay 50ms loss 2% rate 10mbit\" (root only)",
    )] = None,
    faults: Annotated[int | None, typer.Option(
        "--faults", help="run a seeded fault plan (kill -9 + restart, SIGSTOP, partitions with "
        "--netem, 30% churn per round) while the robots share, then check every home",
        show_default=False,
    )] = None,
    gossip_votes: Annotated[bool, typer.Option(
        "--gossip-votes", help="scenario: each daemon also publishes every vote on gossip "
        "(round.gossip_votes; e.g. for a js-libp2p peer watching the fleet)")] = False,
    fault_work: Annotated[str, typer.Option(
        "--fault-work", help="faults: what the robots do meanwhile: send (plain offers) or gu "
        "(GU sharing rounds, with the vote ledger)")] = "send",
    fault_free: Annotated[bool, typer.Option(
        "--fault-free", help="faults: the same rounds with an empty plan (no kill, freeze, "
        "partition or churn): the reference run")] = False,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Run a local swarm (see `peerdata swarm --help`)."""
    # SIGTERM must stop the fleet too: turn it into the same unwinding as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if federation is not None:  # federation between real daemons (peerdata.cli.federated)
            from peerdata.cli.federated import run_swarm_federation

            if netem is not None or faults is not None:
                raise ConfigError("--federation does not take --netem or --faults yet")
            run_swarm_federation(scenario=scenario or "mnist-quantity-0.5", strategy=federation,
                                 robots=robots, rounds=rounds or 10, seed=seed, out=out,
                                 data_dir=data_dir, fmt=fmt)
            return
        if scenario is not None:
            _scenario_mode(scenario, policy, rounds, seed, out, data_dir, force,
                           (timeout_s or 600.0, vote_deadline_s), netem, gossip_votes, fmt)
            return
        if faults is not None:
            _faults_mode(robots, rounds or 3, images, out, faults, netem, fault_work, fmt,
                         fault_free)
            return
        _fleet_mode(robots, rounds or 1, images, out, timeout_s or 60.0, netem, fmt)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _scenario_mode(name: str, policy: str, rounds: int | None, seed: int, out: Path | None,
                   data_dir: Path | None, force: bool, timeouts: tuple[float, float],
                   netem: str | None, gossip_votes: bool, fmt: Format) -> None:
    from peerdata.datasets import resolve_data_dir
    from peerdata.experiment.report import check_output_dir, write_atomically
    from peerdata.scenario import load_scenario
    from peerdata.swarmexp import SwarmPlan, run_swarm_experiment, write_swarm_results
    from peerdata.swarmexp.driver import DriverSettings

    policies = tuple(p.strip() for p in policy.split(",") if p.strip())
    if not policies:
        raise ConfigError("--policy: empty list")
    changes: dict[str, object] = {"policies": policies, "seeds": (seed,)}
    if rounds is not None:
        changes["rounds"] = rounds
    spec = load_scenario(name).with_overrides(**changes)
    out_dir = out if out is not None else Path(tempfile.mkdtemp(prefix="peerdata-swarmexp-"))
    check_output_dir(out_dir, force)
    plan = SwarmPlan(spec, resolve_data_dir(data_dir), DriverSettings(*timeouts), netem=netem,
                     gossip_votes=gossip_votes)
    import torch

    # as `peerdata experiment` (--threads 1) and every daemon: the in-process reference must
    # train with the same float reductions, or it drifts from the swarm round by round
    torch.set_num_threads(1)
    command = "peerdata " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results: dict[str, object] = {}

    def build(tmp: Path) -> None:
        results.update(run_swarm_experiment(plan, tmp, _progress))
        write_swarm_results(results, tmp, command)

    write_atomically(out_dir, build)
    summary = results["summary"]
    assert isinstance(summary, dict)
    if fmt is Format.text:
        keys = ["rare_precision", "rare_recall", "accuracy", "megabytes"]
        table(f"{spec.name} as a swarm: final round (seed {seed})", ["policy", *keys],
              [[p] + [summary.get(f"{p}_{k}") for k in keys] for p in policies])
        say(f"wrote {out_dir}/results.json, results.md, accuracy.png, precision.png")
    emit_json({"scenario": spec.name, "out": str(out_dir), **summary})


def _progress(message: str) -> None:
    print(f"swarm: {message}", file=sys.stderr, flush=True)


def _fleet_mode(robots: int, rounds: int, images: int, out: Path | None, timeout_s: float,
                netem: str | None, fmt: Format) -> None:
    from peerdata.testing.swarm import run_swarm

    if netem is not None:
        from peerdata.testing.linkemu import parse_link_spec

        parse_link_spec(netem)  # a bad spec is exit 3 before anything starts
    out_dir = out if out is not None else Path(tempfile.mkdtemp(prefix="peerdata-swarm-"))
    report = run_swarm(robots, out_dir, rounds=rounds, images_per_pair=images,
                       timeout_s=timeout_s, netem=netem)
    if fmt is Format.json:
        emit_json(report.to_json())
    else:
        table(
            f"swarm of {robots} in {out_dir} ({report.expected_per_robot} images expected each)",
            ["robot", "peer ID", "peers", "sent", "received", "verified", "rejected",
             "bytes sent", "bytes received", "peak MiB"],
            [(r.index, r.peer_id, r.peers, r.images_sent, r.images_received,
              r.images_verified, r.images_rejected, r.bytes_sent, r.bytes_received,
              r.peak_rss_mib)
             for r in report.robots],
        )
        for note in report.notes:
            say(f"note: {note}")
        say("ok" if report.ok else "FAILED: not every image arrived verified")
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILURE))


def _faults_mode(robots: int, rounds: int, images: int, out: Path | None, seed: int,
                 netem: str | None, work: str, fmt: Format, fault_free: bool = False) -> None:
    from peerdata.testing.faults import run_faults

    if netem is not None:
        from peerdata.testing.linkemu import parse_link_spec

        parse_link_spec(netem)
    if robots < 2:
        raise ConfigError("--faults needs at least 2 robots")
    if work not in ("send", "gu"):
        raise ConfigError(f"--fault-work must be send or gu, not {work!r}")
    out_dir = out if out is not None else Path(tempfile.mkdtemp(prefix="peerdata-faults-"))
    empty = {"kills": 0, "freezes": 0, "partitions": 0, "churn": 0.0} if fault_free else {}
    report = run_faults(robots, out_dir, seed, rounds=rounds, images=images, netem=netem,
                        work=work, progress=_progress, **empty)
    summary = report.to_json()
    if fmt is Format.text:
        table(f"fleet-fault run, seed {seed}, {robots} robots, {rounds} rounds ({out_dir})",
              ["robot", "integrity", "samples", "blobs", "bad blobs", "missing", "temp files",
               "checkpoint"],
              [(i, h.integrity, h.samples, h.blobs, h.blob_mismatches, h.missing_blobs,
                h.temp_files, h.checkpoint) for i, h in enumerate(report.homes)])
        say(f"faults applied {summary['applied']}, skipped {summary['skipped']}; relink "
            f"after restart p50 {summary['relink_s_p50']} s, max {summary['relink_s_max']} s, "
            f"{summary['relink_timeouts']} timeouts")
        say(f"offered {summary['offered']}, arrived {summary['arrived']}: lost_records "
            f"{summary['lost_records']}, corrupt_records {summary['corrupt_records']}")
        if report.rounds is not None:
            led = report.rounds
            say(f"votes cast {led.votes_cast}, recorded by their origins {led.votes_recorded}: "
                f"lost_votes {led.lost_votes} ({led.votes_pending} still in an outbox); "
                f"images shared {led.images_shared}, with a utility {led.images_with_utility} "
                f"({led.images_with_feedback} from feedback, {led.feedback_duplicates} with "
                f"duplicate feedback); GU rare precision {led.rare_precision}; commands hit "
                f"{summary['command_failures']}")
        for note in report.notes:
            say(f"note: {note}")
    emit_json({k: v for k, v in summary.items() if k != "plan"})
    if not summary["ok"]:
        raise typer.Exit(int(ExitCode.FAILURE))


def register(app: typer.Typer) -> None:
    app.command("swarm", help=HELP)(guarded(swarm))
