#!/usr/bin/env bash
# Installs what is missing, configures, builds and runs the whole test suite (CTest).
# Usage: bash scripts/test.sh            (build dir: build/, override with LOOM_BUILD_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
loom_install_deps
build="${LOOM_BUILD_DIR:-build}"
# Benchmarks are not tests (their scripts build them); C++ is compiled at -O1 (the tests check
# values, not speed; main.sh builds the trainers at -O3); the kernels are compiled to PTX for one
# architecture: CI has no GPU, and benchmarks/gpu/run.sh builds machine code for the card at hand.
# All three keep build + tests well within 15 minutes on 2 cores (docs/build.md).
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
  -DLOOM_BUILD_BENCHMARKS=OFF -DCMAKE_CUDA_ARCHITECTURES=80-virtual
cmake --build "$build" -j "$(loom_jobs)"
ctest --test-dir "$build" --output-on-failure -j "$(loom_jobs)"
