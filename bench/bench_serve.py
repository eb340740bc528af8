"""Serve benchmark: the real ``openai`` SDK (async) as load against instructkit serve, FastChat, HF generate.

Load: ``--clients`` concurrent clients x ``--requests`` each; request j of client i is streaming when
(i + j) is even, with max_tokens cycling through ``--lengths``; prompts cycle through the Vicuna-bench
questions (../shared/data/vicuna_bench) or a built-in list. Every response is checked: no error, finish_reason
stop/length, and a ``length`` finish has exactly max_tokens tokens (nothing lost or truncated).
Reported: p50/p99 latency, p50/p99 time to first token (streaming requests), aggregate completion tokens/s.

Contenders (each its own server process, same model, same load):
* ``instructkit``: ``instructkit serve MODEL`` (continuous batching);
* ``fastchat``: FastChat's controller + model_worker + openai_api_server (the Vicuna stack, PyPI fschat);
* ``hf``: HF ``generate`` one request at a time, in-process, on the first ``--hf-requests`` requests.

    python bench/bench_serve.py --contenders instructkit,fastchat,hf
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED  # noqa: E402

PROMPTS = ["Explain what a hash table is.", "Write a haiku about the sea.", "Give three tips for learning Python.",
           "What is the capital of France and why is it famous?", "Summarize the plot of Romeo and Juliet.",
           "How do vaccines work?", "Write a short email declining a meeting.", "What is 17 times 23?"]


def prompts() -> list[str]:
    q = SHARED / "vicuna_bench" / "question.jsonl"
    if q.is_file():
        return [json.loads(line)["turns"][0] for line in q.read_text().splitlines() if line.strip()]
    return PROMPTS


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def wait_http(url: str, timeout: float, key: str | None = None) -> None:
    import httpx
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            r = httpx.get(url, timeout=5, headers={"Authorization": f"Bearer {key}"} if key else {})
            if r.status_code == 200 and (not url.endswith("/models") or r.json().get("data")):
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not ready after {timeout}s")


async def load(base_url: str, model: str, clients: int, per_client: int, lengths: list[int]) -> dict[str, Any]:
    import openai
    ac = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=1800)
    ps = prompts()
    lat, ttft, errors, bad, tokens = [], [], [], [], 0

    async def one(i: int, j: int) -> None:
        nonlocal tokens
        k = i * per_client + j
        mt = lengths[k % len(lengths)]
        msgs = [{"role": "user", "content": ps[k % len(ps)]}]
        t0 = time.perf_counter()
        try:
            if (i + j) % 2 == 0:
                s = await ac.chat.completions.create(model=model, messages=msgs, max_tokens=mt, temperature=0,
                                                     stream=True, stream_options={"include_usage": True})
                first, fin, used, text = None, None, None, ""
                async for ch in s:
                    if ch.choices and ch.choices[0].delta.content:
                        first = first or time.perf_counter()
                        text += ch.choices[0].delta.content
                    if ch.choices and ch.choices[0].finish_reason:
                        fin = ch.choices[0].finish_reason
                    if ch.usage:
                        used = ch.usage.completion_tokens
                if used is None:  # a server without include_usage (FastChat): count the streamed text's tokens
                    used = len(TOK["tok"](text, add_special_tokens=False)["input_ids"])
                ttft.append((first or time.perf_counter()) - t0)
            else:
                r = await ac.chat.completions.create(model=model, messages=msgs, max_tokens=mt, temperature=0)
                fin, used = r.choices[0].finish_reason, r.usage.completion_tokens
            lat.append(time.perf_counter() - t0)
            tokens += used
            if fin not in ("stop", "length") or (fin == "length" and used and used != mt):
                bad.append((k, fin, used, mt))
        except Exception as e:  # counted and reported, never hidden
            errors.append(f"{type(e).__name__}: {str(e)[:120]}")

    async def client(i: int) -> None:
        for j in range(per_client):
            await one(i, j)

    t0 = time.perf_counter()
    await asyncio.gather(*[client(i) for i in range(clients)])
    wall = time.perf_counter() - t0
    return {"requests": clients * per_client, "errors": len(errors), "error_samples": errors[:3],
            "bad_responses": len(bad), "bad_samples": bad[:3], "wall_s": round(wall, 1), "completion_tokens": tokens,
            "tokens_per_s": round(tokens / wall, 1), "p50_latency_s": round(pct(lat, 50), 2),
            "p99_latency_s": round(pct(lat, 99), 2), "p50_ttft_s": round(pct(ttft, 50), 2),
            "p99_ttft_s": round(pct(ttft, 99), 2)}


THREADS = {"n": 1}
TOK: dict[str, Any] = {}


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    # every contender gets the same torch/OpenMP thread count: on a shared, oversubscribed CPU two spinning
    # OpenMP threads per process made SmolLM2 decoding 15x slower than one (measured: 219 s vs 14 s)
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS["n"]), MKL_NUM_THREADS=str(THREADS["n"]),
               # FastChat's api server gives up on its worker after 100 s by default (httpx ReadTimeout ->
               # the client's connection drops); requests queued behind the worker's semaphore on a
               # loaded CPU exceed that, so give it the same patience our clients have
               FASTCHAT_WORKER_API_TIMEOUT="1800")
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def run_instructkit(model: str, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    port = args.port
    procs = [start(["instructkit", "serve", model, "--port", str(port), "--max-batch-size", str(args.clients)],
                   logdir / "instructkit.log")]
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 600)
        return asyncio.run(load(f"http://127.0.0.1:{port}/v1", model, args.clients, args.requests, args.lengths))
    finally:
        stop(procs)


def run_fastchat(path: str, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    c, w, a = args.port + 1, args.port + 2, args.port + 3
    py = sys.executable
    procs = [start([py, "-m", "fastchat.serve.controller", "--host", "127.0.0.1", "--port", str(c)],
                   logdir / "fc_controller.log")]
    try:
        time.sleep(5)
        procs.append(start([py, __file__, "--fastchat-worker", "--model-path", path, "--device", "cpu",
                            "--host", "127.0.0.1", "--port", str(w), "--worker-address", f"http://127.0.0.1:{w}",
                            "--controller-address", f"http://127.0.0.1:{c}", "--model-names", "smollm2",
                            # ChatML without a one-shot preamble (the default for an unknown path is
                            # "one_shot": ~400 extra prompt tokens); stops on id 2 = SmolLM2's <|im_end|>
                            "--conv-template", "Yi-34b-chat"],
                           logdir / "fc_worker.log"))
        procs.append(start([py, __file__, "--fastchat-api", "--host", "127.0.0.1", "--port", str(a),
                            "--controller-address", f"http://127.0.0.1:{c}"], logdir / "fc_api.log"))
        wait_http(f"http://127.0.0.1:{a}/v1/models", 600)
        return asyncio.run(load(f"http://127.0.0.1:{a}/v1", "smollm2", args.clients, args.requests, args.lengths))
    finally:
        stop(procs)


def run_hf(model: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from instructkit.chat.render import Renderer
    from instructkit.models import load_model, load_tokenizer
    m, tok = load_model(model).eval(), load_tokenizer(model)
    r, ps = Renderer(tok), prompts()
    lat, tokens = [], 0
    t0 = time.perf_counter()
    for k in range(args.hf_requests):
        ids = tok(r.prompt_text([{"role": "user", "content": ps[k % len(ps)]}]), add_special_tokens=False,
                  return_tensors="pt")["input_ids"]
        t = time.perf_counter()
        with torch.no_grad():
            out = m.generate(ids, max_new_tokens=args.lengths[k % len(args.lengths)], do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        lat.append(time.perf_counter() - t)
        tokens += out.shape[1] - ids.shape[1]
    wall = time.perf_counter() - t0
    return {"requests": args.hf_requests, "errors": 0, "bad_responses": 0, "wall_s": round(wall, 1),
            "completion_tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
            "p50_latency_s": round(pct(lat, 50), 2), "p99_latency_s": round(pct(lat, 99), 2),
            "note": "one request at a time, no concurrency (latency excludes queueing)"}


def fastchat_worker(argv: list[str]) -> None:
    """FastChat's model_worker with one fix: fschat 0.2.36 reads ``config.rope_scaling["factor"]``, which
    transformers 5 configs no longer carry (``{'rope_type': 'default', ...}``): KeyError at start-up."""
    import runpy

    import fastchat.utils as fu

    def get_context_length(config: Any) -> int:
        rs = getattr(config, "rope_scaling", None) or {}
        factor = rs.get("factor", 1) if isinstance(rs, dict) else 1
        for key in fu.SEQUENCE_LENGTH_KEYS:
            val = getattr(config, key, None)
            if val is not None:
                return int(factor * val)
        return 2048
    fu.get_context_length = get_context_length
    sys.argv = ["fastchat.serve.model_worker", *argv]
    runpy.run_module("fastchat.serve.model_worker", run_name="__main__")


def fastchat_api(argv: list[str]) -> None:
    """FastChat's openai_api_server with one fix: its stream generator calls pydantic-v1
    ``chunk.json(ensure_ascii=False)``, a TypeError under pydantic 2 (every streamed request fails)."""
    import runpy

    import pydantic

    def json_v1(self: Any, **kw: Any) -> str:
        kw.pop("ensure_ascii", None)
        return self.model_dump_json(**kw)
    pydantic.BaseModel.json = json_v1  # type: ignore[method-assign]
    sys.argv = ["fastchat.serve.openai_api_server", *argv]
    runpy.run_module("fastchat.serve.openai_api_server", run_name="__main__")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--fastchat-worker":
        return fastchat_worker(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "--fastchat-api":
        return fastchat_api(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--contenders", default="instructkit,fastchat,hf")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=20, help="requests per client")
    ap.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")], default=[16, 32, 64, 128])
    ap.add_argument("--hf-requests", type=int, default=40)
    ap.add_argument("--port", type=int, default=18400)
    ap.add_argument("--logdir", default="/tmp/bench_serve")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per contender (OMP_NUM_THREADS)")
    args = ap.parse_args()
    import torch
    THREADS["n"] = args.threads
    torch.set_num_threads(args.threads)
    from instructkit.models import resolve_model
    path = resolve_model(args.model)
    from instructkit.models import load_tokenizer
    TOK["tok"] = load_tokenizer(args.model)
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    print(f"load avg at start: {os.getloadavg()}; clients={args.clients} x requests={args.requests}, "
          f"lengths={args.lengths}, threads={args.threads}", flush=True)
    res: dict[str, Any] = {}
    for name in args.contenders.split(","):
        t = time.time()
        if name == "instructkit":
            res[name] = run_instructkit(args.model, args, logdir)
        elif name == "fastchat":
            res[name] = run_fastchat(path, args, logdir)
        elif name == "hf":
            res[name] = run_hf(args.model, args)
        res[name]["load_avg_after"] = [round(x, 1) for x in os.getloadavg()]
        print(name, json.dumps(res[name]), f"({time.time() - t:.0f}s)", flush=True)
    if "instructkit" in res:
        for other in ("fastchat", "hf"):
            if other in res and res[other]["tokens_per_s"]:
                print(f"tokens/s instructkit / {other}: {res['instructkit']['tokens_per_s'] / res[other]['tokens_per_s']:.2f}x")
    print("BENCH_JSON " + json.dumps(res))


if __name__ == "__main__":
    main()
