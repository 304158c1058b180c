package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/refops"
	"github.com/sora-go/sora/internal/workpool"
)

func init() {
	registerBench(command{
		name:    "ops",
		summary: "element-wise and row kernels in GB/s next to the copy bandwidth of the same run",
		run:     runBenchOps,
	})
}

var benchOpsDoc = usageDoc{
	synopsis: "bench ops [--backend NAME] [-n N] [--cols C] [--threads N] [--ops LIST] [--time D] [--json]",
	description: "Times element-wise and row kernels of the chosen backend on N float32 elements (rows of C " +
		"elements for the row kernels) and reports each as GB/s of the memory it must at least move: every " +
		"operand read once and every output written once (for example 12 bytes per element for dst = a + b, " +
		"28 for an AdamW step). The baseline is the copy bandwidth measured in the same run, as 8 bytes per " +
		"element: on a backend that exposes the device's own copy (cuda: the driver's device-to-device copy), " +
		"that copy between two of the benchmark's N-element tensors, timed like the kernels and checked " +
		"(\"baseline\":\"device-copy\" in JSON); on any other backend, Go's copy of an equally long buffer on " +
		"the host, split over the same number of goroutines, which the same workers run as the CPU backend's " +
		"kernels (\"baseline\":\"copy\"). Each kernel has a baseline of its own, " +
		"timed in turns with it: three rounds of the copy, each followed by a round of the kernel, so that the " +
		"two meet the same state of a shared machine, where the bandwidth a copy reaches can change by 2x from " +
		"one second to the next (a copy timed once for the whole run judged even the copy kernel at 0.55 of " +
		"itself). Each result's copy GB/s is its own; the range goes to stderr (--json) or the table header, " +
		"with the host copy over one goroutine beside it where the baseline uses more (several goroutines " +
		"may copy at one's speed or at several times it, which decides what the fractions mean). " +
		"Each figure is the best of its three rounds, of at least D/3 (the copy's D/6), after a warm-up call. A few outputs of each op " +
		"are checked against a host computation first, so a broken kernel cannot report a speed. --threads " +
		"sets the CPU backend's threads (through $SORA_CPU_THREADS) and GOMAXPROCS; on a backend whose kernels and " +
		"baseline copy run on the device the threads key is left out (the table shows -). $" + cpuRowKernelsEnv + " " +
		"(avx512, avx2, neon or go) picks the CPU backend's row kernels instead of the fastest the CPU runs, so that " +
		"a machine with AVX-512 can time the AVX2 set too; the backend line printed first names the set in use " +
		"(\"rows avx2\"). With --json each result is one JSON object per line.",
	examples: []string{
		"sora bench ops",
		"sora bench ops --ops copy,add,silu,softmax,adamw --threads 2 --json",
		cpuRowKernelsEnv + "=avx2 sora bench ops --threads 1",
		"sora bench ops --backend cuda -n 67108864 --cols 4096 --json",
	},
}

// opsResult is one line of "sora bench ops --json".
type opsResult struct {
	Op            string `json:"op"`
	N             int    `json:"n"`
	Cols          int    `json:"cols"`
	Threads       int    `json:"threads,omitempty"` // 0 (left out) where nothing here has threads
	BytesPerElem  int    `json:"bytes_per_element"`
	GBPS          fixed1 `json:"gbps"`
	Baseline      string `json:"baseline"`
	BaselineGBPS  fixed1 `json:"baseline_gbps"`
	FractionOfCpy fixed2 `json:"fraction_of_copy"`
}

// benchOp is one kernel of "sora bench ops": bytes is the least traffic
// per element, run enqueues one call, and check compares a few outputs
// with the host (given the inputs it was set up with).
type benchOp struct {
	name  string
	bytes int
	run   func(env *opsEnv)
	check func(env *opsEnv) error
}

// opsEnv holds the operands shared by the kernels: x, y and z are rows×cols
// inputs, out an output of the same shape, w a row of cols and r a column
// of rows; hx, hy, hz, hw are the host copies of x, y, z and w.
type opsEnv struct {
	b              backend.Backend
	rows, cols     int
	x, y, z, out   backend.Tensor
	w, bias, r     backend.Tensor
	m, v           backend.Tensor // AdamW moments
	dw, db         backend.Tensor // accumulated parameter gradients of the norms
	hx, hy, hz, hw []float32
	hbias          []float32
	targets        []int32 // cross-entropy targets, one per row
}

func (env *opsEnv) n() int { return env.rows * env.cols }

// download returns out on the host.
func (env *opsEnv) download(t backend.Tensor) ([]float32, error) {
	h := make([]float32, t.Len())
	return h, env.b.Download(h, t)
}

// checkElementwise checks 64 random outputs of out against f of the inputs.
func checkElementwise(env *opsEnv, f func(i int) float64) error {
	got, err := env.download(env.out)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for s := 0; s < 64; s++ {
		i := rng.IntN(len(got))
		want := f(i)
		if d := math.Abs(float64(got[i]) - want); !(d <= 1e-5+1e-4*math.Abs(want)) {
			return fmt.Errorf("element %d = %g, want %g", i, got[i], want)
		}
	}
	return nil
}

// checkRow checks one random row of out against f(row of x, column).
func checkRow(env *opsEnv, f func(xs []float32, j int) float64) error {
	return checkRowAt(env, func(row, j int) float64 {
		return f(env.hx[row*env.cols:(row+1)*env.cols], j)
	})
}

// checkRowAt checks one random row of out against f(row, column), for
// kernels whose reference needs more than the row of x.
func checkRowAt(env *opsEnv, f func(row, j int) float64) error {
	got, err := env.download(env.out)
	if err != nil {
		return err
	}
	row := rand.New(rand.NewPCG(8, 8)).IntN(env.rows)
	for j := 0; j < env.cols; j++ {
		want, g := f(row, j), got[row*env.cols+j]
		if d := math.Abs(float64(g) - want); !(d <= 1e-5+1e-4*math.Abs(want)) {
			return fmt.Errorf("row %d, column %d = %g, want %g", row, j, g, want)
		}
	}
	return nil
}

// rowOf returns row r of a host rows×cols operand as float64.
func (env *opsEnv) rowOf(h []float32, r int) []float64 {
	out := make([]float64, env.cols)
	for j := range out {
		out[j] = float64(h[r*env.cols+j])
	}
	return out
}

// logSumExp returns log Σ exp(xs) in float64.
func logSumExp(xs []float64) float64 {
	mx := math.Inf(-1)
	for _, v := range xs {
		mx = math.Max(mx, v)
	}
	var s float64
	for _, v := range xs {
		s += math.Exp(v - mx)
	}
	return mx + math.Log(s)
}

// ceParams are the cross-entropy settings of the benchmark: no smoothing,
// no ignored rows and a unit gradient scale so the check sees full-size
// gradients.
var ceParams = backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 1}

var benchOps = []benchOp{
	{"copy", 8, func(e *opsEnv) { e.b.Copy(e.out, e.x, false) },
		func(e *opsEnv) error { return checkElementwise(e, func(i int) float64 { return float64(e.hx[i]) }) }},
	{"fill", 4, func(e *opsEnv) { e.b.Fill(e.out, 0.5) },
		func(e *opsEnv) error { return checkElementwise(e, func(int) float64 { return 0.5 }) }},
	{"add", 12, func(e *opsEnv) { e.b.Binary(backend.Add, e.out, e.x, e.y) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 { return float64(e.hx[i]) + float64(e.hy[i]) })
		}},
	{"mul", 12, func(e *opsEnv) { e.b.Binary(backend.Mul, e.out, e.x, e.y) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 { return float64(e.hx[i]) * float64(e.hy[i]) })
		}},
	{"add_row", 8, func(e *opsEnv) { e.b.Binary(backend.Add, e.out, e.x, e.w) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 { return float64(e.hx[i]) + float64(e.hw[i%e.cols]) })
		}},
	{"scale", 8, func(e *opsEnv) { e.b.Scale(e.out, e.x, 0.5) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 { return 0.5 * float64(e.hx[i]) })
		}},
	{"axpy", 12, func(e *opsEnv) { e.b.Axpy(e.out, 1e-3, e.x) }, nil},
	{"exp", 8, func(e *opsEnv) { e.b.Unary(backend.Exp, e.out, e.x) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 { return refops.Unary(backend.Exp, float64(e.hx[i])) })
		}},
	{"silu", 8, func(e *opsEnv) { e.b.Unary(backend.SiLU, e.out, e.x) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 { return refops.Unary(backend.SiLU, float64(e.hx[i])) })
		}},
	{"gelu", 8, func(e *opsEnv) { e.b.Unary(backend.GELU, e.out, e.x) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 { return refops.Unary(backend.GELU, float64(e.hx[i])) })
		}},
	{"silu_grad", 12, func(e *opsEnv) { e.b.UnaryGrad(backend.SiLU, e.out, e.x, e.y) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 { return float64(e.hy[i]) * refops.UnaryDeriv(backend.SiLU, float64(e.hx[i])) })
		}},
	{"gelu_grad", 12, func(e *opsEnv) { e.b.UnaryGrad(backend.GELU, e.out, e.x, e.y) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 { return float64(e.hy[i]) * refops.UnaryDeriv(backend.GELU, float64(e.hx[i])) })
		}},
	{"gelu_tanh", 8, func(e *opsEnv) { e.b.Unary(backend.GELUTanh, e.out, e.x) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 { return refops.Unary(backend.GELUTanh, float64(e.hx[i])) })
		}},
	{"gelu_tanh_grad", 12, func(e *opsEnv) { e.b.UnaryGrad(backend.GELUTanh, e.out, e.x, e.y) },
		func(e *opsEnv) error {
			return checkElementwise(e, func(i int) float64 {
				return float64(e.hy[i]) * refops.UnaryDeriv(backend.GELUTanh, float64(e.hx[i]))
			})
		}},
	{"sum_rows", 4, func(e *opsEnv) { e.b.ReduceRows(backend.Sum, e.r, e.x) }, nil},
	{"softmax", 8, func(e *opsEnv) { e.b.Softmax(e.out, e.x, backend.SoftmaxParams{}) },
		func(e *opsEnv) error {
			return checkRow(e, func(xs []float32, j int) float64 {
				mx := math.Inf(-1)
				for _, v := range xs {
					mx = math.Max(mx, float64(v))
				}
				var s float64
				for _, v := range xs {
					s += math.Exp(float64(v) - mx)
				}
				return math.Exp(float64(xs[j])-mx) / s
			})
		}},
	{"rmsnorm", 8, func(e *opsEnv) { e.b.RMSNorm(e.out, e.x, e.w, 1e-5) },
		func(e *opsEnv) error {
			return checkRow(e, func(xs []float32, j int) float64 {
				var ss float64
				for _, v := range xs {
					ss += float64(v) * float64(v)
				}
				return float64(xs[j]) / math.Sqrt(ss/float64(len(xs))+1e-5) * float64(e.hw[j])
			})
		}},
	{"layernorm", 8, func(e *opsEnv) { e.b.LayerNorm(e.out, e.x, e.w, e.bias, 1e-5) },
		func(e *opsEnv) error {
			return checkRowAt(e, func(r, j int) float64 {
				mean, rstd := refops.MeanInvStd(e.rowOf(e.hx, r), 1e-5)
				return (float64(e.hx[r*e.cols+j])-mean)*rstd*float64(e.hw[j]) + float64(e.hbias[j])
			})
		}},
	// The backward kernels read two operands and write one (12 bytes per
	// element); parameter gradients they accumulate are one row, negligible.
	// Softmax's backward takes z (values in [0, 1)) as its output y: the
	// formula does not need y to sum to 1 to be checked.
	{"softmax_grad", 12, func(e *opsEnv) { e.b.SoftmaxGrad(e.out, e.z, e.y, backend.SoftmaxParams{}) },
		func(e *opsEnv) error {
			return checkRowAt(e, func(r, j int) float64 {
				y, dy := e.rowOf(e.hz, r), e.rowOf(e.hy, r)
				var dot float64
				for k := range y {
					dot += y[k] * dy[k]
				}
				return y[j] * (dy[j] - dot)
			})
		}},
	{"rmsnorm_grad", 12, func(e *opsEnv) { e.b.RMSNormGrad(e.out, e.dw, e.x, e.w, e.y, 1e-5) }, checkRMSNormGrad},
	{"layernorm_grad", 12, func(e *opsEnv) { e.b.LayerNormGrad(e.out, e.dw, e.db, e.x, e.w, e.y, 1e-5) },
		checkLayerNormGrad},
	// The same with the norm's parameters frozen, as fine-tuning an
	// adapter leaves them: dx alone.
	{"rmsnorm_grad_frozen", 12, func(e *opsEnv) { e.b.RMSNormGrad(e.out, backend.Tensor{}, e.x, e.w, e.y, 1e-5) },
		checkRMSNormGrad},
	{"layernorm_grad_frozen", 12, func(e *opsEnv) {
		e.b.LayerNormGrad(e.out, backend.Tensor{}, backend.Tensor{}, e.x, e.w, e.y, 1e-5)
	}, checkLayerNormGrad},
	// Cross-entropy reads the logits once (its loss is one value per row);
	// its gradient reads them and writes dlogits.
	{"cross_entropy", 4, func(e *opsEnv) { e.b.CrossEntropy(e.r, e.x, e.targets, ceParams) },
		func(e *opsEnv) error {
			got, err := e.download(e.r)
			if err != nil {
				return err
			}
			rng := rand.New(rand.NewPCG(9, 9))
			for s := 0; s < 8; s++ {
				r := rng.IntN(e.rows)
				want := logSumExp(e.rowOf(e.hx, r)) - float64(e.hx[r*e.cols+int(e.targets[r])])
				if d := math.Abs(float64(got[r]) - want); !(d <= 1e-5+1e-4*math.Abs(want)) {
					return fmt.Errorf("loss of row %d = %g, want %g", r, got[r], want)
				}
			}
			return nil
		}},
	{"cross_entropy_grad", 8, func(e *opsEnv) { e.b.CrossEntropyGrad(e.out, e.x, e.targets, ceParams) },
		func(e *opsEnv) error {
			return checkRowAt(e, func(r, j int) float64 {
				x := e.rowOf(e.hx, r)
				want := math.Exp(x[j] - logSumExp(x))
				if j == int(e.targets[r]) {
					want--
				}
				return want
			})
		}},
	{"adamw", 28, func(e *opsEnv) {
		e.b.AdamW(e.out, e.y, e.m, e.v, backend.AdamWParams{LR: 1e-6, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 1})
	}, nil},
}

// checkRMSNormGrad checks a few of RMSNormGrad's dx against the host.
func checkRMSNormGrad(e *opsEnv) error {
	return checkRowAt(e, func(r, j int) float64 {
		x, dy := e.rowOf(e.hx, r), e.rowOf(e.hy, r)
		var ss, dot float64
		for k := range x {
			ss += x[k] * x[k]
			dot += float64(e.hw[k]) * dy[k] * x[k]
		}
		n := float64(len(x))
		rs := 1 / math.Sqrt(ss/n+1e-5)
		return rs*float64(e.hw[j])*dy[j] - x[j]*rs*rs*rs*dot/n
	})
}

// checkLayerNormGrad checks a few of LayerNormGrad's dx against the host.
func checkLayerNormGrad(e *opsEnv) error {
	return checkRowAt(e, func(r, j int) float64 {
		x, dy := e.rowOf(e.hx, r), e.rowOf(e.hy, r)
		mean, rstd := refops.MeanInvStd(x, 1e-5)
		n := float64(len(x))
		var mg, mgx float64
		for k := range x {
			g := float64(e.hw[k]) * dy[k]
			mg += g / n
			mgx += g * (x[k] - mean) * rstd / n
		}
		return rstd * (float64(e.hw[j])*dy[j] - mg - (x[j]-mean)*rstd*mgx)
	})
}

func runBenchOps(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench ops")
	name := addBackendFlag(fs)
	n := fs.Int("n", 4<<20, "`N` elements per operand")
	cols := fs.Int("cols", 1024, "row length `C` for the row kernels (softmax, norms, row sums, row broadcast); must divide N")
	threads := fs.Int("threads", 0, "`N` threads for the CPU backend and the host copy; 0 keeps the defaults ($"+cpuThreadsEnv+" or GOMAXPROCS)")
	names := make([]string, len(benchOps))
	for i, op := range benchOps {
		names[i] = op.name
	}
	opsFlag := fs.String("ops", strings.Join(names, ","), "comma-separated `LIST` of kernels")
	minTime := fs.Duration("time", time.Second, "measure each result for at least `D` in all")
	asJSON := fs.Bool("json", false, "print one JSON object per result instead of a table")
	if code, ok := parseFlags(fs, benchOpsDoc, args, stdout, stderr); !ok {
		return code
	}
	var selected []benchOp
	for _, f := range strings.Split(*opsFlag, ",") {
		f = strings.TrimSpace(f)
		found := false
		for _, op := range benchOps {
			if op.name == f {
				selected, found = append(selected, op), true
			}
		}
		if !found {
			fmt.Fprintf(stderr, "sora bench ops: --ops: unknown kernel %q (known: %s)\n", f, strings.Join(names, ", "))
			return exitUsage
		}
	}
	switch {
	case *n < 1 || *n > 1<<28:
		fmt.Fprintf(stderr, "sora bench ops: -n %d: want between 1 and %d elements\n", *n, 1<<28)
		return exitUsage
	case *cols < 1 || *n%*cols != 0:
		fmt.Fprintf(stderr, "sora bench ops: --cols %d: want a positive row length that divides -n %d\n", *cols, *n)
		return exitUsage
	case *threads < 0:
		fmt.Fprintf(stderr, "sora bench ops: --threads %d: want a positive number, or 0 for the defaults\n", *threads)
		return exitUsage
	case *minTime <= 0:
		fmt.Fprintf(stderr, "sora bench ops: --time %v: want a positive duration such as 1s\n", *minTime)
		return exitUsage
	}

	b, nthreads, release, code := openBenchBackend(*name, *threads, stderr)
	if b == nil {
		return code
	}
	defer release()

	env, err := newOpsEnv(b, *n / *cols, *cols)
	if err != nil {
		fmt.Fprintf(stderr, "sora bench ops: %v\n", err)
		return exitFailure
	}
	baseName, baseDesc := "copy", "host copy over "+plural(nthreads, "goroutine")
	var copyCall func() error
	if dc, ok := b.(deviceCopier); !ok {
		copyCall = hostCopier(*n, nthreads)
	} else {
		baseName, baseDesc = "device-copy", "the device's own device-to-device copy"
		// It copies z, not x as the copy kernel does: timed before each
		// kernel, a copy of x would make a copy kernel that does nothing
		// pass its check.
		copyCall = func() error {
			dc.DeviceCopy(env.out, env.z)
			return b.Sync()
		}
		// out starts with values drawn apart from z's, so a copy that
		// does nothing fails here, before it can set a baseline.
		err := copyCall()
		if err == nil {
			if err = checkElementwise(env, func(i int) float64 { return float64(env.hz[i]) }); err != nil {
				err = fmt.Errorf("the copy is wrong: %w", err)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "sora bench ops: baseline %s on backend %s: %v\n", baseName, b.Name(), err)
			return exitFailure
		}
		if _, ok := b.(backend.ThreadCounter); !ok {
			// Neither the kernels nor the baseline run on host
			// goroutines: there is no thread count to report.
			nthreads = 0
		}
	}
	// One goroutine's copy, shown beside the baseline: on a shared machine
	// several goroutines copy at one's speed in some states and at several
	// times it in others, which decides what the fractions mean.
	single := ""
	if baseName == "copy" && nthreads > 1 {
		secs, _ := timeCalls(*minTime, hostCopier(*n, 1))
		single = fmt.Sprintf(" (one goroutine: %.1f)", 8*float64(*n)/secs/1e9)
	}

	type measured struct {
		op         benchOp
		gbps, copy float64
	}
	var results []measured
	lo, hi := math.Inf(1), 0.0
	for _, op := range selected {
		if !b.Supports(opOf(op.name)) {
			fmt.Fprintf(stderr, "sora bench ops: %s: the %s backend does not support it; skipped\n", op.name, b.Name())
			continue
		}
		// Each kernel has its own baseline, timed in turns with it: the
		// bandwidth a copy reaches on a shared machine can change by 2x
		// from one second to the next, and a copy timed once for the
		// whole run would set fractions from another state than the
		// kernel met (even the copy kernel's own).
		secs, copySecs, err := timeBeside(*minTime, func() error {
			op.run(env)
			return b.Sync()
		}, copyCall)
		if err == nil && op.check != nil {
			err = op.check(env)
		}
		if err != nil {
			fmt.Fprintf(stderr, "sora bench ops: %s: %v\n", op.name, err)
			return exitFailure
		}
		m := measured{op, float64(op.bytes) * float64(*n) / secs / 1e9, 8 * float64(*n) / copySecs / 1e9}
		lo, hi = min(lo, m.copy), max(hi, m.copy)
		results = append(results, m)
	}
	copyRange := "no kernel run"
	if len(results) > 0 {
		copyRange = fmt.Sprintf("%.1f–%.1f GB/s", lo, hi)
	}

	const row = "%-21s %10v %6v %7v %11v %8v %11v %9v\n" // the longest op name fits
	if *asJSON {
		fmt.Fprintf(stderr, "# backend %s: %s\n# baseline %s: %s, timed in turns with each kernel: %s%s\n",
			b.Name(), deviceLine(b), baseName, baseDesc, copyRange, single)
	} else {
		fmt.Fprintf(stdout, "backend %s: %s\nbaseline: %s, timed in turns with each kernel: %s%s\n\n",
			b.Name(), deviceLine(b), baseDesc, copyRange, single)
		fmt.Fprintf(stdout, row, "op", "n", "cols", "threads", "bytes/elem", "GB/s", "copy GB/s", "of copy")
	}
	enc := json.NewEncoder(stdout)
	for _, m := range results {
		r := opsResult{Op: m.op.name, N: *n, Cols: *cols, Threads: nthreads, BytesPerElem: m.op.bytes,
			GBPS: fixed1(m.gbps), Baseline: baseName, BaselineGBPS: fixed1(m.copy), FractionOfCpy: fixed2(m.gbps / m.copy)}
		if *asJSON {
			if err := enc.Encode(r); err != nil {
				fmt.Fprintf(stderr, "sora bench ops: %v\n", err)
				return exitFailure
			}
			continue
		}
		var threadsCell any = r.Threads
		if r.Threads == 0 {
			threadsCell = "-"
		}
		fmt.Fprintf(stdout, row, r.Op, r.N, r.Cols, threadsCell, r.BytesPerElem, fmt.Sprintf("%.1f", m.gbps),
			fmt.Sprintf("%.1f", m.copy), fmt.Sprintf("%.0f%%", 100*m.gbps/m.copy))
	}
	return exitOK
}

// opOf maps a kernel of this benchmark to the interface op it exercises.
func opOf(name string) backend.Op {
	switch name {
	case "copy":
		return backend.OpCopy
	case "fill":
		return backend.OpFill
	case "add", "mul", "add_row":
		return backend.OpBinary
	case "scale":
		return backend.OpScale
	case "axpy":
		return backend.OpAxpy
	case "exp", "silu", "gelu", "gelu_tanh":
		return backend.OpUnary
	case "silu_grad", "gelu_grad", "gelu_tanh_grad":
		return backend.OpUnaryGrad
	case "softmax_grad":
		return backend.OpSoftmaxGrad
	case "rmsnorm_grad", "rmsnorm_grad_frozen":
		return backend.OpRMSNormGrad
	case "layernorm_grad", "layernorm_grad_frozen":
		return backend.OpLayerNormGrad
	case "cross_entropy":
		return backend.OpCrossEntropy
	case "cross_entropy_grad":
		return backend.OpCrossEntropyGrad
	case "sum_rows":
		return backend.OpReduceRows
	case "softmax":
		return backend.OpSoftmax
	case "rmsnorm":
		return backend.OpRMSNorm
	case "layernorm":
		return backend.OpLayerNorm
	case "adamw":
		return backend.OpAdamW
	}
	panic("sora bench ops: no op for " + name)
}

// newOpsEnv allocates and fills the operands on b.
func newOpsEnv(b backend.Backend, rows, cols int) (*opsEnv, error) {
	env := &opsEnv{b: b, rows: rows, cols: cols}
	rng := rand.New(rand.NewPCG(5, uint64(rows*cols)))
	uniform := func(n int, lo, hi float32) []float32 {
		h := make([]float32, n)
		for i := range h {
			h[i] = lo + (hi-lo)*rng.Float32()
		}
		return h
	}
	var err error
	tensor := func(h []float32, shape ...int) backend.Tensor {
		if err != nil {
			return backend.Tensor{}
		}
		var t backend.Tensor
		t, err = b.Alloc(backend.Float32, shape...)
		if err == nil {
			b.Upload(t, h)
		}
		return t
	}
	n := rows * cols
	env.hx, env.hy, env.hz, env.hw = uniform(n, -4, 4), uniform(n, -1, 1), uniform(n, 0, 1), uniform(cols, 0.5, 1.5)
	env.x = tensor(env.hx, rows, cols)
	env.y = tensor(env.hy, rows, cols)
	env.z = tensor(env.hz, rows, cols)
	env.out = tensor(uniform(n, -1, 1), rows, cols)
	env.w = tensor(env.hw, cols)
	env.hbias = uniform(cols, -0.1, 0.1)
	env.bias = tensor(env.hbias, cols)
	env.dw = tensor(make([]float32, cols), cols)
	env.db = tensor(make([]float32, cols), cols)
	env.targets = make([]int32, rows)
	for i := range env.targets {
		env.targets[i] = int32(rng.IntN(cols))
	}
	env.r = tensor(make([]float32, rows), rows)
	env.m = tensor(make([]float32, n), rows, cols)
	env.v = tensor(env.hz, rows, cols)
	if err != nil {
		return nil, fmt.Errorf("allocating operands on %s: %w", b.Name(), err)
	}
	return env, b.Sync()
}

// hostCopier returns one call of copy() of n floats split over threads
// goroutines, the host baseline. The parts run on workpool's workers, as
// the CPU backend's kernels do: goroutines started per call may start only
// once the caller's own part is done (see package workpool), which would
// make the baseline depend on the scheduler rather than on memory.
func hostCopier(n, threads int) func() error {
	src, dst := make([]float32, n), make([]float32, n)
	for i := range src {
		src[i] = float32(i)
	}
	threads = max(1, min(threads, runtime.GOMAXPROCS(0)))
	return func() error {
		workpool.Run(threads, threads, func(t int) {
			lo, hi := n*t/threads, n*(t+1)/threads
			copy(dst[lo:hi], src[lo:hi])
		})
		return nil
	}
}
