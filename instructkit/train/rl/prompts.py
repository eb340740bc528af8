"""RL prompts with their gold answers: from a task (train split for rollouts, eval split held out) or
from prompt files (``data.paths``; a record's ``answer``/``target``/``solution`` field is its gold answer).
The held-out items never depend on the run's seed, so runs of several seeds pair on the same items.

Every prompt is rendered with the model's chat template as one user turn plus the generation prompt.
Records the reader cannot use are counted by reason (``data.prompts.read_prompts`` rules), never dropped
silently; prompts longer than ``data.max_length`` tokens are counted and left out.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from instructkit.errors import ConfigError, InstructkitError

ANSWER_FIELDS = ("answer", "target", "solution")


@dataclass
class Prompt:
    id: str
    text: str                      # the user turn (task template + rl.instruction)
    answer: Any = None             # gold answer(s); None for open prompts
    choices: list[str] | None = None
    ids: list[int] | None = None   # chat-templated prompt tokens (set by :func:`tokenize`)


def from_task(ref: str, template_id: str | None, instruction: str, n_train: int, n_heldout: int,
              seed: int) -> tuple[list[Prompt], list[Prompt], Any]:
    """``(train prompts, held-out prompts, the task's AnswerSpec)``."""
    from instructkit.data.tasks.task import load_task

    task = load_task(ref)
    tpls = [t for t in task.templates if not t.inverted]
    if template_id is not None:
        tpls = [t for t in task.templates if t.id in (template_id, f"{task.id}/{template_id}")]
        if not tpls:
            raise ConfigError(f"train.rl.template={template_id!r}: task {task.id} has templates "
                              f"{[t.id for t in task.templates]}")
    tpl = tpls[0]

    def build(split: str, n: int, shuffle_seed: int | None) -> list[Prompt]:
        rows = list(enumerate(task.load_split(split)))
        if shuffle_seed is not None:
            random.Random(f"{shuffle_seed}:{split}").shuffle(rows)
        out = []
        for i, r in rows[:n]:
            text, target, choices = tpl.render(r)
            out.append(Prompt(f"{task.id}:{split}:{i}", (text + instruction).strip(), target, choices))
        return out

    # the held-out items do not depend on the run's seed: runs of several seeds are scored on the same items
    heldout = build(task.eval_split, n_heldout, None) if n_heldout else []
    return build(task.train_split, n_train, seed), heldout, task.answer


def from_files(paths: list[str], instruction: str, n_train: int, n_heldout: int,
               seed: int) -> tuple[list[Prompt], list[Prompt], Counter]:
    """Prompt files -> (train, held-out) split by a seeded shuffle; skipped records counted by reason."""
    from instructkit.data.prompts import iter_prompts

    if not paths:
        raise ConfigError("train.rl: name prompts with train.rl.task or prompt files in data.paths")
    out, skipped = [], Counter()
    for f, n, rec, text in iter_prompts(paths, skipped):
        ans = next((rec[k] for k in ANSWER_FIELDS if rec.get(k) not in (None, "")), None)
        out.append(Prompt(str(rec.get("id", f"{f.stem}:{n}")), (text + instruction).strip(),
                          None if ans is None else (ans if isinstance(ans, list) else str(ans)),
                          rec.get("choices") if isinstance(rec.get("choices"), list) else None))
    if not out:
        raise InstructkitError(f"no usable prompt in {paths} (skipped: {dict(skipped)})")
    random.Random(0).shuffle(out)  # the split does not depend on the run's seed (same held-out items)
    k = min(n_heldout, len(out) // 2)
    train = out[k:]
    random.Random(seed).shuffle(train)
    return train[:n_train], out[:k], skipped


def tokenize(prompts: list[Prompt], tokenizer: Any, template: str | None, max_length: int) -> tuple[list[Prompt], int]:
    """Chat-template every prompt (one user turn + generation prompt); ``(kept, too long)``."""
    from instructkit.chat.render import resolve_template

    tpl = resolve_template(template, tokenizer)
    kept, too_long = [], 0
    for p in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": p.text}], chat_template=tpl,
                                            add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        if len(ids) > max_length:
            too_long += 1
            continue
        p.ids = ids
        kept.append(p)
    return kept, too_long
