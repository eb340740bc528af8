"""Mixtures: caps obeyed exactly, byte-identical by seed, held-out clusters, T0 rule, contamination."""

import json

import pytest
from typer.testing import CliRunner

from instructkit.cli import app
from instructkit.data.tasks import load_task
from instructkit.data.tasks.cli import run_mix
from instructkit.config.mix import MixConfig
from instructkit.data.tasks.mixture import MixSpec, allocate, plan_counts


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("mix")
    res = CliRunner().invoke(app, ["data", "mix", "--out", str(out), "mix.tasks=[builtin]",
                                   "mix.hold_out=[nli,coreference]", "mix.rate_cap=120", "mix.cap=100",
                                   "mix.formats={zero_shot: 2, few_shot: 1, zero_shot_cot: 1}"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_mix_writes_mixture_manifest_plot(mixed):
    out, output = mixed
    man = json.loads((out / "manifest.json").read_text())
    recs = [json.loads(x) for x in (out / "mixture.jsonl").read_text().splitlines()]
    assert (out / "composition.png").stat().st_size > 10_000
    assert set(man["held_out"]["tasks"]) == {"nli_facts", "nli_numbers", "coref_gender", "coref_role"}
    assert "held out (nli, coreference): " in output.replace("\n", " ")
    assert not {r["meta"]["cluster"] for r in recs} & {"nli", "coreference"}
    # caps exactly: cap=100 < rate_cap=120 -> every one of the 20 training tasks gives exactly 100
    assert {v["count"] for v in man["tasks"].values()} == {100} and len(man["train_tasks"]) == 20
    assert man["totals"]["examples"] == len(recs) == 2000
    per_task = {}
    for r in recs:
        assert r["messages"][0]["role"] == "user" and r["messages"][1]["role"] == "assistant"
        per_task.setdefault(r["meta"]["task"], {}).setdefault(r["meta"]["template"], 0)
        per_task[r["meta"]["task"]][r["meta"]["template"]] += 1
    assert per_task == {t: v["templates"] for t, v in man["tasks"].items()}
    assert {r["meta"]["fmt"] for r in recs} == {"zero_shot", "few_shot", "zero_shot_cot"}
    assert all(r["meta"]["fmt"] != "zero_shot_cot" or load_task(r["meta"]["task"]).has_rationale for r in recs)
    for tid in man["held_out"]["tasks"] + man["train_tasks"]:
        assert load_task(man["tasks"].get(tid, {}).get("ref") or man["held_out"]["refs"][tid]).id == tid


def test_same_seed_byte_identical(mixed, tmp_path):
    out, _ = mixed
    cfg = MixConfig(tasks=["builtin"], hold_out=["nli", "coreference"], rate_cap=120, cap=100,
                    formats={"zero_shot": 2, "few_shot": 1, "zero_shot_cot": 1})
    man = run_mix(cfg, 0, str(tmp_path / "a"), plot=False)
    assert (tmp_path / "a" / "mixture.jsonl").read_bytes() == (out / "mixture.jsonl").read_bytes()
    assert man["content_hash"] == json.loads((out / "manifest.json").read_text())["content_hash"]
    man2 = run_mix(cfg, 1, str(tmp_path / "b"), plot=False)
    assert man2["content_hash"] != man["content_hash"]


def test_rate_cap_and_weights_and_temperature():
    src = {"big": (10_000, 10, "a"), "mid": (2_000, 10, "b"), "small": (50, 10, "b")}
    c = plan_counts(src, MixSpec(cap=5_000, rate_cap=3_000))
    assert c == {"big": 3000, "mid": 2000, "small": 50}
    c = plan_counts(src, MixSpec(cap=5_000, rate_cap=3_000, total=6000))
    assert c["big"] <= 5000 and c["small"] == 50 and sum(c.values()) == 6000
    hot = plan_counts(src, MixSpec(cap=10_000, rate_cap=None, temperature=3.0, total=3000))
    cold = plan_counts(src, MixSpec(cap=10_000, rate_cap=None, temperature=1.0, total=3000))
    assert hot["small"] > cold["small"] and hot["big"] < cold["big"]  # temperature flattens
    w = plan_counts(src, MixSpec(cap=10_000, rate_cap=None, weights={"b": 4.0}, total=3000))
    assert w["mid"] > cold["mid"]
    t0 = plan_counts({"x/t1": (900, 4, "c"), "x/t2": (50, 4, "c")}, MixSpec(t0_rule=True, t0_cap=2000))
    assert t0 == {"x/t1": 500, "x/t2": 50}  # 2000 / 4 templates per template file


def test_allocate_is_exact():
    a = allocate({"a": 10, "b": 10, "c": 10}, {"a": 1.0, "b": 1.0, "c": 1.0}, 10)
    assert sum(a.values()) == 10 and max(a.values()) - min(a.values()) <= 1


def test_unknown_held_out_cluster_is_an_error(tmp_path):
    res = CliRunner().invoke(app, ["data", "mix", "--out", str(tmp_path), "mix.tasks=[bool_expr]",
                                   "mix.hold_out=[nope]"])
    assert res.exit_code != 0 and "nope" in str(res.exception) and "logic" in str(res.exception)


def test_contamination_counts_overlap(mixed, tmp_path):
    out, _ = mixed
    recs = [json.loads(x) for x in (out / "mixture.jsonl").read_text().splitlines()]
    ev = tmp_path / "eval.jsonl"
    clean = {"text": " ".join(f"word{i}" for i in range(40))}
    ev.write_text(json.dumps({"text": max((r["messages"][0]["content"] for r in recs), key=len)}) + "\n" + json.dumps(clean) + "\n")
    res = CliRunner().invoke(app, ["data", "contamination", "--train", str(out / "mixture.jsonl"),
                                   "--eval", str(ev)])
    assert res.exit_code == 0, res.output
    assert "1/2 eval examples overlap (50.0%)" in " ".join(res.output.split())


def test_mixture_is_a_normal_sft_data_file(mixed):
    from instructkit.data.readers import detect_format, read_conversations
    out, _ = mixed
    assert detect_format(out / "mixture.jsonl") == "openai"
    convs = list(read_conversations(out / "mixture.jsonl"))
    assert len(convs) == 2000 and all(c.last_assistant for c in convs)


def test_contamination_defaults_to_held_out_tasks(mixed):
    out, _ = mixed
    res = CliRunner().invoke(app, ["data", "contamination", "--train", str(out / "mixture.jsonl"), "--limit", "50"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for tid in ("nli_facts", "nli_numbers", "coref_gender", "coref_role"):
        assert f"{tid}: 0/50 eval examples overlap" in text


def test_hold_out_a_task_id_keeps_its_cluster_siblings(tmp_path):
    # T0-style design (b): hold out one data set, train its sibling of the same cluster
    cfg = MixConfig(tasks=["sentiment_movie", "sentiment_restaurant", "bool_expr"],
                    hold_out=["sentiment_restaurant"], rate_cap=20, cap=20)
    man = run_mix(cfg, 0, str(tmp_path), plot=False)
    recs = [json.loads(x) for x in (tmp_path / "mixture.jsonl").read_text().splitlines()]
    assert man["held_out"]["tasks"] == ["sentiment_restaurant"]
    assert {r["meta"]["task"] for r in recs} == {"sentiment_movie", "bool_expr"}
