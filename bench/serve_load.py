"""bench_serve's load: the request plan every contender gets, the ``openai`` SDK clients, the per-round summary.

The plan is fixed before any contender runs (same prompts, lengths, streaming flags, in the same order per
client), so every server - and HF generate in-process - does the same work.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable, Sequence

from common import SHARED, percentile

PROMPTS = ["Explain what a hash table is.", "Write a haiku about the sea.", "Give three tips for learning Python.",
           "What is the capital of France and why is it famous?", "Summarize the plot of Romeo and Juliet.",
           "How do vaccines work?", "Write a short email declining a meeting.", "What is 17 times 23?"]


def prompts() -> list[str]:
    """The 80 Vicuna-bench first turns (../shared/data/vicuna_bench), or a built-in list without the data."""
    q = SHARED / "vicuna_bench" / "question.jsonl"
    if q.is_file():
        return [json.loads(line)["turns"][0] for line in q.read_text().splitlines() if line.strip()]
    return PROMPTS


def request_plan(clients: int, per_client: int, lengths: Sequence[int], texts: Sequence[str]) -> list[dict]:
    """Request ``j`` of client ``i``: streaming when ``i + j`` is even; ``max_tokens`` from ``lengths``, the same
    for the two requests of a pair (``j // 2``) so every length is asked both streamed and not; prompts cycle."""
    out = []
    for i in range(clients):
        for j in range(per_client):
            k = i * per_client + j
            out.append({"k": k, "client": i, "stream": (i + j) % 2 == 0,
                        "max_tokens": lengths[(i // 2 + j // 2) % len(lengths)], "prompt": texts[k % len(texts)]})
    return out


def summarize(records: Sequence[dict], wall_s: float) -> dict[str, Any]:
    """One round's numbers from its per-request records (``latency_s``, ``ttft_s`` for streamed requests,
    ``tokens``, ``finish``, ``max_tokens``, ``prompt_tokens``, or ``error``). A response is *bad* when it
    finished neither ``stop`` nor ``length``, or finished ``length`` with a token count other than
    ``max_tokens`` (lost or truncated tokens)."""
    ok = [r for r in records if not r.get("error")]
    errors = [r["error"] for r in records if r.get("error")]
    bad = [(r["k"], r.get("finish"), r.get("tokens"), r["max_tokens"]) for r in ok
           if r.get("finish") not in ("stop", "length") or (r["finish"] == "length" and r["tokens"] != r["max_tokens"])]
    lat = [r["latency_s"] for r in ok]
    ttft = [r["ttft_s"] for r in ok if r.get("ttft_s") is not None]
    tokens = sum(r["tokens"] for r in ok)
    prompt_tokens = sum(r.get("prompt_tokens", 0) for r in ok)

    def rnd(x: float | None, d: int = 3) -> float | None:
        return None if x is None else round(x, d)
    return {"requests": len(records), "errors": len(errors), "error_samples": errors[:3], "bad_responses": len(bad),
            "bad_samples": bad[:3], "wall_s": round(wall_s, 2), "completion_tokens": tokens,
            "prompt_tokens": prompt_tokens, "tokens_per_s": round(tokens / wall_s, 2) if wall_s > 0 else None,
            "requests_per_s": round(len(ok) / wall_s, 3) if wall_s > 0 else None,
            "p50_latency_s": rnd(percentile(lat, 50)), "p99_latency_s": rnd(percentile(lat, 99)),
            "p50_ttft_s": rnd(percentile(ttft, 50)), "p99_ttft_s": rnd(percentile(ttft, 99)),
            "streamed": sum(1 for r in ok if r["stream"])}


async def _load(base_url: str, model: str, plan: Sequence[dict], count_tokens: Callable[[str], int]) -> tuple[list, float]:
    import openai
    ac = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=3600)
    records: list[dict] = []

    async def one(req: dict) -> None:
        rec = {k: req[k] for k in ("k", "stream", "max_tokens", "prompt_tokens") if k in req}
        msgs = [{"role": "user", "content": req["prompt"]}]
        t0 = time.perf_counter()
        try:
            if req["stream"]:
                s = await ac.chat.completions.create(model=model, messages=msgs, max_tokens=req["max_tokens"],
                                                     temperature=0, stream=True, stream_options={"include_usage": True})
                first, fin, used, text = None, None, None, ""
                async for ch in s:
                    if ch.choices and ch.choices[0].delta.content:
                        first = first or time.perf_counter()
                        text += ch.choices[0].delta.content
                    if ch.choices and ch.choices[0].finish_reason:
                        fin = ch.choices[0].finish_reason
                    if ch.usage:
                        used = ch.usage.completion_tokens
                if used is None:  # a server that ignores include_usage (FastChat): count the streamed text's tokens
                    used = count_tokens(text)
                rec["ttft_s"] = (first or time.perf_counter()) - t0
            else:
                r = await ac.chat.completions.create(model=model, messages=msgs, max_tokens=req["max_tokens"],
                                                     temperature=0)
                fin, used = r.choices[0].finish_reason, r.usage.completion_tokens
            rec.update(latency_s=time.perf_counter() - t0, tokens=used, finish=fin)
        except Exception as e:  # counted and reported, never hidden
            rec["error"] = f"{type(e).__name__}: {str(e)[:160]}"
        records.append(rec)

    by_client: dict[int, list[dict]] = {}
    for req in plan:
        by_client.setdefault(req["client"], []).append(req)

    async def client(reqs: list[dict]) -> None:
        for req in reqs:  # one client waits for its answer before it sends the next request
            await one(req)

    t0 = time.perf_counter()
    await asyncio.gather(*[client(reqs) for reqs in by_client.values()])
    wall = time.perf_counter() - t0
    await ac.close()  # inside this event loop (closing it after asyncio.run ends raises "Event loop is closed")
    return records, wall


def run_load(base_url: str, model: str, plan: Sequence[dict], count_tokens: Callable[[str], int]) -> dict[str, Any]:
    """All clients at once against ``base_url`` through the real async ``openai`` SDK; the round's summary."""
    records, wall = asyncio.run(_load(base_url, model, plan, count_tokens))
    return summarize(records, wall)
