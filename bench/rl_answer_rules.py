"""The RL task's answer check two ways: the task's declared last number (``number``/``numeric``) vs
math-verify (``math``/``math``), item by item (docs/rl.md, Rewards).

    python bench/rl_answer_rules.py RUN/heldout.json [RUN2/heldout.json ...]   # held-out before/after
    python bench/rl_answer_rules.py --rollouts 32                             # the start model's rollouts

``--rollouts N``: the start model (smollm2-135m-instruct) samples the recipe's step-1 setting on N train
prompts of recipes/tasks/times_word.yaml (G=8, T=0.8, 20 new tokens, seed 0) and every completion is
scored both ways. Prints the means and each completion the two rules disagree on.
"""

from __future__ import annotations

import argparse
import json

from instructkit.data.tasks.answers import AnswerSpec

NUM, MV = AnswerSpec("number", "numeric"), AnswerSpec("math", "math")


def both(text: str, gold: str) -> tuple[str, float, str, float]:
    a, b = NUM.extract_text(text), MV.extract_text(text)
    return a, NUM.score(a, gold), b, MV.score(b, gold)


def heldout(paths: list[str]) -> None:
    for path in paths:
        items = json.load(open(path))["items"]
        for when in ("before", "after"):
            sa = sb = 0.0
            for it in items:
                a, x, b, y = both(it[when], it["answer"])
                sa, sb = sa + x, sb + y
                if x != y:
                    print(json.dumps({"run": path, "when": when, "id": it["id"], "gold": it["answer"],
                                      "number": [a, x], "math_verify": [b, y], "text": it[when]}))
            print(f"{path} {when}: n={len(items)} last number {sa / len(items):.4f}, math-verify {sb / len(items):.4f}")


def rollouts(n: int) -> None:
    import torch

    from instructkit.models import load_model_and_tokenizer
    from instructkit.train.rl import prompts as P
    from instructkit.train.rl.rollout import sample, step_seed

    torch.set_num_threads(1)
    train, _, _ = P.from_task("recipes/tasks/times_word.yaml", "t02", "", n, 0, 0)
    model, tok = load_model_and_tokenizer("smollm2-135m-instruct", dtype="float32")
    train, _ = P.tokenize(train, tok, None, 128)
    rolls = sample(model, tok, [(i, p.ids) for i, p in enumerate(train)], g=8, max_new_tokens=20,
                   temperature=0.8, top_p=1.0, seed=step_seed(0, 0), batch_size=64)
    sa = sb = only_mv = only_num = 0.0
    for r in rolls:
        a, x, b, y = both(r.text, train[r.prompt_index].answer)
        sa, sb, only_mv, only_num = sa + x, sb + y, only_mv + (y > x), only_num + (x > y)
        if x != y:
            print(json.dumps({"gold": train[r.prompt_index].answer, "number": [a, x], "math_verify": [b, y],
                              "finish": r.finish_reason, "text": r.text}))
    print(f"{len(rolls)} rollouts: last number {sa / len(rolls):.4f}, math-verify {sb / len(rolls):.4f}; "
          f"paid only by math-verify {int(only_mv)}, only by the last number {int(only_num)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("heldout", nargs="*")
    ap.add_argument("--rollouts", type=int, default=0)
    a = ap.parse_args()
    heldout(a.heldout)
    if a.rollouts:
        rollouts(a.rollouts)


if __name__ == "__main__":
    main()
