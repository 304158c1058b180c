package cpu

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/cpuid/v2"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/blas"
	"github.com/sora-go/sora/backend/cpu/internal/gemm"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
	"github.com/sora-go/sora/backend/internal/bf16"
	"github.com/sora-go/sora/internal/hostmem"
)

// MaxEnvThreads is the most threads SORA_CPU_THREADS may ask for: far
// more than any machine's cores, so that only a slip (an extra digit,
// a byte count) is refused, which would otherwise start as many workers,
// each polling for work between ops.
const MaxEnvThreads = 4096

// Environment variables read by [backend.Open]("cpu").
const (
	EnvPortable = "SORA_CPU_PORTABLE"
	EnvThreads  = "SORA_CPU_THREADS"
	// EnvGemmKernel names the matrix-multiply micro-kernel to use instead
	// of the fastest this CPU runs, for benchmarks: one of avx512, avx2,
	// sse or go. A kernel this CPU cannot run is passed over for the
	// fastest one; a name that is none of these is an error.
	EnvGemmKernel = gemm.EnvKernel
	// EnvRowKernels names the row and element-wise kernel set to use
	// instead of the fastest this CPU runs (see [Options.RowKernels]): one
	// of avx512, avx2, neon or go. A set this CPU cannot run is passed
	// over for the fastest one; a name that is none of these is an error.
	EnvRowKernels = "SORA_CPU_ROW_KERNELS"
	// EnvBLAS names a system BLAS whose cblas_sgemm computes MatMul
	// instead of this package's kernels: "off" (the default), one of
	// accelerate (macOS), openblas, blis or mkl, or a library file's name
	// or path. See [LoadBLAS].
	EnvBLAS = "SORA_CPU_BLAS"
	// EnvMemoryLimit caps the bytes the backend's tensors and scratch may
	// hold (see [Options.MemoryLimit]): a byte count as GOMEMLIMIT takes
	// one ("12GiB", "512MiB", "1073741824"), or "off" for none. Unset, the
	// limit is [HostMemoryLimit]'s.
	EnvMemoryLimit = "SORA_CPU_MEMORY_LIMIT"
)

// defaultBLAS is the BLAS used when $SORA_CPU_BLAS is unset or empty; ""
// is none. It stays none on every system for now. On Linux this
// package's kernels beat OpenBLAS where we measured. On macOS Accelerate
// would be the obvious default, but it has never been run through this
// package (no Mac was available), and a default must not be the first
// thing to try an untested calling convention on every Mac user. Once a
// Mac has passed the conformance suite with SORA_CPU_BLAS=accelerate, set
// it to "accelerate" there: OptionsFromEnv then falls back to the
// package's kernels, silently, when the default does not load.
var defaultBLAS = ""

// BLAS is a system BLAS loaded with [LoadBLAS], for [Options.BLAS]. It
// may be shared by any number of backends.
type BLAS struct{ lib *blas.Library }

// LoadBLAS loads the BLAS that name says, for [Options.BLAS]: "accelerate"
// (Apple's Accelerate framework, macOS only), "openblas", "blis" or "mkl"
// (each searched for under the file names it has on this system), or a
// library file's name (found by the dynamic linker, e.g.
// "libopenblas64_.so.0") or path. The library must export cblas_sgemm
// with 32-bit integers, and its answers to a few small products are
// checked before it is accepted. The error names what was looked for and
// why each file failed. Loading needs purego without cgo: Linux and macOS
// on amd64 and arm64; elsewhere LoadBLAS always fails.
//
// Accelerate has not been run (no Mac was available); OpenBLAS and BLIS
// have, on linux/amd64, through the same calls, and OpenBLAS on
// linux/arm64 under qemu.
func LoadBLAS(name string) (*BLAS, error) {
	name = strings.TrimSpace(name)
	if name == "" || name == "off" {
		return nil, fmt.Errorf("cpu: BLAS %q: name a library (%s, or a file); leave Options.BLAS nil for this package's kernels",
			name, strings.Join(blas.Names(), ", "))
	}
	lib, err := blas.Load(name)
	if err != nil {
		return nil, fmt.Errorf("cpu: BLAS %q: %w", name, err)
	}
	return &BLAS{lib: lib}, nil
}

// String names the library and what it says of itself, e.g.
// "libopenblas.so.0 (OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell
// MAX_THREADS=64, 2 threads)".
func (b *BLAS) String() string { return b.lib.String() }

// Options configures a CPU backend.
type Options struct {
	// Portable forces the pure-Go kernels even where SIMD ones exist.
	Portable bool
	// Threads caps the goroutines one op uses; 0 means GOMAXPROCS. It does
	// not reach a BLAS, which runs its own threads (see BLAS).
	Threads int
	// BLAS, when not nil, computes MatMul with the library's cblas_sgemm,
	// one call per matrix of a batch, instead of this package's kernels
	// (which still take products with k = 0 or alpha = 0, or a dimension
	// beyond 32 bits). Portable does not apply to it. The library
	// parallelises each call with threads of its own, set by its variable:
	// OPENBLAS_NUM_THREADS, BLIS_NUM_THREADS, MKL_NUM_THREADS or
	// VECLIB_MAXIMUM_THREADS (Accelerate). Each call goes through purego's
	// reflection-based call (about 1.2 µs and a dozen small allocations
	// measured with OpenBLAS on amd64), which only tiny products notice.
	BLAS *BLAS
	// MemoryLimit, when positive, is the most bytes the backend may hold:
	// an Alloc that would take its tensors and scratch (MemoryUsage's
	// Reserved) beyond it fails with an error matching
	// backend.ErrOutOfMemory, which a program can report and recover
	// from, where running the host out of memory gets the process killed
	// by the operating system without a word. The scratch that ops take
	// for themselves counts but is never refused, and the rest of the
	// program's memory (the Go heap beside the tensors) is not counted,
	// so the limit is a guard against the clear cases, not a bound on the
	// process's size. 0 means no limit. [OptionsFromEnv] sets it from
	// $SORA_CPU_MEMORY_LIMIT, or to [HostMemoryLimit].
	MemoryLimit int64
	// RowKernels names the row and element-wise kernel set (vec's: avx512,
	// avx2, neon or go) to use instead of the fastest this CPU runs, so
	// that a machine can time and test the sets its CPU would not pick:
	// an AVX-512 machine the AVX2 set that a CPU without AVX-512 runs.
	// "", a set this CPU cannot run or a name that is no set (which
	// [OptionsFromEnv] refuses) means the fastest; Portable takes
	// precedence. With go the bfloat16 conversions are Go's too (the
	// others take the fastest, AVX2 assembly on amd64). [Device] names
	// the set in use. [OptionsFromEnv] sets it from $SORA_CPU_ROW_KERNELS.
	RowKernels string
}

// rowKernels returns the row kernel set that opts ask for (see
// Options.RowKernels).
func rowKernels(opts Options) *vec.Kernels {
	if opts.Portable {
		return vec.Go
	}
	if k := vec.Named(opts.RowKernels); k != nil {
		return k
	}
	return vec.Best()
}

// HostMemoryLimit returns the memory limit [OptionsFromEnv] gives the
// backend where $SORA_CPU_MEMORY_LIMIT is unset: the memory the host can
// still give, Linux's MemAvailable and free swap, at the call; 0 (no
// limit) where the host does not tell (an operating system without
// /proc/meminfo). Tensors beyond it cannot all be in memory at once: the
// process would be killed before or while they filled it.
func HostMemoryLimit() int64 {
	info, ok := hostmem.Read()
	if !ok {
		return 0
	}
	return info.Available + info.SwapFree
}

// Backend is the CPU implementation of [backend.Backend]. Like every
// backend it is not safe for concurrent use; create one per goroutine that
// issues ops. Its zero value is not usable: call [New].
type Backend struct {
	backend.Recorder

	opts       Options
	simd       bool         // the SIMD path is active: supported here and not disabled
	kern       *vec.Kernels // the element-wise and row kernels of the active path
	conv       *bf16.Funcs  // the bfloat16 conversions of the active path
	stream     int          // see streamBytes
	fillStream int          // the size from which Fill streams (see fillStreamBytes)
	gemm       *gemm.Engine
	batch      []*gemm.Engine // single-threaded engines, one per worker (see batchEngines)
	inUse      bytesCounter   // tensors' bytes (see BytesInUse)
	reserved   bytesCounter   // tensors' and scratch's bytes (see MemoryUsage)
	gemmBytes  int64          // the engines' workspace bytes counted in reserved (see noteEngines)
	rows32     [][]float32    // see scratch32
	sums32     [][]float32    // see sumScratch32
	rows64     [][]float64    // see scratch64 and pieceSums
	sums       pieceSums      // the column sums' pieces (see pieceSums)
	ints       []int32        // integer scratch (attention's document bounds and block plans; see scratchInts)
	grain      int            // see defaultGrain
	gemmGrain  int            // see gemmMinFlops
	closed     bool
}

var _ backend.Backend = (*Backend)(nil)

// New returns a CPU backend configured by opts. A negative Threads is
// treated as 0.
func New(opts Options) *Backend {
	opts.Threads = max(opts.Threads, 0)
	kern := rowKernels(opts)
	conv := bf16.Best()
	if opts.Portable || opts.RowKernels == vec.Go.Name {
		// Asked for Go's element-wise kernels: the bfloat16 conversions
		// are some too. (A CPU whose fastest row kernels are Go's, AVX2
		// without FMA, keeps the AVX2 conversions.)
		conv = bf16.Go
	}
	stream := streamBytes()
	b := &Backend{
		opts:       opts,
		simd:       !opts.Portable && simdSupported(),
		kern:       kern,
		conv:       conv,
		stream:     stream,
		fillStream: max(stream, fillStreamBytes),
		grain:      defaultGrain,
		gemmGrain:  gemmMinFlops,
		gemm:       gemm.NewEngine(gemm.Config{Portable: opts.Portable, Threads: opts.Threads}),
	}
	b.noteEngines()
	return b
}

// Name returns "cpu".
func (b *Backend) Name() string { return "cpu" }

// Device describes what decides the bits of the backend's results: the
// processor, its relevant SIMD features, the active kernel path ("simd"
// or "portable"), the matrix multiply's micro-kernel, or the BLAS that
// does it, and the row kernels' instruction set, e.g.
// "AMD EPYC 7B13 (avx2 fma), simd (matmul avx2-fma 6x16, rows avx2)" or
// "..., simd (matmul blas libopenblas.so.0 (OpenBLAS 0.3.21 ..., 2 threads), rows avx2)".
//
// The thread cap is not part of it (Threads reports it): every op cuts
// its sums (the norms' parameter gradients, column sums, attention's key
// and value gradients) into pieces by the shapes alone and adds the
// pieces in a fixed order, so a run computes the same bits on any number
// of threads, and resumes with another SORA_CPU_THREADS, or on a machine
// with more cores but the same processor model, bit for bit. A BLAS's own
// thread count stays, as the library reports it: whether its results
// depend on it is the library's affair, and OpenBLAS and MKL do not
// promise that they do not.
//
// Earlier builds put the thread cap in Device ("AMD EPYC 7B13 (avx2
// fma), 2 threads, simd (...)"), and checkpoints they wrote recorded it,
// so a run resumed from one with this build is noted as going on on
// another device, once. That note is right: those builds cut their sums
// by thread, this one by shape, so the run does not go on bit for bit
// across the upgrade either.
func (b *Backend) Device() string {
	return describe(b.simd, b.opts.BLAS, b.kern.Name)
}

// The CLI and the demonstration find Threads through this interface.
var _ backend.ThreadCounter = (*Backend)(nil)

// Threads returns how many goroutines one op may use: Options.Threads,
// or GOMAXPROCS when that is 0. It decides how fast ops run, never what
// they compute (see Device).
func (b *Backend) Threads() int {
	if b.opts.Threads > 0 {
		return b.opts.Threads
	}
	return runtime.GOMAXPROCS(0)
}

// Portable reports whether the portable pure-Go path is active, because it
// was asked for or because this CPU lacks the SIMD features.
func (b *Backend) Portable() bool { return !b.simd }

// Supports reports true for every op of [backend.AllOps] and for the
// optional ones: [backend.OpMatMulBF16] (the CPU stores bfloat16 weights)
// and fused attention, [backend.OpAttention] and [backend.OpAttentionGrad].
func (b *Backend) Supports(op backend.Op) bool {
	return slices.Contains(backend.AllOps, op) || op == backend.OpMatMulBF16 || op == backend.OpAttention || op == backend.OpAttentionGrad
}

// Sync returns and clears the first error recorded since the previous Sync.
// Ops run synchronously on the CPU, so there is nothing to wait for.
func (b *Backend) Sync() error { return b.Take() }

// Close marks the backend closed, drops its scratch (which leaves
// MemoryUsage's Reserved at InUse: tensors not freed stay counted) and
// returns any error still recorded. Later ops record an error.
func (b *Backend) Close() error {
	b.closed = true
	b.gemm, b.batch = nil, nil
	b.rows32, b.rows64, b.ints, b.sums32 = nil, nil, nil, nil
	b.reserved.add(-b.scratchBytes())
	b.gemmBytes = 0
	return b.Take()
}

// skip reports whether an op must do nothing: an error is already recorded
// or the backend is closed (which records one).
func (b *Backend) skip(op backend.Op) bool {
	if b.closed {
		b.Record(&backend.OpError{Op: string(op), Err: errClosed})
		return true
	}
	return b.Failed()
}

var errClosed = fmt.Errorf("backend is closed")

// simdSupported reports whether this CPU runs SIMD kernels when they are
// not disabled: whether package gemm picks a matrix-multiply kernel other
// than its portable one here, or package vec has assembly row kernels.
var simdSupported = sync.OnceValue(func() bool {
	return gemmKernel(false) != gemmKernel(true) || vec.Best() != vec.Go
})

// kernels returns the row kernels for an op that touches the given number
// of bytes in all (operands read plus outputs written): the streaming
// variants, whose element-wise kernels write with non-temporal stores,
// once that is at least the last-level cache, where the output would be
// evicted before anyone read it anyway.
func (b *Backend) kernels(bytes int) *vec.Kernels {
	if bytes >= b.stream {
		return b.kern.Streaming()
	}
	return b.kern
}

// streamBytes returns the op size from which kernels stream their output:
// the L3 cache's size, or 8 MiB where cpuid cannot tell.
func streamBytes() int {
	if l3 := cpuid.CPU.Cache.L3; l3 > 0 {
		return l3
	}
	return 8 << 20
}

// gemmKernel names the matrix-multiply micro-kernel package gemm selects.
func gemmKernel(portable bool) string {
	return gemm.NewEngine(gemm.Config{Portable: portable, Threads: 1}).Kernel()
}

// feature is a CPU feature worth reporting, with the name users know it by.
type feature struct {
	id   cpuid.FeatureID
	name string
}

// reported lists, per architecture, the SIMD features relevant to float32
// kernels, in the order Device prints them.
var reported = map[string][]feature{
	"amd64": {
		{cpuid.SSE4, "sse4.1"}, {cpuid.AVX, "avx"}, {cpuid.AVX2, "avx2"}, {cpuid.FMA3, "fma"},
		{cpuid.F16C, "f16c"}, {cpuid.AVX512F, "avx512f"}, {cpuid.AVX512BW, "avx512bw"},
		{cpuid.AVX512VL, "avx512vl"}, {cpuid.AVX512BF16, "avx512bf16"}, {cpuid.AMXBF16, "amx-bf16"},
	},
	"arm64": {
		{cpuid.ASIMD, "asimd"}, {cpuid.FPHP, "fphp"}, {cpuid.ASIMDHP, "asimdhp"},
		{cpuid.ASIMDDP, "asimddp"}, {cpuid.SVE, "sve"},
	},
}

// features lists the reported features this CPU has.
func features() []string {
	var have []string
	for _, f := range reported[runtime.GOARCH] {
		if cpuid.CPU.Supports(f.id) {
			have = append(have, f.name)
		}
	}
	return have
}

// describe formats Device's description, which Probe extends with the
// thread cap, e.g. "AMD EPYC 7B13 (avx2 fma), simd (matmul avx2-fma
// 6x16, rows avx2)", rows being the row kernels' set.
func describe(simd bool, lib *BLAS, rows string) string {
	brand := strings.TrimSpace(cpuid.CPU.BrandName)
	if brand == "" {
		brand = "unknown " + runtime.GOARCH + " CPU"
	}
	feats := "no SIMD features detected"
	if noasmBuild {
		brand, feats = runtime.GOARCH+" CPU", "features not read: built with -tags noasm"
	}
	if f := features(); len(f) > 0 {
		feats = strings.Join(f, " ")
	}
	path := "portable"
	if simd {
		path = "simd"
	}
	matmul := gemmKernel(!simd)
	if lib != nil {
		matmul = "blas " + lib.String()
	}
	return fmt.Sprintf("%s (%s), %s (matmul %s, rows %s)", brand, feats, path, matmul, rows)
}

// threadsClause says a thread cap for Probe: "1 thread", "8 threads".
func threadsClause(n int) string {
	if n == 1 {
		return "1 thread"
	}
	return fmt.Sprintf("%d threads", n)
}

// OptionsFromEnv returns the Options that [backend.Open]("cpu") uses, read
// from SORA_CPU_PORTABLE, SORA_CPU_THREADS, SORA_CPU_ROW_KERNELS,
// SORA_CPU_MEMORY_LIMIT (the host's default where unset, see
// HostMemoryLimit) and SORA_CPU_BLAS (which it loads), or an error naming
// the variable whose value cannot be used (SORA_CPU_GEMM_KERNEL is checked
// too). A BLAS named in SORA_CPU_BLAS
// that does not load is an error; "off" turns off a system's default.
func OptionsFromEnv() (Options, error) {
	var o Options
	if s := strings.TrimSpace(os.Getenv(EnvPortable)); s != "" {
		v, err := strconv.ParseBool(s)
		if err != nil {
			return Options{}, fmt.Errorf("cpu: %s=%q: want 1 or 0 (or true/false)", EnvPortable, s)
		}
		o.Portable = v
	}
	if s := strings.TrimSpace(os.Getenv(EnvThreads)); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxEnvThreads {
			return Options{}, fmt.Errorf("cpu: %s=%q: want a number of threads from 1 to %d", EnvThreads, s, MaxEnvThreads)
		}
		o.Threads = n
	}
	// The kernel itself is read by package gemm; a misspelt name would be
	// passed over silently there.
	if s := strings.TrimSpace(os.Getenv(EnvGemmKernel)); s != "" && !slices.Contains(gemm.KernelNames, s) {
		hint := ""
		if strings.HasPrefix(s, "gosimd") {
			hint = " (the go-simd kernels are in builds made with GOEXPERIMENT=simd only)"
		}
		return Options{}, fmt.Errorf("cpu: %s=%q: want one of %s%s", EnvGemmKernel, s, strings.Join(gemm.KernelNames, ", "), hint)
	}
	if s := strings.TrimSpace(os.Getenv(EnvRowKernels)); s != "" {
		if !slices.Contains(vec.Names, s) {
			return Options{}, fmt.Errorf("cpu: %s=%q: want one of %s", EnvRowKernels, s, strings.Join(vec.Names, ", "))
		}
		o.RowKernels = s
	}
	switch s := strings.TrimSpace(os.Getenv(EnvMemoryLimit)); s {
	case "":
		o.MemoryLimit = HostMemoryLimit()
	case "off":
	default:
		n, err := hostmem.ParseSize(s)
		if err != nil || n == 0 {
			return Options{}, fmt.Errorf("cpu: %s=%q: want a positive byte count such as 16GiB or 512MiB (B, KiB, MiB, GiB, TiB, as GOMEMLIMIT), or off", EnvMemoryLimit, s)
		}
		o.MemoryLimit = n
	}
	lib, err := blasFromEnv()
	if err != nil {
		return Options{}, err
	}
	o.BLAS = lib
	return o, nil
}

// blasFromEnv loads the BLAS that $SORA_CPU_BLAS names, or defaultBLAS
// when it is unset or empty. A library the variable names must load; the
// default is used only if it does.
func blasFromEnv() (*BLAS, error) {
	s, explicit := strings.TrimSpace(os.Getenv(EnvBLAS)), true
	if s == "" {
		s, explicit = defaultBLAS, false
	}
	if s == "" || s == "off" {
		return nil, nil
	}
	lib, err := blas.Load(s)
	switch {
	case err == nil:
		return &BLAS{lib: lib}, nil
	case !explicit:
		return nil, nil
	}
	return nil, fmt.Errorf("cpu: %s=%q: %w", EnvBLAS, s, err)
}

// driver registers the backend as "cpu".
type driver struct{}

func init() { backend.Register("cpu", driver{}) }

// Probe describes the CPU as Open would configure it: Device's
// description (brand, SIMD features, the active path and kernels), then
// the thread cap, e.g. "AMD EPYC 7B13 (avx2 fma), simd (matmul avx2-fma
// 6x16, rows avx2), 2 threads". It fails only when the environment
// variables cannot be parsed.
func (driver) Probe() (string, error) {
	o, err := OptionsFromEnv()
	if err != nil {
		return "", err
	}
	threads := o.Threads
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	set := strings.TrimSpace(os.Getenv(EnvMemoryLimit)) != ""
	return describe(!o.Portable && simdSupported(), o.BLAS, rowKernels(o).Name) + ", " + threadsClause(threads) + memoryClause(o.MemoryLimit, set), nil
}

// memoryClause says a memory limit for Probe: ", memory limit 12.0 GiB
// (SORA_CPU_MEMORY_LIMIT)" where the variable set it, ", memory limit
// 22.9 GiB (the memory and swap free now)" where the host's default did,
// and that there is none where the variable turned it off or the host
// does not tell its memory.
func memoryClause(limit int64, fromEnv bool) string {
	switch {
	case limit > 0 && fromEnv:
		return fmt.Sprintf(", memory limit %s (%s)", hostmem.FormatSize(limit), EnvMemoryLimit)
	case limit > 0:
		return fmt.Sprintf(", memory limit %s (the memory and swap free now)", hostmem.FormatSize(limit))
	case fromEnv:
		return fmt.Sprintf(", no memory limit (%s=off)", EnvMemoryLimit)
	}
	return ", no memory limit (the host does not tell its free memory)"
}

// Open returns a backend configured from the environment.
func (driver) Open() (backend.Backend, error) {
	o, err := OptionsFromEnv()
	if err != nil {
		return nil, err
	}
	return New(o), nil
}
