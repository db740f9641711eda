#!/usr/bin/env bash
# loom vs PyTorch on the MAE steps (issue 8), side by side in one invocation:
#   A = loom (bench_mae_step) in the environment as found,
#   B = the same model in plain PyTorch (mae_step_torch.py) with the tuned environment:
#       OPENBLAS_CORETYPE unset, Debian's OpenMP OpenBLAS (libopenblas0-openmp) on LD_LIBRARY_PATH,
#       ATEN_CPU_CAPABILITY=avx2 (this machine has no AVX-512), glibc malloc with huge pages and
#       high mmap/trim thresholds (GLIBC_TUNABLES);
#   U = PyTorch untuned (the environment as found), once per configuration, for information.
# Rounds alternate A/B/A/B per configuration and mode; an FMA probe (fma_peak) measures the peak.
#
#   benchmarks/compare_torch.sh [--quick] [--rounds N] [--configs "a b"] [--build DIR] [--out DIR]
#
# Writes <out>/compare_torch.csv (one row per run) and <out>/compare_torch.png, prints a summary
# table and, as its last four lines: ratio pretrain / finetune / inference (median over rounds of
# loom img/s / tuned-PyTorch img/s, configuration b) and peak fraction (loom's pre-training
# GFLOP/s over the FMA peak, configuration b). --quick: configuration b only, one round, short runs,
# no untuned PyTorch (under 3 minutes on 2 quiet cores).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$repo/build-bench"
out=""
rounds=3
configs="a b"
warmup=1
steps=4
quick=0
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --rounds) rounds="$2"; shift ;;
    --configs) configs="$2"; shift ;;
    --build) build="$2"; shift ;;
    --out) out="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "compare_torch.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
untuned=1
if ((quick)); then rounds=1; configs="b"; warmup=1; steps=2; untuned=0; fi
out="${out:-$build/compare_torch}"
mkdir -p "$out"
py=/usr/bin/python3  # the system interpreter has Debian's torch and matplotlib
threads=2

echo "== building bench_mae_step and fma_peak in $build" >&2
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLOOM_CUDA=OFF -DLOOM_BUILD_EXAMPLES=OFF \
  -DLOOM_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j2 --target bench_mae_step fma_peak >/dev/null

openmp_blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [[ ! -e "$openmp_blas/libopenblas.so.0" ]]; then
  echo "compare_torch.sh: libopenblas0-openmp is not installed (scripts/deps.sh installs it); tuned PyTorch keeps the pthread OpenBLAS" >&2
  openmp_blas=""
fi
tuned_env=(env -u OPENBLAS_CORETYPE ATEN_CPU_CAPABILITY=avx2
           GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184)
[[ -n "$openmp_blas" ]] && tuned_env+=("LD_LIBRARY_PATH=$openmp_blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")

csv="$out/compare_torch.csv"
echo "round,config,mode,impl,batch,params,img_per_s,step_ms_median,peak_rss_mib,gflop_per_step,gflops,load1,busy_cores" >"$csv"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $cpu, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "== OPENBLAS_CORETYPE as found: ${OPENBLAS_CORETYPE:-<unset>}" >&2

peak_json="$("$build/benchmarks/fma_peak" --threads "$threads")"
echo "== FMA probe: $peak_json" >&2

# Machine-wide busy CPU seconds so far (/proc/stat: user, nice, system, irq, softirq, steal).
busy_s() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{printf "%.2f\n", ($2+$3+$4+$7+$8+$9)/hz}' /proc/stat; }
now_s() { date +%s.%N; }
# Runs a benchmark command and prints its JSON line with "busy_cores" added: the CPU time other
# processes used during the run, in cores (machine busy time minus the benchmark's own, over wall).
measured() {
  local b0 t0 json b1 t1
  b0="$(busy_s)"; t0="$(now_s)"
  json="$("$@" | tail -1)"
  b1="$(busy_s)"; t1="$(now_s)"
  "$py" -c '
import json, sys
r = json.loads(sys.argv[1])
b0, b1, t0, t1 = map(float, sys.argv[2:6])
r["busy_cores"] = round(max(0.0, (b1 - b0 - r.get("cpu_s", 0.0)) / (t1 - t0)), 2)
print(json.dumps(r))' "$json" "$b0" "$b1" "$t0" "$t1"
}

# Appends one CSV row from a JSON line of either benchmark.
record() {  # round impl json
  "$py" -c '
import json, sys, os
r = json.loads(sys.argv[3])
load = os.getloadavg()[0]
print(",".join(str(x) for x in [sys.argv[1], r["config"], r["mode"], sys.argv[2], r["batch"], r["params"], r["img_per_s"],
      r["step_ms_median"], r["peak_rss_mib"], r["gflop_per_step"], r["gflops"], round(load, 2), r["busy_cores"]]))' "$1" "$2" "$3" >>"$csv"
}

run_loom() {  # config mode
  measured "$build/benchmarks/bench_mae_step" --config "$1" --mode "$2" --threads "$threads" --warmup "$warmup" --steps "$steps"
}
run_torch() {  # config mode params label env...
  local config="$1" mode="$2" params="$3" label="$4"
  shift 4
  measured "$@" "$py" "$repo/benchmarks/mae_step_torch.py" --config "$config" --mode "$mode" --threads "$threads" \
    --warmup "$warmup" --steps "$steps" --expect-params "$params" --label "$label"
}
params_of() { "$py" -c 'import json,sys; print(json.loads(sys.argv[1])["params"])' "$1"; }
field() { "$py" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
img_per_s() { "$py" -c 'import json,sys; print(json.loads(sys.argv[1])["img_per_s"])' "$1"; }

for config in $configs; do
  for mode in pretrain finetune inference; do
    for ((r = 1; r <= rounds; ++r)); do
      a="$(run_loom "$config" "$mode")"
      record "$r" loom "$a"
      b="$(run_torch "$config" "$mode" "$(params_of "$a")" pytorch_tuned "${tuned_env[@]}")"
      record "$r" pytorch_tuned "$b"
      echo "   $config $mode round $r: loom $(img_per_s "$a") img/s, tuned PyTorch $(img_per_s "$b") img/s (other processes: $(field "$a" busy_cores), $(field "$b" busy_cores) cores)" >&2
    done
    if ((untuned)); then
      u="$(run_torch "$config" "$mode" "$(params_of "$a")" pytorch_untuned env)"
      record 1 pytorch_untuned "$u"
    fi
  done
done

"$py" "$repo/benchmarks/compare_summary.py" "$csv" "$out/compare_torch.png" "$peak_json"
