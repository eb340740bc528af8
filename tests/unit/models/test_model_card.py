"""README.md model card in every exported folder: base, data counts, hyper-parameters, eval with CIs, command."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gguf")


@pytest.fixture()
def run_folder(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from instructkit.config.base import dump_yaml, load_config
    from instructkit.config.recipe import Recipe
    from instructkit.models import load_model

    run = tmp_path / "runs" / "sft"
    peft = get_peft_model(load_model(tiny_model_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft.save_pretrained(run / "model")
    recipe = load_config(Recipe, None, [f"model.name_or_path={tiny_model_dir}", "data.paths=[data/alpaca.jsonl]",
                                        "train.method=lora", "train.lr=0.0002", "train.lora.r=4", "seed=7"])
    (run / "recipe.yaml").write_text(dump_yaml(recipe))
    (run / "summary.json").write_text(json.dumps({"final_loss": 1.234, "data": {
        "read": 120, "kept": 110, "skipped": 6, "dropped": 4, "truncated": 3,
        "skipped_by_reason": {"empty_assistant": 6}}}))
    (run / "eval").mkdir()
    (run / "eval" / "results.json").write_text(json.dumps({"tasks": {"gsm8k": {
        "main_metric": "exact_match", "score": 0.25, "ci": [0.1, 0.4], "n": 40}}}))
    return run


def _check(card: str, tiny_model_dir: str) -> None:
    assert f"base_model: {tiny_model_dir}" in card
    assert "method: lora" in card and "| lr | 0.0002 |" in card and "| lora.r | 4 |" in card and "| seed | 7 |" in card
    assert "data/alpaca.jsonl" in card and "read 120, kept 110, skipped 6, dropped 4, truncated 3" in card
    assert "empty_assistant 6" in card
    assert "| gsm8k | exact_match | 0.250 | [0.100, 0.400] | 40 | eval |" in card
    assert "instructkit train --config" in card and "recipe.yaml" in card


def test_gguf_export_card(run_folder, tmp_path, tiny_model_dir):
    from instructkit.models.gguf_export import export_gguf

    export_gguf(run_folder / "model", tmp_path / "gguf")
    card = (tmp_path / "gguf" / "README.md").read_text()
    _check(card, tiny_model_dir)
    assert "library_name: gguf" in card and "--format gguf --quant f16" in card


def test_hf_export_card(run_folder, tmp_path, tiny_model_dir):
    from instructkit.train.export import export_merged

    out = export_merged(run_folder / "model", tmp_path / "merged")
    card = (out / "README.md").read_text()
    _check(card, tiny_model_dir)
    assert "library_name: transformers" in card and f"--out {tmp_path / 'merged'}" in card
    assert "model.safetensors" in card


def test_card_says_what_is_missing(tmp_path, tiny_model_dir):
    from instructkit.models.card import model_card

    card = model_card(tiny_model_dir, base=None, command="instructkit export ...", export={"format": "gguf"})
    assert "no training run (recipe.yaml) was found" in card and "No eval results" in card
