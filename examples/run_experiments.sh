#!/usr/bin/env bash
# The experiments of issue 7 at CPU scale, on the Synthetic Earth (clouds in 30% of the optical
# images): MAE pre-training with the default mask module, with consistent and with independent
# masking (same budget), then fine-tuning of each and of a from-scratch baseline on S1, S2, S1+S2
# and S1+S2-half at label fractions 0.01, 0.1 and 1.0. Writes <out>/results.md (the tables of
# docs/results.md) and every run's directory under <out>.
#
#   examples/run_experiments.sh [build-dir] [out-dir]      (env: THREADS=2 SEED=0)
#
# Budget (2 cores): 3 x 8 epochs of pre-training on 2048 images of 48x48 (patch 8: 36 locations,
# 72 group tokens), encoder 64x4x4, decoder 64x1x4; fine-tuning on 1024 training images, validation
# and test 256 each: 96 steps at label fraction 1.0 (6 epochs of batch 64), 60 steps at 0.1 and
# 0.01 (the whole subset of 10 images per batch at 0.01), blr 0.2 (the best of 0.02, 0.08, 0.2 for the
# from-scratch S2 baseline at fraction 1.0); validation every 24 steps, best by
# validation micro mAP, scored on the test split.
set -euo pipefail
BUILD=${1:-build}
OUT=${2:-runs/experiments}
THREADS=${THREADS:-2}
SEED=${SEED:-0}
PRE="$BUILD/examples/mae_pretrain"
FT="$BUILD/examples/finetune_multilabel"
DATA="synthetic:train=2048,val=256,test=256,clouds=0.3"
FT_DATA="synthetic:train=1024,val=256,test=256,clouds=0.3"
MODEL=(--image-size 48 --patch 8 --model 64x4x4 --tokens group --threads "$THREADS" --seed "$SEED")
mkdir -p "$OUT"
start=$(date +%s)

declare -A MASKS=([mae_default]=auto [mae_consistent]="consistent(0.75)" [mae_independent]="independent(0.75)")
for method in mae_default mae_consistent mae_independent; do
  if [[ ! -f "$OUT/$method/encoder.safetensors" ]]; then
    rm -rf "$OUT/$method"
    "$PRE" --data "$DATA" --out "$OUT/$method" "${MODEL[@]}" --decoder 64x1x4 --mask "${MASKS[$method]}" \
      --epochs 8 --batch-size 64 --log-every 32 --recon-samples 2 --quiet
  fi
  echo "pre-trained $method: $(( $(date +%s) - start )) s"
done

for method in scratch mae_default mae_consistent mae_independent; do
  init=()
  [[ $method != scratch ]] && init=(--init "$OUT/$method/encoder.safetensors")
  for mod in s1 s2 s1s2 s1s2-half; do
    for frac in 0.01 0.1 1.0; do
      steps=60; [[ $frac == 1.0 ]] && steps=96
      dir="$OUT/ft_${method}_${mod}_${frac}"
      if [[ ! -f "$dir/report.json" ]]; then
        rm -rf "$dir"
        "$FT" --data "$FT_DATA" --out "$dir" "${MODEL[@]}" "${init[@]}" --modalities "$mod" --label-fraction "$frac" \
          --steps "$steps" --eval-every 24 --batch-size 64 --blr 0.2 --log-every 12 --quiet
      fi
    done
    echo "fine-tuned $method $mod: $(( $(date +%s) - start )) s"
  done
done
echo "total: $(( $(date +%s) - start )) s" | tee "$OUT/elapsed.txt"

# The tables.
python3 - "$OUT" "$SEED" "$THREADS" <<'PY'
import json, os, sys
out, seed, threads = sys.argv[1], sys.argv[2], sys.argv[3]
methods = [("scratch", "from scratch"), ("mae_default", "MAE, default mask module"),
           ("mae_consistent", "MAE, consistent(0.75)"), ("mae_independent", "MAE, independent(0.75)")]
mods = [("s1", "S1"), ("s2", "S2"), ("s1s2", "S1+S2"), ("s1s2-half", "S1+S2-half")]
fracs = [("0.01", "1%"), ("0.1", "10%"), ("1.0", "100%")]
def rep(m, mod, f):
    return json.load(open(os.path.join(out, f"ft_{m}_{mod}_{f}", "report.json")))
def cell(r):
    return f"{100*r['map_micro']:.1f} / {100*r['map_macro']:.1f} / {100*r['f1_weighted']:.1f}"
lines = [f"Cells: test mAP micro / mAP macro / weighted F1 (x100, threshold 0.5), seed {seed}, {threads} threads.", ""]
for f, fname in fracs:
    lines += [f"**Label fraction {fname}** (by modality)", "", "| method | " + " | ".join(n for _, n in mods) + " |",
              "|---|" + "---|" * len(mods)]
    for m, mname in methods:
        lines.append(f"| {mname} | " + " | ".join(cell(rep(m, mod, f)) for mod, _ in mods) + " |")
    lines.append("")
for mod, modname in mods:
    lines += [f"**{modname}** (by label fraction)", "", "| method | " + " | ".join(n for _, n in fracs) + " |",
              "|---|" + "---|" * len(fracs)]
    for m, mname in methods:
        lines.append(f"| {mname} | " + " | ".join(cell(rep(m, mod, f)) for f, _ in fracs) + " |")
    lines.append("")
open(os.path.join(out, "results.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
