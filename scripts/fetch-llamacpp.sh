#!/usr/bin/env bash
# fetch-llamacpp.sh installs llama.cpp, as the prebuilt CPU binaries of the
# npm package node-llama-cpp, into a folder, for the opt-in tests of
# models/gguf that run the GGUF files sora writes in llama.cpp itself:
#
#   scripts/fetch-llamacpp.sh [DEST]          # DEST defaults to .llamacpp in the repo root
#   SORA_LLAMACPP_DIR=$PWD/.llamacpp go test ./models/gguf/ -run LlamaCpp
#
# Needs npm and node (18 or newer). node-llama-cpp is pinned to 3.21.1 and
# so is every package it depends on: scripts/llamacpp/package-lock.json
# records each one's version and sha512, which "npm ci" checks (it refuses
# a package whose tarball differs). The linux-x64 (or linux-arm64)
# binaries package, an optional dependency that the lock file cannot pin
# for one platform alone, is fetched with "npm pack", its sha256 checked
# here, and unpacked beside them. So a republished package cannot change
# what the tests run. Other platforms are refused. No install script is
# run (they would download or build llama.cpp), and the optional GPU
# packages (CUDA, Vulkan: hundreds of MB) are not installed: the tests run
# on the CPU. Each registry request gives up after 60 s and one retry, so
# that a stalled network fails the script instead of holding up CI. DEST
# holds about 80 MB of third-party files; it gets a .gitignore of its own
# so that nothing in it is committed.
#
# To move to another node-llama-cpp version, change the version below and
# in scripts/llamacpp/package.json, regenerate the lock file there with
#   npm install --package-lock-only --ignore-scripts
# and update the binaries' sha256 (sha256sum of the "npm pack" tarball).
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

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A stalled registry would otherwise hold the script (and CI) for many
# minutes.
net=(--fetch-timeout=60000 --fetch-retries=1 --no-audit --no-fund)

# The binaries, for this platform alone.
if ! (cd "$work" && npm pack --silent "${net[@]}" "@node-llama-cpp/$bins@$version" >/dev/null); then
	echo "fetch-llamacpp: npm pack @node-llama-cpp/$bins@$version failed (no network, or the registry is unreachable?)" >&2
	exit 1
fi
tarball=$work/node-llama-cpp-$bins-$version.tgz
got=$(sha256sum "$tarball" | cut -d' ' -f1)
if [[ $got != "$bins_sha" ]]; then
	echo "fetch-llamacpp: $(basename "$tarball"): sha256 $got, want $bins_sha" >&2
	exit 1
fi

# node-llama-cpp and its dependencies, as the lock file pins them; a
# package.json of DEST's own keeps npm from looking for one above it.
cp "$root/scripts/llamacpp/package.json" "$root/scripts/llamacpp/package-lock.json" "$dest/"
printf '*\n' >"$dest/.gitignore"
if ! npm ci --prefix "$dest" "${net[@]}" --ignore-scripts --omit=optional >/dev/null; then
	echo "fetch-llamacpp: npm ci of scripts/llamacpp/package-lock.json (node-llama-cpp $version) into $dest failed" >&2
	exit 1
fi
pkg=$dest/node_modules/@node-llama-cpp/$bins
rm -rf "$pkg"
mkdir -p "$pkg"
if ! tar -xzf "$tarball" -C "$pkg" --strip-components=1; then
	echo "fetch-llamacpp: could not unpack $(basename "$tarball") into $pkg" >&2
	exit 1
fi

# The binaries must load: ask the driver for llama.cpp's system info.
if ! SORA_LLAMACPP_DIR="$dest" node "$root/scripts/llamacpp/run.mjs" --info >/dev/null; then
	echo "fetch-llamacpp: node-llama-cpp installed in $dest but its llama.cpp binaries do not load here" >&2
	exit 1
fi
echo "npm node-llama-cpp@$version (scripts/llamacpp/package-lock.json) with @node-llama-cpp/$bins@$version (sha256-checked)" >"$dest/SOURCE"
echo "fetch-llamacpp: llama.cpp (node-llama-cpp $version, $bins) in $dest"
echo "export SORA_LLAMACPP_DIR=$dest"
