package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/gonum/blas"
	gonumblas "gonum.org/v1/gonum/blas/gonum"

	"github.com/sora-go/sora/backend"
)

// "sora bench" has subcommands of its own ("gemm", "ops"); each adds
// itself to benchCommands from an init function in its own file, as the
// top-level commands do.
var benchCommands = map[string]command{}

// registerBench adds a "sora bench" benchmark.
func registerBench(c command) { addCommand(benchCommands, c) }

func init() {
	register(command{
		name:    "bench",
		summary: "measure a backend's matrix multiply and kernels against baselines run alongside",
		run:     runBench,
	})
	registerBench(command{
		name:    "gemm",
		summary: "matrix multiply (MatMul) in GFLOP/s next to the vendor library's own call (cuBLAS) or gonum's Sgemm",
		run:     runBenchGemm,
	})
}

func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		benchUsage(stdout)
		return exitOK
	}
	c, ok := benchCommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "sora bench: unknown benchmark %q\n\n", args[0])
		benchUsage(stderr)
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

func benchUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: sora bench <benchmark> [flags]\n\nBenchmarks:")
	listCommands(w, benchCommands, 8)
	fmt.Fprintln(w, "\nRun \"sora bench <benchmark> --help\" for its flags.")
}

var benchGemmDoc = usageDoc{
	synopsis: "bench gemm [--backend NAME] [--sizes 256,512,1024,2048] [--threads N] [--trans NN,NT,TN] [--time D] [--json]",
	description: "Times square float32 matrix multiplies C = op(A)·op(B) through the MatMul op of the chosen " +
		"backend, and a baseline on the same shapes in the same run. A backend that exposes its vendor " +
		"library's matrix multiply (cuda: a bare cuBLAS call) is measured against that call on the same device " +
		"tensors, timed the same way, so the ratio is what MatMul's own work costs (\"baseline\" in JSON: the " +
		"library's name where the backend gives one, else \"vendor\"); any other backend is measured against gonum's Sgemm " +
		"(gonum.org/v1/gonum/blas/gonum) on the host (\"baseline\":\"gonum\"; \"gonum-noasm\" in a build with the noasm tag, " +
		"which leaves out gonum's assembly and the CPU backend's matrix-multiply assembly alike). Each figure is the best of three " +
		"timed rounds of at least D/3 each, after one warm-up call and a wait for the device after every call, " +
		"counting 2·n³ flops per multiply. A few entries of every result, the baseline's included, are checked " +
		"against a float64 dot product, so a wrong kernel cannot report a speed. --threads sets the CPU " +
		"backend's threads (through $" + cpuThreadsEnv + ", read when the backend opens) and GOMAXPROCS, which " +
		"gonum's Sgemm parallelises over; without it both use their defaults. $" + cpuGemmKernelEnv + " " +
		"(avx512, avx2, sse, neon or go; gosimd512 and gosimd in a build made with GOEXPERIMENT=simd) makes the CPU " +
		"backend use that micro-kernel instead of the fastest this CPU runs, " +
		"for instance to measure the AVX2 kernel on an AVX-512 machine; a kernel the CPU cannot run is ignored, " +
		"and the backend line printed first names the kernel in use. $SORA_CPU_PORTABLE=1 selects the " +
		"portable pure-Go path. $SORA_CPU_BLAS (openblas, blis, mkl, accelerate or a library's path) makes the CPU " +
		"backend's MatMul call that library's cblas_sgemm; its threads follow the library's own variable " +
		"(OPENBLAS_NUM_THREADS, BLIS_NUM_THREADS, VECLIB_MAXIMUM_THREADS), not --threads, and the backend line names " +
		"the library: run once with it and once without to compare. With --json each result is one JSON object per line; " +
		"\"threads\" is the CPU backend's count, and is left out (\"-\" in the table) for a backend on another device.",
	examples: []string{
		"sora bench gemm",
		"sora bench gemm --sizes 1024 --threads 1 --trans NN,NT,TN --json",
		"SORA_CPU_BLAS=openblas OPENBLAS_NUM_THREADS=1 sora bench gemm --sizes 1024 --threads 1 --json",
		"sora bench gemm --backend cuda --sizes 4096 --trans NN --json",
		cpuGemmKernelEnv + "=avx2 sora bench gemm --sizes 1024",
		"SORA_CPU_PORTABLE=1 sora bench gemm --sizes 256,512",
		"SORA_CPU_PORTABLE=1 go run -tags noasm ./cmd/sora bench gemm --json",
	},
}

// cpuThreadsEnv is the variable the CPU backend reads its thread count from
// when it opens (package backend/cpu's EnvThreads; the CLI names it rather
// than importing a concrete backend).
const cpuThreadsEnv = "SORA_CPU_THREADS"

// cpuGemmKernelEnv is the variable the CPU backend's matrix multiply reads
// its micro-kernel choice from (package backend/cpu/internal/gemm's
// EnvKernel, which the CLI cannot import).
const cpuGemmKernelEnv = "SORA_CPU_GEMM_KERNEL"

// cpuRowKernelsEnv is the variable the CPU backend reads its row-kernel
// set from (package backend/cpu's EnvRowKernels).
const cpuRowKernelsEnv = "SORA_CPU_ROW_KERNELS"

// vendorGemm is implemented by a backend that can run its vendor library's
// matrix multiply on its own tensors with nothing of the backend's around
// it (backend/cuda: one cuBLAS call). It takes MatMul's arguments and, like
// an op, records failures for Sync. "bench gemm" times it as MatMul's
// baseline, so the ratio shows what the backend adds to the library.
type vendorGemm interface {
	VendorMatMul(c, a, b backend.Tensor, p backend.MatMulParams)
}

// vendorNamer optionally names the library behind VendorMatMul (such as
// "cublas") for the reports; without it they say "vendor".
type vendorNamer interface {
	VendorName() string
}

// deviceCopier is implemented by a backend that can copy between its
// tensors with the device's own copy (backend/cuda: the driver's
// device-to-device copy): dst and src have the same length, failures are
// recorded for Sync. "bench ops" takes its bandwidth as the baseline.
type deviceCopier interface {
	DeviceCopy(dst, src backend.Tensor)
}

// gemmBaseline names the baseline "bench gemm" uses on b: the vendor
// library's, when b exposes it, else gonum's.
func gemmBaseline(b backend.Backend) (name string, vendor vendorGemm) {
	v, ok := b.(vendorGemm)
	if !ok {
		return gonumBaseline, nil
	}
	name = "vendor"
	if n, ok := b.(vendorNamer); ok && n.VendorName() != "" {
		name = n.VendorName()
	}
	return name, v
}

// gemmResult is one line of "sora bench gemm --json".
type gemmResult struct {
	Op             string `json:"op"`
	M              int    `json:"m"`
	N              int    `json:"n"`
	K              int    `json:"k"`
	Trans          string `json:"trans"`
	Threads        int    `json:"threads,omitempty"` // the CPU backend's; 0, and left out, for a device
	GFLOPS         fixed1 `json:"gflops"`
	Baseline       string `json:"baseline"`
	BaselineGFLOPS fixed1 `json:"baseline_gflops"`
}

// fixed1, fixed2 and fixed3 are numbers printed in JSON with one, two or
// three decimals, as in 11.0, so the lines read the same whatever the value.
type (
	fixed1 float64
	fixed2 float64
	fixed3 float64
)

func (f fixed1) MarshalJSON() ([]byte, error) { return fixedJSON(float64(f), 1), nil }
func (f fixed2) MarshalJSON() ([]byte, error) { return fixedJSON(float64(f), 2), nil }
func (f fixed3) MarshalJSON() ([]byte, error) { return fixedJSON(float64(f), 3), nil }

func fixedJSON(v float64, decimals int) []byte {
	return strconv.AppendFloat(nil, v, 'f', decimals, 64)
}

func runBenchGemm(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench gemm")
	name := addBackendFlag(fs)
	sizesFlag := fs.String("sizes", "256,512,1024,2048", "comma-separated `LIST` of matrix sizes n (each product is n×n times n×n)")
	threads := fs.Int("threads", 0, "`N` threads for the CPU backend and GOMAXPROCS for the baseline; 0 keeps the defaults ($"+cpuThreadsEnv+" or GOMAXPROCS)")
	transFlag := fs.String("trans", "NN,NT,TN", "comma-separated `LIST` of transpose cases, each two letters N or T for op(A) and op(B)")
	minTime := fs.Duration("time", time.Second, "measure each result for at least `D` in all")
	asJSON := fs.Bool("json", false, "print one JSON object per result instead of a table")
	if code, ok := parseFlags(fs, benchGemmDoc, args, stdout, stderr); !ok {
		return code
	}
	sizes, err := parseSizes(*sizesFlag)
	if err != nil {
		fmt.Fprintf(stderr, "sora bench gemm: --sizes: %v\n", err)
		return exitUsage
	}
	trans, err := parseTrans(*transFlag)
	if err != nil {
		fmt.Fprintf(stderr, "sora bench gemm: --trans: %v\n", err)
		return exitUsage
	}
	if *threads < 0 {
		fmt.Fprintf(stderr, "sora bench gemm: --threads %d: want a positive number, or 0 for the defaults\n", *threads)
		return exitUsage
	}
	if *minTime <= 0 {
		fmt.Fprintf(stderr, "sora bench gemm: --time %v: want a positive duration such as 1s\n", *minTime)
		return exitUsage
	}

	b, nthreads, release, code := openBenchBackend(*name, *threads, stderr)
	if b == nil {
		return code
	}
	defer release()
	if _, ok := b.(backend.ThreadCounter); !ok {
		// --threads and GOMAXPROCS set the CPU backend's goroutines; a
		// device's multiply has no such count to report.
		nthreads = 0
	}

	const row = "%-5s %6v %6v %6v %7v %9v %15v %7v\n"
	baseName, vendor := gemmBaseline(b)
	if *asJSON {
		fmt.Fprintf(stderr, "# backend %s: %s\n# baseline %s\n", b.Name(), deviceLine(b), baseName)
	} else {
		fmt.Fprintf(stdout, "backend %s: %s\n", b.Name(), deviceLine(b))
		if vendor != nil {
			fmt.Fprintf(stdout, "baseline %s: the vendor library's own call on the same device tensors\n\n", baseName)
		} else {
			fmt.Fprintf(stdout, "baseline %s Sgemm on the host, GOMAXPROCS=%d\n\n", baseName, runtime.GOMAXPROCS(0))
		}
		fmt.Fprintf(stdout, row, "trans", "m", "n", "k", "threads", "GFLOP/s", baseName+" GFLOP/s", "ratio")
	}
	enc := json.NewEncoder(stdout)
	for _, n := range sizes {
		for _, tr := range trans {
			r, err := benchGemmOne(b, tr, n, nthreads, *minTime)
			if err != nil {
				fmt.Fprintf(stderr, "sora bench gemm: %s n=%d: %v\n", tr, n, err)
				return exitFailure
			}
			if *asJSON {
				if err := enc.Encode(r); err != nil {
					fmt.Fprintf(stderr, "sora bench gemm: %v\n", err)
					return exitFailure
				}
				continue
			}
			threads := any(r.Threads)
			if r.Threads == 0 {
				threads = "-"
			}
			fmt.Fprintf(stdout, row, r.Trans, r.M, r.N, r.K, threads, fmt.Sprintf("%.1f", float64(r.GFLOPS)),
				fmt.Sprintf("%.1f", float64(r.BaselineGFLOPS)), fmt.Sprintf("%.1fx", float64(r.GFLOPS/r.BaselineGFLOPS)))
		}
	}
	return exitOK
}

// openBenchBackend opens the backend called name for a benchmark with
// threads threads (0: the defaults; see applyThreads), the CPU backend
// reading $SORA_CPU_THREADS only while it opens. It returns the threads
// in use and release, which closes the backend and restores GOMAXPROCS;
// on failure it prints why and returns a nil backend and the exit status.
func openBenchBackend(name string, threads int, stderr io.Writer) (b backend.Backend, nthreads int, release func(), code int) {
	nthreads, undoEnv, undoProcs := applyThreads(threads)
	b, code = openBackend(name, stderr)
	undoEnv()
	if b == nil {
		undoProcs()
		return nil, 0, nil, code
	}
	return b, nthreads, func() { b.Close(); undoProcs() }, exitOK
}

// applyThreads sets $SORA_CPU_THREADS and GOMAXPROCS to n when n > 0,
// and returns the thread count to report with two functions: one puts the
// variable back (call it once the backend has opened and read it), the
// other GOMAXPROCS. With n = 0 nothing changes and the count reported is
// $SORA_CPU_THREADS when that is valid, else GOMAXPROCS, which is what the
// CPU backend uses.
func applyThreads(n int) (threads int, undoEnv, undoProcs func()) {
	nothing := func() {}
	if n == 0 {
		if v, err := strconv.Atoi(strings.TrimSpace(os.Getenv(cpuThreadsEnv))); err == nil && v > 0 {
			return v, nothing, nothing
		}
		return runtime.GOMAXPROCS(0), nothing, nothing
	}
	old, had := os.LookupEnv(cpuThreadsEnv)
	os.Setenv(cpuThreadsEnv, strconv.Itoa(n))
	undoEnv = func() {
		if had {
			os.Setenv(cpuThreadsEnv, old)
		} else {
			os.Unsetenv(cpuThreadsEnv)
		}
	}
	prev := runtime.GOMAXPROCS(n)
	return n, undoEnv, func() { runtime.GOMAXPROCS(prev) }
}

// benchGemmOne measures one transpose case and size on b and with its
// baseline: the vendor call when b has one, else gonum on the host.
func benchGemmOne(b backend.Backend, tr string, n, threads int, minTime time.Duration) (gemmResult, error) {
	transA, transB := tr[0] == 'T', tr[1] == 'T'
	rng := rand.New(rand.NewPCG(uint64(n), uint64(tr[0])<<8|uint64(tr[1])))
	ha, hb := make([]float32, n*n), make([]float32, n*n)
	for i := range ha {
		ha[i] = rng.Float32()*2 - 1
		hb[i] = rng.Float32()*2 - 1
	}
	flops := 2 * float64(n) * float64(n) * float64(n)

	// The backend, through the op interface.
	var tensors []backend.Tensor
	defer func() {
		for _, t := range tensors {
			b.Free(t)
		}
	}()
	alloc := func(data []float32) (backend.Tensor, error) {
		t, err := b.Alloc(backend.Float32, n, n)
		if err != nil {
			return t, err
		}
		tensors = append(tensors, t)
		if data != nil {
			b.Upload(t, data)
		}
		return t, nil
	}
	ta, err := alloc(ha)
	if err != nil {
		return gemmResult{}, err
	}
	tb, err := alloc(hb)
	if err != nil {
		return gemmResult{}, err
	}
	tc, err := alloc(nil)
	if err != nil {
		return gemmResult{}, err
	}
	p := backend.MatMulParams{TransA: transA, TransB: transB, Alpha: 1, Beta: 0}
	secs, err := timeCalls(minTime, func() error {
		b.MatMul(tc, ta, tb, p)
		return b.Sync()
	})
	if err != nil {
		return gemmResult{}, fmt.Errorf("backend %s: %w", b.Name(), err)
	}
	hc := make([]float32, n*n)
	if err := b.Download(hc, tc); err != nil {
		return gemmResult{}, fmt.Errorf("backend %s: reading the result: %w", b.Name(), err)
	}
	if err := spotCheckGemm(transA, transB, n, ha, hb, hc, rng); err != nil {
		return gemmResult{}, fmt.Errorf("backend %s computed a wrong product: %w", b.Name(), err)
	}

	if name, vendor := gemmBaseline(b); vendor != nil {
		// The vendor call on the same tensors, timed the same way. C is
		// filled with NaN first (beta = 0 ignores it) so that a call that
		// wrote nothing fails the check instead of passing on MatMul's
		// result.
		b.Fill(tc, float32(math.NaN()))
		baseSecs, err := timeCalls(minTime, func() error {
			vendor.VendorMatMul(tc, ta, tb, p)
			return b.Sync()
		})
		if err != nil {
			return gemmResult{}, fmt.Errorf("baseline %s on backend %s: %w", name, b.Name(), err)
		}
		if err := b.Download(hc, tc); err != nil {
			return gemmResult{}, fmt.Errorf("baseline %s: reading the result: %w", name, err)
		}
		if err := spotCheckGemm(transA, transB, n, ha, hb, hc, rng); err != nil {
			return gemmResult{}, fmt.Errorf("the %s baseline computed a wrong product: %w", name, err)
		}
		return gemmResult{
			Op: "gemm", M: n, N: n, K: n, Trans: tr, Threads: threads,
			GFLOPS: fixed1(flops / secs / 1e9), Baseline: name, BaselineGFLOPS: fixed1(flops / baseSecs / 1e9),
		}, nil
	}

	// The baseline on the host.
	var impl gonumblas.Implementation
	tA, tB := blas.NoTrans, blas.NoTrans
	if transA {
		tA = blas.Trans
	}
	if transB {
		tB = blas.Trans
	}
	gc := make([]float32, n*n)
	baseSecs, _ := timeCalls(minTime, func() error {
		impl.Sgemm(tA, tB, n, n, n, 1, ha, n, hb, n, 0, gc, n)
		return nil
	})
	if err := spotCheckGemm(transA, transB, n, ha, hb, gc, rng); err != nil {
		return gemmResult{}, fmt.Errorf("the %s baseline computed a wrong product: %w", gonumBaseline, err)
	}
	return gemmResult{
		Op: "gemm", M: n, N: n, K: n, Trans: tr, Threads: threads,
		GFLOPS: fixed1(flops / secs / 1e9), Baseline: gonumBaseline, BaselineGFLOPS: fixed1(flops / baseSecs / 1e9),
	}, nil
}

// timeCalls returns the best seconds per call of f over three rounds that
// each last at least total/3, after one untimed warm-up call. The best
// round, not the mean, is what the hardware can do when nothing else
// competes for it.
func timeCalls(total time.Duration, f func() error) (float64, error) {
	if err := f(); err != nil {
		return 0, err
	}
	best := math.Inf(1)
	for range 3 {
		secs, err := timeRound(total/3, f)
		if err != nil {
			return 0, err
		}
		best = min(best, secs)
	}
	return best, nil
}

// timeBeside times f as timeCalls does and a baseline beside it, in turns:
// after a warm-up call of each, three rounds of the baseline for at least
// total/6 each, every one followed by a round of f for at least total/3.
// It returns the best seconds per call of each. f's calls come last, so its
// output is what the buffers hold afterwards.
func timeBeside(total time.Duration, f, baseline func() error) (secs, baseSecs float64, err error) {
	if err := baseline(); err != nil {
		return 0, 0, err
	}
	if err := f(); err != nil {
		return 0, 0, err
	}
	secs, baseSecs = math.Inf(1), math.Inf(1)
	for range 3 {
		b, err := timeRound(total/6, baseline)
		if err != nil {
			return 0, 0, err
		}
		s, err := timeRound(total/3, f)
		if err != nil {
			return 0, 0, err
		}
		secs, baseSecs = min(secs, s), min(baseSecs, b)
	}
	return secs, baseSecs, nil
}

// timeRound calls f for at least d (once at least) and returns the mean
// seconds per call.
func timeRound(d time.Duration, f func() error) (float64, error) {
	calls := 0
	start := time.Now()
	for calls == 0 || time.Since(start) < d {
		if err := f(); err != nil {
			return 0, err
		}
		calls++
	}
	return time.Since(start).Seconds() / float64(calls), nil
}

// spotCheckGemm compares 16 random entries of c = op(A)·op(B) with float64
// dot products.
func spotCheckGemm(transA, transB bool, n int, a, b, c []float32, rng *rand.Rand) error {
	for s := 0; s < 16; s++ {
		i, j := rng.IntN(n), rng.IntN(n)
		var want, mag float64
		for p := 0; p < n; p++ {
			av, bv := a[i*n+p], b[p*n+j]
			if transA {
				av = a[p*n+i]
			}
			if transB {
				bv = b[j*n+p]
			}
			want += float64(av) * float64(bv)
			mag += math.Abs(float64(av) * float64(bv))
		}
		got := float64(c[i*n+j])
		if tol := 2 * float64(n) * 0x1p-23 * mag; !(math.Abs(got-want) <= tol) {
			return fmt.Errorf("C[%d,%d] = %g, want %g (within %.2g)", i, j, got, want, tol)
		}
	}
	return nil
}

// parseSizes reads a comma-separated list of positive sizes.
func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive size (want a list such as 256,512,1024)", f)
		}
		if n > 1<<15 {
			return nil, fmt.Errorf("size %d is too large for a benchmark (at most %d)", n, 1<<15)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// parseTrans reads a comma-separated list of transpose cases such as NN,TN.
func parseTrans(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.ToUpper(strings.TrimSpace(f))
		if len(f) != 2 || !strings.ContainsRune("NT", rune(f[0])) || !strings.ContainsRune("NT", rune(f[1])) {
			return nil, fmt.Errorf("%q is not a transpose case (want two letters, N or T, such as NN,NT,TN,TT)", f)
		}
		out = append(out, f)
	}
	return out, nil
}
