#!/usr/bin/env bash
# Compile (never run) the `cuda` feature of finetune on a machine with no GPU and no system CUDA.
# The CUDA 13.0 compiler, headers and runtime come from NVIDIA's PyPI wheels, pinned and
# sha256-checked. The CUDA 12 wheels (nvidia-cuda-nvcc-cu12, every 12.x release) hold ptxas and
# libnvvm but no `nvcc`, so CUDA 12 cannot be had this way; the CUDA 13 wheels (no -cu12 suffix)
# lay out a toolkit under nvidia/cu13 (bin/nvcc, nvvm/bin/cicc, include/, lib/).
# candle-kernels builds its PTX and its static MoE/GGUF kernels with nvcc; cudarc reads the CUDA
# version from `nvcc --version`; nvidia-smi is absent, so CUDA_COMPUTE_CAP must be set.
# Only the library is built: linking a test binary needs libcuda.so (the driver), which no wheel
# ships. Nothing runs on a GPU. Needs python3 with venv, unzip, sha256sum, a C++ compiler (g++).
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)

fail() { echo "cuda check FAILED: $*" >&2; exit 1; }
trap 'fail "command failed at line $LINENO (see above)"' ERR

[ "$(uname -sm)" = "Linux x86_64" ] || fail "the pinned wheels are for Linux x86_64, not $(uname -sm)"
# A new Debian machine may lack unzip and a C++ compiler (nvcc's host compiler): install them.
need=()
command -v unzip >/dev/null || need+=(unzip)
command -v g++ >/dev/null || need+=(g++)
if [ ${#need[@]} -gt 0 ]; then
  echo "cuda check: installing ${need[*]}"
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null || fail "apt-get install ${need[*]} failed"
fi
for tool in python3 unzip sha256sum g++; do
  command -v "$tool" >/dev/null || fail "$tool is missing"
done

cache=${CUDA_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hora-ci/cuda-13.0}
wheels="$cache/wheels"
root="$cache/root"
mkdir -p "$wheels"

# Exact versions and the sha256 of each wheel as published on PyPI.
cat > "$cache/SHA256SUMS" <<'EOF'
56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03  nvidia_cuda_nvcc-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0  nvidia_nvvm-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl
2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4  nvidia_cuda_crt-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548  nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649  nvidia_cuda_cccl-13.0.85-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
EOF

if ! (cd "$wheels" && sha256sum --quiet -c "$cache/SHA256SUMS" >/dev/null 2>&1); then
  # pip only to download; its own venv so that an externally managed Python is left alone.
  [ -x "$cache/venv/bin/pip" ] || python3 -m venv "$cache/venv" || fail "python3 -m venv failed (python3-venv missing?)"
  "$cache/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 || fail "pip download of the CUDA wheels failed"
  (cd "$wheels" && sha256sum -c "$cache/SHA256SUMS") || fail "a CUDA wheel does not match its pinned sha256"
fi

rm -rf "$root"
mkdir -p "$root"
while read -r _ wheel; do
  unzip -q -o "$wheels/$wheel" -d "$root" || fail "unzip $wheel failed"
done < "$cache/SHA256SUMS"
toolkit="$root/nvidia/cu13"
[ -x "$toolkit/bin/nvcc" ] && [ -x "$toolkit/nvvm/bin/cicc" ] || fail "no nvcc/cicc in $toolkit"
echo "cuda check: toolkit ready in $toolkit after $(($(date +%s) - start)) s"

export CUDA_HOME="$toolkit"                       # cudarc's link search, cudaforge's nvcc fallback
export PATH="$toolkit/bin:$PATH"                  # nvcc (cudarc runs `nvcc --version`)
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}   # no nvidia-smi: sm_80 (A100) unless told
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}  # parallel nvcc jobs in candle-kernels' build
nvcc --version | tail -2

cargo build -p finetune --features cuda --lib -j "${CUDA_CI_JOBS:-2}" \
  || fail "cargo build -p finetune --features cuda --lib (compute capability $CUDA_COMPUTE_CAP)"
trap - ERR
echo "cuda check passed: finetune --features cuda compiles for sm_$CUDA_COMPUTE_CAP with CUDA 13.0 from PyPI ($(($(date +%s) - start)) s; nothing was run on a GPU)"
