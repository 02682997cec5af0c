"""Vote reputation in the round core: lying members lose their weight, honest ones keep theirs."""

from __future__ import annotations

import hashlib
import random

import pytest

from peerdata.errors import ConfigError
from peerdata.round import FeedbackFact, OriginCore, Simulator, VoteFact
from peerdata.round.reputation import Reputation
from peerdata.sharing.liars import LIE_MODES, lie, pick_liars


def _cid(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def _truth(names: list[str], images: int, seed: int) -> dict[bytes, bool]:
    """Which of each origin's images every peer finds novel (the honest verdict)."""
    rng = random.Random(seed)
    return {_cid(o, i): rng.random() < 0.4 for o in names for i in range(images)}


def _run(names: list[str], liars: dict[str, str], reputation: bool, images: int = 30,
         rounds: int = 1) -> tuple[Simulator, dict[bytes, bool], list[dict[bytes, float]]]:
    truth = _truth(names, images * rounds, seed=1)
    sim = Simulator(names, seed=3, reputation=reputation)

    def vote(me: str, states):  # type: ignore[no-untyped-def]
        return [lie(liars[me], truth[st.cid]) if me in liars else truth[st.cid]
                for st in states]

    per_round = []
    for r in range(rounds):
        offers = {o: [_cid(o, r * images + i) for i in range(images)] for o in names}
        result = sim.run_round(offers, vote)
        per_round.append({u.cid: u.utility for us in result.utilities.values() for u in us})
    return sim, truth, per_round


@pytest.mark.parametrize("mode", LIE_MODES)
def test_one_liar_of_three_loses_its_weight_and_utilities_follow_the_honest(mode: str) -> None:
    names = ["A", "B", "C"]
    sim, truth, rounds = _run(names, {"B": mode}, reputation=True, rounds=2)
    for observer in ("A", "C"):
        rep = sim.origins[observer].reputation
        assert rep is not None
        assert rep.weight("B") < 0.25 < 0.75 < min(rep.weight("A"), rep.weight("C"))
    # A's and C's images: the honest voter's verdict wins wherever the liar disagrees
    last = rounds[-1]
    for cid, utility in last.items():
        if cid in {_cid("B", i) for i in range(60)}:
            continue  # B's own images are voted on by A and C only
        assert abs(utility - float(truth[cid])) < 0.2


def test_without_reputation_an_inverting_liar_flattens_every_utility() -> None:
    _, truth, rounds = _run(["A", "B", "C"], {"B": "invert"}, reputation=False)
    a_images = [c for c in rounds[0] if c in {_cid("A", i) for i in range(30)}]
    assert a_images and all(rounds[0][c] == 0.5 for c in a_images)  # honest C vs lying B


def test_honest_fleet_keeps_exact_utilities_with_reputation() -> None:
    _, truth, rounds = _run(["A", "B", "C", "D"], {}, reputation=True)
    assert rounds[0] and all(u == float(truth[c]) for c, u in rounds[0].items())


def test_colluding_minority_is_found_in_a_larger_fleet() -> None:
    names = [f"R{i}" for i in range(10)]
    liars = dict.fromkeys(["R2", "R7"], "invert")
    sim, truth, rounds = _run(names, liars, reputation=True, images=10)
    rep = sim.origins["R0"].reputation
    assert rep is not None
    assert max(rep.weight(p) for p in liars) == 0.0
    assert min(rep.weight(p) for p in names if p not in liars) > 0.5
    assert all(abs(u - float(truth[c])) < 1e-9 for c, u in rounds[0].items())


def test_a_pair_alone_cannot_be_told_apart_but_witnessed_votes_can() -> None:
    """Two voters that disagree on every image: no one can say who lies (both stay at the
    prior's side of chance); a third voter's votes on the same images settle it."""
    rep = Reputation()
    for i in range(20):
        rep.observe(_cid(i), 1, "X", True)
        rep.observe(_cid(i), 1, "Y", False)
    rep.settle(1)
    assert rep.weight("X") == rep.weight("Y")
    for i in range(20):  # Z sides with X on images of both kinds
        rep.observe(_cid("b", i), 2, "X", i % 2 == 0)
        rep.observe(_cid("b", i), 2, "Y", i % 2 == 1)
        rep.observe(_cid("b", i), 2, "Z", i % 2 == 0)
    rep.settle(2)
    assert rep.weight("Y") == 0.0 < rep.weight("X")


def test_newcomer_counts_half_and_the_contradicted_voter_is_not_preferred() -> None:
    rep = Reputation()
    assert rep.weight("new") == pytest.approx(0.5)
    assert rep.utility({}) is None
    assert rep.utility({"new": True, "other": False}) == pytest.approx(0.5)
    for i in range(40):  # one voter always contradicted by two others
        rep.observe(_cid(i), 1, "L", True)
        rep.observe(_cid(i), 1, "H1", False)
        rep.observe(_cid(i), 1, "H2", False)
    rep.settle(1)
    # the truth the two agreeing voters imply is "familiar" throughout: L contradicts it (it
    # weighs nothing), H1 never does, so H1 is preferred, though all three are constant
    assert rep.weight("L") == 0.0 and rep.utility({"L": True, "H1": False}) < 0.5
    assert rep.utility({"L": True}) == 1.0  # nobody else: no one to prefer


def test_origin_core_witnesses_only_members_and_weights_only_complete_vote_sets() -> None:
    core = OriginCore("O", 30.0, is_member=lambda p: p != "stranger", reputation=Reputation())
    assert not core.witness_vote(VoteFact(_cid(0), 1, "stranger", True))
    assert core.witness_vote(VoteFact(_cid(0), 1, "A", True))
    plain = OriginCore("O", 30.0)
    assert not plain.witness_vote(VoteFact(_cid(0), 1, "A", True))  # no reputation kept
    core.start_round(1, 0.0)
    for i in range(30):  # others' images: L always contradicts A and B
        for voter, novel in (("A", i % 2 == 0), ("B", i % 2 == 0), ("L", i % 2 == 1)):
            core.witness_vote(VoteFact(_cid("x", i), 1, voter, novel))
    mine = _cid("mine")
    core.shared(mine, 1)
    for voter, novel in (("A", True), ("L", False)):
        assert core.take_vote(VoteFact(mine, 1, voter, novel), 0.0).outcome == "accepted"
    utilities, mismatched = core.finish(1)
    assert mismatched == 0
    (u,) = utilities
    assert (u.source, u.utility, u.novel_votes) == ("weighted", 1.0, 1)


def test_lie_modes_and_liar_choice() -> None:
    assert [lie(m, True) for m in LIE_MODES] == [False, True, False]
    assert [lie(m, False) for m in LIE_MODES] == [True, True, False]
    with pytest.raises(ConfigError):
        lie("sometimes", True)
    assert pick_liars(["A", "B", "C"], 0.0, 0) == ()
    assert len(pick_liars(["A", "B", "C"], 0.2, 0)) == 1  # nearest non-zero share
    assert len(pick_liars([f"R{i}" for i in range(10)], 0.2, 4)) == 2
    assert pick_liars("ABCDE", 0.4, 9) == pick_liars("ABCDE", 0.4, 9)
    with pytest.raises(ConfigError):
        pick_liars(["A"], 1.0, 0)


def test_daemon_clock_settles_images_a_deadline_after_their_first_vote() -> None:
    """With a clock (the daemon), round ids of other origins do not line up with ours: every
    image (ours too) settles once its first vote is a deadline old."""
    core = OriginCore("O", 30.0, reputation=Reputation())
    core.start_round(1, 0.0)
    core.shared(_cid("own"), 1)
    for voter, novel in (("A", True), ("B", True), ("L", False)):
        assert core.take_vote(VoteFact(_cid("own"), 1, voter, novel), 0.0).outcome == "accepted"
        core.witness_vote(VoteFact(_cid("other"), 7, voter, novel), 20.0)
    rep = core.reputation
    assert rep is not None
    core.finish(1, now=30.0)  # ours is 30 s old: settled; the witnessed one 10 s: still open
    settled_once = rep.history()["L"][0]
    assert settled_once > 0 and rep.ripe(30.0) == [(_cid("other"), 7)]
    core.start_round(2, 30.0)
    core.finish(2, now=60.0)  # now it is a deadline old: settled too
    assert rep.ripe(1e9) == [] and rep.history()["L"][0] > 0.9 * settled_once + 0.5
    assert rep.weight("L") < rep.weight("A")


def test_history_round_trips_and_garbage_is_skipped() -> None:
    rep = Reputation()
    for r in range(3):
        for i in range(10):
            for voter, novel in (("A", i % 2 == 0), ("B", i % 2 == 0), ("L", i % 2 == 1)):
                rep.observe(_cid(r, i), r, voter, novel)
        rep.settle(r)
    fresh = Reputation()
    assert fresh.load(rep.history()) == 3
    assert {p: fresh.weight(p) for p in "ABL"} == {p: rep.weight(p) for p in "ABL"}
    bad = {"x": [1.0, 2.0, 0.0, 0.0], "y": [float("nan")] * 4, "z": "abcd", "w": [1, 2],
           "v": [-1.0, 0.0, 0.0, 0.0]}
    assert Reputation().load(bad) == 0  # vote > n, nan, not numbers, too short, negative


def test_open_images_and_peers_are_bounded() -> None:
    rep = Reputation(max_open=5, max_peers=3)
    for i in range(8):
        rep.observe(_cid(i), 0, "A", True, at=float(i))
    assert len(rep.ripe(1e9)) == 5 and rep.ripe(2.5) == []  # the three oldest dropped
    for i in range(4):
        for p in "ABCDE":
            rep.observe(_cid("x", i), 1, p, p != "E" or i % 2 == 0)
    rep.settle(1)
    assert len(rep.history()) == 3


def test_when_no_voter_weighs_enough_the_inverter_and_the_constant_voter_still_lose() -> None:
    """Few voters per image (paper-3, the common robot lying) can drag the honest voters'
    kappa to chance as well: then the standing (agreement odds x own variety) decides."""
    rep = Reputation()
    rep.load({"honest": [100.0, 30.0, 30.0, 58.0],      # kappa 0, votes vary
              "inverter": [100.0, 70.0, 30.0, 7.2],     # kappa -0.6
              "constant": [100.0, 1.0, 30.0, 69.6]})    # kappa 0, (almost) never novel
    assert all(rep.weight(p) < rep.min_weight for p in ("honest", "inverter", "constant"))
    assert rep.utility({"honest": True, "inverter": False}) > 0.7
    assert rep.utility({"honest": True, "constant": False}) > 0.85
    assert rep.utility({"honest": True, "other": True}) == 1.0  # unanimity stays unanimity
    assert rep.standing("honest") > 3 * rep.standing("inverter")


def _common_robot_lies(mode: str, rounds: int = 3) -> Reputation:
    """Paper-3's shape: A holds only the common domain (its images are familiar to B and C),
    B's and C's images are half novel; two voters per image, honest voters err 10% of the
    time; A lies in `mode`. B and C vote together only on A's images, and always "familiar"."""
    rng = random.Random(7)
    rep = Reputation()
    for r in range(rounds):
        for origin in "ABC":
            for i in range(50):
                truth = origin != "A" and rng.random() < 0.5
                for voter in "ABC":
                    if voter == origin:
                        continue
                    honest = truth if rng.random() > 0.1 else not truth
                    rep.observe(_cid(origin, r, i), r, voter,
                                lie(mode, honest) if voter == "A" else honest)
        rep.settle(r)
    return rep


@pytest.mark.parametrize("mode", LIE_MODES)
def test_the_common_robot_lying_is_found_although_the_others_never_vote_together_on_novelty(
        mode: str) -> None:
    """Where pairwise agreement failed: each honest robot disagrees with the liar as often as
    the liar with it; the latent truth (one liar explains it all) tells them apart."""
    rep = _common_robot_lies(mode)
    assert rep.weight("A") < 0.05 and min(rep.weight("B"), rep.weight("C")) > 0.4
    assert rep.utility({"A": lie(mode, True), "C": True}) > 0.9
    assert rep.utility({"A": lie(mode, False), "B": False}) < 0.1


def test_a_utility_before_the_deadline_uses_the_open_votes() -> None:
    """The round's own votes count before they are settled (the daemon's learner may read
    utilities before the deadline), without entering the history until they are."""
    rep = Reputation()
    for i in range(30):
        truth = i % 3 == 0
        for voter, novel in (("X", truth), ("Z", truth), ("Y", not truth)):
            rep.observe(_cid(i), 1, voter, novel)
    assert rep.history() == {} and rep.weight("Y") == rep.weight("X") == pytest.approx(0.5)
    assert rep.utility({"X": True, "Y": False}) > 0.9
    rep.settle(1)
    assert rep.weight("Y") == 0.0 < 0.5 < rep.weight("X")


def test_origin_core_weighs_open_rounds_with_the_rounds_own_votes() -> None:
    """What the daemon's `learn` reads first (`OriginDesk.reweigh_open`): before any deadline,
    an image whose feedback and votes are in is weighed with this round's witnessed votes."""
    core = OriginCore("O", 30.0, reputation=Reputation())
    core.start_round(1, 0.0)
    for i in range(30):  # others' images of the same round: L contradicts A and B
        for voter, novel in (("A", i % 3 == 0), ("B", i % 3 == 0), ("L", i % 3 != 0)):
            core.witness_vote(VoteFact(_cid("x", i), 1, voter, novel), 1.0)
    mine = _cid("mine")
    core.shared(mine, 1, "A")
    for voter, novel in (("A", True), ("L", False)):
        assert core.take_vote(VoteFact(mine, 1, voter, novel), 2.0).outcome == "accepted"
    assert core.take_feedback(FeedbackFact(mine, 1, "L", ("A", "L"), 1), "L").keep
    (u,) = core.provisional_open()
    assert u.utility > 0.9 and core.reputation is not None and core.reputation.history() == {}
