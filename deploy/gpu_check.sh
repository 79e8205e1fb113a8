#!/usr/bin/env bash
# GPU check for PRM training: no network, a few minutes on one H100.
#
# 1. makes a small labelled set with the synthetic policy (prm_data/sim_labels.py: bank problems,
#    sampled solutions, their true step labels) and exports it (prm_data/export.py);
# 2. builds a tiny Llama locally (tokenizer trained on the exported text, weights from a config);
# 3. trains the PRM for $STEPS steps in bf16 (`python -m prm_data.train`, or torchrun when NPROC > 1);
# 4. evaluates it (ProcessBench F1, best-of-N) and prints tokens/s and peak GPU memory.
#
# Run from the repository root after `pip install -e .` (torch with CUDA). Everything it prints
# and its metrics.json / eval.png go to $OUT when set. Knobs: STEPS (300), BATCH (32), HIDDEN (256),
# LAYERS (4), PROBLEMS (400), NPROC (1), REQUIRE_GPU (1; 0 allows a CPU smoke run), WORK (temp dir).
set -euo pipefail

PY=${PYTHON:-python}
STEPS=${STEPS:-300}
BATCH=${BATCH:-32}
HIDDEN=${HIDDEN:-256}
LAYERS=${LAYERS:-4}
PROBLEMS=${PROBLEMS:-400}
NPROC=${NPROC:-1}
REQUIRE_GPU=${REQUIRE_GPU:-1}
WORK=${WORK:-$(mktemp -d -t prm-gpu-check.XXXXXX)}
REPORT=${OUT:-$WORK/report}
mkdir -p "$REPORT"
exec > >(tee "$REPORT/gpu_check.log") 2>&1

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export HF_HOME="$WORK/hf_home" HF_DATASETS_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false

echo "== gpu_check: work dir $WORK, report $REPORT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" - "$REQUIRE_GPU" <<'PYEOF'
import sys, torch
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"device: {torch.cuda.get_device_name(0)}, bf16 supported: {torch.cuda.is_bf16_supported()}")
elif sys.argv[1] == "1":
    sys.exit("no CUDA device: this check needs a GPU (REQUIRE_GPU=0 runs it on CPU as a smoke test)")
PYEOF

SECONDS=0
"$PY" - "$WORK" "$PROBLEMS" "$HIDDEN" "$LAYERS" <<'PYEOF'
import sys
from prm_data.export import ExportConfig, run_export
from prm_data.sim_labels import ORACLE_POLICY, SimLabelsConfig, write_sim_labels
from prm_data.train.tiny import make_tiny_model
from prm_data.warehouse import Warehouse

work, problems, hidden, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
wh = Warehouse(f"{work}/wh")
print("data:", write_sim_labels(wh, "gpu-check", SimLabelsConfig(problems=problems, rollouts_per_problem=8)))
export = run_export(wh, f"{work}/export", ExportConfig(policy=ORACLE_POLICY, test_fraction=0.1))
print("export:", export.counts)
make_tiny_model(export.path, f"{work}/tiny", vocab_size=2048, hidden_size=hidden, num_layers=layers,
                num_heads=max(1, hidden // 64))
PYEOF
echo "== data and tiny model ready in ${SECONDS}s"

TRAIN_ARGS=(--dataset "$WORK/export" --model "$WORK/tiny" --out "$WORK/ckpt" --max-steps "$STEPS"
            --batch-size "$BATCH" --lr 1e-3 --set warmup_ratio=0.05 --set logging_steps=50)
if [ "$REQUIRE_GPU" = "1" ]; then TRAIN_ARGS+=(--set mixed_precision=bf16); fi
SECONDS=0
if [ "$NPROC" -gt 1 ]; then
  "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m prm_data.train "${TRAIN_ARGS[@]}"
else
  "$PY" -m prm_data.train "${TRAIN_ARGS[@]}"
fi
echo "== trained in ${SECONDS}s"

"$PY" -m prm_data.cli --warehouse "$WORK/wh" eval --dataset "$WORK/export" --checkpoint "$WORK/ckpt" \
  -t 0.3 -t 0.5 -t 0.7 --plot "$REPORT/eval.png" --run-id gpu-check
cp "$WORK/ckpt/metrics.json" "$WORK/ckpt/train_log.jsonl" "$REPORT/"
"$PY" - "$WORK/ckpt" <<'PYEOF'
import json, sys
from pathlib import Path
ckpt = Path(sys.argv[1])
m = json.loads((ckpt / "metrics.json").read_text())
losses = [json.loads(l)["loss"] for l in (ckpt / "train_log.jsonl").read_text().splitlines()]
mem = m["peak_gpu_memory_bytes"]
print(f"RESULT steps={m['steps']} processes={m['num_processes']} precision={m['mixed_precision']} "
      f"tokens_per_s={m['tokens_per_second']:.0f} "
      f"peak_gpu_memory={'n/a' if mem is None else f'{mem / 2**30:.2f} GiB'} "
      f"loss_first10={sum(losses[:10]) / len(losses[:10]):.4f} loss_last10={sum(losses[-10:]) / len(losses[-10:]):.4f}")
PYEOF
