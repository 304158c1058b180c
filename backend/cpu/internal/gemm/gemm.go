// Package gemm is the CPU backend's single-precision matrix multiply.
//
// It follows the usual high-performance layout (Goto/BLIS): op(B) is
// packed into column panels of width nr and op(A) into row panels of
// height mr, in blocks sized so that an A block stays in L2 and one B
// panel in L1, and a register-tiled micro-kernel computes each mr×nr tile
// of C from one A panel and one B panel. All four transpose combinations
// go through the packing routines, so the micro-kernel only ever sees one
// layout. On amd64 the micro-kernel is assembly, for AVX-512 (12×32
// tiles), AVX2 with FMA (6×16) or, on CPUs with neither, SSE2 (6×8),
// chosen at run time with cpuid, and the AVX kernels' packing uses AVX2
// transposes. On arm64 it is NEON assembly (8×12 tiles), which every
// ARMv8-A CPU runs, with packing in Go. Elsewhere, when Config.Portable
// is set, or in a build with the noasm tag, everything is pure Go (1×7
// tiles).
//
// A build with GOEXPERIMENT=simd adds, on amd64, the go-simd kernels:
// SIMD written in Go with Go 1.26's experimental package simd/archsimd,
// no assembly, on 4×32 tiles with AVX-512 and 4×16 with AVX2 and FMA,
// packing in Go, at several times the scalar kernel's speed. They run
// only when asked for by name (Config.Kernel), never by default over the
// assembly kernels; in a noasm build, which has none, they come first.
// See kernel_gosimd_amd64.go.
//
// Two shapes skip the tiles. A C at most 16 columns wide (LoRA's x·A) is
// computed as dot products of A's rows, read in place, with the few rows
// of op(B)ᵀ (Engine.skinny); a C of a few rows times a transposed B (x·Wᵀ
// for one token, with W stored row by row) as dot products of A's rows
// with W's rows, both read in place, so W streams through once and
// nothing is packed (Engine.rowDots).
//
// B may also be given in bfloat16 (Engine.SgemmBF16, for frozen weights
// stored at half the memory): it is widened to float32 where it is read,
// so the micro-kernels are the same; see bf16.go.
//
// A call is shared among up to Config.Threads goroutines, the caller and
// the process's workers (package workpool), which take packing jobs and
// blocks of rows of C from a shared counter, so the work balances itself
// when another process slows one core. Buffers are reused, so a warmed-up
// Engine allocates nothing per call.
package gemm

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/sora-go/sora/backend/internal/bf16"
	"github.com/sora-go/sora/internal/workpool"
)

// Config selects how an Engine computes.
type Config struct {
	// Portable forces the pure-Go kernels even where SIMD ones exist.
	Portable bool
	// Threads caps the goroutines one call uses; 0 means GOMAXPROCS.
	Threads int
	// Kernel asks for one micro-kernel by its short name ("avx512",
	// "avx2", "sse" on amd64, "neon" on arm64, "go" anywhere, and
	// "gosimd512" and "gosimd" on amd64 in a build with GOEXPERIMENT=simd;
	// see Kernels) instead of the fastest this CPU runs, to compare them.
	// When empty, $SORA_CPU_GEMM_KERNEL is used, so that benchmarks
	// through the backend can pick one too. A name this CPU cannot run is
	// ignored; Engine.Kernel tells which one is in use. Portable takes
	// precedence.
	Kernel string
}

// EnvKernel is the variable that supplies Config.Kernel when it is empty.
const EnvKernel = "SORA_CPU_GEMM_KERNEL"

// KernelNames lists every micro-kernel name Config.Kernel knows in this
// build, on any CPU or architecture; Kernels says which of them this CPU
// runs. The go-simd kernels' names are there only in a build that has
// them (GOEXPERIMENT=simd, for amd64).
var KernelNames = slices.Concat([]string{"avx512", "avx2", "sse", "neon"}, goSIMDNames, []string{"go"})

// Kernels returns the short names of the micro-kernels this CPU can run,
// fastest first; the last is always the pure-Go "go".
func Kernels() []string {
	var names []string
	for _, k := range availableKernels() {
		names = append(names, k.id)
	}
	return names
}

// Engine multiplies matrices, reusing its packing buffers between calls,
// so that once warmed up on a shape Sgemm allocates nothing.
// An Engine is not safe for concurrent use.
type Engine struct {
	k       *kernel
	threads int
	// ws holds one packing workspace per thread; ws[0] is the caller's.
	ws []workspace
	// bShared is the packed B shared by all threads in rowsParallel.
	bShared []float32
	// cT holds Cᵀ when a narrow product is computed transposed, and bt
	// op(B)ᵀ for Engine.skinny.
	cT, bt []float32
	// bBudget caps bShared's length and minFlops is the least work worth
	// a thread; they are fields only so tests can shrink them. rowDotMax
	// is the most rows of C for which Engine.rowDots is used; a field so
	// that tests and benchmarks can compare it with the tiled product.
	bBudget, minFlops, rowDotMax int

	// State of the call in progress, read by the workers.
	cl       call
	phase    int
	t        int          // threads the call was sized for
	next     atomic.Int64 // next work item of the phase to take
	nitems   int          // work items in the phase
	group    int          // B panels per packing item
	mc, kc   int          // block sizes
	jc, ncb  int          // current column block
	pc0, pc1 int          // k range of the current pass

	// work is e.work as a func value, made once so that handing it to
	// workpool.Run per phase allocates nothing.
	workFn func(id int)
}

// workspace is one thread's packing buffers; they only grow.
type workspace struct {
	a, b []float32
	// bEdge holds the last, partial panel of a B read in place.
	bEdge []float32
	// edge is scratch for partial tiles; it lives here rather than on
	// the stack because the kernel is called through a func value, which
	// makes any buffer passed to it escape.
	edge [maxTile]float32
}

// NewEngine returns an Engine for cfg.
func NewEngine(cfg Config) *Engine {
	t := cfg.Threads
	if t <= 0 {
		t = runtime.GOMAXPROCS(0)
	}
	id := cfg.Kernel
	if id == "" {
		id = strings.TrimSpace(os.Getenv(EnvKernel))
	}
	e := &Engine{threads: t, k: selectKernel(cfg.Portable, id),
		bBudget: defaultBBudget, minFlops: defaultMinFlops, rowDotMax: defaultRowDotMax}
	e.ws = make([]workspace, t)
	e.workFn = e.work
	return e
}

// Kernel names the micro-kernel in use, e.g. "avx2-fma 6x16" or
// "go 1x7", for benchmarks and logs.
func (e *Engine) Kernel() string { return e.k.name }

// Threads reports how many goroutines a large call uses.
func (e *Engine) Threads() int { return e.threads }

// WorkspaceBytes returns the bytes of the buffers e grows with the shapes
// it multiplies and keeps between calls to reuse them: each thread's
// packing buffers for A and B and packed edge panel of a B read in place,
// the packed B the threads share, and the buffers of products computed
// transposed or as dot products (Cᵀ, op(B)ᵀ). It is 0 for a new Engine,
// and only grows: nothing is given back. Like the Engine itself, the
// fixed partial-tile scratch that each thread's workspace is made with
// (maxTile floats) is not counted. The figure is exact for the buffers'
// capacities, without the Go runtime's rounding of each to its size
// class. It reads the buffers that a call's threads grow, so call it
// between calls, not during one; it allocates nothing. The CPU backend
// adds its growth to the memory it reports as reserved.
func (e *Engine) WorkspaceBytes() int64 {
	var n int
	for i := range e.ws {
		w := &e.ws[i]
		n += cap(w.a) + cap(w.b) + cap(w.bEdge)
	}
	n += cap(e.bShared) + cap(e.cT) + cap(e.bt)
	return 4 * int64(n) // float32s
}

// part is a rectangle of C computed by one thread: rows [m0, m1) and
// columns [n0, n1).
type part struct{ m0, m1, n0, n1 int }

// call is the arguments of one Sgemm, shared read-only by the threads.
type call struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
	// b16, when not nil, is B as bfloat16 values in place of b (see
	// SgemmBF16).
	b16 []uint16
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
// where op(A) is m×k and op(B) is k×n; lda, ldb and ldc are the row strides.
// A is m×k (k×m when transA) and B is k×n (n×k when transB), so lda must be
// at least k (m when transA), and so on. When beta is 0, C is not read, so
// NaNs in C do not propagate. The slices must be long enough for the shapes;
// the caller (the backend) validates that.
func (e *Engine) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	e.sgemm(transA, transB, m, n, k, alpha, a, lda, b, nil, ldb, beta, c, ldc)
}

// sgemm is Sgemm with B given either as float32 values (b) or, when b16
// is not nil, as bfloat16 ones.
func (e *Engine) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, b16 []uint16, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	if k <= 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	if !transA && transB && m <= e.rowDotMax && e.k.rowDot != nil {
		e.rowDots(m, n, k, alpha, a, lda, b, b16, ldb, beta, c, ldc)
		return
	}
	if e.k.dot != nil && !transA && n <= maxSkinny && k >= minSkinnyK && m >= e.k.dotRows {
		e.skinny(transB, m, n, k, alpha, a, lda, b, b16, ldb, beta, c, ldc)
		return
	}
	// A bfloat16 B is never swapped into the A operand, which the packing
	// of A would have to widen too: its products have a wide C anyway
	// (a weight's rows or columns), and the narrow ones go to skinny.
	if b16 == nil && e.swapBetter(transA, transB, m, n) {
		// A narrow C (n well under the kernel's nr, as in LoRA's x·A with
		// rank 8) would waste most of each tile. Cᵀ = op(B)ᵀ·op(A)ᵀ has
		// the long side across the tiles instead: compute it into scratch
		// and transpose it into C, which costs O(m·n) next to O(m·n·k).
		if len(e.cT) < m*n {
			e.cT = make([]float32, m*n)
		}
		t := e.cT[:m*n]
		e.Sgemm(!transB, !transA, n, m, k, alpha, b, ldb, a, lda, 0, t, m)
		transposeInto(c, ldc, t, m, n, beta)
		return
	}
	// The call lives in the Engine rather than on the stack because the
	// workers see it through a pointer, which would make it escape.
	e.cl = call{transA, transB, m, n, k, alpha, beta, a, lda, b, ldb, c, ldc, b16}
	defer func() { e.cl = call{} }() // do not keep the caller's slices alive
	t := e.threadsFor(m, n, k)
	e.t = t
	switch {
	case t == 1:
		e.run(&e.cl, &e.ws[0], part{0, m, 0, n})
	case m >= 4*e.k.mr*t:
		e.rowsParallel(t)
	default:
		e.colsParallel(t)
	}
}

// maxSkinny is the widest C, and minSkinnyK the shortest k, for which
// Engine.skinny beats the tiled product: below them it wastes much of each
// tile or spends more on its final sums than on the dot products.
const (
	maxSkinny  = 16
	minSkinnyK = 64
)

// skinny computes a product whose C has at most maxSkinny columns, with
// op(A) = A, as dot products of A's rows, read where they are, with the
// rows of op(B)ᵀ, copied once into a buffer padded to a multiple of 4 rows.
// Unlike the tiled product it packs nothing of size m·k, which for such
// a narrow C would cost as much as the arithmetic (LoRA's x·A and dY·Bᵀ).
func (e *Engine) skinny(transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, b16 []uint16, ldb int, beta float32, c []float32, ldc int) {
	nPad := (n + 3) &^ 3
	if len(e.bt) < nPad*k {
		e.bt = make([]float32, nPad*k)
	}
	bt := e.bt[:nPad*k]
	for j := 0; j < nPad; j++ {
		row := bt[j*k : (j+1)*k]
		switch {
		case j >= n:
			clear(row)
		case b16 != nil && transB:
			widen(row, b16[j*ldb:j*ldb+k])
		case b16 != nil:
			for p := range row {
				row[p] = bf16.Widen(b16[p*ldb+j])
			}
		case transB: // op(B)ᵀ is B: copy its row
			copy(row, b[j*ldb:j*ldb+k])
		default: // op(B)ᵀ is Bᵀ: gather its column
			for p := range row {
				row[p] = b[p*ldb+j]
			}
		}
	}
	// The call's b is op(B)ᵀ with row stride k, in float32.
	e.cl = call{false, false, m, n, k, alpha, beta, a, lda, bt, k, c, ldc, nil}
	defer func() { e.cl = call{} }()
	e.phase, e.nitems = phaseSkinny, (m+skinnyRowsPerItem-1)/skinnyRowsPerItem
	e.t = e.threadsFor(m, n, k)
	if e.t == 1 {
		e.skinnyRows(&e.ws[0], 0, m)
		return
	}
	e.parallel()
}

// defaultRowDotMax is the most rows of C computed by Engine.rowDots
// rather than by the tiled product; see there.
const defaultRowDotMax = 4

// rowDots computes a product with few rows, op(A) = A and op(B) = Bᵀ, as
// dot products of A's rows with B's rows, both read where they are: x·Wᵀ
// for a token or a handful of them, with W [n, k] stored row by row. The
// tiled product would pack all of W, transposing it, to use it m times,
// and fill only m rows of each mr-row tile; this path reads W once per
// row of C and packs nothing, so it runs at the speed W streams from
// cache or memory. Each kernel call covers rowDotN columns of C; a last
// group of fewer columns reuses the kernel on the last rowDotN rows of B
// (recomputing a few) or, when B has fewer rows than that, on a copy
// padded with zero rows.
func (e *Engine) rowDots(m, n, k int, alpha float32, a []float32, lda int, b []float32, b16 []uint16, ldb int, beta float32, c []float32, ldc int) {
	if n < rowDotN {
		if len(e.bt) < rowDotN*k {
			e.bt = make([]float32, rowDotN*k)
		}
		bt := e.bt[:rowDotN*k]
		for j := 0; j < rowDotN; j++ {
			switch {
			case j >= n:
				clear(bt[j*k : (j+1)*k])
			case b16 != nil:
				widen(bt[j*k:(j+1)*k], b16[j*ldb:j*ldb+k])
			default:
				copy(bt[j*k:(j+1)*k], b[j*ldb:j*ldb+k])
			}
		}
		b, b16, ldb = bt, nil, k
	}
	e.cl = call{false, true, m, n, k, alpha, beta, a, lda, b, ldb, c, ldc, b16}
	defer func() { e.cl = call{} }()
	e.phase, e.nitems = phaseRowDot, (n+rowDotColsPerItem-1)/rowDotColsPerItem
	e.t = e.threadsFor(m, n, k)
	if e.t == 1 {
		e.rowDotCols(&e.ws[0], 0, n)
		return
	}
	e.parallel()
}

// rowDotColsPerItem is how many columns of C one work item of rowDots
// covers, a multiple of rowDotN.
const rowDotColsPerItem = 64

// rowDotCols computes columns [j0, j1) of every row of the product set up
// by rowDots. cl.n may be less than rowDotN only when B was padded.
func (e *Engine) rowDotCols(ws *workspace, j0, j1 int) {
	cl, kr := &e.cl, e.k
	k := cl.k
	direct := cl.alpha == 1 && cl.beta == 0
	sums := ws.edge[:rowDotN]
	// B has n rows, or rowDotN when rowDots padded it.
	rowsB := max(cl.n, rowDotN)
	for i := 0; i < cl.m; i++ {
		arow := cl.a[i*cl.lda : i*cl.lda+k]
		crow := cl.c[i*cl.ldc : i*cl.ldc+cl.n]
		for j := j0; j < j1; j += rowDotN {
			cols := min(rowDotN, j1-j)
			if cols == rowDotN && direct {
				cl.rowDot(kr, arow, j, crow[j:j+rowDotN])
				continue
			}
			// A partial group, or alpha and beta to apply: sums into
			// scratch. A group that would run past B's last row takes
			// B's last rowDotN rows instead, the first few of which
			// recompute entries left of j, skipped here.
			jb := min(j, rowsB-rowDotN)
			cl.rowDot(kr, arow, jb, sums)
			src, dst := sums[j-jb:j-jb+cols], crow[j:j+cols]
			if cl.beta == 0 {
				for q, s := range src {
					dst[q] = cl.alpha * s
				}
				continue
			}
			for q, s := range src {
				dst[q] = cl.alpha*s + cl.beta*dst[q]
			}
		}
	}
}

// rowDot sets out[:rowDotN] to the dot products of arow with rows j to
// j+rowDotN−1 of the call's B, with kr's kernel for B's dtype.
func (cl *call) rowDot(kr *kernel, arow []float32, j int, out []float32) {
	if cl.b16 != nil {
		kr.rowDot16(cl.k, arow, cl.b16[j*cl.ldb:], cl.ldb, out)
		return
	}
	kr.rowDot(cl.k, arow, cl.b[j*cl.ldb:], cl.ldb, out)
}

// skinnyRowsPerItem is how many rows of C one work item of skinny covers.
const skinnyRowsPerItem = 32

// skinnyRows computes rows [i0, i1) of the product set up by skinny. The
// kernel does whole dotRows×4 blocks over the leading multiple of dotK of
// k; the rest of k, and rows short of a block, are summed here.
func (e *Engine) skinnyRows(ws *workspace, i0, i1 int) {
	cl, kr := &e.cl, e.k
	k, n := cl.k, cl.n
	R := kr.dotRows
	kd := k &^ (kr.dotK - 1)
	sums := ws.edge[:16]
	for i := i0; i < i1; i += R {
		rows := min(R, i1-i)
		for j := 0; j < n; j += 4 {
			cols := min(4, n-j)
			kfrom := 0
			if rows == R && kd > 0 {
				kr.dot(kd, cl.a[i*cl.lda:], cl.lda, cl.b[j*k:], k, sums)
				kfrom = kd
			} else {
				clear(sums)
			}
			for r := 0; r < rows; r++ {
				arow := cl.a[(i+r)*cl.lda : (i+r)*cl.lda+k]
				crow := cl.c[(i+r)*cl.ldc+j : (i+r)*cl.ldc+j+cols]
				for q := range crow {
					s := sums[r*4+q]
					btrow := cl.b[(j+q)*k : (j+q+1)*k]
					for p := kfrom; p < k; p++ {
						s += arow[p] * btrow[p]
					}
					if cl.beta == 0 {
						crow[q] = cl.alpha * s
					} else {
						crow[q] = cl.alpha*s + cl.beta*crow[q]
					}
				}
			}
		}
	}
}

// swapBetter reports whether computing Cᵀ = op(B)ᵀ·op(A)ᵀ is better
// than computing C. A product with one or two row panels and op(B) = B
// reads B in place (see Engine.run), which for a narrow C (LoRA's
// (xA)ᵀ·dY and xᵀ·dH, where the other operand is tall) saves packing the
// big operand: for the SSE kernel, whose packed A takes four times the
// space, that decides it (3× on those shapes); the AVX kernels chose the
// same orientations already, by their tiles. Otherwise the orientation
// whose tiles are markedly fuller wins, as for a C only a few columns
// wide.
func (e *Engine) swapBetter(transA, transB bool, m, n int) bool {
	direct := e.k.readsBInPlace
	fill := func(rows, cols int) float64 {
		mr, nr := e.k.mr, e.k.nr
		return float64(rows*cols) / float64((rows+mr-1)/mr*mr*((cols+nr-1)/nr*nr))
	}
	here, swapped := fill(m, n), fill(n, m)
	switch dm, dn := direct(m, transB), direct(n, !transA); {
	case dm && !dn:
		return false
	case dn && !dm:
		// Packing the big operand costs about what multiplying it by
		// a few-row panel does: reading it in place wins unless its
		// tiles are less than half as full.
		return 2*swapped >= here
	}
	return swapped > 1.25*here
}

// transposeInto sets the m×n matrix C to tᵀ + beta·C, where t is n×m
// with row stride m, not reading C when beta is 0.
func transposeInto(c []float32, ldc int, t []float32, m, n int, beta float32) {
	// Where beta is 0 the packing's transposes (8 or 4 rows of t at a
	// time, in registers, where the CPU has them) do columns [0, cols)
	// of C over rows [0, rows); the loops below do the rest.
	cols, rows := 0, 0
	if beta == 0 {
		cols, rows = interleaveFast(c, ldc, t, 0, m, n, m)
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		j0 := 0
		if i < rows {
			j0 = cols
		}
		if beta == 0 {
			for j := j0; j < n; j++ {
				row[j] = t[j*m+i]
			}
			continue
		}
		for j := range row {
			row[j] = t[j*m+i] + beta*row[j]
		}
	}
}

// defaultMinFlops is roughly the work below which handing a share to
// another goroutine costs more than it saves (a wake-up is a few µs).
const defaultMinFlops = 2 * 64 * 64 * 64

func (e *Engine) threadsFor(m, n, k int) int {
	t := e.threads
	if f := 2 * m * n * k / e.minFlops; f < t {
		t = max(f, 1)
	}
	// Each thread needs at least one tile along the split side.
	return min(t, max((n+e.k.nr-1)/e.k.nr, (m+e.k.mr-1)/e.k.mr))
}

// colsParallel is for short, wide products (few rows of C): it splits C
// into t slabs of columns on tile boundaries, and each slab runs the
// serial algorithm with the buffers of whichever goroutine takes it,
// packing its share of B and all of the (small) A.
func (e *Engine) colsParallel(t int) {
	e.phase, e.nitems = phaseCols, t
	e.parallel()
}

// defaultBBudget caps the shared packed-B buffer (in floats) so that very
// deep products are done in several passes rather than one huge buffer.
const defaultBBudget = 4 << 20

// rowsParallel is the main parallel scheme. For each block of columns
// (and of k, if B is large) the goroutines first pack B together into one
// shared buffer; then each repeatedly takes the next block of rows of C,
// packs that block of A privately and multiplies it by the shared B.
func (e *Engine) rowsParallel(t int) {
	cl, kr := &e.cl, e.k
	m, n, k := cl.m, cl.n, cl.k
	kc := blocking(k, kr.kc, 1)
	nc := blocking(n, kr.nc, kr.nr)
	// Enough row blocks that the dynamic schedule can balance: at least
	// 2t, but not so thin that the micro-kernel reuses B poorly.
	nb := (m + kr.mc - 1) / kr.mc
	if nb < 2*t {
		nb = min(2*t, max(m/(4*kr.mr), 1))
	}
	e.mc = ((m+nb-1)/nb + kr.mr - 1) / kr.mr * kr.mr
	// k blocks per pass over the shared buffer.
	ncPad := (min(nc, n) + kr.nr - 1) / kr.nr * kr.nr
	perPass := max(e.bBudget/(kc*ncPad), 1)
	if need := min(perPass*kc, k) * ncPad; len(e.bShared) < need {
		e.bShared = make([]float32, need)
	}
	e.kc = kc
	for jc := 0; jc < n; jc += nc {
		e.jc, e.ncb = jc, min(nc, n-jc)
		panels := (e.ncb + kr.nr - 1) / kr.nr
		e.group = (panels + 2*t - 1) / (2 * t)
		groups := (panels + e.group - 1) / e.group
		for pc := 0; pc < k; pc += perPass * kc {
			e.pc0, e.pc1 = pc, min(pc+perPass*kc, k)
			kblocks := (e.pc1 - e.pc0 + kc - 1) / kc
			e.phase, e.nitems = phasePackB, kblocks*groups
			e.parallel()
			e.phase, e.nitems = phaseRows, (m+e.mc-1)/e.mc
			e.parallel()
		}
	}
}

// parallel runs the current phase on e.t goroutines (see workpool.Run):
// its work items are taken one at a time from e.next by the caller and by
// whichever pool workers join in. Nothing is assigned to a particular
// worker, so the others do the items of one that the OS keeps off its
// core (other processes share the cores): the call waits for it only if it
// had begun its part of the loop, until it runs again and finds no item
// left, or finishes the one it took. Each of the e.t parts of the loop
// works with a workspace of its own.
func (e *Engine) parallel() {
	e.next.Store(0)
	workpool.Run(e.t, e.t, e.workFn)
}

// Phases of a parallel call, telling work what its items are.
const (
	phaseCols = iota
	phasePackB
	phaseRows
	phaseSkinny
	phaseRowDot
)

// work takes items of the current phase from e.next until there are none
// left, using workspace id.
func (e *Engine) work(id int) {
	cl, kr, ws := &e.cl, e.k, &e.ws[id]
	for {
		item := int(e.next.Add(1)) - 1
		if item >= e.nitems {
			return
		}
		switch e.phase {
		case phaseSkinny:
			e.skinnyRows(ws, item*skinnyRowsPerItem, min(cl.m, (item+1)*skinnyRowsPerItem))
		case phaseRowDot:
			e.rowDotCols(ws, item*rowDotColsPerItem, min(cl.n, (item+1)*rowDotColsPerItem))
		case phaseCols:
			// Item i is the i-th of t slabs of columns.
			n0, n1 := splitAt(cl.n, kr.nr, e.nitems, item), splitAt(cl.n, kr.nr, e.nitems, item+1)
			e.run(cl, ws, part{0, cl.m, n0, n1})
		case phasePackB:
			// Item i packs a group of column panels for one k block.
			groups := (e.ncb + kr.nr*e.group - 1) / (kr.nr * e.group)
			kb, g := item/groups, item%groups
			pc := e.pc0 + kb*e.kc
			kcb := min(e.kc, e.pc1-pc)
			j0 := g * e.group * kr.nr
			j1 := min(j0+e.group*kr.nr, e.ncb)
			ncPad := (e.ncb + kr.nr - 1) / kr.nr * kr.nr
			dst := e.bShared[(pc-e.pc0)*ncPad+j0*kcb:]
			cl.packB(pc, e.jc+j0, kcb, j1-j0, kr.nr, dst, kr.asmPack)
		case phaseRows:
			// Item i is the i-th block of mc rows of C.
			ncPad := (e.ncb + kr.nr - 1) / kr.nr * kr.nr
			if need := e.kc * e.mc * kr.aDup(); len(ws.a) < need {
				ws.a = make([]float32, need)
			}
			ic := item * e.mc
			mcb := min(e.mc, cl.m-ic)
			for pc := e.pc0; pc < e.pc1; pc += e.kc {
				kcb := min(e.kc, e.pc1-pc)
				packA(cl.transA, cl.a, cl.lda, ic, pc, mcb, kcb, kr.mr, kr.aDup(), cl.alpha, ws.a, kr.asmPack)
				beta := cl.beta
				if pc > 0 {
					beta = 1
				}
				e.macro(ws, ws.a, e.bShared[(pc-e.pc0)*ncPad:], kcb*kr.nr, kr.nr, false, mcb, e.ncb, kcb, cl.c[ic*cl.ldc+e.jc:], cl.ldc, beta)
			}
		}
	}
}

// splitAt returns the i-th of the t+1 boundaries that cut [0, n) into t
// contiguous pieces, as equal as possible with inner boundaries on
// multiples of q.
func splitAt(n, q, t, i int) int {
	tiles := (n + q - 1) / q
	return min(tiles*i/t*q, n)
}

// scaleC sets C = beta·C, writing zeros without reading C when beta is 0.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// blocking returns block sizes for a dimension of length n whose nominal
// block is nb and whose blocks must be multiples of q: the blocks are
// made as even as possible so that, say, k = 300 becomes 152+148 rather
// than 256+44.
func blocking(n, nb, q int) int {
	nblocks := (n + nb - 1) / nb
	b := (n + nblocks - 1) / nblocks
	return (b + q - 1) / q * q
}

// run computes one part of C serially with the workspace ws.
func (e *Engine) run(cl *call, ws *workspace, p part) {
	kr := e.k
	mr, nr := kr.mr, kr.nr
	m, n, k := p.m1-p.m0, p.n1-p.n0, cl.k
	if m <= 0 || n <= 0 {
		return
	}
	kc := blocking(k, kr.kc, 1)
	mc := blocking(m, kr.mc, mr)
	nc := blocking(n, kr.nc, nr)
	// With one or two row panels each value of B is used once or twice,
	// so packing B would cost as much as the product: the kernel then
	// reads B's rows where they are (only when op(B) is B, whose rows are
	// contiguous). A kernel row narrower than a cache line (8 values for
	// the SSE kernel, 7 for the pure-Go one) shares each line with the
	// next panel or two, which usually find it still cached: on a
	// 1×4096×4096 product both run twice as fast as when packing. At
	// worst, with a power-of-two stride that defeats the caches, each use
	// reads B again, which costs about what packing (a read, a write and a
	// read back) does.
	direct := cl.b16 == nil && kr.readsBInPlace(m, cl.transB)
	if need := kc * ((min(nc, n) + nr - 1) / nr * nr); !direct && len(ws.b) < need {
		ws.b = make([]float32, need)
	}
	if need := kc * ((min(mc, m) + mr - 1) / mr * mr) * kr.aDup(); len(ws.a) < need {
		ws.a = make([]float32, need)
	}
	for jc := 0; jc < n; jc += nc {
		ncb := min(nc, n-jc)
		for pc := 0; pc < k; pc += kc {
			kcb := min(kc, k-pc)
			bp, panel, ldb := ws.b, kcb*nr, nr
			if direct {
				bp, panel, ldb = cl.b[pc*cl.ldb+p.n0+jc:], nr, cl.ldb
			} else {
				cl.packB(pc, p.n0+jc, kcb, ncb, nr, ws.b, kr.asmPack)
			}
			beta := cl.beta
			if pc > 0 {
				beta = 1
			}
			for ic := 0; ic < m; ic += mc {
				mcb := min(mc, m-ic)
				packA(cl.transA, cl.a, cl.lda, p.m0+ic, pc, mcb, kcb, mr, kr.aDup(), cl.alpha, ws.a, kr.asmPack)
				e.macro(ws, ws.a, bp, panel, ldb, direct, mcb, ncb, kcb, cl.c[(p.m0+ic)*cl.ldc+p.n0+jc:], cl.ldc, beta)
			}
		}
	}
}

// macro multiplies a packed mcb×kcb block of A by a kcb×ncb block of B
// into the mcb×ncb block of C at c: C = A·B + beta·C. B's panels of nr
// columns start panel elements apart in bp and their rows ldb apart: a
// packed block has panel = kcb·nr and ldb = nr; B read in place (direct)
// has panel = nr and ldb its row stride, and its last, partial panel, if
// any, is packed here so that the kernel finds zeros past the edge (and
// reads nothing past the end of B). Direct is a flag of its own because a
// B read in place may have a row stride of nr too.
func (e *Engine) macro(ws *workspace, ap, bp []float32, panel, ldb int, direct bool, mcb, ncb, kcb int, c []float32, ldc int, beta float32) {
	kr := e.k
	mr, nr, dup := kr.mr, kr.nr, kr.aDup()
	for jr := 0; jr < ncb; jr += nr {
		b := bp[jr/nr*panel:]
		nv := min(nr, ncb-jr)
		bld := ldb
		if nv < nr && direct {
			if len(ws.bEdge) < kcb*nr {
				ws.bEdge = make([]float32, kcb*nr)
			}
			for p := 0; p < kcb; p++ {
				dd := ws.bEdge[p*nr : p*nr+nr]
				copy(dd, b[p*ldb:p*ldb+nv])
				clear(dd[nv:])
			}
			b, bld = ws.bEdge, nr
		}
		for ir := 0; ir < mcb; ir += mr {
			a := ap[ir*kcb*dup : (ir+mr)*kcb*dup]
			mv := min(mr, mcb-ir)
			off := ir*ldc + jr
			if mv == mr && nv == nr {
				kr.full(kcb, a, b, bld, c[off:], ldc, beta)
				continue
			}
			// Edge tile: the panels are zero-padded, so compute the whole
			// tile into scratch and merge only the rows and columns that
			// exist.
			tile := ws.edge[:mr*nr]
			kr.full(kcb, a, b, bld, tile, nr, 0)
			mergeTile(tile, nr, mv, nv, c[off:], ldc, beta)
		}
	}
}

// mergeTile sets the mv×nv corner of C to tile + beta·C.
func mergeTile(tile []float32, ldt, mv, nv int, c []float32, ldc int, beta float32) {
	for i := 0; i < mv; i++ {
		t := tile[i*ldt : i*ldt+nv]
		row := c[i*ldc : i*ldc+nv]
		if beta == 0 {
			copy(row, t)
			continue
		}
		for j, v := range t {
			row[j] = v + beta*row[j]
		}
	}
}
