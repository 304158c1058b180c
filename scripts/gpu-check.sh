#!/usr/bin/env bash
# gpu-check.sh: check the CUDA backend on a machine with an NVIDIA GPU and no
# Go toolchain, using a sora binary cross-built elsewhere:
#
#   scripts/gpu-check.sh -p     # on the build machine (needs Go): builds
#                               # bin/sora and bin/cuda.test with CGO_ENABLED=0
#                               # and copies the fine-tune data into out/gpu-data
#   scripts/gpu-check.sh [-o OUTDIR] [-d DATADIR] [SORA_BINARY]   # on the GPU machine
#
# bin/ and out/ are ignored by git: a remote runner that copies the work
# tree must be told to bring them along. SORA_BINARY defaults to bin/sora.
# Every step's output, a summary.txt and a summary.json go to OUTDIR
# (default: $OUT when set, else a new temporary folder), so a remote run can
# bring them back. DATADIR holds models/stories260K and
# datasets/llm-adapters/ARC-Easy (default: $SORA_DATA, else the first of
# out/gpu-data, ../shared/data and shared/data that has them); without it
# the fine-tune step is skipped.
#
# Steps, each under its own time limit, 290 s at most in all
# ($GPU_CHECK_BUDGET):
#   1. nvidia-smi -L                      (information only)
#   2. sora backends                      (the cuda line must not say unavailable)
#   3. sora conformance --backend cuda    (every case must pass)
#  3b. bin/cuda.test -test.run '^TestGPU' (the backend's GPU tests, if built:
#                                          pool steady state, TF32 bound, Upload
#                                          consuming its source, two ScatterAdds
#                                          unsynchronised, the 2^31 index boundary
#                                          (17 GB; skipped with less free), the
#                                          device's memory filled then MatMuls,
#                                          long-row and offset/degenerate shapes
#                                          against the CPU backend, a bfloat16
#                                          MatMul's scratch reused at once,
#                                          fused attention against float64 (two
#                                          packings issued unsynchronised too) and,
#                                          at B=4 H=16 T=2048 D=64, against the
#                                          MatMul+Softmax composition, whose
#                                          time and memory ratios are recorded
#                                          as the attention line, and the
#                                          kernels' registers and local memory
#                                          (none allowed) as attn-kernels, and
#                                          the row and element-wise kernels'
#                                          registers and resident blocks as
#                                          row-kernels; about 15 s)
#   4. PyTorch reference                  (torch.mm FP32 rate at n = 1024, 4096 and
#                                          the device-to-device copy bandwidth;
#                                          skipped without python3 and torch)
#   5. sora bench gemm --backend cuda --json --sizes 1024,4096
#                                         (pass: MatMul at n = 4096 within 5% of
#                                          cuBLAS measured by sora in the same
#                                          run; torch.mm of step 4 as fallback)
#   6. sora bench ops --backend cuda --json
#                                         (pass: every kernel at >= 70% of the
#                                          device-to-device copy sora measures in
#                                          the same run; step 4's as fallback)
#   7. sora finetune of stories260K on ARC-Easy (20 steps of 4 sequences of up
#      to 512 tokens, so that few rows are left out),
#      CPU then CUDA, same seed, if the binary has the subcommand (pass:
#      every logged training loss of the CUDA run within 2% + 0.01 of the
#      CPU run's)
#   8. sora bench train --backend cuda --methods lora,sora,full --seq 1024
#      --vocab 32000 --gradient-checkpointing (pass: each checkpointed run
#      ends at its plain run's loss, within 1e-3, with less tape memory;
#      the tokens/s and ratios are recorded)
#   9. end to end, the device against the CPU on stories260K: greedy
#      generation of 256 positions (pass: the same text), a fine-tune with
#      --packing and --base-dtype bf16 (pass: step 7's tolerance), and
#      "sora eval" of step 7's CPU adapter on 64 ARC-Easy test rows (pass:
#      the same prediction in at least 95% of rows, loss within 1%)
# The summary (PASS, FAIL or SKIP per step, with the key numbers) is printed
# last. The exit status is 1 when a step failed, 2 on bad usage, else 0.
set -u

usage() {
	sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

# prepare builds the binary and gathers the data, from the repository root.
prepare() {
	local root
	root=$(cd "$(dirname "$0")/.." && pwd) || exit 2
	cd "$root" || exit 2
	command -v go >/dev/null || { echo "gpu-check -p: no go toolchain here" >&2; exit 2; }
	CGO_ENABLED=0 go build -o bin/sora ./cmd/sora || { echo "gpu-check -p: build failed" >&2; exit 1; }
	CGO_ENABLED=0 go test -c -o bin/cuda.test ./backend/cuda || { echo "gpu-check -p: building the test binary failed" >&2; exit 1; }
	local src=${SORA_DATA:-../shared/data}
	if [ -f "$src/models/stories260K/stories260K.bin" ] && [ -f "$src/datasets/llm-adapters/ARC-Easy/train.json" ]; then
		mkdir -p out/gpu-data/models out/gpu-data/datasets/llm-adapters/ARC-Easy
		cp -r "$src/models/stories260K" out/gpu-data/models/
		cp "$src/datasets/llm-adapters/ARC-Easy/train.json" "$src/datasets/llm-adapters/ARC-Easy/test.json" out/gpu-data/datasets/llm-adapters/ARC-Easy/
		chmod -R u+w out/gpu-data
		echo "gpu-check -p: bin/sora built; data copied to out/gpu-data"
	else
		echo "gpu-check -p: bin/sora built; no data at $src (the fine-tune step will be skipped)"
	fi
	exit 0
}

outdir=${OUT:-}
datadir=${SORA_DATA:-}
while getopts "o:d:ph" opt; do
	case $opt in
	o) outdir=$OPTARG ;;
	d) datadir=$OPTARG ;;
	p) prepare ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
sora=${1:-bin/sora}

if [ ! -f "$sora" ]; then
	echo "gpu-check: no sora binary at $sora; build one with: CGO_ENABLED=0 go build -o bin/sora ./cmd/sora" >&2
	exit 2
fi
if [ ! -x "$sora" ]; then
	echo "gpu-check: $sora is not executable (chmod +x $sora)" >&2
	exit 2
fi
case $sora in /*) ;; *) sora=$PWD/$sora ;; esac

if [ -z "$outdir" ]; then
	outdir=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
fi
mkdir -p "$outdir" || { echo "gpu-check: cannot create $outdir" >&2; exit 2; }
if [ -z "$datadir" ]; then
	for d in out/gpu-data ../shared/data shared/data; do
		if [ -d "$d/models/stories260K" ]; then datadir=$d; break; fi
	done
fi

python=$(command -v python3 || true)
start=$(date +%s)
summary=()
failed=0

# record STEP STATUS SECONDS NOTE
record() {
	summary+=("$(printf '%-12s %-4s %5ss  %s' "$1" "$2" "$3" "$4")")
	[ "$2" = FAIL ] && failed=1
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$outdir/summary.tsv"
}

# The whole check stays within budget seconds: each step gets its own limit
# or what is left, whichever is less; a step with under 5 s left is not
# started (rc 125).
budget=${GPU_CHECK_BUDGET:-290}

# run NAME LIMIT CMD...: runs CMD with a time limit, output to $outdir/NAME.out
# (stdout) and NAME.err (stderr); sets rc and secs.
run() {
	local name=$1 limit=$2
	shift 2
	local left=$((budget - ($(date +%s) - start)))
	if [ $left -lt 5 ]; then
		echo "== $name: not started, the ${budget}s budget is spent" | tee "$outdir/$name.err"
		: >"$outdir/$name.out"
		rc=125 secs=0
		return
	fi
	[ $limit -gt $left ] && limit=$left
	echo "== $name: $* (limit ${limit}s)"
	local t0
	t0=$(date +%s)
	timeout --kill-after=5 "$limit" "$@" >"$outdir/$name.out" 2>"$outdir/$name.err"
	rc=$?
	secs=$(($(date +%s) - t0))
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		echo "   timed out after ${limit}s"
	fi
	tail -n 3 "$outdir/$name.out" | sed 's/^/   /'
	tail -n 3 "$outdir/$name.err" | sed 's/^/   ! /'
}

: >"$outdir/summary.tsv"
echo "gpu-check: binary $sora, output in $outdir"

# 1. The GPU, for the record.
if command -v nvidia-smi >/dev/null; then
	run nvidia-smi 10 nvidia-smi -L
	record nvidia-smi INFO "$secs" "$(head -n 1 "$outdir/nvidia-smi.out")"
else
	record nvidia-smi SKIP 0 "nvidia-smi not found"
fi

# 2. The backends.
run backends 15 "$sora" backends
cudaline=$(grep -E '^cuda[[:space:]]' "$outdir/backends.out" || true)
if [ $rc -ne 0 ]; then
	record backends FAIL "$secs" "exit status $rc"
elif [ -z "$cudaline" ] || echo "$cudaline" | grep -q unavailable; then
	record backends FAIL "$secs" "${cudaline:-no cuda line}"
else
	record backends PASS "$secs" "$(echo "$cudaline" | cut -c1-150)"
fi

# 3. Conformance.
run conformance 90 "$sora" conformance --backend cuda
last=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$outdir/conformance.out" "$outdir/conformance.err" | tail -n 1 | sed 's/^[^:]*://')
if [ $rc -eq 0 ]; then
	record conformance PASS "$secs" "${last:-exit 0}"
else
	record conformance FAIL "$secs" "exit status $rc; ${last:-see conformance.out}"
fi

# 3b. The backend's own GPU tests, when a test binary was cross-built
# beside sora (scripts/gpu-check.sh -p builds bin/cuda.test).
cudatest=$(dirname "$sora")/cuda.test
if [ -x "$cudatest" ]; then
	run gpu-tests 60 "$cudatest" -test.run '^TestGPU' -test.v
	if [ $rc -eq 0 ] && grep -q -- '--- PASS: TestGPU' "$outdir/gpu-tests.out"; then
		record gpu-tests PASS "$secs" "$(grep -E -- '--- (PASS|FAIL|SKIP)' "$outdir/gpu-tests.out" | tr -s ' ' | cut -d' ' -f2,3 | paste -sd ' ')"
	elif [ $rc -eq 0 ]; then
		record gpu-tests FAIL "$secs" "the GPU tests skipped: $(grep -m1 'no usable CUDA device' "$outdir/gpu-tests.out" | cut -c1-150)"
	else
		record gpu-tests FAIL "$secs" "exit status $rc; see gpu-tests.out"
	fi
	# TestGPUAttention's comparison of fused and unfused attention.
	att=$(grep -m1 -o 'fused attention B=.*' "$outdir/gpu-tests.out" || true)
	if [ -n "$att" ]; then
		record attention INFO 0 "$(echo "$att" | cut -c1-300)"
	fi
	# And packed (segmented) attention against the documents run apart.
	packed=$(grep -m1 -o 'packed attention B=.*' "$outdir/gpu-tests.out" || true)
	if [ -n "$packed" ]; then
		record packed-attention INFO 0 "$(echo "$packed" | cut -c1-300)"
	fi
	# And the registers and local memory the driver reports of the
	# attention kernels' code (local memory in attn_fwd/dq/dkdv fails the test).
	attres=$(grep -m1 -o 'attention kernels: .*' "$outdir/gpu-tests.out" || true)
	if [ -n "$attres" ]; then
		record attn-kernels INFO 0 "$(echo "$attres" | cut -c1-700)"
	fi
	# And the row and element-wise kernels' registers and resident blocks.
	rowres=$(grep -m1 -o 'row kernels: .*' "$outdir/gpu-tests.out" || true)
	if [ -n "$rowres" ]; then
		record row-kernels INFO 0 "$(echo "$rowres" | cut -c1-900)"
	fi
else
	record gpu-tests SKIP 0 "no $cudatest (build it with: CGO_ENABLED=0 go test -c -o bin/cuda.test ./backend/cuda)"
fi

# 4. The cuBLAS and copy references, through PyTorch.
ref="$outdir/torch-reference.json"
if [ -n "$python" ] && "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
	cat >"$outdir/torch-reference.py" <<'EOF'
# cuBLAS's own FP32 GEMM rate (torch.mm with TF32 off) and the device's
# copy bandwidth, timed with CUDA events, best of three rounds.
import json, sys, torch

torch.backends.cuda.matmul.allow_tf32 = False
dev = torch.device("cuda")
out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
       "cuda": torch.version.cuda, "gemm_gflops": {}}

def best_seconds(f, reps):
    f()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps):
            f()
        e.record()
        torch.cuda.synchronize()
        best = min(best, s.elapsed_time(e) / 1e3 / reps)
    return best

for n in (1024, 4096):
    a = torch.rand(n, n, device=dev) * 2 - 1
    b = torch.rand(n, n, device=dev) * 2 - 1
    c = torch.empty(n, n, device=dev)
    secs = best_seconds(lambda: torch.mm(a, b, out=c), 50 if n <= 1024 else 10)
    out["gemm_gflops"][str(n)] = 2 * n**3 / secs / 1e9

n = int(sys.argv[1])
x = torch.rand(n, device=dev)
y = torch.empty(n, device=dev)
secs = best_seconds(lambda: y.copy_(x), 20)
out["copy_elements"] = n
out["copy_gbps"] = 8 * n / secs / 1e9  # 4 bytes read + 4 written per element, as sora bench ops counts
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps(out))
EOF
	run torch-reference 40 "$python" "$outdir/torch-reference.py" 67108864 "$ref"
	if [ $rc -eq 0 ] && [ -s "$ref" ]; then
		record torch-ref INFO "$secs" "$("$python" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("torch.mm %.0f GFLOP/s at 4096, copy %.0f GB/s" % (r["gemm_gflops"]["4096"], r["copy_gbps"]))' "$ref")"
	else
		record torch-ref FAIL "$secs" "exit status $rc; see torch-reference.err"
		rm -f "$ref"
	fi
else
	record torch-ref SKIP 0 "no python3 with CUDA-enabled torch: no cuBLAS or copy reference"
fi

# compare SCRIPT ARGS...: runs a python comparison, prints its one-line
# verdict; status 0 pass, 1 fail.
compare() {
	"$python" - "$@" <<'EOF'
import json, sys
kind = sys.argv[1]
def lines(path):
    out = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out
def ref():
    try:
        return json.load(open(sys.argv[3]))
    except (IndexError, OSError, ValueError):
        return None
if kind == "gemm":
    rows = [r for r in lines(sys.argv[2]) if r.get("n") == 4096 and r.get("trans") == "NN"]
    if not rows:
        print("no n=4096 NN result in bench output"); sys.exit(1)
    got = rows[0]["gflops"]
    # sora measures cuBLAS itself in the same run (baseline "cublas"); the
    # torch.mm rate of step 4 is the fallback.
    if rows[0].get("baseline") in ("cublas", "vendor"):
        base, what = rows[0]["baseline_gflops"], "cuBLAS in the same run"
    elif ref() is not None:
        base, what = ref()["gemm_gflops"]["4096"], "torch.mm"
    else:
        print("no cuBLAS baseline in the bench output and no torch reference"); sys.exit(1)
    ratio = got / base
    print("MatMul %.0f GFLOP/s at 4096 = %.3f of %s's %.0f (need >= 0.95)" % (got, ratio, what, base))
    sys.exit(0 if ratio >= 0.95 else 1)
if kind == "ops":
    r0 = ref()
    worst, bad, copy = None, [], None
    for r in lines(sys.argv[2]):
        if r.get("baseline") == "device-copy":
            copy = r["baseline_gbps"]
        elif r0 is not None:
            copy = r0["copy_gbps"]
        else:
            print("no device-copy baseline in the bench output and no torch reference"); sys.exit(1)
        f = r["gbps"] / copy
        if worst is None or f < worst[1]:
            worst = (r["op"], f)
        if f < 0.70:
            bad.append("%s %.2f" % (r["op"], f))
    if worst is None:
        print("no results in bench output"); sys.exit(1)
    print("slowest %s at %.2f of copy %.0f GB/s%s" % (worst[0], worst[1], copy, "; below 0.70: " + ", ".join(bad) if bad else ""))
    sys.exit(1 if bad else 0)
if kind == "finetune":
    def losses(path):
        return {r["step"]: r["loss"] for r in lines(path) if r.get("loss") is not None}
    cpu, gpu = losses(sys.argv[2]), losses(sys.argv[3])
    steps = sorted(set(cpu) & set(gpu))
    if not steps:
        print("no common training steps in the two metrics.jsonl"); sys.exit(1)
    worst = max(steps, key=lambda s: abs(gpu[s] - cpu[s]) - 0.02 * abs(cpu[s]))
    ok = all(abs(gpu[s] - cpu[s]) <= 0.02 * abs(cpu[s]) + 0.01 for s in steps)
    print("%d steps; largest gap at step %d: cuda %.4f, cpu %.4f (tolerance 2%% + 0.01)" % (len(steps), worst, gpu[worst], cpu[worst]))
    sys.exit(0 if ok else 1)
if kind == "eval":
    a, b = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
    pa = {p["row"]: p["pred"] for p in a["predictions"]}
    pb = {p["row"]: p["pred"] for p in b["predictions"]}
    same = sum(1 for r in pa if pb.get(r) == pa[r])
    ok = same >= 0.95 * len(pa) and abs(a["loss"] - b["loss"]) <= 0.01 * abs(a["loss"])
    print("%d of %d predictions the same; accuracy cuda %.4f, cpu %.4f; loss cuda %.5f, cpu %.5f" % (same, len(pa), b["accuracy"], a["accuracy"], b["loss"], a["loss"]))
    sys.exit(0 if ok else 1)
if kind == "train":
    rs = lines(sys.argv[2])
    plain = {r["method"]: r for r in rs if not r.get("gradient_checkpointing")}
    gc = [r for r in rs if r.get("gradient_checkpointing")]
    if not gc:
        print("no checkpointed runs in bench output"); sys.exit(1)
    notes, ok = [], True
    for r in gc:
        p = plain.get(r["method"])
        same = p is not None and abs(r["final_loss"] - p["final_loss"]) <= 1e-3 * max(1, abs(p["final_loss"]))
        ok = ok and same and r["peak_tape_vs_plain"] < 1
        notes.append("%s %.0f tok/s, gc %.2fx time %.2fx tape%s" % (r["method"], p["tokens_per_s"] if p else 0,
                     r["step_time_vs_plain"], r["peak_tape_vs_plain"], "" if same else " (loss differs)"))
    print("; ".join(notes))
    sys.exit(0 if ok else 1)
EOF
}

# 5. GEMM.
run bench-gemm 60 "$sora" bench gemm --backend cuda --json --sizes 1024,4096 --trans NN
if [ $rc -ne 0 ]; then
	record bench-gemm FAIL "$secs" "exit status $rc; see bench-gemm.err"
else
	verdict=$(compare gemm "$outdir/bench-gemm.out" "$ref")
	if [ $? -eq 0 ]; then record bench-gemm PASS "$secs" "$verdict"; else record bench-gemm FAIL "$secs" "$verdict"; fi
fi

# 6. Element-wise and row kernels.
if "$sora" bench --help 2>&1 | grep -qE '^[[:space:]]+ops[[:space:]]'; then
	run bench-ops 45 "$sora" bench ops --backend cuda --json --n 67108864 --cols 4096 --time 500ms
	if [ $rc -ne 0 ]; then
		record bench-ops FAIL "$secs" "exit status $rc; see bench-ops.err"
	else
		verdict=$(compare ops "$outdir/bench-ops.out" "$ref")
		if [ $? -eq 0 ]; then record bench-ops PASS "$secs" "$verdict"; else record bench-ops FAIL "$secs" "$verdict"; fi
	fi
else
	record bench-ops SKIP 0 "this sora has no 'bench ops'"
fi

# 7. A short fine-tune, CPU against CUDA.
model=$datadir/models/stories260K
train=$datadir/datasets/llm-adapters/ARC-Easy/train.json
if ! "$sora" finetune --help >/dev/null 2>&1; then
	record finetune SKIP 0 "this sora has no 'finetune' subcommand"
elif [ -z "$datadir" ] || [ ! -f "$model/stories260K.bin" ] || [ ! -f "$train" ]; then
	record finetune SKIP 0 "no stories260K or ARC-Easy data (give -d DATADIR or set SORA_DATA)"
else
	ft=(finetune --model "$model/stories260K.bin" --tokenizer "$model/tok512.bin" --data "$train"
		--max-train 64 --max-len 512 --steps 20 --batch 4 --method sora --seed 7 --save-every 0)
	run finetune-cpu 40 "$sora" "${ft[@]}" --backend cpu --out "$outdir/finetune-cpu"
	cpurc=$rc cpusecs=$secs
	run finetune-cuda 40 "$sora" "${ft[@]}" --backend cuda --out "$outdir/finetune-cuda"
	total=$((cpusecs + secs))
	if [ $cpurc -ne 0 ]; then
		record finetune FAIL "$total" "the CPU run failed (exit $cpurc): no reference curve"
	elif [ $rc -ne 0 ]; then
		record finetune FAIL "$total" "the CUDA run failed (exit $rc); see finetune-cuda.err"
	elif [ -z "$python" ]; then
		record finetune SKIP "$total" "both ran; no python3 to compare metrics.jsonl"
	else
		verdict=$(compare finetune "$outdir/finetune-cpu/metrics.jsonl" "$outdir/finetune-cuda/metrics.jsonl")
		if [ $? -eq 0 ]; then record finetune PASS "$total" "$verdict"; else record finetune FAIL "$total" "$verdict"; fi
	fi
fi

# 8. Training steps on the device, plain and with gradient checkpointing.
if "$sora" bench train --help 2>&1 | grep -q -- '--gradient-checkpointing'; then
	run bench-train 60 "$sora" bench train --backend cuda --methods lora,sora,full --seq 1024 --vocab 32000 --batch 4 --gradient-checkpointing --json
	if [ $rc -ne 0 ]; then
		record bench-train FAIL "$secs" "exit status $rc; see bench-train.err"
	elif [ -z "$python" ]; then
		record bench-train INFO "$secs" "ran; no python3 to read the results"
	else
		verdict=$(compare train "$outdir/bench-train.out")
		if [ $? -eq 0 ]; then record bench-train PASS "$secs" "$verdict"; else record bench-train FAIL "$secs" "$verdict"; fi
	fi
else
	record bench-train SKIP 0 "this sora's bench train has no --gradient-checkpointing"
fi

# 9. End to end against the CPU.
if [ -z "$datadir" ] || [ ! -f "$model/stories260K.bin" ]; then
	record end-to-end SKIP 0 "no stories260K (give -d DATADIR or set SORA_DATA)"
else
	gen=(generate --model "$model/stories260K.bin" --tokenizer "$model/tok512.bin" --prompt "Once upon a time" --steps 256 --temperature 0)
	run generate-cpu 20 "$sora" "${gen[@]}" --backend cpu
	cpurc=$rc
	run generate-cuda 20 "$sora" "${gen[@]}" --backend cuda
	if [ $cpurc -ne 0 ] || [ $rc -ne 0 ]; then
		record generate FAIL "$secs" "exit status cpu $cpurc, cuda $rc; see generate-*.err"
	elif cmp -s "$outdir/generate-cpu.out" "$outdir/generate-cuda.out"; then
		record generate PASS "$secs" "the same $(wc -c <"$outdir/generate-cpu.out") bytes of greedy text"
	else
		record generate FAIL "$secs" "the texts differ: $(cmp "$outdir/generate-cpu.out" "$outdir/generate-cuda.out" | head -n 1)"
	fi
	if [ -n "${ft+x}" ] && [ -n "$python" ]; then
		run packed-cpu 40 "$sora" "${ft[@]}" --packing --base-dtype bf16 --backend cpu --out "$outdir/packed-cpu"
		cpurc=$rc
		run packed-cuda 40 "$sora" "${ft[@]}" --packing --base-dtype bf16 --backend cuda --out "$outdir/packed-cuda"
		if [ $cpurc -ne 0 ] || [ $rc -ne 0 ]; then
			record packed-bf16 FAIL "$secs" "exit status cpu $cpurc, cuda $rc; see packed-*.err"
		else
			verdict=$(compare finetune "$outdir/packed-cpu/metrics.jsonl" "$outdir/packed-cuda/metrics.jsonl")
			if [ $? -eq 0 ]; then record packed-bf16 PASS "$secs" "$verdict"; else record packed-bf16 FAIL "$secs" "$verdict"; fi
		fi
	fi
	test=$datadir/datasets/llm-adapters/ARC-Easy/test.json
	if [ -f "$test" ] && [ -d "$outdir/finetune-cpu/adapter" ] && [ -n "$python" ]; then
		ev=(eval --model "$model/stories260K.bin" --tokenizer "$model/tok512.bin" --data "$test" --adapter "$outdir/finetune-cpu/adapter" --max-eval 64)
		run eval-cpu 30 "$sora" "${ev[@]}" --backend cpu --json "$outdir/eval-cpu.json"
		cpurc=$rc
		run eval-cuda 30 "$sora" "${ev[@]}" --backend cuda --json "$outdir/eval-cuda.json"
		if [ $cpurc -ne 0 ] || [ $rc -ne 0 ]; then
			record eval FAIL "$secs" "exit status cpu $cpurc, cuda $rc; see eval-*.err"
		else
			verdict=$(compare eval "$outdir/eval-cpu.json" "$outdir/eval-cuda.json")
			if [ $? -eq 0 ]; then record eval PASS "$secs" "$verdict"; else record eval FAIL "$secs" "$verdict"; fi
		fi
	else
		record eval SKIP 0 "no ARC-Easy test.json, no step-7 CPU adapter, or no python3"
	fi
fi

elapsed=$(($(date +%s) - start))
{
	echo
	echo "gpu-check summary ($elapsed s in all; outputs in $outdir)"
	printf '%s\n' "${summary[@]}"
	if [ $failed -eq 0 ]; then echo "result: no step failed"; else echo "result: FAILED"; fi
} | tee "$outdir/summary.txt"
if [ -n "$python" ]; then
	"$python" - "$outdir/summary.tsv" "$outdir/summary.json" "$elapsed" <<'EOF'
import json, sys
steps = [dict(zip(("step", "status", "seconds", "note"), l.rstrip("\n").split("\t"))) for l in open(sys.argv[1]) if l.strip()]
json.dump({"seconds": int(sys.argv[3]), "steps": steps}, open(sys.argv[2], "w"), indent=1)
EOF
fi
exit $failed
