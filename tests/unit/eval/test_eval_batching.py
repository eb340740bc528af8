"""Issue #26: generation is batched across sets and to the end - every generative set goes to the engine in
one call, rows of two sets share a decode batch, the batch stays full while requests wait, each task's k-shot
prefix is still prefilled once, results are identical to the per-set path and to HF generate, and the
evaluation cache stores every result as it finishes (resume keeps working)."""

from __future__ import annotations

import json

import pytest

from instructkit.eval.cache import CachedLM
from instructkit.eval.datasets import EvalItem, EvalSet
from instructkit.eval.runner import evaluate
from instructkit.lm.api import GenerateRequest, GenerateResult
from instructkit.lm.engine import Engine
from instructkit.lm.hf import HFModel
from instructkit.lm.sampling import SamplingParams

WORDS = "the a of to is it true that answer one two three four five six seven eight nine ten yes no".split()


def _shots(k: int) -> str:
    """A k-shot block, different per task (> 32 tokens: the engine pins it)."""
    return " ".join(f"Q: {' '.join(WORDS[(k + j) % len(WORDS)] for j in range(9))} A: {WORDS[k + i]}."
                    for i in range(4)) + " "


def _set(name: str, k: int, n: int, max_new: int = 10) -> EvalSet:
    shots = _shots(k)
    items = [EvalItem(name, i, shots + f"Q: {' '.join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(2 + i % 4))} A:",
                      "3", answer_kind="number", cot=True, stop=["Q:"], max_new_tokens=max_new - (i % 3) * 3)
             for i in range(n)]
    return EvalSet(name, items, "few_shot_cot")


@pytest.fixture()
def lm(tiny_model, tiny_tokenizer):
    return HFModel(tiny_model, tiny_tokenizer, batch_size=2, gen_batch_size=8, progress=False)


def _record_admissions(eng: Engine) -> list[tuple[set, int, int]]:
    """At every admission: the tasks (k-shot prefix) of the rows in the batch, rows, requests still waiting."""
    log: list[tuple[set, int, int]] = []
    admit = eng._admit

    def spy() -> list:
        new = admit()
        rows = [*eng._running, *new]
        log.append(({tuple(s.req.prompt_ids[:12]) for s in rows}, len(rows), len(eng._waiting)))
        return new
    eng._admit = spy  # type: ignore[method-assign]
    return log


def test_two_sets_share_one_decode_batch_and_it_stays_full(lm, tmp_path):
    sets = [_set("task_a", 0, 5), _set("task_b", 7, 5)]
    log = _record_admissions(lm.engine)
    evaluate(lm, sets, tmp_path, progress=False)
    # one engine call for both sets: rows of both tasks (their k-shot prefixes differ) in one batch
    assert any(len(tasks) == 2 for tasks, _, _ in log)
    # while requests wait, every step runs the full width (no chunk tail draining to one row)
    assert all(rows == 8 for _, rows, waiting in log if waiting) and any(waiting for *_, waiting in log)
    assert lm.engine.stats["max_batch"] == 8
    # each task's exemplars were prefilled once for its rows, not recomputed per row
    assert lm.engine.stats["prefix_tokens_reused"] >= 32 * 10


def test_results_identical_to_the_per_set_path_and_hf_generate(tiny_model, tiny_tokenizer, tmp_path):
    sets = [_set("task_a", 0, 4), _set("task_b", 7, 4)]

    def preds(out):
        return [(r["set"], r["idx"], r["completions"]) for r in
                map(json.loads, (out / "predictions.jsonl").read_text().splitlines())]
    together = HFModel(tiny_model, tiny_tokenizer, batch_size=2, gen_batch_size=8, progress=False)
    evaluate(together, sets, tmp_path / "together", progress=False)
    alone = []
    for es in sets:  # the previous shape: one set per call, a narrow batch
        one = HFModel(tiny_model, tiny_tokenizer, batch_size=2, gen_batch_size=2, progress=False)
        evaluate(one, [es], tmp_path / es.name, progress=False)
        alone += preds(tmp_path / es.name)
    assert preds(tmp_path / "together") == alone
    reqs = [GenerateRequest(prompt=it.prompt, max_new_tokens=it.max_new_tokens, stop=list(it.stop))
            for es in sets for it in es.items]
    ref = HFModel(tiny_model, tiny_tokenizer, batch_size=3, progress=False, generation="hf").generate(reqs)
    assert [c for _, _, c in alone] == [r.texts for r in ref]


def test_as_completed_yields_in_finishing_order_with_a_pin_per_task(tiny_model, tiny_tokenizer):
    prompts = [_set("a", 0, 1).items[0].prompt, _set("b", 7, 1).items[0].prompt,
               _set("a", 0, 2).items[1].prompt, _set("b", 7, 2).items[1].prompt]
    items = [(tiny_tokenizer(p)["input_ids"], SamplingParams(max_tokens=12 - 3 * k, ignore_eos=True))
             for k, p in enumerate(prompts)]
    eng = Engine(tiny_model, tiny_tokenizer, max_batch_size=8)
    order = [i for i, _ in eng.as_completed(items)]
    assert order == [3, 2, 1, 0]  # all admitted at once: the shortest budget finishes first
    off = Engine(tiny_model, tiny_tokenizer, max_batch_size=8, prefix_min_tokens=0).generate_many(items)
    on = eng.generate_many(items)
    assert [o.outputs[0].token_ids for o in on] == [o.outputs[0].token_ids for o in off]
    # two tasks, two pinned prefixes (one common prefix of all four prompts would be empty)
    assert eng.stats["prefix_tokens_reused"] >= 2 * 32 * 4 and eng.load == 0


class StreamingLM:
    """A backend with ``generate_iter``: yields results in reverse order, can die after k of them."""

    name, fingerprint, batch_size = "streaming", "streaming-v1", 2

    def __init__(self, die_after: int | None = None):
        self.calls: list[int] = []
        self.die_after = die_after

    def generate(self, reqs):  # never used when generate_iter exists
        raise AssertionError("chunked path used")

    def generate_iter(self, reqs):
        self.calls.append(len(reqs))
        for k, i in enumerate(reversed(range(len(reqs)))):
            if self.die_after is not None and k == self.die_after:
                raise KeyboardInterrupt
            yield i, GenerateResult([reqs[i].prompt.upper()], [1])


def test_cache_streams_every_result_and_resumes(tmp_path):
    path = tmp_path / "cache.jsonl"
    reqs = [GenerateRequest(prompt=f"q{i}", max_new_tokens=4) for i in range(30)]
    with pytest.raises(KeyboardInterrupt):
        CachedLM(StreamingLM(die_after=11), path, chunk_size=4).generate(reqs)
    assert len(path.read_text().splitlines()) == 11  # each result on disk as it finished
    again = StreamingLM()
    clm = CachedLM(again, path, chunk_size=4)
    seen: list[int] = []
    out = clm.generate(reqs, seen.extend)
    assert [r.texts[0] for r in out] == [f"Q{i}" for i in range(30)]
    assert again.calls == [19]  # every uncached request in one call (not chunks of 4)
    assert clm.cached_hits["generate"] == 11 and sorted(seen) == list(range(30))


def test_prompt_pins_one_per_shared_prefix_group():
    from instructkit.lm.prefix import prompt_pins
    a, b = list(range(100, 140)), list(range(200, 240))  # two tasks' 40-token exemplar blocks
    prompts = [a + [1, 2], b + [3], a + [4], [7, 8, 9], b + [5, 6], a + [1, 3]]
    pins = prompt_pins(prompts, 32)
    assert pins[0] is pins[2] is pins[5] and pins[1] is pins[4] and pins[0] is not pins[1] and pins[3] is None
    assert pins[0].ids == a and pins[1].ids == b  # the group's common prefix (a + [1] is not common to all)
    assert prompt_pins(prompts, 0) == [None] * 6 and prompt_pins([a + [1]], 32) == [None]
