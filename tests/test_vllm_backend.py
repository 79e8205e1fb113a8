"""The vllm backend is an optional extra: without vLLM it fails at once with a message that says what to do."""

from __future__ import annotations

import importlib.util

import pytest

from prm_data.llm.factory import BackendConfig, make_backend
from prm_data.llm.vllm_backend import VLLMUnavailable


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_making_the_backend_explains_how_to_get_it():
    with pytest.raises(VLLMUnavailable) as info:
        make_backend(BackendConfig(kind="vllm", model="Qwen/Qwen2.5-Math-1.5B-Instruct"))
    message = str(info.value)
    assert "pip install 'prm-data[vllm]'" in message and "kind=openai" in message
    assert isinstance(info.value, ImportError)


def test_the_vllm_kind_needs_a_model_name():
    with pytest.raises(ValueError, match="needs `model`"):
        make_backend(BackendConfig(kind="vllm"))
