#!/usr/bin/env bash
# Every CUDA test and kernel benchmark in one call, sized for a single 10-minute GPU slot:
#   1. configure + build the kernels, their tests and benchmarks for this GPU's architecture
#   2. the CPU-side kernel arithmetic tests and every GPU test binary (loom_add_gpu_test in
#      tests/CMakeLists.txt)
#   3. the CUDA tests again under compute-sanitizer (memcheck on all small cases, racecheck on the
#      shared-memory kernels)
#   4. the kernel benchmarks (loom vs cuBLAS+softmax, vs PyTorch SDPA flash/cuDNN when torch is there)
#      and the MAE pre-training step (bench_mae_step_gpu vs mae_step_torch.py --device cuda)
# Prints a summary table last; CSVs and logs go to $OUT (default build-gpu/results).
# Needs CUDA and CMake; Eigen and Catch2 come from the system or from .deps/usr (scripts/gpu_bundle.sh).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${LOOM_GPU_BUILD:-$root/build-gpu}
out=${OUT:-$build/results}
mkdir -p "$out"
summary=()
step() {  # step <name> <timeout-seconds> <command...>: runs, logs, records status and time
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS log="$out/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_').log"
  echo "=== $name"
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  tail -n 25 "$log"
  local status=ok
  [ $rc -ne 0 ] && status="FAILED (exit $rc)"
  [ $rc -eq 124 ] && status="TIMEOUT (${limit}s)"
  summary+=("$(printf '%-34s %-18s %5ss' "$name" "$status" $((SECONDS - start)))")
  return $rc
}

arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
echo "GPU: ${gpu:-none} (sm_${arch:-?}), $(date -u +%Y-%m-%dT%H:%MZ)"
prefix=()
[ -d "$root/.deps/usr" ] && prefix=(-DCMAKE_PREFIX_PATH="$root/.deps/usr")
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
# LOOM_UNITY_TESTS=OFF: a GPU machine's many cores compile the test files in parallel.
step "configure" 120 cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DLOOM_CUDA=ON \
  -DLOOM_BUILD_EXAMPLES=OFF -DLOOM_UNITY_TESTS=OFF -DCMAKE_CUDA_ARCHITECTURES="${arch:-90}" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 "${prefix[@]}" || { printf '%s\n' "${summary[@]}"; exit 1; }
# Every GPU test binary tests/CMakeLists.txt declares (loom_add_gpu_test).
cuda_tests=$(grep -oE 'loom_add_gpu_test\(test_[a-z0-9_]+' "$root/tests/CMakeLists.txt" | sed 's/loom_add_gpu_test(//' | sort -u)
step "build" 400 cmake --build "$build" -j "$(nproc)" --target test_kernel_math $cuda_tests \
  bench_attention_gpu bench_patch_gpu || { printf '%s\n' "${summary[@]}"; exit 1; }

tests=$build/tests
step "cpu kernel math" 120 "$tests/test_kernel_math"
for t in $cuda_tests; do step "$t" 300 "$tests/$t"; done
if command -v compute-sanitizer >/dev/null; then
  # (the [memory] test provokes a failing cudaMalloc on purpose, which memcheck would count)
  step "memcheck (small cases)" 150 compute-sanitizer --tool memcheck --error-exitcode 3 \
    "$tests/test_cuda_kernels" "[small],[patch],[loss]"
  for t in $cuda_tests; do  # the other GPU tests use small shapes throughout
    [ "$t" = test_cuda_kernels ] || step "memcheck $t" 150 compute-sanitizer --tool memcheck --error-exitcode 3 "$tests/$t"
  done
  step "racecheck (small cases)" 150 compute-sanitizer --tool racecheck --error-exitcode 3 \
    "$tests/test_cuda_kernels" "[small],[patch],[loss]"
else
  summary+=("compute-sanitizer                  not found")
fi
if grep -q "test_dist_nccl" "$root/tests/CMakeLists.txt"; then  # NCCL communicator, one rank on this GPU
  step "nccl test (1 rank)" 180 bash -c "cmake --build '$build' -j $(nproc) --target test_dist_nccl && '$tests/test_dist_nccl'"
fi
step "bench attention" 240 "$build/benchmarks/gpu/bench_attention_gpu" --csv "$out/bench_attention_gpu.csv"
step "bench patch kernels" 120 "$build/benchmarks/gpu/bench_patch_gpu" --csv "$out/bench_patch_gpu.csv"
# The whole MAE pre-training step (config b, batch 256, fp32) against PyTorch eager on this GPU.
mae_args=(--config b --mode pretrain --batch 256 --warmup 3 --steps 10)
step "build bench_mae_step_gpu" 300 cmake --build "$build" -j "$(nproc)" --target bench_mae_step_gpu &&
  step "bench mae step (loom)" 180 bash -c \
    "'$build/benchmarks/gpu/bench_mae_step_gpu' --device cuda ${mae_args[*]} | tee '$out/mae_step_loom.json'"
py=$(command -v python3 || true)
if [ -n "$py" ] && "$py" -c "import torch" 2>/dev/null; then
  step "torch sdpa" 240 "$py" "$root/benchmarks/gpu/torch_sdpa.py" --csv "$out/torch_sdpa.csv"
  step "torch mae step (eager)" 180 bash -c \
    "'$py' '$root/benchmarks/mae_step_torch.py' --device cuda ${mae_args[*]} | tee '$out/mae_step_torch.json'"
else
  summary+=("torch sdpa                         skipped: no python3 with torch")
fi

echo
echo "=== summary (${gpu:-no GPU}; CSVs and logs in $out)"
if [ -f "$out/bench_attention_gpu.csv" ] && [ -f "$out/torch_sdpa.csv" ]; then
  # fwd+bwd TFLOP/s of loom's kernel against PyTorch flash, bf16, per sequence length
  awk -F, 'FNR > 1 && $2 == "bf16" && ($1 == "loom_flash" || $1 == "torch_flash") { t[$1 "," $4] = $11 }
    END { for (s in t) { split(s, k, ","); if (k[1] == "loom_flash" && ("torch_flash," k[2]) in t)
            printf "loom/torch-flash fwd+bwd bf16 seq %s: %.2f\n", k[2], t[s] / t["torch_flash," k[2]] } }' \
    "$out/bench_attention_gpu.csv" "$out/torch_sdpa.csv" | sort -t' ' -k5n
fi
if [ -s "$out/mae_step_loom.json" ] && [ -s "$out/mae_step_torch.json" ]; then
  "${py:-python3}" - "$out/mae_step_loom.json" "$out/mae_step_torch.json" <<'PY'
import json, sys
loom, torch = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
print(f"MAE pre-training step, config b, batch {loom['batch']}: loom {loom['img_per_s']:.1f} img/s, "
      f"PyTorch eager {torch['img_per_s']:.1f} img/s -> {loom['img_per_s'] / torch['img_per_s']:.2f}x")
PY
fi
printf '%s\n' "${summary[@]}"
