#!/usr/bin/env bash
# Copies the header-only build dependencies (Eigen, Catch2 with their CMake configs) into .deps/usr,
# for GPU machines that have CUDA and CMake but no Debian -dev packages and no network.
# benchmarks/gpu/run.sh uses .deps/usr when it exists; .deps/ is git-ignored (carry it to the machine).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.deps/usr
rm -rf "$root/.deps"
mkdir -p "$dest/include" "$dest/share/eigen3" "$dest/lib/cmake"
cp -r /usr/include/eigen3 "$dest/include/"
cp -r /usr/share/eigen3/cmake "$dest/share/eigen3/"
cp -r /usr/include/catch2 "$dest/include/"
cp -r /usr/lib/cmake/Catch2 "$dest/lib/cmake/"
catch_lib=$(dpkg -L catch2 | grep 'libCatch2WithMain\.a$' | head -1 || true)
[ -n "$catch_lib" ] && mkdir -p "$dest/$(dirname "${catch_lib#/usr/}")" && cp "$catch_lib" "$dest/${catch_lib#/usr/}"
du -sh "$root/.deps"
