#!/usr/bin/env bash
# Install one vLLM server per GPU with the layout of configs/vllm.yaml:
#   GPUs 0-4: the policy (ports 8000-8004); GPU 5, 6, 7: one judge each (ports 8005-8007).
# Usage: sudo deploy/vllm/install-units.sh [path/to/vllm]     (then: systemctl status 'vllm@*')
# Edit LAYOUT for another machine and list the same ports as base_urls in your run config.
set -euo pipefail

VLLM_BIN=${1:-$(command -v vllm || true)}
[ -x "$VLLM_BIN" ] || { echo "vllm not found: pass its path (pip install vllm in a venv first)" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)

LAYOUT=(
  "0 Qwen/Qwen2.5-Math-7B-Instruct"
  "1 Qwen/Qwen2.5-Math-7B-Instruct"
  "2 Qwen/Qwen2.5-Math-7B-Instruct"
  "3 Qwen/Qwen2.5-Math-7B-Instruct"
  "4 Qwen/Qwen2.5-Math-7B-Instruct"
  "5 Qwen/Qwen2.5-7B-Instruct"
  "6 meta-llama/Llama-3.1-8B-Instruct"
  "7 google/gemma-2-9b-it"
)

GPUS=$(nvidia-smi --list-gpus | wc -l)
id -u prm-data >/dev/null 2>&1 || useradd --system --create-home prm-data
install -d -m 0750 -o root -g prm-data /etc/prm-data
if [ ! -f /etc/prm-data/vllm.env ]; then
  umask 027
  cat > /etc/prm-data/vllm.env <<ENV
VLLM_BIN=$VLLM_BIN
HF_HOME=/home/prm-data/.cache/huggingface
# HF_TOKEN=hf_...        # needed for gated models (Llama, Gemma)
# VLLM_API_KEY=...       # if set, clients must send it (configs/vllm.yaml reads the same variable)
ENV
  chgrp prm-data /etc/prm-data/vllm.env
fi
for entry in "${LAYOUT[@]}"; do
  read -r gpu model <<<"$entry"
  if [ "$gpu" -ge "$GPUS" ]; then echo "skipping GPU $gpu: this machine has $GPUS" >&2; continue; fi
  printf 'VLLM_MODEL=%s\nVLLM_PORT=%s\nVLLM_EXTRA_ARGS=\n' "$model" "$((8000 + gpu))" > "/etc/prm-data/vllm-$gpu.env"
done
install -m 0644 "$HERE/vllm@.service" /etc/systemd/system/vllm@.service
systemctl daemon-reload
for entry in "${LAYOUT[@]}"; do
  read -r gpu _ <<<"$entry"
  [ "$gpu" -lt "$GPUS" ] && systemctl enable --now "vllm@$gpu.service"
done
echo "started; wait for: curl -s http://127.0.0.1:8000/v1/models"
