#!/usr/bin/env bash
# fetch-llamacpp.sh installs llama.cpp, as the prebuilt CPU binaries of the
# npm package node-llama-cpp, into a folder, for the opt-in tests of
# models/gguf that run the GGUF files sora writes in llama.cpp itself:
#
#   scripts/fetch-llamacpp.sh [DEST]          # DEST defaults to .llamacpp in the repo root
#   SORA_LLAMACPP_DIR=$PWD/.llamacpp go test ./models/gguf/ -run LlamaCpp
#
# Needs npm and node (18 or newer). node-llama-cpp is pinned to 3.21.1 and
# its linux-x64 (or linux-arm64) binaries package with it; both tarballs'
# sha256 are checked before anything is installed, so a republished
# package cannot change what the tests run. Other platforms are refused.
# The package's install script (which would download or build llama.cpp)
# is not run, and its optional GPU packages (CUDA, Vulkan: hundreds of MB)
# are not installed: the tests run on the CPU. DEST holds about 80 MB of
# third-party files; it gets a .gitignore of its own so that nothing in it
# is committed.
#
# The driver scripts/llamacpp/run.mjs loads a GGUF file and prints JSON
# (tokenizations, greedy continuations, next-token probabilities); the Go
# test calls it with node and SORA_LLAMACPP_DIR=DEST.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.llamacpp}
version=3.21.1

for tool in npm node; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "fetch-llamacpp: $tool is not installed" >&2
		exit 1
	fi
done
case "$(uname -s)/$(uname -m)" in
Linux/x86_64)
	bins=linux-x64
	bins_sha=4b5b65a8b2611d8af94349b02d815c0f424a30a0a19aef2be5db25ecfef6730f
	;;
Linux/aarch64 | Linux/arm64)
	bins=linux-arm64
	bins_sha=2c4271d060429701d27c7b0fd5ba8e83b37d36c427faf97d54d003d5d73b62dd
	;;
*)
	echo "fetch-llamacpp: no pinned llama.cpp binaries for $(uname -s)/$(uname -m) (linux x86_64 and arm64 only)" >&2
	exit 1
	;;
esac
main_sha=7a231d6bafa14142a1cbed9893d4ec5bc6041b2a5f5939a623accaab4203c11f

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# check FILE SHA256: fails unless FILE has that sha256.
check() {
	local got
	got=$(sha256sum "$1" | cut -d' ' -f1)
	if [[ $got != "$2" ]]; then
		echo "fetch-llamacpp: $(basename "$1"): sha256 $got, want $2" >&2
		exit 1
	fi
}

(cd "$work" && npm pack --silent "node-llama-cpp@$version" "@node-llama-cpp/$bins@$version" >/dev/null)
check "$work/node-llama-cpp-$version.tgz" "$main_sha"
check "$work/node-llama-cpp-$bins-$version.tgz" "$bins_sha"

# A package.json of its own keeps npm from looking for one above DEST.
if [[ ! -f $dest/package.json ]]; then
	echo '{"name": "sora-llamacpp-harness", "private": true}' >"$dest/package.json"
fi
printf '*\n' >"$dest/.gitignore"
npm install --prefix "$dest" --no-audit --no-fund --ignore-scripts --omit=optional --save-exact \
	"$work/node-llama-cpp-$version.tgz" "$work/node-llama-cpp-$bins-$version.tgz" >/dev/null

# The binaries must load: ask the driver for llama.cpp's system info.
if ! SORA_LLAMACPP_DIR="$dest" node "$root/scripts/llamacpp/run.mjs" --info >/dev/null; then
	echo "fetch-llamacpp: node-llama-cpp installed in $dest but its llama.cpp binaries do not load here" >&2
	exit 1
fi
echo "npm node-llama-cpp@$version with @node-llama-cpp/$bins@$version (sha256-checked tarballs)" >"$dest/SOURCE"
echo "fetch-llamacpp: llama.cpp (node-llama-cpp $version, $bins) in $dest"
echo "export SORA_LLAMACPP_DIR=$dest"
