"""A FLAN mixture rendered for SmolLM2: token totals in the manifest, loss only on targets."""

import json

import pytest

from instructkit.chat.conversation import Conversation
from instructkit.chat.render import IGNORE_INDEX, Renderer
from instructkit.config import load_config
from instructkit.config.recipe import Recipe
from instructkit.data.tasks.cli import run_mix

pytestmark = pytest.mark.integration


def test_flan_recipe_mixture_tokens_and_masks(smollm2_tokenizer, tmp_path):
    r = load_config(Recipe, "recipes/flan_heldout.yaml", ["mix.rate_cap=20", "mix.cap=20"])
    man = run_mix(r.mix, r.seed, str(tmp_path), smollm2_tokenizer, plot=False)
    assert set(man["held_out"]["clusters"]) == {"nli", "coreference"}
    assert man["totals"]["tokens"] == sum(v["tokens"] for v in man["tasks"].values()) > 0
    recs = [json.loads(x) for x in (tmp_path / "mixture.jsonl").read_text().splitlines()]
    rend = Renderer(smollm2_tokenizer, template=r.model.chat_template, max_length=1024)
    for rec in recs[:50]:
        conv = Conversation.from_messages(rec["messages"]).validate()
        ids, labels = rend(conv)
        trained = smollm2_tokenizer.decode([i for i, l in zip(ids, labels) if l != IGNORE_INDEX])
        assert rec["messages"][1]["content"] in trained
        assert rec["messages"][0]["content"] not in trained
