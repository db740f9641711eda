#!/usr/bin/env bash
# Installs what is missing, configures, builds and runs the whole test suite (CTest).
# Usage: bash scripts/test.sh            (build dir: build/, override with LOOM_BUILD_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
loom_install_deps
build="${LOOM_BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(loom_jobs)"
ctest --test-dir "$build" --output-on-failure -j "$(loom_jobs)"
