package cuda

// Tests of host-side logic that needs no device and no compiler.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/strided"
)

// devPtr is a device address with bits set above bit 31 where uintptr
// has them, to see that the pointer slot keeps all 64 bits.
const devPtr = uintptr(0xdeadbeef00 & uint64(^uintptr(0)))

// TestArgPack reads the kernelParams array back the way cuLaunchKernel
// does: one pointer per parameter, each to a value of the parameter's
// size.
func TestArgPack(t *testing.T) {
	p := new(argPack)
	cp := copyParams{n: 42, rank: 3, accumulate: 1}
	cp.shape[2], cp.dstStride[1], cp.srcStride[0] = 7, -5, 1<<40
	spec := &kernelSpec{"test", []argKind{argPtr, argI32, argF32, argI64, argF64, argCopy, argI32}}
	p.start(spec)
	p.ptr(devPtr)
	p.i32(-3)
	p.f32(1.5)
	p.i64(-1 << 40)
	p.f64(math.Pi)
	p.copyParams(&cp)
	p.bool32(true)
	arr, err := p.finish()
	if err != nil {
		t.Fatal(err)
	}
	ptrs := unsafe.Slice((*unsafe.Pointer)(arr), len(spec.params))
	if got := *(*uint64)(ptrs[0]); got != uint64(devPtr) {
		t.Errorf("pointer = %#x", got)
	}
	if got := *(*int32)(ptrs[1]); got != -3 {
		t.Errorf("int = %d", got)
	}
	if got := *(*float32)(ptrs[2]); got != 1.5 {
		t.Errorf("float = %g", got)
	}
	if got := *(*int64)(ptrs[3]); got != -1<<40 {
		t.Errorf("long long = %d", got)
	}
	if got := *(*float64)(ptrs[4]); got != math.Pi {
		t.Errorf("double = %g", got)
	}
	if got := *(*copyParams)(ptrs[5]); got != cp {
		t.Errorf("CopyParams = %+v, want %+v", got, cp)
	}
	if got := *(*int32)(ptrs[6]); got != 1 {
		t.Errorf("bool as int = %d", got)
	}
	for i, q := range ptrs {
		if uintptr(q)%8 != 0 {
			t.Errorf("argument %d at %p is not 8-byte aligned", i, q)
		}
		if i > 0 && uintptr(q) < uintptr(ptrs[i-1])+uintptr(spec.params[i-1].size()) {
			t.Errorf("argument %d overlaps argument %d", i, i-1)
		}
	}
	// A 4-byte value is followed by zeros, whatever the slot held before.
	p.start(&kernelSpec{"i64", []argKind{argI64}})
	p.i64(-1)
	p.start(&kernelSpec{"i32", []argKind{argI32}})
	p.i32(5)
	if arr, err = p.finish(); err != nil {
		t.Fatal(err)
	}
	if got := **(**uint64)(arr); got != 5 {
		t.Errorf("slot of an int after a long long of -1 holds %#x, want 5", got)
	}
}

func TestArgPackMismatch(t *testing.T) {
	spec := &kernelSpec{"k", []argKind{argI32, argPtr}}
	for _, tc := range []struct {
		name string
		push func(p *argPack)
		want string
	}{
		{"wrong kind", func(p *argPack) { p.f32(1); p.ptr(0) }, "argument 0 is a float, want a int"},
		{"too few", func(p *argPack) { p.i32(1) }, "1 arguments given, it takes 2"},
		{"too many", func(p *argPack) { p.i32(1); p.ptr(0); p.ptr(0) }, "argument 2 is one too many"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := new(argPack)
			p.start(spec)
			tc.push(p)
			_, err := p.finish()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCopyParamsLayout(t *testing.T) {
	// struct CopyParams { long long n; int rank; int accumulate; long long shape[8], dstStride[8], srcStride[8]; }
	var c copyParams
	if got := unsafe.Sizeof(c); got != 208 {
		t.Errorf("size %d, want 208", got)
	}
	for _, f := range []struct {
		name     string
		got, off uintptr
	}{
		{"rank", unsafe.Offsetof(c.rank), 8}, {"accumulate", unsafe.Offsetof(c.accumulate), 12},
		{"shape", unsafe.Offsetof(c.shape), 16}, {"dstStride", unsafe.Offsetof(c.dstStride), 80},
		{"srcStride", unsafe.Offsetof(c.srcStride), 144},
	} {
		if f.got != f.off {
			t.Errorf("%s at offset %d, want %d", f.name, f.got, f.off)
		}
	}
}

func TestLaunchGeometry(t *testing.T) {
	for _, sms := range []int{1, 2, 132} {
		for _, n := range []int64{1, 255, 256, 257, 1 << 20, 1 << 33} {
			g, b := elementwiseGrid(n, sms)
			if !g.validGrid() || !b.validBlock() {
				t.Errorf("elementwise n=%d sms=%d: grid %v block %v invalid", n, sms, g, b)
			}
			if int64(g.x)*int64(b.x) < min(n, int64(sms*32*elemBlock)) {
				t.Errorf("elementwise n=%d: grid %v block %v covers too little", n, g, b)
			}
		}
		for _, rc := range [][2]int{{1, 1}, {7, 13}, {1000, 1}, {3, 127}, {2, 4096}, {5, 100000}, {1 << 20, 64}} {
			rows, cols := rc[0], rc[1]
			g, b := rowGeometry(rows, cols, sms)
			if !g.validGrid() || !b.validBlock() || b.x%32 != 0 || b.x&(b.x-1) != 0 {
				t.Errorf("rows %v: grid %v block %v", rc, g, b)
			}
			// The reduction slots: one per warp of the block, at most 32.
			if b.x/32*b.y > 32 {
				t.Errorf("rows %v: block %v has more than 32 warps", rc, b)
			}
			if b.x*b.y != rowBlock || (b.x < rowBlock && b.x*8 < cols) {
				t.Errorf("rows %v: %d threads for a row of %d", rc, b.x, cols)
			}
		}
	}
	for _, rows := range []int{0, 1, 63, 64, 65, 1000, 16384, 16385, 1 << 24} {
		chunks, per := chunking(rows)
		if rows == 0 {
			if chunks != 0 {
				t.Errorf("chunking(0) = %d chunks", chunks)
			}
			continue
		}
		if chunks < 1 || chunks > maxChunks || chunks*per < rows || (chunks-1)*per >= rows {
			t.Errorf("chunking(%d) = %d chunks of %d", rows, chunks, per)
		}
		g, b := columnGrid(4097, chunks)
		if !g.validGrid() || !b.validBlock() || g.x*colTile < 4097 || g.y != chunks {
			t.Errorf("columnGrid(4097, %d) = %v %v", chunks, g, b)
		}
	}
}

// TestGemmMapping checks the row-major to column-major translation by
// running it: a column-major SGEMM with cuBLAS's semantics (leading
// dimensions, transposes, batch strides), written here in float64, on the
// row-major buffers, against a row-major float64 reference.
func TestGemmMapping(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		batchA, batchB, batch, m, n, k int
	}{
		{1, 1, 1, 1, 1, 1}, {1, 1, 1, 7, 13, 5}, {1, 1, 1, 3, 1, 9}, {1, 1, 1, 1, 8, 3},
		{4, 4, 4, 5, 6, 7}, {1, 3, 3, 4, 5, 2}, {3, 1, 3, 2, 5, 4},
	} {
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			p := backend.MatMulParams{TransA: tr[0], TransB: tr[1], Alpha: 0.75, Beta: -0.5}
			m, n, k := tc.m, tc.n, tc.k
			d := backend.MatMulDims{Batch: tc.batch, M: m, N: n, K: k, StrideC: m * n}
			if tc.batchA > 1 {
				d.StrideA = m * k
			}
			if tc.batchB > 1 {
				d.StrideB = k * n
			}
			a := randSlice(rng, tc.batchA*m*k)
			b := randSlice(rng, tc.batchB*k*n)
			c0 := randSlice(rng, tc.batch*m*n)
			// Row-major reference.
			want := make([]float64, len(c0))
			for q := 0; q < tc.batch; q++ {
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						var s float64
						for l := 0; l < k; l++ {
							ai := q*d.StrideA + i*k + l // A [m, k]
							if p.TransA {
								ai = q*d.StrideA + l*m + i // A [k, m]
							}
							bi := q*d.StrideB + l*n + j // B [k, n]
							if p.TransB {
								bi = q*d.StrideB + j*k + l // B [n, k]
							}
							s += a[ai] * b[bi]
						}
						want[q*m*n+i*n+j] = float64(p.Alpha)*s + float64(p.Beta)*c0[q*m*n+i*n+j]
					}
				}
			}
			g := gemmMapping(d, p)
			got := slices.Clone(c0)
			// cuBLAS's A is our B, its B our A.
			colMajorGemm(g, float64(p.Alpha), b, a, float64(p.Beta), got)
			for i := range want {
				if math.Abs(got[i]-want[i]) > 1e-12 {
					t.Fatalf("%+v trans %v: element %d = %g, want %g (mapping %+v)", tc, tr, i, got[i], want[i], g)
				}
			}
			if g.lda < 1 || g.ldb < 1 || g.ldc < 1 {
				t.Errorf("leading dimensions %d %d %d", g.lda, g.ldb, g.ldc)
			}
		}
	}
}

// colMajorGemm is BLAS SGEMM's definition, with cuBLAS's checks on the
// leading dimensions, in float64.
func colMajorGemm(g gemmCall, alpha float64, A, B []float64, beta float64, C []float64) {
	rowsA, rowsB := g.m, g.k
	if g.transa == cublasOpT {
		rowsA = g.k
	}
	if g.transb == cublasOpT {
		rowsB = g.n
	}
	if g.lda < max(1, rowsA) || g.ldb < max(1, rowsB) || g.ldc < max(1, g.m) {
		panic("cuBLAS would reject these leading dimensions")
	}
	for q := 0; q < g.batch; q++ {
		a, b, c := A[int64(q)*g.strideA:], B[int64(q)*g.strideB:], C[int64(q)*g.strideC:]
		for j := 0; j < g.n; j++ {
			for i := 0; i < g.m; i++ {
				var s float64
				for l := 0; l < g.k; l++ {
					var x, y float64
					if g.transa == cublasOpT {
						x = a[l+i*g.lda]
					} else {
						x = a[i+l*g.lda]
					}
					if g.transb == cublasOpT {
						y = b[j+l*g.ldb]
					} else {
						y = b[l+j*g.ldb]
					}
					s += x * y
				}
				c[i+j*g.ldc] = alpha*s + beta*c[i+j*g.ldc]
			}
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = rng.Float64()*2 - 1
	}
	return s
}

// TestTF32Tolerance documents TF32MatMulNMSE: products of operands rounded
// to TF32 (10 explicit mantissa bits) and accumulated in float32 stay
// within it against float64, on the conformance suite's kind of inputs,
// whether the conversion rounds to nearest or truncates (tensor cores
// ignore the low 13 bits of an unconverted float32), while clearly
// exceeding float32's limit.
func TestTF32Tolerance(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, s := range [][3]int{{7, 13, 5}, {64, 64, 64}, {16, 16, 4096}, {3, 127, 1000}} {
		m, n, k := s[0], s[1], s[2]
		a, b := randSlice(rng, m*k), randSlice(rng, k*n)
		for _, mode := range []struct {
			name  string
			round func(float32) float32
		}{{"nearest", tf32Nearest}, {"truncate", tf32Truncate}} {
			var num, den float64
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var ref float64
					var acc float32
					for l := 0; l < k; l++ {
						x, y := a[i*k+l], b[l*n+j]
						ref += x * y
						acc += mode.round(float32(x)) * mode.round(float32(y))
					}
					num += (float64(acc) - ref) * (float64(acc) - ref)
					den += ref * ref
				}
			}
			nmse := num / den
			t.Logf("%dx%dx%d, %s: simulated TF32 NMSE %.3g", m, n, k, mode.name, nmse)
			if nmse > TF32MatMulNMSE || nmse < 1e-9 {
				t.Errorf("%dx%dx%d, %s: NMSE %.3g outside [1e-9, %g]", m, n, k, mode.name, nmse, TF32MatMulNMSE)
			}
		}
	}
}

// tf32Nearest rounds x to TF32 precision (10 explicit mantissa bits), to
// nearest with ties away from zero (cvt.rna.tf32.f32).
func tf32Nearest(x float32) float32 {
	u := math.Float32bits(x)
	u += 1 << 12 // half of the 13 dropped bits
	u &^= 1<<13 - 1
	return math.Float32frombits(u)
}

// tf32Truncate drops the low 13 mantissa bits.
func tf32Truncate(x float32) float32 {
	return math.Float32frombits(math.Float32bits(x) &^ (1<<13 - 1))
}

func TestCompileKey(t *testing.T) {
	base := compileKey{source: "k", major: 9, minor: 0, driverVersion: 12080, nvrtcMajor: 12, nvrtcMinor: 8}
	if got := base.options(); !slices.Contains(got, "--gpu-architecture=sm_90") {
		t.Errorf("options %q lack the architecture", got)
	}
	for _, o := range base.options() {
		if strings.Contains(o, "fast") {
			t.Errorf("option %q: the kernels rely on IEEE arithmetic", o)
		}
	}
	seen := map[string]string{base.hash(): "base"}
	for name, k := range map[string]compileKey{
		"source": {source: "k2", major: 9, driverVersion: 12080, nvrtcMajor: 12, nvrtcMinor: 8},
		"arch":   {source: "k", major: 8, minor: 6, driverVersion: 12080, nvrtcMajor: 12, nvrtcMinor: 8},
		"minor":  {source: "k", major: 9, minor: 1, driverVersion: 12080, nvrtcMajor: 12, nvrtcMinor: 8},
		"driver": {source: "k", major: 9, driverVersion: 12090, nvrtcMajor: 12, nvrtcMinor: 8},
		"nvrtc":  {source: "k", major: 9, driverVersion: 12080, nvrtcMajor: 12, nvrtcMinor: 9},
		"ptx":    {source: "k", major: 9, ptx: true, driverVersion: 12080, nvrtcMajor: 12, nvrtcMinor: 8},
	} {
		h := k.hash()
		if prev, dup := seen[h]; dup {
			t.Errorf("changing the %s gives the hash of %s", name, prev)
		}
		seen[h] = name
	}
	if base.hash() != (compileKey{source: "k", major: 9, driverVersion: 12080, nvrtcMajor: 12, nvrtcMinor: 8}).hash() {
		t.Error("hash is not a function of the key")
	}
	// The hash of a cubin's key is what it was before PTX targets were
	// added (3eb9106^), so that existing caches stay valid.
	if h, want := base.hash(), "95b4feca098bacaeb37c8837f385751749efe81beb5142a89dddb97a5373eb4f"; h != want {
		t.Errorf("hash %s, want %s: a changed hash orphans every kernel cache", h, want)
	}
	ptx := base
	ptx.ptx = true
	if o := ptx.options(); !slices.Equal(o, []string{"--gpu-architecture=compute_90"}) {
		t.Errorf("PTX options %q", o)
	}
	if f := filepath.Base(ptx.cacheFile("d")); !strings.HasPrefix(f, "kernels-compute_90-") || !strings.HasSuffix(f, ".ptx") {
		t.Errorf("PTX cache file %q", f)
	}
	dir := filepath.FromSlash("/c")
	f := base.cacheFile(dir)
	if filepath.Dir(f) != dir || !strings.HasPrefix(filepath.Base(f), "kernels-sm_90-") || !strings.HasSuffix(f, ".cubin") {
		t.Errorf("cache file %q", f)
	}
	dir, err := defaultCacheDir()
	if err == nil && !strings.HasSuffix(dir, filepath.Join("sora", "cuda")) {
		t.Errorf("default cache folder %q", dir)
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "folder")
	path := filepath.Join(dir, "f.cubin")
	if err := writeAtomic(path, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(path, []byte("two")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "two" {
		t.Fatalf("read %q, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only the file (no temporaries left)", len(entries))
	}
	// A folder that cannot be created is an error, not a panic.
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o644)
	if err := writeAtomic(filepath.Join(blocker, "x", "f"), []byte("x")); err == nil {
		t.Error("writing under a file succeeded")
	}
}

func TestOptionsFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		want    Options
		wantErr string
	}{
		{env: nil, want: Options{}},
		{env: map[string]string{EnvTF32: "1"}, want: Options{TF32: true}},
		{env: map[string]string{EnvTF32: "false", EnvCache: "/tmp/k"}, want: Options{CacheDir: "/tmp/k"}},
		{env: map[string]string{EnvCache: "OFF"}, want: Options{NoCache: true}},
		{env: map[string]string{EnvTF32: "yes please"}, wantErr: "SORA_CUDA_TF32=\"yes please\""},
		{env: map[string]string{EnvPTX: "1", EnvTF32: "0"}, want: Options{PTX: true}},
		{env: map[string]string{EnvPTX: "sometimes"}, wantErr: "SORA_CUDA_PTX=\"sometimes\""},
	} {
		got, err := optionsFrom(func(k string) string { return tc.env[k] })
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want %q", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %+v, %v; want %+v", tc.env, got, err, tc.want)
		}
	}
}

func TestFits32(t *testing.T) {
	if !fits32([]strided.Axis{{N: 1 << 20, DS: 1, SS: 1 << 10}}) {
		t.Error("fits32 rejects a span of 2^30 elements")
	}
	// A span of 2^32 elements is one only where int has more than 32
	// bits; a 32-bit int cannot count it.
	if strconv.IntSize > 32 && fits32([]strided.Axis{{N: 1 << 22, DS: 1, SS: 1 << 10}}) {
		t.Error("fits32 accepts a span of 2^32 elements")
	}
}

func TestGroupIDs(t *testing.T) {
	ids := []int32{5, 2, 5, 0, 2, 5}
	got, segs := groupIDs(ids, nil)
	want := []int32{
		0, 2, 5, // distinct ids
		0, 1, 3, 6, // starts
		3, 1, 4, 0, 2, 5, // positions grouped by id, in order
	}
	if segs != 3 || !slices.Equal(got, want) {
		t.Errorf("groupIDs = %v (%d segments), want %v", got, segs, want)
	}
	// Reusing the buffer.
	got2, segs2 := groupIDs([]int32{1}, got)
	if segs2 != 1 || !slices.Equal(got2, []int32{1, 0, 1, 0}) {
		t.Errorf("groupIDs([1]) = %v", got2)
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Call: "cuMemAlloc_v2", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY", Text: "out of memory", driver: true}
	if got := e.Error(); got != "cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (out of memory)" {
		t.Errorf("Error() = %q", got)
	}
	if !IsOutOfMemory(e) || IsOutOfMemory(&Error{Code: 2, Name: "NVRTC_ERROR_PROGRAM_CREATION_FAILURE"}) {
		t.Error("IsOutOfMemory confuses a driver status with another library's")
	}
}

// TestErrorIsOutOfMemory: the three libraries' statuses for a failed
// allocation, as api.cu, blasErr and rtcErr build them, match
// backend.ErrOutOfMemory, wrapped as the backend wraps them; their other
// statuses, the same codes in another library among them, do not.
func TestErrorIsOutOfMemory(t *testing.T) {
	for _, c := range []struct {
		err  *Error
		want bool
	}{
		{&Error{Call: "cuMemAlloc_v2", Code: cuErrorOutOfMemory, Name: "CUDA_ERROR_OUT_OF_MEMORY", driver: true}, true},
		// cuGetErrorName failed: the code alone says it.
		{&Error{Call: "cuLaunchKernel(scale)", Code: cuErrorOutOfMemory, Name: "CUresult 2", driver: true}, true},
		{&Error{Call: "cublasSgemm_v2", Code: cublasStatusAllocFailed, Name: cublasStatusNames[cublasStatusAllocFailed]}, true},
		{&Error{Call: "nvrtcCompileProgram", Code: nvrtcErrorOutOfMemory, Name: nvrtcResultNames[nvrtcErrorOutOfMemory]}, true},
		{&Error{Call: "cuLaunchKernel(scale)", Code: 700, Name: "CUDA_ERROR_ILLEGAL_ADDRESS", driver: true}, false},
		{&Error{Call: "cuMemFree_v2", Code: 3, Name: "CUDA_ERROR_NOT_INITIALIZED", driver: true}, false},
		{&Error{Call: "nvrtcCreateProgram", Code: 3, Name: nvrtcResultNames[3]}, false}, // NVRTC's 3: invalid input
		{&Error{Call: "cublasCreate_v2", Code: 1, Name: cublasStatusNames[1]}, false},   // cuBLAS's 1: not initialised
		{&Error{Call: "cublasSgemm_v2", Code: 13, Name: cublasStatusNames[13]}, false},  // execution failed
	} {
		wrapped := fmt.Errorf("cuda: Alloc [4] (16 bytes): %w", &backend.OpError{Op: "matmul", Err: fmt.Errorf("%w (retried)", c.err)})
		for _, err := range []error{c.err, wrapped} {
			if got := errors.Is(err, backend.ErrOutOfMemory); got != c.want {
				t.Errorf("errors.Is(%v, backend.ErrOutOfMemory) = %v, want %v", err, got, c.want)
			}
		}
		var e *Error
		if !errors.As(wrapped, &e) || e != c.err {
			t.Errorf("errors.As(%v) does not find the *Error", wrapped)
		}
	}
}

// TestKernelConstantsMatch checks the launch constants the Go side and
// kernels.cu share: a mismatch would launch row kernels with more threads
// than their shared arrays and partial rows are sized for, or column sums
// with the wrong tile, and corrupt results silently.
func TestKernelConstantsMatch(t *testing.T) {
	src, err := os.ReadFile("kernels.cu")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		goes int
	}{{"ROW_BLOCK", rowBlock}, {"ROW_CACHE", rowCache}, {"COL_TILE", colTile}, {"COL_LANES", colLanes}} {
		m := regexp.MustCompile(`(?m)^#define `+c.name+` (\d+)\b`).FindAllSubmatch(src, -1)
		if len(m) != 1 {
			t.Errorf("kernels.cu: %d definitions of %s, want 1", len(m), c.name)
			continue
		}
		if got, _ := strconv.Atoi(string(m[0][1])); got != c.goes {
			t.Errorf("kernels.cu defines %s as %d, the Go side uses %d", c.name, got, c.goes)
		}
	}
}
