"""The round core without I/O: relay rule, origin acceptance rules (reporter on its own link,
members only, one vote per voter and image, first feedback wins, unknown images ignored), the
cross-check and recovery at the deadline, and the simulator's seeded delivery; then properties
under random orders, duplicates, late and lost messages."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from peerdata.round import (
    FeedbackFact,
    Forward,
    NeedVote,
    OriginCore,
    RelayCore,
    Report,
    Simulator,
    VoteFact,
    VoteState,
    chain_paths,
    path_order,
)

ME = "origin"
CID = b"\x01" * 32


def origin(members: set[str] | None = None) -> OriginCore:
    core = OriginCore(ME, deadline_s=10.0,
                      is_member=(lambda p: True) if members is None else members.__contains__)
    core.start_round(1, 100.0)
    core.shared(CID, 1)
    return core


def test_relay_votes_once_then_forwards_in_hashed_order_and_reports_once() -> None:
    core = RelayCore("b", max_hops=8, deadline_s=5.0)
    st0 = VoteState(ME, CID, 1)
    outcomes, actions = core.arrive([st0, st0])
    assert outcomes == ["vote", "duplicate"] and actions == [NeedVote((st0,))]
    step = core.voted(st0, True, ["a", "c", "d", ME], now=0.0)
    assert isinstance(step, Forward) and step.state.voters == ("b",) and step.state.hops == 1
    assert step.peer in ("a", "c", "d") and step.deadline == 5.0
    tried = {step.peer}
    step2 = core.forward_done(st0.key, False, now=1.0)
    assert isinstance(step2, Forward) and step2.peer not in tried
    # past the deadline: the state as I voted it is reported
    assert core.forward_done(st0.key, False, now=6.0) == Report(replace(step.state, hops=0))
    assert core.forward_done(st0.key, True, now=7.0) is None  # over: nothing more
    assert core.counts["reported"] == 1 and core.counts["voted"] == 1


def test_relay_hop_limit_loops_and_own_images() -> None:
    core = RelayCore("b", max_hops=2, deadline_s=5.0)
    far = VoteState(ME, CID, 1, hops=2)
    core.arrive([far])
    assert isinstance(core.voted(far, False, ["a"], 0.0), Report)
    loop = VoteState(ME, b"\x02" * 32, 1, 1, ("b", "a"), 2)
    assert core.arrive([loop]) == (["loop"], [Report(loop)])
    assert core.arrive([VoteState("b", CID, 1)]) == (["own"], [])


def test_chain_paths_cut_the_round_path_into_disjoint_blocks() -> None:
    peers = ["c", "a", "b", ME]
    [one] = chain_paths(ME, 1, peers, 8, 3)  # a small fleet: one chain through every peer
    assert one == path_order(ME, 1, peers) and sorted(one) == ["a", "b", "c"]
    firsts = {chain_paths(ME, r, peers, 8, 3)[0][0] for r in range(1, 30)}
    assert firsts == {"a", "b", "c"}  # the first peer changes with the round
    assert chain_paths(ME, 1, [], 2, 3) == []
    fleet = [f"p{i}" for i in range(19)]
    blocks = chain_paths(ME, 4, fleet, 2, 3)
    assert [len(b) for b in blocks] == [2, 2, 2]  # 3 chains of 2: a sample of 6 voters
    assert sum(blocks, []) == path_order(ME, 4, fleet)[:6]
    assert [len(b) for b in chain_paths(ME, 4, fleet[:4], 2, 3)] == [2, 2]


def test_relay_passes_on_within_its_chain_and_counts_crossings() -> None:
    fleet = [f"p{i}" for i in range(9)]
    blocks = chain_paths(ME, 1, fleet, 3, 3)
    head, second, third = blocks[1]
    core = RelayCore(head, max_hops=3, deadline_s=5.0)
    st0 = VoteState(ME, CID, 1)
    core.arrive([st0])
    step = core.voted(st0, True, [p for p in fleet if p != head] + [ME], now=0.0)
    assert isinstance(step, Forward) and step.peer == second  # the next of its own chain
    step = core.forward_done(st0.key, False, now=1.0)
    assert isinstance(step, Forward) and step.peer == third
    assert isinstance(core.forward_done(st0.key, False, now=1.0), Report)  # chain exhausted
    # the same image from another chain (views differed): not voted on again, counted
    other = VoteState(ME, CID, 1, 0, (blocks[0][0],), 1)
    assert core.arrive([other]) == (["crossed"], []) and core.counts["crossed"] == 1


def test_feedback_must_come_on_the_reporters_link_from_members() -> None:
    core = origin(members={"a", "b", "c"})
    fb = FeedbackFact(CID, 1, "a", ("b", "a"), 1)
    assert core.take_feedback(fb, "mallory").outcome == "rejected"  # not the reporter's link
    stuffed = FeedbackFact(CID, 1, "a", ("x1", "x2", "a"), 3)
    assert core.take_feedback(stuffed, "a").outcome == "rejected"  # invented voters
    assert core.take_feedback(FeedbackFact(CID, 1, "a", ("a", "a"), 2), "a").outcome == "rejected"
    assert core.take_feedback(FeedbackFact(CID, 1, "a", (ME, "a"), 1), "a").outcome == "rejected"
    assert core.utility(CID, 1) is None
    assert core.take_feedback(fb, "a").outcome == "accepted" and core.utility(CID, 1) == 0.5
    assert core.take_feedback(fb, "a").outcome == "duplicate"
    later = FeedbackFact(CID, 1, "c", ("c",), 0)
    assert core.take_feedback(later, "c").outcome == "ignored"  # the first wins
    assert core.utility(CID, 1) == 0.5
    unknown = FeedbackFact(b"\x09" * 32, 1, "a", ("a",), 1)
    assert core.take_feedback(unknown, "a").outcome == "ignored"  # not punished


def test_votes_count_once_per_member_in_time() -> None:
    core = origin(members={"a", "b"})
    assert core.take_vote(VoteFact(CID, 1, "a", True), 101.0).outcome == "accepted"
    assert core.take_vote(VoteFact(CID, 1, "a", False), 102.0).outcome == "duplicate"
    assert core.take_vote(VoteFact(CID, 1, "z", True), 102.0).outcome == "rejected"
    assert core.take_vote(VoteFact(b"\x05" * 32, 1, "b", True), 102.0).outcome == "rejected"
    assert core.take_vote(VoteFact(CID, 1, "b", True), 110.0).outcome == "late"
    assert core.counted_votes(CID, 1) == {"a": True}
    [u], mismatched = core.finish(1)  # no feedback: recovered from the counted vote only
    assert (u.source, u.utility, u.voters, mismatched) == ("recovered", 1.0, ("a",), 0)


def test_cross_check_signed_votes_win_over_a_lying_feedback() -> None:
    core = origin()
    for voter, novel in (("a", True), ("b", True)):
        core.take_vote(VoteFact(CID, 1, voter, novel), 101.0)
    core.take_feedback(FeedbackFact(CID, 1, "b", ("a", "b"), 0), "b")
    [u], mismatched = core.finish(1)
    assert (u.source, u.utility, u.novel_votes, mismatched) == ("corrected", 1.0, 2, 1)
    honest = origin()
    honest.take_vote(VoteFact(CID, 1, "a", False), 101.0)  # b's vote never arrived
    honest.take_feedback(FeedbackFact(CID, 1, "b", ("a", "b"), 1), "b")
    [u], mismatched = honest.finish(1)
    assert (u.source, u.utility, mismatched) == ("feedback", 0.5, 0)


def _votes(seed: int) -> dict[tuple[str, bytes], bool]:
    rng = random.Random(seed)
    return {(r, bytes([i]) * 32): rng.random() < 0.5 for r in "abcde" for i in range(1, 9)}


def test_simulator_every_peer_votes_once_whatever_the_delivery_order() -> None:
    names = list("abcde")
    offers = {n: [bytes([i]) * 32 for i in range(1, 9)] for n in names}
    verdicts = _votes(3)
    results = []
    for seed in range(3):
        sim = Simulator(names, seed=seed)
        result = sim.run_round(offers, lambda me, sts: [verdicts[(me, s.cid)] for s in sts])
        results.append({o: sorted((u.cid, u.utility, tuple(sorted(u.voters)))
                                  for u in us) for o, us in result.utilities.items()})
        for o, us in result.utilities.items():
            assert len(us) == 8
            for u in us:
                assert sorted(u.voters) == sorted(set(names) - {o})
                assert u.utility == sum(verdicts[(v, u.cid)] for v in u.voters) / 4
    assert results[0] == results[1] == results[2]


def test_simulator_hop_limit_bounds_the_chain() -> None:
    names = list("abcdef")
    sim = Simulator(names, max_hops=2, chains=1)
    result = sim.run_round({"a": [CID]}, lambda me, sts: [True] * len(sts))
    [u] = result.utilities["a"]
    assert len(u.voters) == 2 and u.source == "feedback"  # the offer, then one relay: 2 hops


def test_simulator_parallel_chains_sample_disjoint_voters() -> None:
    names = [f"r{i:02d}" for i in range(20)]
    cids = [bytes([i]) * 32 for i in range(1, 6)]
    verdicts = {(r, c): (i + j) % 3 == 0 for i, r in enumerate(names) for j, c in enumerate(cids)}
    sim = Simulator(names, max_hops=2, chains=3, seed=5)
    result = sim.run_round({n: cids for n in names},
                           lambda me, sts: [verdicts[(me, s.cid)] for s in sts])
    reports = [e for e in result.trace if e.kind == "report"]
    assert len(reports) == 20 * 5 * 3  # every chain of every image reports
    assert all(len(e.voters) == 2 for e in reports)
    for origin, us in result.utilities.items():
        assert len(us) == 5
        for u in us:
            assert u.source == "feedback" and len(set(u.voters)) == 6 and origin not in u.voters
            assert u.novel_votes == sum(verdicts[(v, u.cid)] for v in u.voters)
            assert sorted(u.voters) == sorted(sum(chain_paths(origin, 1, names, 2, 3), []))


def test_simulator_three_robots_one_chain_as_before() -> None:
    """paper-3: the default chains (2 hops x 3) are one chain through both peers, the same
    trace and utilities as a single 8-hop chain."""
    names = list("abc")
    offers = {n: [bytes([i]) * 32 for i in range(1, 7)] for n in names}
    verdicts = _votes(4)
    runs = []
    for sim in (Simulator(names, seed=2), Simulator(names, max_hops=8, chains=1, seed=2)):
        result = sim.run_round(offers, lambda me, sts: [verdicts[(me, s.cid)] for s in sts])
        runs.append((result.trace, result.utilities))
    assert runs[0] == runs[1]


def test_origin_takes_one_feedback_per_chain_and_merges_them() -> None:
    core = origin()
    for head in ("a", "c", "e"):
        core.shared(CID, 1, head)
    first = FeedbackFact(CID, 1, "b", ("a", "b"), 1)
    assert core.take_feedback(first, "b").outcome == "accepted"
    assert core.take_feedback(first, "b").outcome == "duplicate"
    assert core.take_feedback(FeedbackFact(CID, 1, "x", ("a", "x"), 2), "x").outcome == "ignored"
    overlap = FeedbackFact(CID, 1, "d", ("c", "b", "d"), 0)  # b is counted in chain a
    assert core.take_feedback(overlap, "d").outcome == "ignored"
    assert core.take_feedback(FeedbackFact(CID, 1, "d", ("c", "d"), 2), "d").outcome == "accepted"
    assert core.standing(CID, 1) == (0.75, 4, 3) and core.utility(CID, 1) == 0.75
    # chain e never reports: its voters' signed votes are added at the deadline
    for voter, novel in (("a", True), ("b", False), ("e", False), ("f", True)):
        core.take_vote(VoteFact(CID, 1, voter, novel), 101.0)
    [u], mismatched = core.finish(1)
    assert (u.source, u.voters, u.novel_votes, mismatched) == (
        "recovered", ("a", "b", "c", "d", "e", "f"), 4, 0)


def test_origin_cross_checks_each_chain_and_caps_chains_at_those_started() -> None:
    core = origin()
    core.shared(CID, 1, "a")
    core.shared(CID, 1, "c")
    core.take_feedback(FeedbackFact(CID, 1, "b", ("a", "b"), 0), "b")  # a lie: both novel
    core.take_feedback(FeedbackFact(CID, 1, "d", ("c", "d"), 1), "d")
    extra = FeedbackFact(CID, 1, "e", ("e",), 1)  # a third chain we never started
    assert core.take_feedback(extra, "e").outcome == "ignored"
    for voter, novel in (("a", True), ("b", True), ("c", False), ("d", True)):
        core.take_vote(VoteFact(CID, 1, voter, novel), 101.0)
    [u], mismatched = core.finish(1)
    assert (u.source, u.utility, u.novel_votes, mismatched) == ("corrected", 0.75, 3, 1)


# -- properties -----------------------------------------------------------------------------

PEERS = ["a", "b", "c", "d"]
CIDS = [bytes([i]) * 32 for i in range(1, 4)]
votes_st = st.builds(VoteFact, st.sampled_from(CIDS), st.just(1),
                     st.sampled_from([*PEERS, ME, "x"]), st.booleans())
feedback_st = st.builds(
    FeedbackFact, st.sampled_from([*CIDS, b"\x09" * 32]), st.just(1), st.sampled_from(PEERS),
    st.lists(st.sampled_from([*PEERS, ME, "x"]), min_size=1, max_size=5).map(tuple),
    st.integers(0, 5))
event_st = st.one_of(
    st.tuples(st.just("vote"), votes_st, st.floats(90.0, 130.0)),
    st.tuples(st.just("feedback"), feedback_st, st.sampled_from([*PEERS, "x"])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(event_st, max_size=40))
def test_origin_property_each_voter_once_utility_in_range(events: list) -> None:
    core = OriginCore(ME, 10.0, is_member=lambda p: p != "x")
    core.start_round(1, 100.0)
    for cid in CIDS:
        core.shared(cid, 1)
    counted_before: dict[bytes, int] = dict.fromkeys(CIDS, 0)
    for kind, fact, arg in events:
        if kind == "vote":
            core.take_vote(fact, arg)
        else:
            core.take_feedback(fact, arg)
        for cid in CIDS:
            n = len(core.counted_votes(cid, 1))
            assert n >= counted_before[cid]  # monotone
            counted_before[cid] = n
            u = core.utility(cid, 1)
            assert u is None or 0.0 <= u <= 1.0
    final, _ = core.finish(1)
    for u in final:
        assert 0.0 <= u.utility <= 1.0
        assert len(set(u.voters)) == len(u.voters) and ME not in u.voters and "x" not in u.voters


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 3), st.floats(0.0, 0.4), st.floats(0.0, 0.4))
def test_relay_property_random_order_duplicates_and_losses(
        seed: int, gone: int, dup_p: float, loss_p: float) -> None:
    """Messages delivered in random order, some duplicated, some lost (the peer never takes
    it): no crash, each robot votes once per image, counters only grow, every image ends in
    at most one report per chain, utilities in [0, 1]."""
    rng = random.Random(seed)
    names = ["a", "b", "c", "d", "e"]
    relays = {n: RelayCore(n, max_hops=3, deadline_s=5.0) for n in names}
    queue: list[tuple[str, VoteState]] = [(names[1 + i % 4], VoteState("a", cid, 1))
                                         for i, cid in enumerate(CIDS)]
    voted: dict[tuple[str, bytes], int] = {}
    reports: list[VoteState] = []
    now = 0.0
    while queue:
        to, state = queue.pop(rng.randrange(len(queue)))
        if rng.random() < dup_p:
            queue.append((to, state))
        now += rng.random()
        core = relays[to]
        before = dict(core.counts)
        _, actions = core.arrive([state])
        for action in actions:
            if isinstance(action, Report):
                reports.append(action.state)
            elif isinstance(action, NeedVote):
                for s in action.states:
                    voted[(to, s.cid)] = voted.get((to, s.cid), 0) + 1
                    step = core.voted(s, rng.random() < 0.5, names[:5 - gone], now)
                    while isinstance(step, Forward):
                        ok = rng.random() >= loss_p
                        if ok:
                            queue.append((step.peer, step.state))
                        step = core.forward_done(step.state.key, ok, now)
                    if isinstance(step, Report):
                        reports.append(step.state)
        assert all(core.counts[k] >= before[k] for k in before)
    assert all(n == 1 for n in voted.values())
    for r in reports:
        assert 0.0 <= r.utility <= 1.0 and len(set(r.voters)) == len(r.voters)
        assert "a" not in r.voters and r.hops <= 3


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 0.5), st.floats(0.0, 0.5), st.floats(0.0, 0.5))
def test_round_property_votes_and_feedback_through_faults(
        seed: int, dup_p: float, loss_p: float, late_p: float) -> None:
    """A whole round, relay and origin together, with every message (hand-off, Vote, Feedback)
    delivered in random order, some duplicated, some lost, some votes late: no crash; each
    robot votes once per image; along a chain the state's voters and novel votes only grow;
    the origin's counted votes per image only grow; every final utility lies in [0, 1] with
    distinct voters who really voted; an image whose feedback was lost is recovered from the
    votes that came in time, and only from those."""
    rng = random.Random(seed)
    names = ["o", "a", "b", "c", "d"]
    relays = {n: RelayCore(n, max_hops=3, deadline_s=5.0) for n in names}
    core = OriginCore("o", 10.0)
    core.start_round(1, 0.0)
    for cid in CIDS:
        core.shared(cid, 1)
    queue: list[tuple[str, object]] = [(names[1 + i % 4], VoteState("o", cid, 1))
                                      for i, cid in enumerate(CIDS)]
    cast: dict[tuple[str, bytes], bool] = {}  # (voter, cid) -> novel, as voted
    in_time: dict[bytes, set[str]] = {cid: set() for cid in CIDS}
    got_feedback: set[bytes] = set()
    counted = dict.fromkeys(CIDS, 0)
    while queue:
        to, msg = queue.pop(rng.randrange(len(queue)))
        if rng.random() < dup_p:
            queue.append((to, msg))
        if isinstance(msg, VoteFact):
            late = rng.random() < late_p
            if core.take_vote(msg, 20.0 if late else 1.0).outcome == "accepted":
                in_time[msg.cid].add(msg.voter)
        elif isinstance(msg, FeedbackFact):
            if core.take_feedback(msg, msg.reporter).outcome == "accepted":
                got_feedback.add(msg.cid)
        else:
            assert isinstance(msg, VoteState)
            relay = relays[to]

            def report(state: VoteState, to: str = to) -> None:
                if rng.random() >= loss_p:
                    queue.append(("o", FeedbackFact(state.cid, 1, to, state.voters,
                                                    state.novel_votes)))

            _, actions = relay.arrive([msg])
            for action in actions:
                if isinstance(action, Report):
                    report(action.state)
                    continue
                assert isinstance(action, NeedVote)
                for s in action.states:
                    assert (to, s.cid) not in cast  # once per robot and image
                    novel = rng.random() < 0.5
                    cast[(to, s.cid)] = novel
                    queue.append(("o", VoteFact(s.cid, 1, to, novel)))
                    step = relay.voted(s, novel, [n for n in names if n != to], 1.0)
                    while isinstance(step, Forward):
                        assert set(s.voters) <= set(step.state.voters)  # only grows
                        assert step.state.novel_votes >= s.novel_votes
                        ok = rng.random() >= loss_p
                        if ok:
                            queue.append((step.peer, step.state))
                        nxt = relay.forward_done(step.state.key, ok, 1.0)
                        if nxt is None:
                            break
                        step = nxt
                    if isinstance(step, Report):
                        report(step.state)
        for cid in CIDS:
            n = len(core.counted_votes(cid, 1))
            assert n >= counted[cid]
            counted[cid] = n
    final, _ = core.finish(1)
    for u in final:
        assert 0.0 <= u.utility <= 1.0
        assert len(set(u.voters)) == len(u.voters) and "o" not in u.voters
        assert all((v, u.cid) in cast for v in u.voters)  # only robots that voted
        if u.cid not in got_feedback:  # recovered: exactly the votes that came in time
            assert u.source == "recovered" and set(u.voters) == in_time[u.cid]
            assert u.novel_votes == sum(cast[(v, u.cid)] for v in u.voters)
