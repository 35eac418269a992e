#!/usr/bin/env bash
# GPU benchmarks, sized to a few minutes on one H200. Needs a CUDA torch and the project's deps (make install TORCH=...).
#   benchmarks/gpu.sh            fp32 synthesis vs naive, then bf16 vs fp32 (the run's `precision` key) per stage
#   benchmarks/gpu.sh --bf16     the synthesis comparison with bf16 weights (precision=bf16)
# Extra args go to bench_synth.py (e.g. --models gpt2-small). Results: $OUT (default benchmarks/results/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-benchmarks/results/gpu}
DTYPE=float32
if [[ "${1:-}" == "--bf16" ]]; then DTYPE=bfloat16; shift; fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"

# --- synthesis: ours (batched own decode loop, SDPA) vs one batch-1 generate per block -------------------------
"$PY" benchmarks/bench_synth.py --device cuda --dtype "$DTYPE" --attn sdpa --models gpt2-small,smollm2 \
  --blocks 2048 --batch-size 512 --naive-blocks 12 \
  --beam-blocks 256 --beam-batch-size 64 --beam-naive-blocks 6 \
  --repeats 3 --matmul-n 8192 --out "$OUT/synth_${DTYPE}.json" "$@" 2>&1 | tee "$OUT/synth_${DTYPE}.log"

# --- training (lead) ---------------------------------------------------------------------------------------------
# bias_amp.train.finetune (dynamic padding) vs HF Trainer padded to 512, GPT-2-small shape, fp32 (both sides; --bf16
# above does not apply here). articles: AllSides articles (~0% padding at 512); lines: their lines (mostly padding).
for EX in articles lines; do
  "$PY" benchmarks/bench_train.py --device cuda --model gpt2-small --examples "$EX" --batch-size 8 --steps 16 \
    --repeats 3 --threads 4 2>&1 | tee "$OUT/train_${EX}.log"
done

# --- precision: bf16 vs fp32 per stage (the `precision` key's paths on CUDA; A/B in one process) -----------------
for SECTION in synth train score agree; do
  "$PY" benchmarks/bench_precision.py "$SECTION" --device cuda --blocks 1024 --naive-blocks 8 --batch-size 256 \
    --beam-blocks 128 --articles 256 --steps 8 --out "$OUT/precision_${SECTION}.json" 2>&1 | tee "$OUT/precision_${SECTION}.log"
done
