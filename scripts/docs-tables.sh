#!/usr/bin/env bash
# docs-tables.sh runs every fine-tuning method on stories260K with BoolQ and
# with CoLA, as docs/finetune.md describes ("Every method on BoolQ",
# "Classification: CoLA with MCC"), and prints the two tables from the runs'
# run.json and spectrum.json, so that the docs can be re-measured with the
# current build in one go.
#
# Usage: scripts/docs-tables.sh [-o DIR] [boolq] [cola]
#   -o DIR   where the runs go (default: a temporary folder, removed after)
# Needs ../shared/data beside the repository and about 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=""
if [[ "${1:-}" == "-o" ]]; then out=$2; shift 2; fi
tasks=("$@")
[[ ${#tasks[@]} -eq 0 ]] && tasks=(boolq cola)
data=../shared/data
if [[ ! -d $data ]]; then
	echo "docs-tables.sh: $data is missing (the shared data beside the repository)" >&2
	exit 1
fi
if [[ -z $out ]]; then
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
go build -o "$out/sora" ./cmd/sora
model=$data/models/stories260K/stories260K.bin
tok=$data/models/stories260K/tok512.bin
methods=(lora dora dora-peft prediag sora preortho postortho oft lora+ full)

# extra prints the flags a method needs beyond the shared ones: OFT's
# blocks must divide the 172-wide feed-forward input, and full fine-tuning
# takes a smaller learning rate.
extra() {
	case $1 in
	oft) echo "--rank 4 --lr 2e-3" ;;
	full) echo "--lr 2e-4" ;;
	*) echo "--lr 2e-3" ;;
	esac
}

table() { # task
	python3 - "$out/$1" "$1" "${methods[@]}" <<'PY'
import json, sys
root, task, methods = sys.argv[1], sys.argv[2], sys.argv[3:]
if task == "boolq":
    print("| method | trainable | held-out loss per answer token, zero-shot → fine-tuned | answer accuracy | majority baseline | ms/step | mean SVD entropy |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
else:
    print("| method | trainable | held-out loss, zero-shot → fine-tuned | accuracy | MCC | majority baseline | ms/step | mean SVD entropy |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for m in methods:
    r = json.load(open(f"{root}/{m}/run.json"))
    s = json.load(open(f"{root}/{m}/spectrum.json"))
    tr = f"{r['trainable_params']:,} ({100*r['trainable_params']/r['total_params']:.1f}%)"
    loss = f"{r['zero_shot']['loss']:.4f} → {r['final']['loss']:.4f}"
    ent = f"{s['mean_svd_entropy']:.3f}"
    ms = f"{r['ms_per_step']:.0f}"
    name = "loraplus" if m == "lora+" else m
    if task == "boolq":
        print(f"| {name} | {tr} | {loss} | {r['answer_accuracy']:.4f} | {r['majority_baseline_accuracy']:.4f} | {ms} | {ent} |")
    else:
        f = r['final']
        print(f"| {name} | {tr} | {loss} | {f['accuracy']:.4f} | {f['mcc']:.4f} | {r['majority_baseline_accuracy']:.4f} | {ms} | {ent} |")
PY
}

for task in "${tasks[@]}"; do
	for m in "${methods[@]}"; do
		case $task in
		boolq) args=(--data "$data/datasets/llm-adapters/boolq/train.json" --eval-data "$data/datasets/llm-adapters/boolq/test.json"
			--max-train 2000 --max-eval 300) ;;
		cola) args=(--task classify --data "$data/datasets/cola/in_domain_train.tsv" --eval-data "$data/datasets/cola/in_domain_dev.tsv") ;;
		*) echo "docs-tables.sh: unknown task $task (want boolq or cola)" >&2; exit 2 ;;
		esac
		echo "== $task $m" >&2
		# shellcheck disable=SC2046
		"$out/sora" finetune --model "$model" --tokenizer "$tok" "${args[@]}" --method "$m" $(extra "$m") \
			--out "$out/$task/$m" >"$out/$task-$m.log" 2>&1 || { tail "$out/$task-$m.log" >&2; exit 1; }
	done
	echo
	echo "$task ($(date -u +%Y-%m-%d), $(uptime | sed 's/.*load average: //'))"
	table "$task"
done
