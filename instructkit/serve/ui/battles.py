"""Anonymous battles, kept on the server: two models drawn at random, hidden until the one vote.

The page holds only an unguessable battle id; the models, both conversations and the vote state live
here, so a client cannot pick, learn or change the models, vote twice, vote on someone else's battle, or
vote on a battle whose replies it never received (FastChat's flow: ``add_text`` -> both models stream ->
vote -> names revealed -> "new round"). All methods run on the event loop, so a check and the state change
that follows it are never interleaved with another request.
"""

from __future__ import annotations

import datetime
import random
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

from instructkit.serve.protocol import APIError

#: the page's vote -> (FastChat's vote type, the battle record's ``winner``)
_KEEP_DECIDED = 100_000

VOTES = {"a": ("leftvote", "model_a"), "b": ("rightvote", "model_b"), "tie": ("tievote", "tie"),
         "bothbad": ("bothbad_vote", "tie (bothbad)")}


@dataclass
class Battle:
    id: str
    session: str
    models: tuple[str, str]
    created: float
    touched: float
    convs: tuple[list, list] = field(default_factory=lambda: ([], []))
    params: dict[str, Any] = field(default_factory=dict)
    turns: int = 0
    busy: bool = False
    vote: Optional[str] = None


class Battles:
    """Live battles, bounded in number (``max_battles`` in all, ``per_session`` per session) and in turns."""

    def __init__(self, *, max_battles: int = 64, per_session: int = 4, max_turns: int = 8, ttl_s: float = 3600.0,
                 rng: Optional[random.Random] = None):
        self.max_battles, self.per_session, self.max_turns, self.ttl_s = max_battles, per_session, max_turns, ttl_s
        self.rng = rng or random.SystemRandom()
        self.live: dict[str, Battle] = {}
        #: ids of decided battles (most recent ``_KEEP_DECIDED``): a replayed vote is told "already voted"
        self.decided: OrderedDict[str, str] = OrderedDict()

    def _expire(self, now: float) -> None:
        # busy ones too: a turn whose stream never started (the client left at once) would stay busy forever
        for bid in [b.id for b in self.live.values() if now - b.touched > self.ttl_s]:
            del self.live[bid]

    def new(self, session: str, models: list[str]) -> Battle:
        if len(models) < 2:
            raise APIError(400, "a battle needs at least two models (serve adapters with --adapter NAME=PATH)",
                           code="not_enough_models")
        now = time.time()
        self._expire(now)
        # a new round replaces the session's oldest idle battle rather than refusing the user
        mine = sorted((b for b in self.live.values() if b.session == session and not b.busy), key=lambda b: b.touched)
        while mine and len([b for b in self.live.values() if b.session == session]) >= self.per_session:
            del self.live[mine.pop(0).id]
        if len(self.live) >= self.max_battles:
            raise APIError(429, f"the arena is full ({self.max_battles} battles running); retry in a minute",
                           code="too_many_battles", headers={"Retry-After": "30"})
        a, b = self.rng.sample(list(models), 2)  # uniform over pairs; the order decides sides A and B
        battle = Battle(secrets.token_urlsafe(18), session, (a, b), now, now)
        self.live[battle.id] = battle
        return battle

    def get(self, bid: str, session: str) -> Battle:
        if bid in self.decided and secrets.compare_digest(self.decided[bid], session):
            raise APIError(409, "this battle already has its vote; start a new round", code="already_voted")
        b = self.live.get(bid)
        if b is None or not secrets.compare_digest(b.session, session):  # someone else's: as if unknown
            raise APIError(404, "unknown or expired battle; start a new round", param="battle_id",
                           code="battle_not_found")
        return b

    def begin_turn(self, b: Battle) -> None:
        if b.vote is not None:
            raise APIError(409, "this battle is decided; start a new round", code="battle_voted")
        if b.busy:
            raise APIError(409, "the models are still answering", code="battle_busy")
        if b.turns >= self.max_turns:
            raise APIError(400, f"turn limit reached ({self.max_turns}); vote or start a new round",
                           code="turn_limit")
        b.busy, b.touched = True, time.time()

    def end_turn(self, b: Battle, prompt: str, replies: Optional[list[str]], params: dict[str, Any]) -> None:
        """Record a finished turn on both sides (``replies`` None: the turn failed and leaves no trace)."""
        b.busy, b.touched = False, time.time()
        if replies is None:
            return
        for conv, text in zip(b.convs, replies):
            conv += [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]
        b.turns += 1
        b.params = params

    def decide(self, b: Battle, vote: str) -> None:
        """Claim the battle's one vote (before the write; :meth:`undecide` if the write fails)."""
        if vote not in VOTES:
            raise APIError(400, f"vote must be one of {', '.join(VOTES)}", param="vote", code="invalid_value")
        if b.vote is not None:
            raise APIError(409, "this battle already has its vote", code="already_voted")
        if b.busy:
            raise APIError(409, "wait until both models have answered", code="battle_busy")
        if b.turns == 0:
            raise APIError(400, "nothing to vote on yet: send a prompt first", code="no_turns")
        b.vote = vote

    def undecide(self, b: Battle) -> None:
        b.vote = None

    def record(self, b: Battle, session_tag: str) -> dict[str, Any]:
        assert b.vote is not None
        vote_type, winner = VOTES[b.vote]
        now = time.time()
        return {"battle_id": b.id, "model_a": b.models[0], "model_b": b.models[1], "winner": winner,
                "vote": vote_type, "judge": "arena_user", "anony": True, "turn": b.turns,
                "conversation_a": b.convs[0], "conversation_b": b.convs[1], "params": b.params,
                "session": session_tag, "tstamp": round(now, 3),
                "time": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds")}

    def close(self, b: Battle) -> None:
        """After the vote is on disk the battle is over: a new round makes a new one."""
        self.live.pop(b.id, None)
        self.decided[b.id] = b.session
        while len(self.decided) > _KEEP_DECIDED:
            self.decided.popitem(last=False)
