"""Fixtures for the serve tests: a tiny model with two random LoRA adapters, and a running server."""

from __future__ import annotations

import pytest


def make_adapter(path: str, tokenizer, seed: int) -> str:
    import torch
    from peft import LoraConfig, get_peft_model

    from instructkit.models import make_tiny_model
    pm = get_peft_model(make_tiny_model(tokenizer), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    g = torch.Generator().manual_seed(seed)
    for n, p in pm.named_parameters():
        if "lora_" in n:  # non-zero B so the adapter really changes the output
            p.data = torch.randn(p.shape, generator=g) * 0.2
    pm.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def adapter_dirs(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("adapters")
    return {name: make_adapter(str(root / name), tiny_tokenizer, seed) for seed, name in enumerate(["ada", "bob"])}


@pytest.fixture(scope="session")
def peft_tiny(tiny_tokenizer, adapter_dirs):
    from instructkit.models import make_tiny_model
    from instructkit.serve.adapters import attach_adapters
    return attach_adapters(make_tiny_model(tiny_tokenizer), adapter_dirs)


@pytest.fixture(scope="module")
def server(tiny_tokenizer, peft_tiny, adapter_dirs):
    from instructkit.serve.adapters import ServedModels
    from instructkit.lm.engine import Engine
    from instructkit.serve.server import serve_engine
    srv = serve_engine(Engine(peft_tiny, tiny_tokenizer, max_batch_size=16), tiny_tokenizer,
                       ServedModels("tiny", dict(adapter_dirs)), api_key="test-key-123")
    yield srv
    srv.close()


@pytest.fixture()
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.url, api_key="test-key-123", max_retries=0, timeout=60)
