"""bench_serve's contenders: instructkit serve and FastChat as real servers (each its own process group, the
openai SDK as load), HF ``generate`` in-process - one request at a time, and in static batches (its best
setting for throughput)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from serve_load import run_load, summarize


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    import httpx
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=5)
            if r.status_code == 200 and (not url.endswith("/models") or r.json().get("data")):
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def start(cmd: list[str], log: Path, threads: int) -> subprocess.Popen:
    # every contender gets the same torch/OpenMP thread count (on an oversubscribed CPU, spinning OpenMP threads
    # made SmolLM2 decoding 15x slower: 219 s vs 14 s)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               # FastChat's api server gives up on its worker after 100 s by default (httpx ReadTimeout -> the
               # client's connection drops); requests queued behind the worker's semaphore can exceed that, so
               # it gets the same patience our clients have
               FASTCHAT_WORKER_API_TIMEOUT="3600")
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)


def stop(procs: Sequence[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def log_tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_instructkit(model: str, plan: Sequence[dict], args: Any, count: Callable[[str], int]) -> dict[str, Any]:
    log = Path(args.logdir) / "instructkit.log"
    procs = [start([sys.executable, "-m", "instructkit", "serve", model, "--port", str(args.port),
                    "--max-batch-size", str(args.clients), "--dtype", "float32"], log, args.threads)]
    try:
        wait_http(f"http://127.0.0.1:{args.port}/health", args.start_timeout, procs[0])
        return run_load(f"http://127.0.0.1:{args.port}/v1", model, plan, count)
    except RuntimeError as e:
        return {"error": f"{e}\n{log_tail(log)}"}
    finally:
        stop(procs)


def fastchat_missing() -> str | None:
    """Why FastChat cannot run here, or None. It needs PyPI ``fschat`` (0.2.36 is the last release). Checked in a
    child process: importing FastChat's servers replaces ``sys.stdout`` with its logger (every later print and the
    SDK's request log would go through it, inside the bench's clock)."""
    import importlib.util
    if importlib.util.find_spec("fastchat") is None:
        return "FastChat is not installed (pip install fschat)"
    p = subprocess.run([sys.executable, "-c", "import fastchat.serve.openai_api_server, fastchat.serve.model_worker"],
                       capture_output=True, text=True, timeout=300, check=False)
    if p.returncode:
        tail = (p.stderr or p.stdout).strip().splitlines()
        return f"FastChat's servers do not import here: {tail[-1] if tail else f'exit {p.returncode}'}"
    return None


def run_fastchat(path: str, plan: Sequence[dict], args: Any, count: Callable[[str], int]) -> dict[str, Any]:
    c, w, a = args.port + 1, args.port + 2, args.port + 3
    py, here, logdir = sys.executable, str(Path(__file__).resolve().parent / "bench_serve.py"), Path(args.logdir)
    procs = [start([py, "-m", "fastchat.serve.controller", "--host", "127.0.0.1", "--port", str(c)],
                   logdir / "fc_controller.log", args.threads)]
    try:
        wait_http(f"http://127.0.0.1:{c}/test_connection", 120, procs[0])
        procs.append(start([py, here, "--fastchat-worker", "--model-path", path, "--device", "cpu",
                            "--host", "127.0.0.1", "--port", str(w), "--worker-address", f"http://127.0.0.1:{w}",
                            "--controller-address", f"http://127.0.0.1:{c}", "--model-names", "smollm2",
                            "--limit-worker-concurrency", str(args.fastchat_concurrency),
                            # ChatML without a one-shot preamble (the default for an unknown path is
                            # "one_shot": ~400 extra prompt tokens); stops on id 2 = SmolLM2's <|im_end|>
                            "--conv-template", "Yi-34b-chat"], logdir / "fc_worker.log", args.threads))
        procs.append(start([py, here, "--fastchat-api", "--host", "127.0.0.1", "--port", str(a),
                            "--controller-address", f"http://127.0.0.1:{c}"], logdir / "fc_api.log", args.threads))
        wait_http(f"http://127.0.0.1:{a}/v1/models", args.start_timeout, procs[1])
        return run_load(f"http://127.0.0.1:{a}/v1", "smollm2", plan, count)
    except RuntimeError as e:
        return {"error": f"{e}\nworker log:\n{log_tail(logdir / 'fc_worker.log')}\napi log:\n{log_tail(logdir / 'fc_api.log')}"}
    finally:
        stop(procs)


def _hf_model(model: str) -> tuple[Any, Any, Any]:
    from instructkit.chat.render import Renderer
    from instructkit.models import load_model, load_tokenizer
    tok = load_tokenizer(model)
    return load_model(model, dtype="float32").eval(), tok, Renderer(tok)


def _n_generated(row: Sequence[int], eos: set[int], cap: int) -> tuple[int, str]:
    for n, t in enumerate(row[:cap]):
        if t in eos:
            return n + 1, "stop"
    return min(len(row), cap), "length"


def run_hf(model: str, plan: Sequence[dict], args: Any, count: Callable[[str], int]) -> dict[str, Any]:
    """HF ``generate``, one request at a time (the first ``--hf-requests`` of the plan): latency excludes queueing."""
    import torch
    m, tok, r = _hf_model(model)
    eos = {tok.eos_token_id}
    recs = []
    t0 = time.perf_counter()
    for req in plan[: args.hf_requests]:
        ids = tok(r.prompt_text([{"role": "user", "content": req["prompt"]}]), add_special_tokens=False,
                  return_tensors="pt")["input_ids"]
        t = time.perf_counter()
        with torch.no_grad():
            out = m.generate(ids, max_new_tokens=req["max_tokens"], do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        n, fin = _n_generated(out[0, ids.shape[1]:].tolist(), eos, req["max_tokens"])
        recs.append({**{k: req[k] for k in ("k", "stream", "max_tokens", "prompt_tokens") if k in req},
                     "latency_s": time.perf_counter() - t, "tokens": n, "finish": fin})
    res = summarize(recs, time.perf_counter() - t0)
    res["note"] = "in-process, one request at a time, no HTTP; latency excludes queueing"
    return res


def run_hf_batch(model: str, plan: Sequence[dict], args: Any, count: Callable[[str], int]) -> dict[str, Any]:
    """HF ``generate`` on static batches of ``--clients`` requests with the same ``max_tokens`` (left-padded,
    greedy): the throughput HF generate reaches without continuous batching. A batch decodes until its
    longest row ends; a request's latency is its batch's time (queueing excluded); no streaming, no HTTP."""
    import torch
    m, tok, r = _hf_model(model)
    tok.padding_side = "left"
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = {tok.eos_token_id}
    groups: dict[int, list[dict]] = {}
    for req in plan:
        groups.setdefault(req["max_tokens"], []).append(req)
    recs = []
    t0 = time.perf_counter()
    for mt, reqs in groups.items():
        for b in range(0, len(reqs), args.clients):
            batch = reqs[b: b + args.clients]
            enc = tok([r.prompt_text([{"role": "user", "content": q["prompt"]}]) for q in batch],
                      add_special_tokens=False, padding=True, return_tensors="pt")
            t = time.perf_counter()
            with torch.no_grad():
                out = m.generate(**enc, max_new_tokens=mt, do_sample=False, eos_token_id=tok.eos_token_id,
                                 pad_token_id=pad)
            dt = time.perf_counter() - t
            for q, row in zip(batch, out[:, enc["input_ids"].shape[1]:].tolist()):
                n, fin = _n_generated(row, eos, mt)
                recs.append({**{k: q[k] for k in ("k", "stream", "max_tokens", "prompt_tokens") if k in q},
                             "latency_s": dt, "tokens": n, "finish": fin})
    res = summarize(recs, time.perf_counter() - t0)
    res["note"] = f"in-process, static batches of <= {args.clients} same-length requests, no HTTP; latency = batch time"
    return res


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
