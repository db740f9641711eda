#!/usr/bin/env bash
# Installs what is missing, builds loom and runs the main job.
# Usage: bash scripts/main.sh            (build dir: build/, override with LOOM_BUILD_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
loom_install_deps
build="${LOOM_BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLOOM_BUILD_TESTS=OFF
cmake --build "$build" -j "$(loom_jobs)" --target loom_demo
"$build/examples/loom_demo" "$@"
