#!/usr/bin/env bash
# Installs the Debian packages loom needs that are not installed yet (sourced by main.sh and test.sh).
# Needs root or sudo; does nothing when everything is present.
loom_install_deps() {
  # libopenmpi-dev + openmpi-bin: data-parallel training (loom::mpi, docs/distributed.md)
  # libopenblas0-openmp: the OpenMP OpenBLAS of tuned PyTorch in benchmarks/compare_torch.sh (its
  # alternative has a lower priority than the pthread build, so the system default is unchanged)
  local packages=(build-essential cmake libeigen3-dev catch2 libtiff-dev libstb-dev libopenmpi-dev openmpi-bin
                  libopenblas0-openmp "$@")
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then return 0; fi
  echo "loom: installing missing Debian packages: ${missing[*]}"
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Number of parallel build jobs: all cores.
loom_jobs() { nproc 2>/dev/null || echo 2; }
