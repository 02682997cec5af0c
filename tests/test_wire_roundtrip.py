"""Every message survives encode -> decode unchanged, and encoding is deterministic."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from peerdata.identity import Identity
from peerdata.wire import (
    MESSAGE_TYPES,
    ErrorReply,
    Feedback,
    Hello,
    ImageData,
    ImageItem,
    ImageOffer,
    ImageRequest,
    MemberCert,
    Message,
    OfferItem,
    OfferReply,
    RelayState,
    Reports,
    Revocations,
    Vote,
    decode,
    encode,
    sign_feedback,
    sign_vote,
    verify_feedback,
    verify_vote,
)

IDENTITIES = tuple(Identity.from_private_bytes(bytes([i]) * 32) for i in range(1, 6))
PEERS = tuple(identity.peer_id for identity in IDENTITIES)

peer_ids = st.sampled_from(PEERS)
uints = st.integers(min_value=0, max_value=2**63 - 1)
small_uints = st.integers(min_value=0, max_value=1000)
cids = st.binary(min_size=32, max_size=32)
nonces = st.binary(min_size=16, max_size=16)
signatures = st.binary(min_size=64, max_size=64)
timestamps = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
scores = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(min_size=1, max_size=64)


@st.composite
def vote_states(draw: Any) -> dict[str, Any]:
    origin = draw(peer_ids)
    voters = tuple(draw(st.permutations([p for p in PEERS if p != origin]))
                   [: draw(st.integers(0, len(PEERS) - 1))])
    return {"origin": origin, "voters": voters,
            "novel_votes": draw(st.integers(0, len(voters))), "hops": draw(small_uints)}


@st.composite
def offer_items(draw: Any) -> OfferItem:
    return OfferItem(cid=draw(cids), size=draw(st.integers(1, 2**40)),
                     has_label=draw(st.booleans()), origin_round=draw(uints),
                     **draw(vote_states()))


def unique_by_cid(items: list[Any]) -> tuple[Any, ...]:
    return tuple({item.cid: item for item in items}.values())


hellos = st.builds(
    Hello, protocol_version=st.integers(1, 255), peer_id=peer_ids, name=text,
    listen_addrs=st.lists(st.sampled_from(["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/1",
                                           "/dns4/robot.local/tcp/9"]), max_size=3).map(tuple),
    agent=text, samples=uints, round_id=uints)
offers = st.builds(ImageOffer, sender=peer_ids, round_id=uints,
                   items=st.lists(offer_items(), max_size=4).map(unique_by_cid))
replies = st.builds(OfferReply, wanted=st.sets(cids, max_size=4).map(tuple))
requests = st.builds(ImageRequest, cids=st.sets(cids, min_size=1, max_size=4).map(tuple))
image_items = st.builds(ImageItem, cid=cids, data=st.binary(min_size=1, max_size=256),
                        label=st.none() | st.integers(0, 2**31 - 1),
                        media_type=st.sampled_from(["image/png", "image/jpeg", "image/x-raw"]))
datas = st.builds(ImageData, items=st.lists(image_items, max_size=3).map(unique_by_cid))
relays = st.builds(lambda state, cid, rnd: RelayState(cid=cid, origin_round=rnd, **state),
                   vote_states(), cids, uints)
votes = st.builds(
    lambda voter, origin, **kw: Vote(voter=voter, origin=origin, **kw),
    voter=st.just(PEERS[0]), origin=st.sampled_from(PEERS[1:]), cid=cids, round_id=uints,
    novel=st.booleans(), score=scores, timestamp=timestamps, nonce=nonces, signature=signatures)
feedbacks = st.builds(
    lambda voters, novel, **kw: Feedback(
        reporter=voters[-1], voters=voters, novel_votes=min(novel, len(voters)),
        utility=min(novel, len(voters)) / len(voters), **kw),
    voters=st.permutations(PEERS[1:]).flatmap(lambda p: st.integers(1, len(p)).map(
        lambda n: tuple(p[:n]))),
    novel=st.integers(0, 4), origin=st.just(PEERS[0]), cid=cids, round_id=uints,
    timestamp=timestamps, nonce=nonces, signature=signatures)
errors = st.builds(ErrorReply, code=st.sampled_from(["busy", "not_found", "x_1"]),
                   message=st.text(max_size=100))

certs = st.builds(
    lambda issued, span, **kw: MemberCert(issued_at=issued, expires_at=issued + span, **kw),
    authority=st.just(PEERS[0]), member=peer_ids, issued=st.floats(0, 4e9),
    span=st.floats(1, 1e9), nonce=nonces, signature=signatures)
revocation_lists = st.builds(
    Revocations, authority=st.just(PEERS[0]), serial=uints,
    revoked=st.lists(peer_ids, unique=True, max_size=4).map(tuple), issued_at=timestamps,
    nonce=nonces, signature=signatures)

votes_to_first = st.builds(  # votes on PEERS[0]'s images, as the feedbacks above
    Vote, voter=st.sampled_from(PEERS[1:]), origin=st.just(PEERS[0]), cid=cids,
    round_id=uints, novel=st.booleans(), score=scores, timestamp=timestamps, nonce=nonces,
    signature=signatures)
reports = st.builds(  # 1..3 votes and 0..3 feedbacks, all on PEERS[0]'s images
    lambda vs, fbs: Reports(origin=PEERS[0], votes=vs, feedback=fbs),
    st.lists(votes_to_first, min_size=1, max_size=3,
             unique_by=lambda v: (v.cid, v.round_id, v.voter)).map(tuple),
    st.lists(feedbacks, max_size=3,
             unique_by=lambda f: (f.cid, f.round_id, f.reporter)).map(tuple))

ANY_MESSAGE = st.one_of(hellos, offers, replies, requests, datas, relays, votes, feedbacks,
                        errors, certs, revocation_lists, reports)


def test_every_message_type_has_a_strategy() -> None:
    covered = {Hello, ImageOffer, OfferReply, ImageRequest, ImageData, RelayState, Vote,
               Feedback, ErrorReply, MemberCert, Revocations, Reports}
    assert covered == set(MESSAGE_TYPES)


@settings(max_examples=300, deadline=None)
@given(ANY_MESSAGE)
def test_round_trip(msg: Message) -> None:
    data = encode(msg)
    back = decode(data)
    assert back == msg
    assert type(back) is type(msg)
    assert encode(back) == data  # deterministic: re-encoding gives the same bytes


@settings(max_examples=50, deadline=None)
@given(cid=cids, round_id=uints, novel=st.booleans(), score=scores, timestamp=timestamps)
def test_signed_vote_survives_the_wire(cid: bytes, round_id: int, novel: bool, score: float,
                                       timestamp: float) -> None:
    vote = sign_vote(IDENTITIES[0], origin=PEERS[1], cid=cid, round_id=round_id, novel=novel,
                     score=score, timestamp=timestamp)
    back = decode(encode(vote))
    assert isinstance(back, Vote)
    verify_vote(back)


@settings(max_examples=50, deadline=None)
@given(cid=cids, n_voters=st.integers(1, 4), data=st.data())
def test_signed_feedback_survives_the_wire(cid: bytes, n_voters: int, data: Any) -> None:
    voters = PEERS[1:1 + n_voters]
    reporter = IDENTITIES[n_voters]  # the last voter
    novel = data.draw(st.integers(0, n_voters))
    fb = sign_feedback(reporter, origin=PEERS[0], cid=cid, round_id=1, novel_votes=novel,
                       voters=voters, timestamp=1.7e9)
    assert fb.utility == novel / n_voters
    back = decode(encode(fb))
    assert isinstance(back, Feedback)
    verify_feedback(back)
