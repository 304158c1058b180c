#!/usr/bin/env bash
# gpu-check.sh: check the CUDA backend on a machine with an NVIDIA GPU and no
# Go toolchain, using a sora binary cross-built elsewhere:
#
#   scripts/gpu-check.sh -p     # on the build machine (needs Go): builds
#                               # bin/sora and bin/cuda.test with CGO_ENABLED=0
#                               # for linux/amd64 (GOOS and GOARCH from the
#                               # environment override it: GOARCH=arm64 for a
#                               # GH200), copies the test data into
#                               # out/gpu-data and says what to copy over
#   scripts/gpu-check.sh [-o OUTDIR] [-d DATADIR] [SORA_BINARY]   # on the GPU machine
#
# bin/ and out/ are ignored by git: a remote runner that copies the work
# tree must be told to bring them along (scripts/, bin/sora, bin/cuda.test
# and out/gpu-data, in the same layout). SORA_BINARY defaults to bin/sora,
# from the current folder, else from the folder above this script's. Before
# the steps "SORA_BINARY version" must run here; a binary that does not (one
# built for another OS or architecture) stops the check with status 2.
# Every step's output, a summary.txt and a summary.json go to OUTDIR
# (default: $OUT when set, else a new temporary folder), so a remote run can
# bring them back. DATADIR holds models/stories260K,
# datasets/llm-adapters/ARC-Easy and datasets/cola (default: $SORA_DATA,
# else the first of out/gpu-data, ../shared/data and shared/data that has
# stories260K, looked for from the current folder, then from the folder
# above this script's); without it the fine-tune steps are skipped.
#
# Steps, each under its own time limit, 290 s at most in all
# ($GPU_CHECK_BUDGET; a step not started, or stopped, for want of time is
# a SKIP and the result says the check was incomplete):
#   1. nvidia-smi -L                      (information only)
#   2. sora backends                      (the cuda line must not say
#                                          unavailable; if it does, every
#                                          later step is a SKIP)
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
#  3c. SORA_CUDA_PTX=1 sora conformance --backend cuda --run softmax
#                                         (the kernels compiled to PTX and
#                                          compiled by the driver at load, the
#                                          path taken where NVRTC is older than
#                                          the GPU; the softmax cases must pass,
#                                          and the kernel cache, a fresh folder,
#                                          must hold the PTX afterwards)
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
#      generation of 256 positions (pass: the same text), a fine-tune of
#      CoLA sentences (--task classify, 5 steps of 16) with --packing and
#      --base-dtype bf16 (pass: step 7's tolerance against the CPU's packed
#      run, and fewer positions than an unpacked CPU run of the same
#      tokens), and "sora eval" of step 7's CPU adapter on 64 ARC-Easy test
#      rows (pass: the same prediction in at least 95% of rows, loss within
#      1%)
# Steps 5-9 but the generation need python3 to judge their outputs;
# without it they run and are a SKIP. The summary (PASS, FAIL or SKIP per
# step, with the key numbers) is printed last. The exit status is 1 when a
# step failed, 2 on bad usage or a binary that does not run here, 3 when
# none failed but the budget ran out before some step was done, else 0.
set -u

usage() {
	sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

# The repository root as the script sees it: the folder above its own. A
# check run from elsewhere finds its binary and data there.
root=$(cd "$(dirname "$0")/.." && pwd) || exit 2

# prepare builds the binaries for the GPU machine and gathers the data, from
# the repository root. It runs on the build machine, which may be a Mac:
# nothing here needs more than bash 3.2.
prepare() {
	local src=${SORA_DATA:-$root/../shared/data}
	case $src in /*) ;; *) src=$PWD/$src ;; esac
	cd "$root" || exit 2
	command -v go >/dev/null || { echo "gpu-check -p: no go toolchain here" >&2; exit 2; }
	# The GPU machine is not this one: a binary for the host (a Mac's
	# Mach-O arm64, say) would not run there.
	local goos=${GOOS:-linux} goarch=${GOARCH:-amd64}
	echo "gpu-check -p: building for $goos/$goarch (GOOS/GOARCH; the default is linux/amd64)"
	CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -o bin/sora ./cmd/sora ||
		{ echo "gpu-check -p: building bin/sora failed" >&2; exit 1; }
	CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go test -c -o bin/cuda.test ./backend/cuda ||
		{ echo "gpu-check -p: building bin/cuda.test failed" >&2; exit 1; }
	local rev
	rev=$(go version -m bin/sora 2>/dev/null | awk '$2 == "vcs.revision" { r = substr($3, 1, 12) } $2 == "vcs.modified" && $3 == "true" { m = " with uncommitted changes" } END { if (r != "") print "commit " r m }')
	if [ -z "$rev" ] && rev=$(git rev-parse --short=12 HEAD 2>/dev/null); then
		# Built with -buildvcs=false (GOFLAGS): the tree's commit instead.
		[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && rev="$rev with uncommitted changes"
		rev="commit $rev"
	fi
	echo "gpu-check -p: built bin/sora and bin/cuda.test for $goos/$goarch${rev:+ from $rev}"

	local copied=() missing=()
	[ -d out/gpu-data ] && chmod -R u+w out/gpu-data
	if [ -f "$src/models/stories260K/stories260K.bin" ]; then
		mkdir -p out/gpu-data/models
		cp -r "$src/models/stories260K" out/gpu-data/models/ && copied+=(models/stories260K)
	else
		missing+=(models/stories260K)
	fi
	if [ -f "$src/datasets/llm-adapters/ARC-Easy/train.json" ]; then
		mkdir -p out/gpu-data/datasets/llm-adapters/ARC-Easy
		cp "$src/datasets/llm-adapters/ARC-Easy/train.json" "$src/datasets/llm-adapters/ARC-Easy/test.json" out/gpu-data/datasets/llm-adapters/ARC-Easy/ &&
			copied+=(datasets/llm-adapters/ARC-Easy)
	else
		missing+=(datasets/llm-adapters/ARC-Easy)
	fi
	if [ -f "$src/datasets/cola/in_domain_train.tsv" ]; then
		mkdir -p out/gpu-data/datasets/cola
		cp "$src/datasets/cola/in_domain_train.tsv" out/gpu-data/datasets/cola/ && copied+=(datasets/cola/in_domain_train.tsv)
	else
		missing+=(datasets/cola/in_domain_train.tsv)
	fi
	[ -d out/gpu-data ] && chmod -R u+w out/gpu-data
	if [ ${#copied[@]} -gt 0 ]; then
		echo "gpu-check -p: copied from $src into out/gpu-data: ${copied[*]}"
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		echo "gpu-check -p: not found in $src (set SORA_DATA; the steps that need them will be skipped): ${missing[*]}"
	fi
	echo
	echo "Copy these to the GPU machine, keeping the layout (paths from $root):"
	echo "  scripts/ bin/sora bin/cuda.test out/gpu-data/"
	echo "for instance:  tar czf gpu-check.tgz scripts bin/sora bin/cuda.test out/gpu-data"
	echo "then there, in the folder that holds them:  scripts/gpu-check.sh -o OUTDIR"
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
if [ $# -eq 1 ]; then
	sora=$1
elif [ -f bin/sora ] || [ ! -f "$root/bin/sora" ]; then
	sora=bin/sora
else
	sora=$root/bin/sora
fi

if [ ! -f "$sora" ]; then
	echo "gpu-check: no sora binary at $sora; build one on a machine with Go with: scripts/gpu-check.sh -p" >&2
	exit 2
fi
if [ ! -x "$sora" ]; then
	echo "gpu-check: $sora is not executable (chmod +x $sora)" >&2
	exit 2
fi
case $sora in /*) ;; *) sora=$PWD/$sora ;; esac

# A binary built for another OS or architecture fails every step for that one
# reason (a shell reads it as a script: 'Syntax error: "(" unexpected'), so
# it is tried once, first.
version=$(timeout 20 "$sora" version 2>&1)
vrc=$?
if [ $vrc -ne 0 ]; then
	case $(uname -m) in
	x86_64 | amd64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) arch=$(uname -m) ;;
	esac
	{
		echo "gpu-check: $sora does not run on this machine ($(uname -s) $(uname -m)): \"$sora version\" exited with status $vrc:"
		printf '%s\n' "$version" | head -n 3 | sed 's/^/  /'
		if command -v file >/dev/null; then
			echo "  file says: $(file -b "$sora" | cut -c1-120)"
		fi
		echo "Was it built for another OS or architecture? Build one for this machine with, on the build machine:"
		echo "  GOOS=linux GOARCH=$arch scripts/gpu-check.sh -p"
	} >&2
	exit 2
fi
version=$(printf '%s\n' "$version" | head -n 1)

if [ -z "$outdir" ]; then
	outdir=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
fi
mkdir -p "$outdir" || { echo "gpu-check: cannot create $outdir" >&2; exit 2; }
if [ -z "$datadir" ]; then
	for d in out/gpu-data ../shared/data shared/data "$root/out/gpu-data" "$root/../shared/data" "$root/shared/data"; do
		if [ -d "$d/models/stories260K" ]; then datadir=$d; break; fi
	done
fi

python=$(command -v python3 || true)
start=$(date +%s)
summary=()
steps=() statuses=() seconds=() notes=()
failed=0
incomplete=()

# The whole check stays within budget seconds: each step gets its own limit
# or what is left, whichever is less; a run with under 5 s left is not
# started. A step one of whose runs was not started, or was stopped at the
# budget's end rather than its own limit, is recorded as a SKIP that says
# so, and the check as incomplete.
budget=${GPU_CHECK_BUDGET:-290}
budgethit=

# record STEP STATUS SECONDS NOTE. After a run cut by the budget, the step's
# own conclusion (drawn from missing output) gives way to budgethit's.
record() {
	local status=$2 note=$4
	if [ -n "$budgethit" ]; then
		status=SKIP note=$budgethit
		incomplete+=("$1")
		budgethit=
	fi
	# One line per step in summary.tsv and the summary: no tabs, newlines
	# or other control characters from a tool's output.
	note=$(printf '%s' "$note" | tr '\t\n\r' '   ' | tr -d '\000-\037\177')
	summary+=("$(printf '%-12s %-4s %5ss  %s' "$1" "$status" "$3" "$note")")
	steps+=("$1") statuses+=("$status") seconds+=("$3") notes+=("$note")
	[ "$status" = FAIL ] && failed=1
	printf '%s\t%s\t%s\t%s\n' "$1" "$status" "$3" "$note" >>"$outdir/summary.tsv"
}

# run NAME LIMIT CMD...: runs CMD with a time limit, output to $outdir/NAME.out
# (stdout) and NAME.err (stderr); sets rc and secs, and budgethit when the
# budget kept it from starting (rc 125) or stopped it.
run() {
	local name=$1 limit=$2 cut=0
	shift 2
	local left=$((budget - ($(date +%s) - start)))
	if [ $left -lt 5 ]; then
		echo "== $name: not started, the ${budget}s budget is spent" | tee "$outdir/$name.err"
		: >"$outdir/$name.out"
		rc=125 secs=0
		budgethit="not started: budget spent (GPU_CHECK_BUDGET=${budget}s)"
		return
	fi
	if [ $limit -gt $left ]; then limit=$left cut=1; fi
	echo "== $name: $* (limit ${limit}s)"
	local t0
	t0=$(date +%s)
	timeout --kill-after=5 "$limit" "$@" >"$outdir/$name.out" 2>"$outdir/$name.err"
	rc=$?
	secs=$(($(date +%s) - t0))
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		if [ $cut -eq 1 ]; then
			echo "   stopped after ${limit}s, the rest of the ${budget}s budget"
			budgethit="stopped after ${limit}s: budget spent (GPU_CHECK_BUDGET=${budget}s)"
		else
			echo "   timed out after ${limit}s"
		fi
	fi
	tail -n 3 "$outdir/$name.out" | sed 's/^/   /'
	# An error is usually stated in the first lines of stderr (what follows
	# may be a list of the places tried, or a stack), a summary in the last.
	local n
	n=$(wc -l <"$outdir/$name.err")
	if [ "$n" -le 8 ]; then
		sed 's/^/   ! /' "$outdir/$name.err"
	else
		head -n 4 "$outdir/$name.err" | sed 's/^/   ! /'
		echo "   ! ... ($((n - 7)) more lines in $name.err)"
		tail -n 3 "$outdir/$name.err" | sed 's/^/   ! /'
	fi
}

# failnote NAME RC: why run NAME failed, for a summary note: its exit
# status, the first line of its output that reads like an error (stderr's,
# else stdout's; failing that the first line, or after a time-out the last,
# of whichever has text), and the file that line is in.
failnote() {
	local what="exit status $2" f line=
	local errors='^(panic|fatal error)|--- FAIL|^FAIL|^sora[a-z -]*: |[Ee]rror|unavailable|not found|cannot'
	if [ "$2" -eq 124 ] || [ "$2" -eq 137 ]; then
		what="timed out (exit $2)"
	else
		for f in "$outdir/$1.err" "$outdir/$1.out"; do
			line=$(grep -m1 -E "$errors" "$f" 2>/dev/null) && break
		done
	fi
	if [ -z "$line" ]; then
		for f in "$outdir/$1.err" "$outdir/$1.out"; do
			grep -q '[^[:space:]]' "$f" 2>/dev/null || continue
			if [ "$2" -eq 124 ] || [ "$2" -eq 137 ]; then
				line="last output: $(grep '[^[:space:]]' "$f" | tail -n 1)"
			else
				line=$(grep -m1 '[^[:space:]]' "$f")
			fi
			break
		done
	fi
	if [ -z "$line" ]; then
		printf '%s, with no output (%s.out and %s.err are empty)' "$what" "$1" "$1"
		return
	fi
	printf '%s: %s; see %s' "$what" "$(printf '%s' "$line" | cut -c1-240)" "${f##*/}"
}

# compare KIND ARGS...: runs a python comparison, prints its one-line
# verdict; status 0 pass, 1 fail.
compare() {
	"$python" - "$@" <<'EOF'
import json, re, sys
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
def losses(path):
    return {r["step"]: r["loss"] for r in lines(path) if r.get("loss") is not None}
def loss_gap(cpu, gpu):
    # Every common step's loss within 2% + 0.01 of the CPU's: (ok, note).
    steps = sorted(set(cpu) & set(gpu))
    if not steps:
        return False, "no common training steps in the two metrics.jsonl"
    worst = max(steps, key=lambda s: abs(gpu[s] - cpu[s]) - 0.02 * abs(cpu[s]))
    ok = all(abs(gpu[s] - cpu[s]) <= 0.02 * abs(cpu[s]) + 0.01 for s in steps)
    return ok, "%d steps; largest gap at step %d: cuda %.4f, cpu %.4f (tolerance 2%% + 0.01)" % (len(steps), worst, gpu[worst], cpu[worst])
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
            worst = (r["op"], f, copy)  # sora times each kernel's baseline beside it
        if f < 0.70:
            bad.append("%s %.2f" % (r["op"], f))
    if worst is None:
        print("no results in bench output"); sys.exit(1)
    print("slowest %s at %.2f of copy %.0f GB/s%s" % (worst[0], worst[1], worst[2], "; below 0.70: " + ", ".join(bad) if bad else ""))
    sys.exit(1 if bad else 0)
if kind == "finetune":
    ok, note = loss_gap(losses(sys.argv[2]), losses(sys.argv[3]))
    print(note)
    sys.exit(0 if ok else 1)
if kind == "packed":
    # argv: the packed CPU and CUDA runs' metrics.jsonl, the unpacked run's,
    # then the packed CUDA and unpacked runs' stdout (their last line states
    # the share of padding).
    ok, note = loss_gap(losses(sys.argv[2]), losses(sys.argv[3]))
    packed, plain = lines(sys.argv[3]), lines(sys.argv[4])
    def total(rows, key):
        return sum(r[key] for r in rows) if rows and all(key in r for r in rows) else None
    def padding(path):
        m = re.findall(r"([0-9.]+)% of positions padding", open(path).read())
        return float(m[-1]) if m else None
    pp, up = padding(sys.argv[5]), padding(sys.argv[6])
    pads = "padding %s%% packed, %s%% unpacked" % (pp, up)
    pt, ut = total(packed, "tokens"), total(plain, "tokens")
    if pt is not None and ut is not None and pt != ut:
        ok = False
        note += "; the packed run trained %d tokens, the unpacked %d: not the same rows" % (pt, ut)
    pn, un = total(packed, "positions"), total(plain, "positions")
    if pn is not None and un is not None:
        fewer = pn < un
        note += "; cuda packed into %d positions, unpacked %d (%s)" % (pn, un, pads)
    elif pp is not None and up is not None:
        fewer = pp < up
        note += "; no positions in metrics.jsonl; %s" % pads
    else:
        fewer = False
        note += "; neither positions in metrics.jsonl nor a padding line in the output: packing not measured"
    if not fewer:
        note += ": --packing packed nothing"
    print(note)
    sys.exit(0 if ok and fewer else 1)
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
print("unknown comparison " + kind); sys.exit(1)
EOF
}

# judge STEP SECONDS WHAT KIND ARGS...: records STEP as compare KIND ARGS
# finds it; without python3 (minimal CUDA runtime images have none), a SKIP
# that says WHAT ran and was not judged.
judge() {
	local step=$1 secs=$2 what=$3
	shift 3
	if [ -z "$python" ]; then
		record "$step" SKIP "$secs" "ran ($what); no python3 here to judge it"
		return
	fi
	local verdict
	# One line, the verdict's (or, should the comparison crash, the error's).
	verdict=$(compare "$@" 2>&1)
	if [ $? -eq 0 ]; then
		record "$step" PASS "$secs" "$verdict"
	else
		verdict=$(printf '%s\n' "$verdict" | grep '[^[:space:]]' | tail -n 1)
		record "$step" FAIL "$secs" "${verdict:-the comparison failed with no message}"
	fi
}

: >"$outdir/summary.tsv"
echo "gpu-check: binary $sora ($version), output in $outdir"

# 1. The GPU, for the record.
if command -v nvidia-smi >/dev/null; then
	run nvidia-smi 10 nvidia-smi -L
	record nvidia-smi INFO "$secs" "$(head -n 1 "$outdir/nvidia-smi.out")"
else
	record nvidia-smi SKIP 0 "nvidia-smi not found"
fi

# 2. The backends. Every later step runs on cuda, so without it they would
# all fail for this one reason: they are skipped instead.
nocuda=
run backends 15 "$sora" backends
cudaline=$(grep -E '^cuda[[:space:]]' "$outdir/backends.out" || true)
if [ -n "$budgethit" ]; then
	record backends SKIP "$secs" "$budgethit"
elif [ -z "$cudaline" ] || echo "$cudaline" | grep -q unavailable; then
	note=${cudaline:-no cuda line}
	if [ $rc -ne 0 ]; then note="$(failnote backends $rc); $note"; fi
	record backends FAIL "$secs" "$note"
	nocuda="cuda unavailable (see backends)"
elif [ $rc -ne 0 ]; then
	record backends FAIL "$secs" "$(failnote backends $rc)"
else
	record backends PASS "$secs" "$(echo "$cudaline" | cut -c1-150)"
fi

# 3. Conformance.
conformance_step() {
	run conformance 90 "$sora" conformance --backend cuda
	local last
	last=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$outdir/conformance.out" "$outdir/conformance.err" | tail -n 1 | sed 's/^[^:]*://')
	if [ $rc -eq 0 ]; then
		record conformance PASS "$secs" "${last:-exit 0}"
	else
		record conformance FAIL "$secs" "${last:+$last; }$(failnote conformance $rc)"
	fi
}

# 3c. The kernels as PTX that the driver compiles at load (Options.PTX):
# the path a GPU newer than NVRTC takes, run on one NVRTC knows. A subset
# of the suite: the whole module is compiled and loaded either way. A
# kernel cache of its own, so that NVRTC compiles the PTX afresh and the
# file it leaves there shows that the PTX path was taken (a run that
# ignored SORA_CUDA_PTX would pass the cases all the same).
ptx_step() {
	local cache last ptx
	cache=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-ptx.XXXXXX")
	run ptx 60 env SORA_CUDA_PTX=1 SORA_CUDA_CACHE="$cache" "$sora" conformance --backend cuda --run softmax
	last=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$outdir/ptx.out" "$outdir/ptx.err" | tail -n 1 | sed 's/^[^:]*://')
	ptx=$(cd "$cache" && ls kernels-compute_*.ptx 2>/dev/null | head -n 1)
	rm -rf "$cache"
	if [ $rc -eq 0 ] && [ -n "$ptx" ]; then
		record ptx PASS "$secs" "${last:-exit 0}; ${ptx%-*}.ptx"
	elif [ $rc -eq 0 ]; then
		record ptx FAIL "$secs" "${last:+$last; }no kernels-compute_*.ptx in its kernel cache: the kernels were not compiled to PTX"
	else
		record ptx FAIL "$secs" "${last:+$last; }$(failnote ptx $rc)"
	fi
}

# 3b. The backend's own GPU tests, when a test binary was cross-built
# beside sora (scripts/gpu-check.sh -p builds bin/cuda.test).
gpu_tests_step() {
	local cudatest
	cudatest=$(dirname "$sora")/cuda.test
	if [ ! -x "$cudatest" ]; then
		record gpu-tests SKIP 0 "no $cudatest (build it with: scripts/gpu-check.sh -p)"
		return
	fi
	run gpu-tests 60 "$cudatest" -test.run '^TestGPU' -test.v
	if [ $rc -eq 0 ] && grep -q -- '--- PASS: TestGPU' "$outdir/gpu-tests.out"; then
		record gpu-tests PASS "$secs" "$(grep -E -- '--- (PASS|FAIL|SKIP)' "$outdir/gpu-tests.out" | tr -s ' ' | cut -d' ' -f2,3 | paste -sd ' ')"
	elif [ $rc -eq 0 ]; then
		record gpu-tests FAIL "$secs" "the GPU tests skipped: $(grep -m1 'no usable CUDA device' "$outdir/gpu-tests.out" | cut -c1-150)"
	else
		record gpu-tests FAIL "$secs" "$(failnote gpu-tests $rc)"
	fi
	# TestGPUAttention's comparison of fused and unfused attention.
	local att
	att=$(grep -m1 -o 'fused attention B=.*' "$outdir/gpu-tests.out" || true)
	if [ -n "$att" ]; then
		record attention INFO 0 "$(echo "$att" | cut -c1-300)"
	fi
	# And packed (segmented) attention against the documents run apart.
	att=$(grep -m1 -o 'packed attention B=.*' "$outdir/gpu-tests.out" || true)
	if [ -n "$att" ]; then
		record packed-attention INFO 0 "$(echo "$att" | cut -c1-300)"
	fi
	# And the registers and local memory the driver reports of the
	# attention kernels' code (local memory in attn_fwd/dq/dkdv fails the test).
	att=$(grep -m1 -o 'attention kernels: .*' "$outdir/gpu-tests.out" || true)
	if [ -n "$att" ]; then
		record attn-kernels INFO 0 "$(echo "$att" | cut -c1-700)"
	fi
	# And the row and element-wise kernels' registers and resident blocks.
	att=$(grep -m1 -o 'row kernels: .*' "$outdir/gpu-tests.out" || true)
	if [ -n "$att" ]; then
		record row-kernels INFO 0 "$(echo "$att" | cut -c1-900)"
	fi
}

# 4. The cuBLAS and copy references, through PyTorch.
ref="$outdir/torch-reference.json"
torch_step() {
	if [ -z "$python" ]; then
		record torch-ref SKIP 0 "no python3: no cuBLAS or copy reference from torch"
		return
	fi
	if ! "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
		record torch-ref SKIP 0 "no CUDA-enabled torch for $python: no cuBLAS or copy reference"
		return
	fi
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
		record torch-ref FAIL "$secs" "$(failnote torch-reference $rc)"
		rm -f "$ref"
	fi
}

# 5. GEMM.
gemm_step() {
	run bench-gemm 60 "$sora" bench gemm --backend cuda --json --sizes 1024,4096 --trans NN
	if [ $rc -ne 0 ]; then
		record bench-gemm FAIL "$secs" "$(failnote bench-gemm $rc)"
	else
		judge bench-gemm "$secs" "bench-gemm.out" gemm "$outdir/bench-gemm.out" "$ref"
	fi
}

# 6. Element-wise and row kernels.
ops_step() {
	if ! "$sora" bench --help 2>&1 | grep -qE '^[[:space:]]+ops[[:space:]]'; then
		record bench-ops SKIP 0 "this sora has no 'bench ops'"
		return
	fi
	run bench-ops 45 "$sora" bench ops --backend cuda --json --n 67108864 --cols 4096 --time 500ms
	if [ $rc -ne 0 ]; then
		record bench-ops FAIL "$secs" "$(failnote bench-ops $rc)"
	else
		judge bench-ops "$secs" "bench-ops.out" ops "$outdir/bench-ops.out" "$ref"
	fi
}

# 7. A short fine-tune, CPU against CUDA.
model=$datadir/models/stories260K
finetune_step() {
	local train=$datadir/datasets/llm-adapters/ARC-Easy/train.json
	if ! "$sora" finetune --help >/dev/null 2>&1; then
		record finetune SKIP 0 "this sora has no 'finetune' subcommand"
		return
	elif [ -z "$datadir" ] || [ ! -f "$model/stories260K.bin" ] || [ ! -f "$train" ]; then
		record finetune SKIP 0 "no stories260K or ARC-Easy data (give -d DATADIR or set SORA_DATA)"
		return
	fi
	local ft=(finetune --model "$model/stories260K.bin" --tokenizer "$model/tok512.bin" --data "$train"
		--max-train 64 --max-len 512 --steps 20 --batch 4 --method sora --seed 7 --save-every 0)
	run finetune-cpu 40 "$sora" "${ft[@]}" --backend cpu --out "$outdir/finetune-cpu"
	local cpurc=$rc total=$secs
	run finetune-cuda 40 "$sora" "${ft[@]}" --backend cuda --out "$outdir/finetune-cuda"
	total=$((total + secs))
	if [ $cpurc -ne 0 ]; then
		record finetune FAIL "$total" "the CPU run failed, no reference curve: $(failnote finetune-cpu $cpurc)"
	elif [ $rc -ne 0 ]; then
		record finetune FAIL "$total" "the CUDA run failed: $(failnote finetune-cuda $rc)"
	else
		judge finetune "$total" "both runs: finetune-cpu/ and finetune-cuda/metrics.jsonl" finetune "$outdir/finetune-cpu/metrics.jsonl" "$outdir/finetune-cuda/metrics.jsonl"
	fi
}

# 8. Training steps on the device, plain and with gradient checkpointing.
train_step() {
	if ! "$sora" bench train --help 2>&1 | grep -q -- '--gradient-checkpointing'; then
		record bench-train SKIP 0 "this sora's bench train has no --gradient-checkpointing"
		return
	fi
	run bench-train 60 "$sora" bench train --backend cuda --methods lora,sora,full --seq 1024 --vocab 32000 --batch 4 --gradient-checkpointing --json
	if [ $rc -ne 0 ]; then
		record bench-train FAIL "$secs" "$(failnote bench-train $rc)"
	else
		judge bench-train "$secs" "bench-train.out" train "$outdir/bench-train.out"
	fi
}

# pairnote CPUNAME CPURC CUDANAME CUDARC: the failure of a CPU/CUDA pair of runs.
pairnote() {
	local note=
	[ "$2" -ne 0 ] && note="the CPU run: $(failnote "$1" "$2")"
	[ "$4" -ne 0 ] && note="${note:+$note; }the CUDA run: $(failnote "$3" "$4")"
	printf '%s' "$note"
}

# 9. End to end against the CPU.
end_to_end_step() {
	if [ -z "$datadir" ] || [ ! -f "$model/stories260K.bin" ]; then
		record end-to-end SKIP 0 "no stories260K (give -d DATADIR or set SORA_DATA)"
		return
	fi
	local cpurc total
	local gen=(generate --model "$model/stories260K.bin" --tokenizer "$model/tok512.bin" --prompt "Once upon a time" --steps 256 --temperature 0)
	run generate-cpu 20 "$sora" "${gen[@]}" --backend cpu
	cpurc=$rc total=$secs
	run generate-cuda 20 "$sora" "${gen[@]}" --backend cuda
	total=$((total + secs))
	if [ $cpurc -ne 0 ] || [ $rc -ne 0 ]; then
		record generate FAIL "$total" "$(pairnote generate-cpu $cpurc generate-cuda $rc)"
	elif cmp -s "$outdir/generate-cpu.out" "$outdir/generate-cuda.out"; then
		record generate PASS "$total" "the same $(wc -c <"$outdir/generate-cpu.out") bytes of greedy text"
	else
		record generate FAIL "$total" "the texts differ: $(cmp "$outdir/generate-cpu.out" "$outdir/generate-cuda.out" | head -n 1)"
	fi

	# CoLA sentences are short: unpacked, half of a batch's positions are
	# padding; packed, almost none. The unpacked run is there to count
	# positions, which do not depend on the backend: the CPU's will do.
	local cola=$datadir/datasets/cola/in_domain_train.tsv
	if [ ! -f "$cola" ]; then
		record packed-bf16 SKIP 0 "no $cola (scripts/gpu-check.sh -p copies it into out/gpu-data)"
	else
		local pk=(finetune --model "$model/stories260K.bin" --tokenizer "$model/tok512.bin" --data "$cola" --task classify
			--max-train 64 --steps 5 --batch 16 --method sora --seed 7 --save-every 0 --base-dtype bf16)
		local packrc
		run packed-cpu 20 "$sora" "${pk[@]}" --packing --backend cpu --out "$outdir/packed-cpu"
		cpurc=$rc total=$secs
		run packed-cuda 20 "$sora" "${pk[@]}" --packing --backend cuda --out "$outdir/packed-cuda"
		packrc=$rc total=$((total + secs))
		run unpacked-cpu 20 "$sora" "${pk[@]}" --backend cpu --out "$outdir/unpacked-cpu"
		total=$((total + secs))
		if [ $cpurc -ne 0 ] || [ $packrc -ne 0 ]; then
			record packed-bf16 FAIL "$total" "$(pairnote packed-cpu $cpurc packed-cuda $packrc)"
		elif [ $rc -ne 0 ]; then
			record packed-bf16 FAIL "$total" "the unpacked run failed: $(failnote unpacked-cpu $rc)"
		else
			judge packed-bf16 "$total" "packed-cpu/, packed-cuda/ and unpacked-cpu/metrics.jsonl" packed \
				"$outdir/packed-cpu/metrics.jsonl" "$outdir/packed-cuda/metrics.jsonl" "$outdir/unpacked-cpu/metrics.jsonl" \
				"$outdir/packed-cuda.out" "$outdir/unpacked-cpu.out"
		fi
	fi

	local test=$datadir/datasets/llm-adapters/ARC-Easy/test.json
	if [ ! -f "$test" ]; then
		record eval SKIP 0 "no $test"
	elif [ ! -d "$outdir/finetune-cpu/adapter" ]; then
		case " ${incomplete[*]-} " in
		*" finetune "*) budgethit="not started: budget spent (GPU_CHECK_BUDGET=${budget}s) before step 7 made the adapter it evaluates" ;;
		esac
		record eval SKIP 0 "no adapter from step 7's CPU run"
	else
		local ev=(eval --model "$model/stories260K.bin" --tokenizer "$model/tok512.bin" --data "$test" --adapter "$outdir/finetune-cpu/adapter" --max-eval 64)
		run eval-cpu 30 "$sora" "${ev[@]}" --backend cpu --json "$outdir/eval-cpu.json"
		cpurc=$rc total=$secs
		run eval-cuda 30 "$sora" "${ev[@]}" --backend cuda --json "$outdir/eval-cuda.json"
		total=$((total + secs))
		if [ $cpurc -ne 0 ] || [ $rc -ne 0 ]; then
			record eval FAIL "$total" "$(pairnote eval-cpu $cpurc eval-cuda $rc)"
		else
			judge eval "$total" "eval-cpu.json and eval-cuda.json" eval "$outdir/eval-cpu.json" "$outdir/eval-cuda.json"
		fi
	fi
}

if [ -n "$nocuda" ]; then
	for s in conformance gpu-tests ptx torch-ref bench-gemm bench-ops finetune bench-train generate packed-bf16 eval; do
		record "$s" SKIP 0 "$nocuda"
	done
else
	conformance_step
	gpu_tests_step
	ptx_step
	torch_step
	gemm_step
	ops_step
	finetune_step
	train_step
	end_to_end_step
fi

elapsed=$(($(date +%s) - start))
missed="${#incomplete[@]} step(s) not started or stopped, the GPU_CHECK_BUDGET of ${budget}s spent: ${incomplete[*]-}"
if [ $failed -eq 1 ]; then
	result=failed resultline="result: FAILED"
	[ ${#incomplete[@]} -gt 0 ] && resultline="$resultline, and the check is incomplete: $missed"
elif [ ${#incomplete[@]} -gt 0 ]; then
	result=incomplete resultline="result: INCOMPLETE, no step failed but $missed"
else
	result=passed resultline="result: no step failed"
fi
{
	echo
	echo "gpu-check summary ($version; $elapsed s in all; outputs in $outdir)"
	printf '%s\n' "${summary[@]}"
	echo "$resultline"
} | tee "$outdir/summary.txt"

# summary.json without python3, which the GPU machine may not have.
jstr() {
	local s=${1//\\/\\\\}
	printf '"%s"' "${s//\"/\\\"}"
}
{
	printf '{\n "seconds": %d,\n "result": %s,\n "incomplete": [' "$elapsed" "$(jstr "$result")"
	sep=
	for s in "${incomplete[@]+"${incomplete[@]}"}"; do printf '%s%s' "$sep" "$(jstr "$s")"; sep=", "; done
	printf '],\n "version": %s,\n "steps": [' "$(jstr "$version")"
	sep=
	for i in "${!steps[@]}"; do
		printf '%s\n  {"step": %s, "status": %s, "seconds": %s, "note": %s}' "$sep" "$(jstr "${steps[$i]}")" \
			"$(jstr "${statuses[$i]}")" "$(jstr "${seconds[$i]}")" "$(jstr "${notes[$i]}")"
		sep=,
	done
	printf '\n ]\n}\n'
} >"$outdir/summary.json.tmp" && mv "$outdir/summary.json.tmp" "$outdir/summary.json"

if [ $failed -eq 1 ]; then exit 1; fi
if [ ${#incomplete[@]} -gt 0 ]; then exit 3; fi
exit 0
