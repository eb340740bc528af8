"""Issue #24 item 10: `synth preferences` reuses samples only for the same model, n, settings and prompt, and
appends them as they finish (a crash keeps what was sampled)."""

import json
import sys
from pathlib import Path

import pytest

from instructkit.synth.preferences import PreferencesConfig, run_preferences

sys.path.insert(0, str(Path(__file__).resolve().parent))  # synth_fakes, whatever pytest's import mode
from synth_fakes import Sampler  # noqa: E402


class FirstLonger:
    """Pairwise judge: prefers the longer answer."""

    name = "len-judge"

    def generate(self, reqs):
        import re
        from instructkit.lm.api import GenerateResult
        ans = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]", re.S)
        out = []
        for r in reqs:
            a = dict(ans.findall(r.messages[-1]["content"]))
            out.append(GenerateResult(["[[A]]" if len(a["A"]) >= len(a["B"]) else "[[B]]"], [1]))
        return out


@pytest.fixture
def env(tmp_path, monkeypatch):
    import instructkit.lm.backends as jc
    models = {}
    monkeypatch.setattr(jc, "make_backend", lambda ref, **k: models[ref] if ref in models else FirstLonger())
    f = tmp_path / "prompts.jsonl"
    f.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Question number {i}?"}) + "\n" for i in range(6)))
    return models, f, tmp_path / "out"


def _cfg(f, **kw):
    return PreferencesConfig(prompts=str(f), model="policy", judge="judge", verdict="generate", batch_size=2, **kw)


def test_cache_is_keyed_by_settings_and_prompts(env):
    models, f, out = env
    models["policy"] = first = Sampler()
    run_preferences(_cfg(f, n=2), out)
    assert len(first.requests) == 6
    models["policy"] = again = Sampler()
    run_preferences(_cfg(f, n=2), out)  # same everything: all from the cache
    assert again.requests == []
    models["policy"] = more = Sampler()
    res = run_preferences(_cfg(f, n=3), out)  # another n: asked again, never the stale 2-sample answers
    assert len(more.requests) == 6 and all(r.n == 3 for r in more.requests)
    assert res["counts"]["samples"] == 18
    models["policy"] = hot = Sampler()
    run_preferences(_cfg(f, n=3, temperature=1.2), out)
    assert len(hot.requests) == 6
    models["other"] = other = Sampler()
    run_preferences(_cfg(f, n=3, temperature=1.2).model_copy(update={"model": "other"}), out)  # another model
    assert len(other.requests) == 6
    # a shorter prompt list (limit) must pair each prompt with its own answers, not the file's first lines
    models["policy"] = Sampler()
    res = run_preferences(_cfg(f, n=3, limit=2), out)
    rows = [json.loads(x) for x in open(res["data"])]
    assert rows and all(r["chosen"].startswith(r["prompt"]) and r["rejected"].startswith(r["prompt"]) for r in rows)


def test_samples_are_appended_as_they_finish(env):
    models, f, out = env
    models["policy"] = Sampler(fail_after=4)  # killed after 4 of 6 prompts (2 batches of 2)
    with pytest.raises(KeyboardInterrupt):
        run_preferences(_cfg(f, n=2), out)
    assert len((out / "samples.jsonl").read_text().splitlines()) == 4
    models["policy"] = rest = Sampler()
    res = run_preferences(_cfg(f, n=2), out)
    assert len(rest.requests) == 2 and res["counts"]["samples_from_cache"] == 8
