"""Answers of a model to multi-turn judge questions (MT-Bench style), through the model interface."""

from __future__ import annotations

from typing import Any


def generate_answers(lm: Any, questions: list[Any], *, max_new_tokens: int = 512) -> list[list[str]]:
    """Answers to every turn; turn k's prompt holds the previous turns and the model's own answers."""
    from instructkit.lm.api import GenerateRequest

    chats: list[list[dict]] = [[] for _ in questions]
    answers: list[list[str]] = [[] for _ in questions]
    for turn in range(max(len(q.turns) for q in questions)):
        live = [i for i, q in enumerate(questions) if turn < len(q.turns)]
        for i in live:
            chats[i].append({"role": "user", "content": questions[i].turns[turn]})
        res = lm.generate([GenerateRequest(messages=list(chats[i]), max_new_tokens=max_new_tokens) for i in live])
        for i, r in zip(live, res):
            chats[i].append({"role": "assistant", "content": r.texts[0]})
            answers[i].append(r.texts[0])
    return answers
