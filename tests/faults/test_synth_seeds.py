"""Issue #24 item 11: every teacher request gets its own derived sampling seed (evol rounds, multiturn turns,
Magpie responses, self-instruct, preferences), distinct between neighbouring prompts and between runs."""

import json
import sys
from pathlib import Path

from instructkit.config.synth import EvolConfig, MagpieConfig, MultiTurnConfig, SelfInstructConfig
from instructkit.models.tiny import make_tiny_tokenizer
from instructkit.synth.evol import evolve
from instructkit.synth.magpie import magpie
from instructkit.synth.multiturn import expand
from instructkit.synth.self_instruct import self_instruct
from instructkit.synth.teacher import Teacher

sys.path.insert(0, str(Path(__file__).resolve().parent))  # synth_fakes, whatever pytest's import mode
from synth_fakes import Recording, Sampler  # noqa: E402

SEEDS = [{"id": f"s{i}", "instruction": f"Explain topic number {i} to a student in simple words.", "input": "",
          "output": "ok"} for i in range(6)]


def _sampled(fake):
    """Seeds of the sampled requests (temperature > 0: the greedy equality judge needs none)."""
    return [r.seed for r in fake.requests if r.temperature > 0]


def _distinct(seeds):
    return len(seeds) == len(set(seeds)) and None not in seeds


def test_evol_multiturn_magpie_self_instruct_seed_every_request():
    runs = {}
    for base in (0, 1):
        seen = {}
        fake = Recording()
        cfg = EvolConfig(rounds=2, seed=base)
        evolve(cfg, Teacher(fake, None, progress=False), SEEDS, cfg.teacher)
        seen["evol"] = _sampled(fake)
        fake = Recording()
        cfg = MultiTurnConfig(turns=2, seed=base)
        expand(cfg, Teacher(fake, None, progress=False), SEEDS, cfg.teacher)
        seen["multiturn"] = _sampled(fake)
        fake = Recording()
        cfg = MagpieConfig(n=6, seed=base)
        magpie(cfg, Teacher(fake, None, progress=False), make_tiny_tokenizer(), cfg.teacher)
        seen["magpie"] = _sampled(fake)
        for style in ("alpaca", "paper"):
            fake = Recording()
            cfg = SelfInstructConfig(style=style, num_instructions=4, requests_per_round=5, max_rounds=2, seed=base,
                                     num_prompt_seeds=3)
            self_instruct(cfg, Teacher(fake, None, progress=False), SEEDS, cfg.teacher)
            seen[f"self_instruct_{style}"] = _sampled(fake)
        for name, seeds in seen.items():
            assert len(seeds) > 3 and _distinct(seeds), (name, seeds)
        runs[base] = seen
    for name in runs[0]:  # neighbouring run seeds share no request seed
        assert not set(runs[0][name]) & set(runs[1][name]), name


def test_preferences_seeds_do_not_overlap_between_prompts_or_runs(tmp_path, monkeypatch):
    import instructkit.lm.backends as jc
    from instructkit.synth.preferences import PreferencesConfig, run_preferences

    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(5)))
    seeds = {}
    for base in (0, 1):
        pol = Sampler()
        monkeypatch.setattr(jc, "make_backend", lambda ref, pol=pol, **k: pol)
        cfg = PreferencesConfig(prompts=str(f), model="policy", n=2, ranker="reward", reward_model="x",
                                seed=base, batch_size=2)
        try:  # the ranker is not under test (no reward model here): sampling happened before it
            run_preferences(cfg, tmp_path / f"out{base}")
        except Exception:
            pass
        seeds[base] = [r.seed for r in pol.requests]
        assert len(seeds[base]) == 5 and _distinct(seeds[base])
    assert not set(seeds[0]) & set(seeds[1])
