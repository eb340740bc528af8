"""SmolLM2 behind `instructkit serve`: the eval stage through the server predicts what the local backend does."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smol_server(smollm2_model, smollm2_tokenizer):
    from instructkit.serve.adapters import ServedModels
    from instructkit.lm.engine import Engine
    from instructkit.serve.server import serve_engine
    srv = serve_engine(Engine(smollm2_model, smollm2_tokenizer), smollm2_tokenizer,
                       ServedModels("smollm2-135m-instruct"), api_key="k-smol")
    yield srv
    srv.close()


def _preds(out):
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    return {(r["task"], r["idx"]): (r.get("prediction"), r.get("completions")) for r in rows}


def test_eval_through_server_equals_local(tmp_path, smol_server, smollm2_path, monkeypatch):
    from typer.testing import CliRunner

    from instructkit.cli import app
    monkeypatch.setenv("SMOL_KEY", "k-smol")
    common = ["--tasks", "arith_add_sub,sentiment_movie", "--limit", "2", "--fmt", "zero_shot",
              "eval.max_new_tokens=24"]
    local = CliRunner().invoke(app, ["eval", "--model", "smollm2-135m-instruct", "--out", str(tmp_path / "local"),
                                     *common])
    assert local.exit_code == 0, local.output
    served = CliRunner().invoke(app, ["eval", "--model", smol_server.url, "--out", str(tmp_path / "served"), *common,
                                      "eval.endpoint_model=smollm2-135m-instruct", "eval.api_key_env=SMOL_KEY"])
    assert served.exit_code == 0, served.output
    a, b = _preds(tmp_path / "local"), _preds(tmp_path / "served")
    assert a and a.keys() == b.keys()
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not diff, diff


def test_greedy_chat_equals_local_backend_batched(smol_server, smollm2_model, smollm2_tokenizer):
    openai = pytest.importorskip("openai")
    from instructkit.lm.api import GenerateRequest
    from instructkit.lm.hf import HFModel
    qs = ["What is the capital of France?", "Write a haiku about autumn.", "Name three primary colors.",
          "Explain recursion in one sentence."]
    ref = HFModel(smollm2_model, smollm2_tokenizer, batch_size=4, progress=False, generation="hf").generate(
        [GenerateRequest(messages=[{"role": "user", "content": q}], max_new_tokens=40) for q in qs])
    ac = openai.AsyncOpenAI(base_url=smol_server.url, api_key="k-smol", max_retries=0)

    async def main():
        import asyncio
        return await asyncio.gather(*[ac.chat.completions.create(
            model="smollm2-135m-instruct", messages=[{"role": "user", "content": q}], max_tokens=40, temperature=0)
            for q in qs])
    import asyncio
    got = asyncio.run(main())
    assert [g.choices[0].message.content for g in got] == [r.texts[0] for r in ref]
