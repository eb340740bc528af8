"""A local Hugging Face causal LM behind the :class:`~instructkit.lm.api.LM` interface.

loglikelihood: tokenization follows lm-evaluation-harness (``_encode_pair``: trailing context spaces
move to the continuation, context + continuation encoded whole and split at the context's token
length). Requests sharing a context are *packed*: one row holds the context once followed by every
choice's tokens, with a custom 4D mask so each choice sees the context and its own earlier tokens only,
and position ids that restart at the context length for each choice. So the prompt is run once, not
once per choice, and rows of different groups are batched by length (right padded). Because the mask
is explicit and 4D, the SDPA packed-row trap (position ids restarting with no mask) does not apply. The LM
head runs at the scored positions only, in bounded chunks (``instructkit/lm/scoring.py``).

generate: the serve stage's continuous-batching engine (``instructkit/lm/generation.py``); HF ``generate``
in fixed left-padded batches with ``generation="hf"``.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from typing import Any, Iterator, Sequence

from instructkit.lm.api import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult
from instructkit.lm.packed import pack_rows
from instructkit.lm.generation import cut_at_stop  # noqa: F401  (re-exported: callers import it from here)

#: default decode width of generate(): rows of the running batch. Measured on 2 CPU cores, BBH 3-shot CoT
#: (SmolLM2-135M, ~1,000-token rows): 8 -> 16 rows 1.28x less CPU time, 16 -> 32 ~1.04x for +600 MiB of KV
#: cache (BENCHMARKS.md); GPUs gain from wider batches: pass gen_batch_size
GEN_BATCH_SIZE = 16

#: how generate() decodes: the serve engine (continuous batching) or HF generate (fixed padded batches)
GENERATION = ("engine", "hf")


def _progress(total: int, desc: str, disable: bool) -> Any:
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, disable=disable or total < 2, leave=False)


class HFModel:
    """``HFModel(ref_or_model, tokenizer=None, dtype=..., batch_size=..., max_length=..., ...)``."""

    def __init__(self, model_or_ref: Any, tokenizer: Any = None, *, dtype: str = "float32",
                 batch_size: int = 8, max_length: int | None = None, chat_template: str | None = None,
                 apply_chat_template: bool = False, progress: bool = True, device: str | None = None,
                 prefix_min_tokens: int = 32, generation: str = "engine", gen_batch_size: int | None = None):
        from instructkit.models import load_model, load_tokenizer

        if isinstance(model_or_ref, str):
            self.name = model_or_ref
            self.model = load_model(model_or_ref, dtype=dtype)
            if hasattr(self.model, "merge_and_unload"):
                # a LoRA adapter folder: merged once for scoring (the unmerged adapter adds two small
                # matmuls to every linear layer; merged weights give the same log-probs within fp rounding)
                self.model = self.model.merge_and_unload()
            import torch
            dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
            if dev != "cpu":
                self.model.to(dev)
            self.tokenizer = tokenizer or load_tokenizer(model_or_ref)
        else:
            self.model = model_or_ref
            self.tokenizer = tokenizer
            self.name = str(getattr(getattr(model_or_ref, "config", None), "_name_or_path", "") or "model")
            if tokenizer is None:
                raise ValueError("HFModel(model_object) needs tokenizer=")
        self.model.eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        self.batch_size = batch_size
        #: sequences the engine decodes at once (generation); default: GEN_BATCH_SIZE, or batch_size if wider
        self.gen_batch_size = gen_batch_size or max(batch_size, GEN_BATCH_SIZE)
        cfg_max = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_length = max_length or min(cfg_max, 4096)
        self.chat_template = chat_template
        self.apply_chat_template = apply_chat_template
        self.progress = progress
        #: contexts sharing >= this many leading tokens (k-shot exemplars) reuse one KV cache; 0 = off
        self.prefix_min_tokens = prefix_min_tokens
        if generation not in GENERATION:
            raise ValueError(f"generation={generation!r}: choose from {', '.join(GENERATION)}")
        self.generation = generation
        self._engine: Any = None
        self._renderer: Any = None
        self._fingerprint: str | None = None
        #: counters for the throughput report (seconds spent, items and tokens processed)
        self.stats: dict[str, float] = defaultdict(float)

    # -- identity ---------------------------------------------------------------------------------
    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def fingerprint(self) -> str:
        """Identifies the weights + tokenizer + settings (cache keys for resume)."""
        if self._fingerprint is None:
            import torch
            h = hashlib.sha256()
            h.update(f"{self.name}|{self.dtype}|{self.max_length}|{self.chat_template}|"
                     f"{self.apply_chat_template}|{len(self.tokenizer)}".encode())
            with torch.no_grad():  # a cheap content checksum: the same name with other weights differs
                for p in list(self.model.parameters())[:: max(1, len(list(self.model.parameters())) // 16)]:
                    h.update(f"{float(p.float().sum()):.6e}|{tuple(p.shape)}".encode())
            self._fingerprint = h.hexdigest()[:20]
        return self._fingerprint

    @property
    def renderer(self) -> Any:
        if self._renderer is None:
            from instructkit.chat.render import Renderer
            self._renderer = Renderer(self.tokenizer, self.chat_template)
        return self._renderer

    # -- tokenization (lm-eval compatible) ---------------------------------------------------------
    @property
    def prefix_token_id(self) -> int:
        t = self.tokenizer
        return t.bos_token_id if t.bos_token_id is not None else t.eos_token_id

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if self.apply_chat_template:
            return self.encode_chat_pair(context, continuation)
        if context == "":
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            return ([self.prefix_token_id], cont) if cont and cont[0] != self.prefix_token_id else (cont[:1], cont[1:])
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = list(self.tokenizer(context + continuation)["input_ids"])
        ctx = list(self.tokenizer(context)["input_ids"])
        return self._split_guarded(ctx, whole)

    def _split_guarded(self, ctx: list[int], whole: list[int]) -> tuple[list[int], list[int]]:
        # Guard: the context's tokens must be a prefix of context+continuation's tokens. When the
        # continuation merges into the last context token(s), ``whole[len(ctx):]`` would drop the merged
        # characters (an empty continuation scores log-prob 0 and wins): split at the common prefix
        # instead, so every character of the continuation is scored.
        k = 0
        while k < min(len(ctx), len(whole)) and ctx[k] == whole[k]:
            k += 1
        if k < len(ctx):
            self.stats["ll_boundary_merges"] += 1
        if k == len(whole):
            raise ValueError("loglikelihood request: the continuation has no tokens of its own")
        if k == 0:  # nothing of the context survives as its own token: condition on the prefix token
            return [self.prefix_token_id], whole
        return whole[:k], whole[k:]

    def encode_chat_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """The training view: the conversation (user = context, assistant = continuation) is rendered with
        the chat template and tokenized once without added special tokens, as
        :class:`~instructkit.chat.render.Renderer` does for training; the context is every token before
        the assistant's text (the generation prompt included), the continuation the tokens through the
        end of that text (a template's separator, e.g. vicuna's space after "ASSISTANT:", included)."""
        r = self.renderer
        head = r.prompt_text([{"role": "user", "content": context}])
        full = r.apply([{"role": "user", "content": context}, {"role": "assistant", "content": continuation}])
        at = full.find(continuation, len(head)) if full.startswith(head) else -1
        if at < 0:
            raise ValueError("the chat template does not render the assistant text after the generation prompt")
        end = at + len(continuation)
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids, offs = list(enc["input_ids"]), enc["offset_mapping"]
        k = 0
        while k < len(ids) and offs[k][1] <= len(head):
            k += 1
        if k < len(ids) and offs[k][0] < len(head):  # a token straddles the prompt/answer boundary
            self.stats["ll_boundary_merges"] += 1
        n = k
        while n < len(ids) and offs[n][0] < end:
            n += 1
        if n == k or k == 0:
            raise ValueError("loglikelihood request: the continuation has no tokens of its own")
        return ids[:k], ids[k:n]

    def eos_token_ids(self) -> list[int]:
        """Every end token: the model's generation_config list (e.g. <|eot_id|> and <|end_of_text|>)
        plus the tokenizer's eos; generation stops at any of them."""
        ids: list[int] = []
        gc = getattr(self.model, "generation_config", None)
        for src in (getattr(gc, "eos_token_id", None), self.tokenizer.eos_token_id):
            for i in (src if isinstance(src, (list, tuple)) else [src]):
                if i is not None and int(i) not in ids:
                    ids.append(int(i))
        return ids

    # -- loglikelihood ------------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        from instructkit.lm.prefix import prefix_cache, prefix_groups

        t0 = time.perf_counter()
        encoded = [self.encode_pair(r.context, r.continuation) for r in requests]
        out: list[LoglikelihoodResult | None] = [None] * len(requests)
        bar = _progress(len(requests), "loglikelihood", not self.progress)
        # requests too long for the window are left-truncated per row (lm-eval): no shared prefix for them
        fits = [i for i, (c, x) in enumerate(encoded) if len(c) + len(x) - 1 <= self.max_length]
        rest = sorted(set(range(len(encoded))) - set(fits))
        groups = prefix_groups([encoded[i][0] for i in fits], self.prefix_min_tokens) if self.prefix_min_tokens else \
            [(0, list(range(len(fits))))]
        groups = [(n, [fits[j] for j in idxs]) for n, idxs in groups] + ([(0, rest)] if rest else [])
        for plen, idxs in groups:
            cache = prefix_cache(self.model, encoded[idxs[0]][0][:plen], self.device) if plen else None
            sub = [(encoded[i][0][plen:], encoded[i][1]) for i in idxs]
            self._score(pack_rows(sub, self.max_length), [requests[i] for i in idxs], idxs, out, bar, cache, plen)
            self.stats["ll_prefix_tokens_reused"] += plen * (len({tuple(c) for c, _ in sub}) - 1) if plen else 0
        bar.close()
        self.stats["ll_requests"] += len(requests)
        self.stats["ll_seconds"] += time.perf_counter() - t0
        return out  # type: ignore[return-value]

    def _score(self, rows: list, requests: list, idxs: list[int], out: list, bar: Any, cache: Any,
               plen: int) -> None:
        """Score packed rows (on top of a shared prefix's KV cache when ``cache`` is given)."""
        from instructkit.lm.scoring import score_rows
        score_rows(self, rows, requests, idxs, out, bar, cache, plen)

    # -- generation ---------------------------------------------------------------------------------
    def prompt_of(self, r: GenerateRequest) -> tuple[str, bool]:
        """The text to continue and whether it came from the chat template."""
        if r.messages is not None:
            return self.renderer.prompt_text(r.messages), True
        if r.prompt is None:
            raise ValueError("GenerateRequest needs prompt or messages")
        if self.apply_chat_template:
            return self.renderer.prompt_text([{"role": "user", "content": r.prompt}]), True
        return r.prompt, False

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Every request through the serve engine (continuous batching, ``generation="engine"``), or HF
        ``generate`` in fixed batches grouped by decoding settings (``generation="hf"``, the reference)."""
        out: list[GenerateResult | None] = [None] * len(requests)
        for i, r in self.generate_iter(requests):
            out[i] = r
        return out  # type: ignore[return-value]

    def generate_iter(self, requests: Sequence[GenerateRequest]) -> Iterator[tuple[int, GenerateResult]]:
        """``(index, result)`` as results are ready: the engine takes every request at once and yields each as it
        finishes (a caller stores results meanwhile, e.g. the evaluation cache); the ``hf`` path per batch."""
        from instructkit.lm.generation import engine_generate_iter, hf_generate_batch

        t0 = time.perf_counter()
        prompts = [self.prompt_of(r) for r in requests]
        if self.generation == "engine":
            try:
                yield from engine_generate_iter(self, prompts, requests)
            except BaseException:
                self._engine = None  # a failed or interrupted step leaves sequences in the engine: start fresh
                raise
        else:
            groups: dict[tuple, list[int]] = defaultdict(list)
            for i, r in enumerate(requests):
                groups[(r.max_new_tokens, r.temperature, r.top_p, r.n, r.seed, tuple(r.stop), prompts[i][1])].append(i)
            bar = _progress(len(requests), "generate", not self.progress)
            for key, idxs in groups.items():
                idxs.sort(key=lambda i: -len(prompts[i][0]))
                for b0 in range(0, len(idxs), self.batch_size):
                    chunk = idxs[b0: b0 + self.batch_size]
                    yield from zip(chunk, hf_generate_batch(self, [prompts[i][0] for i in chunk], *key))
                    bar.update(len(chunk))
            bar.close()
        self.stats["gen_requests"] += len(requests)
        self.stats["gen_seconds"] += time.perf_counter() - t0

    @property
    def engine(self) -> Any:
        """The serve stage's decode engine over this model (built on first use)."""
        if self._engine is None:
            from instructkit.lm.generation import make_engine
            self._engine = make_engine(self)
        return self._engine
