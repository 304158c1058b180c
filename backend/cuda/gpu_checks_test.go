package cuda

// Checks for the first runs on a GPU (scripts/gpu-check.sh runs every
// TestGPU test): that Upload has consumed its source when it returns, the
// 2^31 index boundary, recovery when device memory runs out, and shapes at
// the edges of the kernels' and cuBLAS's paths, compared with the CPU
// backend or with exact expectations. Each check is a function of the
// backend and its sizes: the TestGPU tests run them on the device at full
// size (and skip without one), TestEmulatedGPUChecks at small sizes on the
// emulated device, which tests the checks themselves.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"unsafe"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/conformance"
	"github.com/sora-go/sora/internal/refops"
)

// twin runs the same ops on a CUDA backend and on the CPU backend, whose
// results are the reference.
type twin struct {
	t   testing.TB
	gpu *Backend
	cpu *cpu.Backend
}

func newTwin(t testing.TB, b *Backend) *twin {
	c := cpu.New(cpu.Options{})
	t.Cleanup(func() { c.Close() })
	return &twin{t: t, gpu: b, cpu: c}
}

// pair is one tensor on both backends.
type pair struct{ g, c backend.Tensor }

// view applies the same view to both tensors.
func (p pair) view(f func(backend.Tensor) backend.Tensor) pair { return pair{f(p.g), f(p.c)} }

// input returns a tensor holding data on both backends.
func (w *twin) input(data []float32, shape ...int) pair {
	w.t.Helper()
	var p pair
	var err error
	if p.g, err = w.gpu.Alloc(backend.Float32, shape...); err != nil {
		w.t.Fatal(err)
	}
	if p.c, err = w.cpu.Alloc(backend.Float32, shape...); err != nil {
		w.t.Fatal(err)
	}
	w.gpu.Upload(p.g, data)
	w.cpu.Upload(p.c, data)
	return p
}

// inputAt returns a view at element offset off into a buffer of values
// uniform in [-1, 1), on both backends.
func (w *twin) inputAt(rng *rand.Rand, off int, shape ...int) pair {
	w.t.Helper()
	n := backend.Shape(shape).NumElements()
	buf := w.input(uniform(rng, off+n, -1, 1), off+n)
	return buf.view(func(t backend.Tensor) backend.Tensor { return t.MustSlice(off, off+n).MustReshape(shape...) })
}

// do runs f on the CUDA backend, then on the CPU backend; on picks a
// pair's tensor of the backend f is given.
func (w *twin) do(f func(b backend.Backend, on func(pair) backend.Tensor)) {
	f(w.gpu, func(p pair) backend.Tensor { return p.g })
	f(w.cpu, func(p pair) backend.Tensor { return p.c })
}

// check downloads p from both backends and compares them: the normalised
// mean squared error over the CPU's finite values must be within the
// conformance suite's limit for key, and where the CPU's value is not
// finite the CUDA value must be the same.
func (w *twin) check(what, key string, p pair) {
	w.t.Helper()
	got, want := make([]float32, p.g.Len()), make([]float32, p.c.Len())
	if err := w.gpu.Download(got, p.g); err != nil {
		w.t.Errorf("%s: cuda: %v", what, err)
		return
	}
	if err := w.cpu.Download(want, p.c); err != nil {
		w.t.Fatalf("%s: cpu: %v", what, err)
	}
	var num, den, worst float64
	at := -1
	for i, r := range want {
		g := float64(got[i])
		if math.IsNaN(float64(r)) || math.IsInf(float64(r), 0) {
			if math.Float32bits(got[i]) != math.Float32bits(r) && !(math.IsNaN(g) && math.IsNaN(float64(r))) {
				w.t.Errorf("%s: element %d is %g, want %g", what, i, got[i], r)
				return
			}
			continue
		}
		d := g - float64(r)
		if math.IsNaN(d) || math.IsInf(d, 0) {
			w.t.Errorf("%s: element %d is %g, want %g", what, i, got[i], r)
			return
		}
		num += d * d
		den += float64(r) * float64(r)
		if math.Abs(d) > worst {
			worst, at = math.Abs(d), i
		}
	}
	limit := conformance.Threshold(key)
	nmse := 0.0
	if den > 0 {
		nmse = num / den
	} else if num > 0 {
		nmse = math.Inf(1)
	}
	if !(nmse <= limit) {
		w.t.Errorf("%s: NMSE %.3g against the CPU backend, limit %g (largest difference %.3g at element %d: %g, want %g)",
			what, nmse, limit, worst, at, got[at], want[at])
		return
	}
	w.t.Logf("%s: NMSE %.3g (limit %g)", what, nmse, limit)
}

func uniform(rng *rand.Rand, n int, lo, hi float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(lo + (hi-lo)*rng.Float64())
	}
	return out
}

// deviceMemory returns the device's free and total bytes (cuMemGetInfo).
func deviceMemory(t testing.TB, b *Backend) (free, total int64) {
	t.Helper()
	var f, tot uintptr
	err := b.enter()
	if err == nil {
		err = b.api.cu("cuMemGetInfo_v2", call(b.api.cuMemGetInfo, uintptr(unsafe.Pointer(&f)), uintptr(unsafe.Pointer(&tot))))
	}
	b.leave()
	if err != nil {
		t.Fatal(err)
	}
	return int64(f), int64(tot)
}

// ---------------------------------------------------------------------------
// A. Transfers and staging.

// checkUploadSource uploads one slice into several tensors in turn,
// rewriting it as soon as each Upload returns, with no Sync in between,
// then overwrites it with NaN and downloads the tensors: each must hold
// what the slice held during its own Upload, which shows that the
// pageable cuMemcpyHtoDAsync had consumed the slice when Upload returned.
func checkUploadSource(t *testing.T, b *Backend, n int) {
	const copies = 4
	// Distinct integers below 2^24, exact in float32.
	pattern := func(k, i int) float32 { return float32((uint32(i)*2654435761 + uint32(k)*40503) % 16777213) }
	ts := make([]backend.Tensor, copies)
	for k := range ts {
		ts[k] = mustAlloc(t, b, n)
	}
	src := make([]float32, n)
	for k, x := range ts {
		for i := range src {
			src[i] = pattern(k, i)
		}
		b.Upload(x, src)
	}
	for i := range src {
		src[i] = float32(math.NaN())
	}
	got := make([]float32, n)
	for k, x := range ts {
		if err := b.Download(got, x); err != nil {
			t.Fatalf("%d elements: %v", n, err)
		}
		for i, v := range got {
			if v != pattern(k, i) {
				t.Errorf("%d elements, upload %d of %d: element %d is %g, want %g (the slice changed after Upload returned)",
					n, k+1, copies, i, v, pattern(k, i))
				break
			}
		}
		b.Free(x)
	}
}

// checkScatterTwice runs two ScatterAdds into one table with different
// ids (the first concentrated on few rows, the second spread) and no Sync
// between them, which reuse the backend's host staging of grouped ids and
// its scratch block, and compares the table with the CPU backend's.
func checkScatterTwice(t *testing.T, b *Backend, vocab, dim, n1, n2 int) {
	w := newTwin(t, b)
	rng := rand.New(rand.NewPCG(1, 7))
	table := w.input(uniform(rng, vocab*dim, -1, 1), vocab, dim)
	dy1 := w.input(uniform(rng, n1*dim, -1, 1), n1, dim)
	dy2 := w.input(uniform(rng, n2*dim, -1, 1), n2, dim)
	ids1, ids2 := make([]int32, n1), make([]int32, n2)
	for i := range ids1 {
		ids1[i] = int32(rng.IntN(max(vocab/16, 1)))
	}
	for i := range ids2 {
		ids2[i] = int32(rng.IntN(vocab))
	}
	w.do(func(b backend.Backend, on func(pair) backend.Tensor) {
		b.ScatterAdd(on(table), on(dy1), ids1)
		b.ScatterAdd(on(table), on(dy2), ids2)
	})
	w.check(fmt.Sprintf("two ScatterAdds into [%d, %d] (%d then %d ids)", vocab, dim, n1, n2), string(backend.OpScatterAdd), table)
}

// ---------------------------------------------------------------------------
// B. The 2^31 boundary.

// checkIndexBoundary copies a [side, side] tensor into a transposed view
// of a buffer with guard regions on both sides (for side = 46340, side² is
// 88047 elements short of 2^31, within one grid step of it on a large GPU,
// where copy_strided32's int counter overflowed), twice: with src[i][j] =
// j, then = i. Buffer row r must then hold r everywhere, then 0..side−1,
// which is checked on sampled rows and on the last element of every row
// (written by the last threads), and the guards must be untouched. Then it
// runs element-wise ops over big elements (2^31 + 7 on the device) and
// checks both ends and the elements around 2^31.
func checkIndexBoundary(t *testing.T, b *Backend, side, big int) {
	const guard, sentinel = 1 << 17, -7
	n := side * side
	buf := mustAlloc(t, b, n+2*guard)
	src := mustAlloc(t, b, side, side)
	idx := mustAlloc(t, b, side)
	lastCol := mustAlloc(t, b, side)
	ramp := make([]float32, side)
	for i := range ramp {
		ramp[i] = float32(i)
	}
	b.Upload(idx, ramp)
	b.Fill(buf, sentinel)
	dst, err := buf.MustSlice(guard, guard+n).MustReshape(side, side).Permute(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The last element of each buffer row.
	last, err := buf.Strided(guard+side-1, backend.Shape{side}, []int{side})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 6))
	rows := []int{0, 1, side / 2, side - 2, side - 1, rng.IntN(side), rng.IntN(side), rng.IntN(side)}
	got := make([]float32, side)
	expect := func(what string, want func(i int) float32) {
		t.Helper()
		for i, v := range got {
			if v != want(i) {
				t.Errorf("%s: element %d is %g, want %g", what, i, v, want(i))
				return
			}
		}
	}
	for pass, bc := range []backend.Tensor{idx, idx.MustReshape(side, 1)} {
		b.Fill(src, 0)
		b.Binary(backend.Add, src, src, bc) // src[i][j] = j, then i
		b.Copy(dst, src, false)
		want := func(r, a int) float32 { // buffer row r, element a
			if pass == 0 {
				return float32(r)
			}
			return float32(a)
		}
		for _, r := range rows {
			if err := b.Download(got, buf.MustSlice(guard+r*side, guard+(r+1)*side)); err != nil {
				t.Fatalf("pass %d: %v", pass, err)
			}
			expect(fmt.Sprintf("pass %d, row %d of the transposed copy", pass, r), func(a int) float32 { return want(r, a) })
		}
		b.Copy(lastCol, last, false)
		if err := b.Download(got, lastCol); err != nil {
			t.Fatal(err)
		}
		expect(fmt.Sprintf("pass %d, last element of each row", pass), func(r int) float32 { return want(r, side-1) })
		for _, g := range []backend.Tensor{buf.MustSlice(0, guard), buf.MustSlice(guard+n, n+2*guard)} {
			gv := make([]float32, guard)
			if err := b.Download(gv, g); err != nil {
				t.Fatal(err)
			}
			for i, v := range gv {
				if v != sentinel {
					t.Errorf("pass %d: the guard at buffer element %d was overwritten with %g", pass, g.Offset()+i, v)
					break
				}
			}
		}
	}
	b.Free(buf)
	b.Free(src)

	x := mustAlloc(t, b, big)
	b.Fill(x, 1.5)
	b.Scale(x, x, 2)
	b.Unary(backend.Square, x, x)
	windows := [][2]int{{0, min(16, big)}, {max(big-16, 0), big}}
	if big > math.MaxInt32 {
		at := math.MaxInt32 - 8 // a variable, so that 32-bit builds compile
		windows = append(windows, [2]int{at, min(at+17, big)})
	}
	for _, win := range windows {
		vals := make([]float32, win[1]-win[0])
		if err := b.Download(vals, x.MustSlice(win[0], win[1])); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if v != 9 {
				t.Errorf("Fill 1.5, Scale 2, Square over %d elements: element %d is %g, want 9", big, win[0]+i, v)
				break
			}
		}
	}
	b.Free(x)
}

// ---------------------------------------------------------------------------
// C. Out of memory.

// fillDevice allocates blocks of n elements until Alloc fails, which must
// be for lack of memory, and returns them.
func fillDevice(t *testing.T, b *Backend, n int) []backend.Tensor {
	t.Helper()
	var out []backend.Tensor
	for len(out) < 1<<20 {
		x, err := b.Alloc(backend.Float32, n)
		if err != nil {
			if !IsOutOfMemory(err) {
				t.Fatalf("Alloc of %d bytes after %d such blocks: %v, want an out-of-memory error", 4*n, len(out), err)
			}
			return out
		}
		out = append(out, x)
	}
	t.Fatalf("%d blocks of %d bytes allocated and no failure", len(out), 4*n)
	return nil
}

// memoryCase configures checkMemoryFull: sizes in elements.
type memoryCase struct {
	block, big int   // the blocks that fill the device, the one allocated after
	refill     []int // block sizes that then fill it to the brim, largest first
	products   []mmCase
	unaryN     int
	// before, if set, runs just before the ops on the full pool (the
	// emulated check makes the fakes refuse a call there), and then the
	// ops must have returned the cache to the device.
	before func()
}

// checkMemoryFull fills the device with blocks until Alloc fails, frees
// them (into the pool's cache) and allocates a bigger block, which must
// succeed by returning the cache to the device. Then it fills the device
// to the brim again, frees everything into the cache, and runs a kernel
// never launched before on this backend and matrix products of shapes
// never used before in the process (transposes, a batch, a long inner
// dimension), whose operands were allocated beforehand: what the driver
// and cuBLAS need must come from the cache. Results are compared with the
// CPU backend.
func checkMemoryFull(t *testing.T, b *Backend, mc memoryCase) {
	w := newTwin(t, b)
	rng := rand.New(rand.NewPCG(3, 3))
	var runs []func()
	for _, c := range mc.products {
		runs = append(runs, w.prepareMatMul(rng, c))
	}
	ux := w.input(uniform(rng, mc.unaryN, -3, 3), mc.unaryN)
	uy := w.input(make([]float32, mc.unaryN), mc.unaryN)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}

	blocks := fillDevice(t, b, mc.block)
	if len(blocks) == 0 {
		t.Fatalf("not one block of %d bytes could be allocated", 4*mc.block)
	}
	for _, x := range blocks {
		b.Free(x)
	}
	frees := b.MemoryStats().DeviceFrees
	y, err := b.Alloc(backend.Float32, mc.big)
	if err != nil {
		t.Fatalf("Alloc of %d bytes with %d blocks of %d bytes cached: %v", 4*mc.big, len(blocks), 4*mc.block, err)
	}
	if s := b.MemoryStats(); s.DeviceFrees <= frees {
		t.Errorf("Alloc of %d bytes succeeded after %d blocks of %d bytes were cached, with no cuMemFree (stats %+v)", 4*mc.big, len(blocks), 4*mc.block, s)
	}
	t.Logf("%d blocks of %d bytes filled the device; a block of %d bytes then came after %d cuMemFree calls",
		len(blocks), 4*mc.block, 4*mc.big, b.MemoryStats().DeviceFrees-frees)
	b.Free(y)

	var all []backend.Tensor
	for _, n := range mc.refill {
		all = append(all, fillDevice(t, b, n)...)
	}
	for _, x := range all {
		b.Free(x)
	}
	before := b.MemoryStats()
	free, total := deviceMemory(t, b)
	t.Logf("the pool caches %d bytes; the device has %d of %d bytes free", before.Cached, free, total)
	if mc.before != nil {
		mc.before()
	}
	w.do(func(b backend.Backend, on func(pair) backend.Tensor) { b.Unary(backend.GELU, on(uy), on(ux)) })
	w.check("GELU with the pool holding the device's memory", string(backend.OpUnary), uy)
	for _, run := range runs {
		run()
	}
	after := b.MemoryStats()
	t.Logf("the ops on the full pool returned its cache to the device: %v (%d cuMemFree calls)",
		after.DeviceFrees > before.DeviceFrees, after.DeviceFrees-before.DeviceFrees)
	if mc.before != nil && after.DeviceFrees == before.DeviceFrees {
		t.Errorf("a call was refused for lack of memory and the cache was not returned to the device")
	}
}

// ---------------------------------------------------------------------------
// E. Shapes at the edges.

// mmCase is one matrix product: A [batch,] m×k (k×m transposed), B k×n
// (n×k transposed; rank 2 and shared by the batch with shareB), C m×n, as
// views at element offsets offA, offB, offC of their buffers. batch 0
// means rank-2 operands.
type mmCase struct {
	batch, m, n, k   int
	transA, transB   bool
	shareB           bool
	offA, offB, offC int
	alpha, beta      float32
}

func (c mmCase) String() string {
	s := fmt.Sprintf("m=%d n=%d k=%d", c.m, c.n, c.k)
	if c.batch > 0 {
		s = fmt.Sprintf("batch=%d %s", c.batch, s)
		if c.shareB {
			s += " shared B"
		}
	}
	if c.transA || c.transB {
		s += fmt.Sprintf(" transA=%v transB=%v", c.transA, c.transB)
	}
	if c.offA+c.offB+c.offC > 0 {
		s += fmt.Sprintf(" offsets %d,%d,%d", c.offA, c.offB, c.offC)
	}
	return s
}

// prepareMatMul allocates and fills the operands of c on both backends
// and returns a function that runs the product on both and compares.
func (w *twin) prepareMatMul(rng *rand.Rand, c mmCase) func() {
	w.t.Helper()
	as, bs, cs := []int{c.m, c.k}, []int{c.k, c.n}, []int{c.m, c.n}
	if c.transA {
		as = []int{c.k, c.m}
	}
	if c.transB {
		bs = []int{c.n, c.k}
	}
	if c.batch > 0 {
		as, cs = append([]int{c.batch}, as...), append([]int{c.batch}, cs...)
		if !c.shareB {
			bs = append([]int{c.batch}, bs...)
		}
	}
	a, bm, out := w.inputAt(rng, c.offA, as...), w.inputAt(rng, c.offB, bs...), w.inputAt(rng, c.offC, cs...)
	p := backend.MatMulParams{TransA: c.transA, TransB: c.transB, Alpha: c.alpha, Beta: c.beta}
	if p.Alpha == 0 {
		p.Alpha = 1
	}
	key := string(backend.OpMatMul)
	if c.k >= 4096 {
		key = "matmul_large_k"
	}
	return func() {
		w.t.Helper()
		w.do(func(b backend.Backend, on func(pair) backend.Tensor) { b.MatMul(on(out), on(a), on(bm), p) })
		w.check("MatMul "+c.String(), key, out)
	}
}

// edgeCase configures checkEdgeShapes.
type edgeCase struct {
	keys, softmaxRows int // a softmax over long rows
	vocab, ceRows     int // cross-entropy over a large vocabulary
	manyRows          int // row ops over manyRows rows of 8
	dim               int // matrix extents of the offset and degenerate products
}

// checkEdgeShapes compares with the CPU backend: softmax (plain, causal,
// sliding-window, backwards) over rows of keys elements; cross-entropy and its gradient
// with label smoothing and an ignored row over a vocab-wide row; the row
// ops over manyRows rows of 8 (reductions, column sums, softmax, the
// norms and their backwards with parameter gradients, cross-entropy);
// matrix products on views at element offsets 1, 2, 3 (all four
// transposes, a batch, alpha and beta), and with m, n or k equal to 1.
func checkEdgeShapes(t *testing.T, b *Backend, ec edgeCase) {
	w := newTwin(t, b)
	rng := rand.New(rand.NewPCG(5, 8))

	// Softmax over long rows.
	x := w.input(uniform(rng, ec.softmaxRows*ec.keys, -8, 8), ec.softmaxRows, ec.keys)
	y := w.input(make([]float32, ec.softmaxRows*ec.keys), ec.softmaxRows, ec.keys)
	dy := w.input(uniform(rng, ec.softmaxRows*ec.keys, -1, 1), ec.softmaxRows, ec.keys)
	dx := w.input(make([]float32, ec.softmaxRows*ec.keys), ec.softmaxRows, ec.keys)
	sp := backend.SoftmaxParams{Scale: 0.125}
	w.do(func(b backend.Backend, on func(pair) backend.Tensor) {
		b.Softmax(on(y), on(x), sp)
		b.SoftmaxGrad(on(dx), on(y), on(dy), sp)
	})
	w.check(fmt.Sprintf("Softmax [%d, %d]", ec.softmaxRows, ec.keys), string(backend.OpSoftmax), y)
	w.check(fmt.Sprintf("SoftmaxGrad [%d, %d]", ec.softmaxRows, ec.keys), string(backend.OpSoftmaxGrad), dx)
	cx := w.input(uniform(rng, 8*ec.keys, -8, 8), 2, 4, ec.keys)
	cy := w.input(make([]float32, 8*ec.keys), 2, 4, ec.keys)
	cp := backend.SoftmaxParams{Causal: true, QueryOffset: ec.keys / 2}
	w.do(func(b backend.Backend, on func(pair) backend.Tensor) { b.Softmax(on(cy), on(cx), cp) })
	w.check(fmt.Sprintf("causal Softmax [2, 4, %d], query offset %d", ec.keys, cp.QueryOffset), string(backend.OpSoftmax), cy)
	// A sliding window over long rows, with its backward: each row's
	// visible keys start and end deep inside the row, many blocks wide.
	wy := w.input(make([]float32, 8*ec.keys), 2, 4, ec.keys)
	wdx := w.input(make([]float32, 8*ec.keys), 2, 4, ec.keys)
	wdy := w.input(uniform(rng, 8*ec.keys, -1, 1), 2, 4, ec.keys)
	wp := backend.SoftmaxParams{Causal: true, QueryOffset: ec.keys / 2, Window: ec.keys/3 + 1, Scale: 0.125}
	w.do(func(b backend.Backend, on func(pair) backend.Tensor) {
		b.Softmax(on(wy), on(cx), wp)
		b.SoftmaxGrad(on(wdx), on(wy), on(wdy), wp)
	})
	w.check(fmt.Sprintf("windowed Softmax [2, 4, %d], query offset %d, window %d", ec.keys, wp.QueryOffset, wp.Window), string(backend.OpSoftmax), wy)
	w.check(fmt.Sprintf("windowed SoftmaxGrad [2, 4, %d], query offset %d, window %d", ec.keys, wp.QueryOffset, wp.Window), string(backend.OpSoftmaxGrad), wdx)

	// Cross-entropy over a large vocabulary.
	logits := w.input(uniform(rng, ec.ceRows*ec.vocab, -6, 6), ec.ceRows, ec.vocab)
	loss := w.input(make([]float32, ec.ceRows), ec.ceRows)
	dlogits := w.input(make([]float32, ec.ceRows*ec.vocab), ec.ceRows, ec.vocab)
	targets := make([]int32, ec.ceRows)
	for i := range targets {
		targets[i] = int32(rng.IntN(ec.vocab))
	}
	targets[0], targets[ec.ceRows-1] = int32(ec.vocab-1), -100
	cep := backend.CrossEntropyParams{IgnoreIndex: -100, Smoothing: 0.1, Scale: 1 / float32(ec.ceRows-1)}
	w.do(func(b backend.Backend, on func(pair) backend.Tensor) {
		b.CrossEntropy(on(loss), on(logits), targets, cep)
		b.CrossEntropyGrad(on(dlogits), on(logits), targets, cep)
	})
	w.check(fmt.Sprintf("CrossEntropy [%d, %d], smoothing 0.1", ec.ceRows, ec.vocab), string(backend.OpCrossEntropy), loss)
	w.check(fmt.Sprintf("CrossEntropyGrad [%d, %d], smoothing 0.1", ec.ceRows, ec.vocab), string(backend.OpCrossEntropyGrad), dlogits)

	// The row ops over many short rows, and over a few long ones (longer
	// than a row kernel holds in registers on the device).
	checkRowOps(w, rng, ec.manyRows, 8)
	checkRowOps(w, rng, ec.softmaxRows, ec.keys)
	checkMaskedRows(w, rng, ec.keys)
	checkNormExtremes(w, rng)

	// Matrix products on views at element offsets, and with m, n or k = 1.
	d := ec.dim
	var cases []mmCase
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			cases = append(cases,
				mmCase{m: d + 1, n: d + 15, k: 2*d + 1, transA: ta, transB: tb, offA: 1, offB: 2, offC: 3, alpha: 1.5, beta: 0.5},
				mmCase{m: 1, n: d, k: 3 * d, transA: ta, transB: tb},
				mmCase{m: d, n: 1, k: 3 * d, transA: ta, transB: tb},
				mmCase{m: d, n: d + 5, k: 1, transA: ta, transB: tb},
				mmCase{m: 1, n: 1, k: 4 * d, transA: ta, transB: tb})
		}
	}
	cases = append(cases,
		mmCase{batch: 3, m: d + 1, n: d - 1, k: d + 3, offA: 3, offB: 1, offC: 2},
		mmCase{batch: 3, m: d + 1, n: d - 1, k: d + 3, transB: true, shareB: true, offA: 2, offB: 3, offC: 1, beta: 1})
	for _, c := range cases {
		w.prepareMatMul(rng, c)()
	}
}

// checkRowOps compares the row ops with the CPU backend over rows rows of
// cols elements: the reductions, column sums, softmax, the norms and their
// backwards with parameter gradients, and cross-entropy.
func checkRowOps(w *twin, rng *rand.Rand, r, cols int) {
	mx := w.input(uniform(rng, r*cols, -2, 2), r, cols)
	mdy := w.input(uniform(rng, r*cols, -1, 1), r, cols)
	gain := w.input(uniform(rng, cols, 0.5, 1.5), cols)
	bias := w.input(uniform(rng, cols, -0.5, 0.5), cols)
	out := func(shape ...int) pair {
		return w.input(make([]float32, backend.Shape(shape).NumElements()), shape...)
	}
	red := map[backend.ReduceOp]pair{backend.Sum: out(r), backend.SumSquares: out(r), backend.Max: out(r)}
	colSum, msm, rms, ln := out(cols), out(r, cols), out(r, cols), out(r, cols)
	rmsDx, rmsDw, lnDx, lnDg, lnDb := out(r, cols), out(cols), out(r, cols), out(cols), out(cols)
	mloss := out(r)
	mtargets := make([]int32, r)
	for i := range mtargets {
		mtargets[i] = int32(rng.IntN(cols))
	}
	const eps = 1e-5
	w.do(func(b backend.Backend, on func(pair) backend.Tensor) {
		for op, dst := range red {
			b.ReduceRows(op, on(dst), on(mx))
		}
		b.SumColumns(on(colSum), on(mx))
		b.Softmax(on(msm), on(mx), backend.SoftmaxParams{})
		b.RMSNorm(on(rms), on(mx), on(gain), eps)
		b.RMSNormGrad(on(rmsDx), on(rmsDw), on(mx), on(gain), on(mdy), eps)
		b.LayerNorm(on(ln), on(mx), on(gain), on(bias), eps)
		b.LayerNormGrad(on(lnDx), on(lnDg), on(lnDb), on(mx), on(gain), on(mdy), eps)
		b.CrossEntropy(on(mloss), on(mx), mtargets, backend.CrossEntropyParams{IgnoreIndex: -100})
	})
	shape := fmt.Sprintf("[%d, %d]", r, cols)
	for op, dst := range red {
		w.check(fmt.Sprintf("ReduceRows %v %s", op, shape), string(backend.OpReduceRows), dst)
	}
	for _, c := range []struct {
		what string
		op   backend.Op
		p    pair
	}{
		{"SumColumns", backend.OpSumColumns, colSum},
		{"Softmax", backend.OpSoftmax, msm},
		{"RMSNorm", backend.OpRMSNorm, rms},
		{"RMSNormGrad dx", backend.OpRMSNormGrad, rmsDx},
		{"RMSNormGrad dw", backend.OpRMSNormGrad, rmsDw},
		{"LayerNorm", backend.OpLayerNorm, ln},
		{"LayerNormGrad dx", backend.OpLayerNormGrad, lnDx},
		{"LayerNormGrad dgamma", backend.OpLayerNormGrad, lnDg},
		{"LayerNormGrad dbeta", backend.OpLayerNormGrad, lnDb},
		{"CrossEntropy", backend.OpCrossEntropy, mloss},
	} {
		w.check(c.what+" "+shape, string(c.op), c.p)
	}

	// LayerNorm of rows whose mean is large next to their spread, where a
	// mean rounded to float would shift every centred value.
	far := uniform(rng, r*cols, -0.01, 0.01)
	for i := range far {
		far[i] += 300
	}
	fx := w.input(far, r, cols)
	fln, fdx := out(r, cols), out(r, cols)
	w.do(func(b backend.Backend, on func(pair) backend.Tensor) {
		b.LayerNorm(on(fln), on(fx), on(gain), on(bias), eps)
		b.LayerNormGrad(on(fdx), backend.Tensor{}, backend.Tensor{}, on(fx), on(gain), on(mdy), eps)
	})
	w.check("LayerNorm of rows near 300 "+shape, string(backend.OpLayerNorm), fln)
	w.check("LayerNormGrad dx of rows near 300 "+shape, string(backend.OpLayerNormGrad), fdx)
}

// checkGELUTanh checks GELU's tanh approximation element by element, in
// relative terms, against the float64 reference, over n points from x =
// −10 (where x·σ(y) ≈ −1.2e−37 is still a normal float) to 12 and at
// saturation out to the largest float. The NMSE of the conformance suite
// is led by the largest outputs; this is the kernel's precision where the
// outputs are small, the left tail, where 0.5·x·(1 + tanh z) in float
// would cancel and y's float rounding alone would cost 70 ulps. Limits:
// 5e−7 relative (about 4 ulps: expf's 2 and a few roundings) forward, 1e−6
// of the derivative's larger term (σ(y) or x·y′·σ(y)σ(−y)) backward.
func checkGELUTanh(t *testing.T, b *Backend, n int) {
	x := make([]float32, 0, n+30)
	for i := range n {
		x = append(x, float32(-10+22*float64(i)/float64(n-1)))
	}
	for _, v := range []float32{13, 20, 100, 1e4, 1.9e19, 1e30, math.MaxFloat32} {
		x = append(x, v, -v)
	}
	gy, gdx := unaryAndGrad(t, b, backend.GELUTanh, x)
	var worstY, worstDX float64
	atY, atDX := -1, -1
	for i, v := range x {
		xv := float64(v)
		ref, dref := refops.Unary(backend.GELUTanh, xv), refops.UnaryDeriv(backend.GELUTanh, xv)
		if math.IsNaN(float64(gy[i])) || math.IsInf(float64(gy[i]), 0) || math.IsNaN(float64(gdx[i])) || math.IsInf(float64(gdx[i]), 0) {
			t.Errorf("GELUTanh at %g: %g, derivative %g; want finite values", xv, gy[i], gdx[i])
			continue
		}
		if math.Abs(ref) >= 0x1p-126 {
			if e := math.Abs(float64(gy[i])-ref) / math.Abs(ref); e > worstY {
				worstY, atY = e, i
			}
		} else if math.Abs(float64(gy[i])) > 0x1p-126 {
			t.Errorf("GELUTanh(%g) = %g, want %g (below the normal range)", xv, gy[i], ref)
		}
		// The derivative's larger term: σ(y) = f/x, or f′ itself.
		scale := math.Abs(dref)
		if xv != 0 {
			scale = math.Max(scale, math.Abs(ref/xv))
		}
		if scale >= 0x1p-126 {
			if e := math.Abs(float64(gdx[i])-dref) / scale; e > worstDX {
				worstDX, atDX = e, i
			}
		} else if math.Abs(float64(gdx[i])) > 0x1p-120 {
			t.Errorf("GELUTanh′(%g) = %g, want %g (below the normal range)", xv, gdx[i], dref)
		}
	}
	if worstY > 5e-7 {
		t.Errorf("GELUTanh: relative error %.3g at x = %g (%g, want %g), limit 5e-7",
			worstY, x[atY], gy[atY], refops.Unary(backend.GELUTanh, float64(x[atY])))
	}
	if worstDX > 1e-6 {
		t.Errorf("GELUTanh′: error %.3g of the larger term at x = %g (%g, want %g), limit 1e-6",
			worstDX, x[atDX], gdx[atDX], refops.UnaryDeriv(backend.GELUTanh, float64(x[atDX])))
	}
	t.Logf("GELUTanh over [−10, 12] (%d points) and at saturation: largest relative error %.3g forward, %.3g of the larger term backward",
		n, worstY, worstDX)
}

// ---------------------------------------------------------------------------
// The checks on the device, at full size.

func TestGPUUploadSource(t *testing.T) {
	b := openGPU(t, Options{})
	for _, n := range []int{1 << 10, 16 << 20} { // 4 KiB and 64 MiB
		checkUploadSource(t, b, n)
	}
	checkScatterTwice(t, b, 32000, 128, 8192, 8192)
}

// TestGPUIndexBoundary needs about 17.2 GB of device memory.
func TestGPUIndexBoundary(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("a 32-bit int cannot count 2^31 elements")
	}
	if testing.Short() {
		t.Skip("-short: allocates 17 GB")
	}
	b := openGPU(t, Options{})
	const need = 18e9
	if free, total := deviceMemory(t, b); free < need {
		t.Skipf("the device has %d of %d bytes free; this test needs %g", free, total, need)
	}
	checkIndexBoundary(t, b, 46340, int(min(1<<31+7, math.MaxInt)))
}

// TestGPUMemoryFull fills the whole device.
func TestGPUMemoryFull(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: fills the device's memory")
	}
	b := openGPU(t, Options{})
	checkMemoryFull(t, b, memoryCase{
		block: 1 << 28, big: 3 << 28, // 1 GiB, 3 GiB
		refill: []int{1 << 28, 1 << 24, 1 << 19, 1 << 14}, // 1 GiB, 64 MiB, 2 MiB, 64 KiB
		unaryN: 1 << 20,
		products: []mmCase{
			{m: 37, n: 1029, k: 515},
			{m: 37, n: 1029, k: 515, transA: true},
			{m: 37, n: 1029, k: 515, transB: true},
			{m: 37, n: 1029, k: 515, transA: true, transB: true},
			{m: 32, n: 32, k: 1 << 16}, // a long inner dimension (split-K, with a workspace)
			{batch: 5, m: 129, n: 65, k: 257, transB: true, shareB: true},
			{batch: 5, m: 129, n: 65, k: 257, transA: true},
		},
	})
}

// unaryAndGrad runs op and its derivative (with dy = 1) on b over x and
// returns both, downloaded.
func unaryAndGrad(t *testing.T, b *Backend, op backend.UnaryOp, x []float32) (y, dx []float32) {
	m := len(x)
	tensor := func(data []float32) backend.Tensor {
		tt, err := b.Alloc(backend.Float32, m)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Free(tt) })
		if data != nil {
			b.Upload(tt, data)
		}
		return tt
	}
	get := func(tt backend.Tensor) []float32 {
		h := make([]float32, m)
		if err := b.Download(h, tt); err != nil {
			t.Fatal(err)
		}
		return h
	}
	dy := make([]float32, m)
	for i := range dy {
		dy[i] = 1
	}
	xt, dyt, yt, dxt := tensor(x), tensor(dy), tensor(nil), tensor(nil)
	b.Unary(op, yt, xt)
	b.UnaryGrad(op, dxt, xt, dyt)
	return get(yt), get(dxt)
}

// checkGELULimits checks the exact GELU and its derivative at the limits:
// x and 1 for large and infinite positive x, 0 and 0 for negative ones,
// NaN for NaN (x·Φ(x) and x·φ(x) in float would give ∞·0 = NaN at ±Inf).
func checkGELULimits(t *testing.T, b *Backend) {
	inf := float32(math.Inf(1))
	x := []float32{20, 1e30, math.MaxFloat32, inf, -20, -1e30, -math.MaxFloat32, -inf, float32(math.NaN())}
	wantY := []float32{20, 1e30, math.MaxFloat32, inf, 0, 0, 0, 0}
	wantDX := []float32{1, 1, 1, 1, 0, 0, 0, 0}
	gy, gdx := unaryAndGrad(t, b, backend.GELU, x)
	for i := range wantY {
		if gy[i] != wantY[i] || gdx[i] != wantDX[i] {
			t.Errorf("GELU(%g) = %g, derivative %g; want %g and %g", x[i], gy[i], gdx[i], wantY[i], wantDX[i])
		}
	}
	if n := len(x) - 1; gy[n] == gy[n] || gdx[n] == gdx[n] {
		t.Errorf("GELU(NaN) = %g, derivative %g; want NaN", gy[n], gdx[n])
	}
}

// TestGPUGELULimits checks GELU at ±Inf, NaN and large values on the GPU.
func TestGPUGELULimits(t *testing.T) {
	checkGELULimits(t, openGPU(t, Options{}))
}

// TestGPUGELUTanh checks the GELUTanh kernel's precision as NVRTC and the
// device's expf give it.
func TestGPUGELUTanh(t *testing.T) {
	checkGELUTanh(t, openGPU(t, Options{}), 1<<20)
}

func TestGPUEdgeShapes(t *testing.T) {
	b := openGPU(t, Options{})
	checkEdgeShapes(t, b, edgeCase{keys: 131072, softmaxRows: 8, vocab: 128256, ceRows: 16, manyRows: 1_000_000, dim: 64})
}

// TestEmulatedGPUChecks runs the TestGPU checks at small sizes on the
// emulated device: it tests the checks (and the backend at those sizes),
// not the device.
func TestEmulatedGPUChecks(t *testing.T) {
	b := openFake(t, Options{})
	t.Run("upload", func(t *testing.T) {
		checkUploadSource(t, b, 1<<10)
		checkUploadSource(t, b, 1<<16)
		checkScatterTwice(t, b, 100, 16, 300, 200)
	})
	t.Run("index boundary", func(t *testing.T) {
		checkIndexBoundary(t, b, 300, 5003)
	})
	t.Run("memory full", func(t *testing.T) {
		// A device of 40 MiB beyond what the process holds already; the
		// fake cuBLAS needs no memory, so it is told to refuse the first
		// product as the real one does when it cannot get any.
		inUse := fakeCounters(t, b.api.drv, "sora_fake_stats")[3]
		t.Setenv("SORA_FAKE_MEM_LIMIT", strconv.FormatInt(inUse+40<<20, 10))
		blas := fakeCounters(t, b.api.blas, "sora_fake_blas")
		t.Cleanup(func() { blas[10] = 0 })
		checkMemoryFull(t, b, memoryCase{
			block: 1 << 20, big: 3 << 20, // 4 MiB, 12 MiB
			refill: []int{1 << 20, 1 << 16, 1 << 10},
			unaryN: 1000,
			products: []mmCase{
				{m: 7, n: 33, k: 17},
				{m: 7, n: 33, k: 17, transA: true, transB: true},
				{m: 4, n: 4, k: 4096},
				{batch: 3, m: 9, n: 5, k: 11, transB: true, shareB: true},
			},
			before: func() { blas[10] = 1 },
		})
	})
	t.Run("edge shapes", func(t *testing.T) {
		checkEdgeShapes(t, b, edgeCase{keys: 9001, softmaxRows: 3, vocab: 5003, ceRows: 4, manyRows: 600, dim: 8})
	})
	t.Run("gelu tanh", func(t *testing.T) {
		checkGELUTanh(t, b, 1<<14)
	})
	t.Run("gelu limits", func(t *testing.T) {
		checkGELULimits(t, b)
	})
}

// checkMaskedRows compares softmax (and its backward) and cross-entropy
// (and its gradient) over rows whose keys past the first 100 are −∞, as a
// padding mask leaves them: most of a row's threads then see nothing but
// −∞, which must contribute 0, not NaN.
func checkMaskedRows(w *twin, rng *rand.Rand, cols int) {
	const rows, valid = 2, 100
	x := uniform(rng, rows*cols, -4, 4)
	for r := range rows {
		for j := valid; j < cols; j++ {
			x[r*cols+j] = float32(math.Inf(-1))
		}
	}
	px := w.input(x, rows, cols)
	dy := w.input(uniform(rng, rows*cols, -1, 1), rows, cols)
	out := func(shape ...int) pair {
		return w.input(make([]float32, backend.Shape(shape).NumElements()), shape...)
	}
	y, dx, loss, dlogits := out(rows, cols), out(rows, cols), out(rows), out(rows, cols)
	targets := []int32{3, valid - 1}
	p := backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 0.5}
	w.do(func(b backend.Backend, on func(pair) backend.Tensor) {
		b.Softmax(on(y), on(px), backend.SoftmaxParams{Scale: 2})
		b.SoftmaxGrad(on(dx), on(y), on(dy), backend.SoftmaxParams{Scale: 2})
		b.CrossEntropy(on(loss), on(px), targets, p)
		b.CrossEntropyGrad(on(dlogits), on(px), targets, p)
	})
	shape := fmt.Sprintf("[%d, %d], keys past %d at −∞", rows, cols, valid)
	w.check("Softmax "+shape, string(backend.OpSoftmax), y)
	w.check("SoftmaxGrad "+shape, string(backend.OpSoftmaxGrad), dx)
	w.check("CrossEntropy "+shape, string(backend.OpCrossEntropy), loss)
	w.check("CrossEntropyGrad "+shape, string(backend.OpCrossEntropyGrad), dlogits)
}

// checkNormExtremes compares the norms and their backwards on rows whose
// size is far from 1, where float statistics would fail: elements near
// 1.5e19 (a thread's float sum of squares overflows), near 1e15 (r³
// underflows float in RMSNormGrad) and near 1e-13 with eps 0 (r³
// overflows it).
func checkNormExtremes(w *twin, rng *rand.Rand) {
	const rows, cols = 4, 64
	gain := w.input(uniform(rng, cols, 0.5, 1.5), cols)
	for _, c := range []struct {
		size float64
		eps  float32
	}{{1.5e19, 1e-5}, {1e15, 1e-5}, {1e-13, 0}} {
		x := uniform(rng, rows*cols, -c.size, c.size)
		px := w.input(x, rows, cols)
		dy := w.input(uniform(rng, rows*cols, -1, 1), rows, cols)
		out := func() pair { return w.input(make([]float32, rows*cols), rows, cols) }
		rms, ln, rdx, ldx := out(), out(), out(), out()
		w.do(func(b backend.Backend, on func(pair) backend.Tensor) {
			b.RMSNorm(on(rms), on(px), on(gain), c.eps)
			b.LayerNorm(on(ln), on(px), on(gain), backend.Tensor{}, c.eps)
			b.RMSNormGrad(on(rdx), backend.Tensor{}, on(px), on(gain), on(dy), c.eps)
			b.LayerNormGrad(on(ldx), backend.Tensor{}, backend.Tensor{}, on(px), on(gain), on(dy), c.eps)
		})
		shape := fmt.Sprintf("[%d, %d] of size %g, eps %g", rows, cols, c.size, c.eps)
		w.check("RMSNorm "+shape, string(backend.OpRMSNorm), rms)
		w.check("LayerNorm "+shape, string(backend.OpLayerNorm), ln)
		w.check("RMSNormGrad dx "+shape, string(backend.OpRMSNormGrad), rdx)
		w.check("LayerNormGrad dx "+shape, string(backend.OpLayerNormGrad), ldx)
	}
}
