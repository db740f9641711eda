#!/usr/bin/env bash
# Installs what is missing, builds loom and runs the main job: MAE pre-training of the multi-modal
# (S1 + S2) encoder on the built-in Synthetic Earth, then multi-label fine-tuning from its encoder,
# then the test evaluation table. About 2-3 minutes of training on 2 cores, plus about 3 to compile.
# Usage: bash scripts/main.sh     (build dir: build-main/, override with LOOM_BUILD_DIR;
#                                  outputs: runs/main/, override with LOOM_RUNS_DIR — replaced on each run)
# The job runs on the CPU, so the CUDA backend is not built unless LOOM_CUDA=ON is set (minutes of
# nvcc saved); with it, the trainers also take --device cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
loom_install_deps
build="${LOOM_BUILD_DIR:-build-main}"
runs="${LOOM_RUNS_DIR:-runs/main}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLOOM_BUILD_TESTS=OFF -DLOOM_CUDA="${LOOM_CUDA:-OFF}"
cmake --build "$build" -j "$(loom_jobs)" --target mae_pretrain finetune_multilabel
rm -rf "$runs"
mkdir -p "$runs"
threads="$(loom_jobs)"
# 48x48 synthetic images (clouds in 30% of the optical ones), patch 8: 36 locations x 2 modality
# groups; a 64x4x4 encoder; the default mask module.
model=(--image-size 48 --patch 8 --model 64x4x4 --threads "$threads")
"$build/examples/mae_pretrain" --data "synthetic:train=2048,clouds=0.3" --out "$runs/pretrain" "${model[@]}" \
  --decoder 64x1x4 --epochs 8 --batch-size 64 --log-every 32 --recon-samples 4
"$build/examples/finetune_multilabel" --data "synthetic:train=1024,val=256,test=256,clouds=0.3" \
  --out "$runs/finetune" --init "$runs/pretrain/encoder.safetensors" "${model[@]}" --modalities s1s2 \
  --epochs 8 --batch-size 64 --blr 0.2 --log-every 16 --save-predictions
echo
cat "$runs/finetune/report.md"
echo
echo "Outputs:"
echo "  pre-training: $runs/pretrain (loss_curve.png, recon_*.png, metrics.jsonl, encoder.safetensors)"
echo "  fine-tuning:  $runs/finetune (report.md/json, per_class_ap.png, val_report.md, metrics.jsonl,"
echo "                predictions.csv, best.safetensors)"
