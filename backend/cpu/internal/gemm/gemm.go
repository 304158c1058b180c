// Package gemm is the CPU backend's single-precision matrix multiply.
//
// It follows the usual high-performance layout (Goto/BLIS): op(B) is
// packed into column panels of width nr and op(A) into row panels of
// height mr, in blocks sized so that an A block stays in L2 and one B
// panel in L1, and a register-tiled micro-kernel computes each mr×nr tile
// of C from one A panel and one B panel. All four transpose combinations
// go through the packing routines, so the micro-kernel only ever sees one
// layout. On amd64 CPUs with AVX2 and FMA the micro-kernel is assembly;
// elsewhere, or when Config.Portable is set, it is pure Go.
package gemm

import (
	"runtime"
	"sync"
)

// Config selects how an Engine computes.
type Config struct {
	// Portable forces the pure-Go kernels even where SIMD ones exist.
	Portable bool
	// Threads caps the goroutines one call uses; 0 means GOMAXPROCS.
	Threads int
}

// Engine multiplies matrices, reusing its packing buffers between calls,
// so that once warmed up on a shape Sgemm allocates nothing.
// An Engine is not safe for concurrent use.
type Engine struct {
	cfg     Config
	k       *kernel
	threads int
	// ws holds one packing workspace per thread; ws[0] is the caller's.
	ws []workspace
	cl call
	// pool runs parts 1.. of a parallel call; nil until first needed.
	pool *pool
}

// workspace is one thread's packing buffers; they only grow.
type workspace struct {
	a, b []float32
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
	e := &Engine{cfg: cfg, threads: t, k: selectKernel(cfg.Portable)}
	e.ws = make([]workspace, t)
	return e
}

// Kernel names the micro-kernel in use, e.g. "avx2-fma 6x16" or
// "go 4x4", for benchmarks and logs.
func (e *Engine) Kernel() string { return e.k.name }

// Threads reports how many goroutines a large call uses.
func (e *Engine) Threads() int { return e.threads }

// part is a rectangle of C computed by one thread: rows [m0, m1) and
// columns [n0, n1).
type part struct{ m0, m1, n0, n1 int }

// call is the arguments of one Sgemm, shared read-only by the threads.
type call struct {
	transA, transB bool
	k              int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
// where op(A) is m×k and op(B) is k×n; lda, ldb and ldc are the row strides.
// A is m×k (k×m when transA) and B is k×n (n×k when transB), so lda must be
// at least k (m when transA), and so on. When beta is 0, C is not read, so
// NaNs in C do not propagate. The slices must be long enough for the shapes;
// the caller (the backend) validates that.
func (e *Engine) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	if k <= 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	// The call lives in the Engine rather than on the stack because the
	// workers see it through a pointer, which would make it escape.
	e.cl = call{transA, transB, k, alpha, beta, a, lda, b, ldb, c, ldc}
	cl := &e.cl
	defer func() { e.cl = call{} }() // do not keep the caller's slices alive
	t := e.threadsFor(m, n, k)
	if t == 1 {
		e.run(cl, &e.ws[0], part{0, m, 0, n})
		return
	}
	// Split C into t slabs along its longer side, on tile boundaries, so
	// every thread owns its own rows or columns of C and needs no locks.
	// Each thread then packs its own share of B (or A) and the whole of
	// the other operand; that duplicate packing is O(k·(m+n)) against
	// O(m·n·k/t) arithmetic.
	partOf := func(i int) part {
		if n >= m {
			return part{0, m, splitAt(n, e.k.nr, t, i), splitAt(n, e.k.nr, t, i+1)}
		}
		return part{splitAt(m, e.k.mr, t, i), splitAt(m, e.k.mr, t, i+1), 0, n}
	}
	if e.pool == nil {
		e.pool = newPool(e, e.threads-1)
	}
	e.pool.wg.Add(t - 1)
	for i := 1; i < t; i++ {
		e.pool.work <- task{e: e, cl: cl, ws: &e.ws[i], p: partOf(i)}
	}
	e.run(cl, &e.ws[0], partOf(0))
	e.pool.wg.Wait()
}

// minFlopsPerThread is roughly the work below which handing a share to
// another goroutine costs more than it saves (a wake-up is a few µs).
const minFlopsPerThread = 2 * 48 * 48 * 48

func (e *Engine) threadsFor(m, n, k int) int {
	t := e.threads
	if f := 2 * m * n * k / minFlopsPerThread; f < t {
		t = max(f, 1)
	}
	// Each thread needs at least one tile along the split side.
	if n >= m {
		t = min(t, (n+e.k.nr-1)/e.k.nr)
	} else {
		t = min(t, (m+e.k.mr-1)/e.k.mr)
	}
	return t
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
	if need := kc * ((min(nc, n) + nr - 1) / nr * nr); len(ws.b) < need {
		ws.b = make([]float32, need)
	}
	if need := kc * ((min(mc, m) + mr - 1) / mr * mr); len(ws.a) < need {
		ws.a = make([]float32, need)
	}
	for jc := 0; jc < n; jc += nc {
		ncb := min(nc, n-jc)
		for pc := 0; pc < k; pc += kc {
			kcb := min(kc, k-pc)
			packB(cl.transB, cl.b, cl.ldb, pc, p.n0+jc, kcb, ncb, nr, ws.b)
			beta := cl.beta
			if pc > 0 {
				beta = 1
			}
			for ic := 0; ic < m; ic += mc {
				mcb := min(mc, m-ic)
				packA(cl.transA, cl.a, cl.lda, p.m0+ic, pc, mcb, kcb, mr, cl.alpha, ws.a)
				for jr := 0; jr < ncb; jr += nr {
					bp := ws.b[jr*kcb : (jr+nr)*kcb]
					nv := min(nr, ncb-jr)
					for ir := 0; ir < mcb; ir += mr {
						ap := ws.a[ir*kcb : (ir+mr)*kcb]
						mv := min(mr, mcb-ir)
						off := (p.m0+ic+ir)*cl.ldc + p.n0 + jc + jr
						if mv == mr && nv == nr {
							kr.full(kcb, ap, bp, cl.c[off:], cl.ldc, beta)
							continue
						}
						// Edge tile: the panels are zero-padded, so compute
						// the whole tile into a scratch buffer and merge
						// only the rows and columns that exist.
						tile := ws.edge[:mr*nr]
						kr.full(kcb, ap, bp, tile, nr, 0)
						mergeTile(tile, nr, mv, nv, cl.c[off:], cl.ldc, beta)
					}
				}
			}
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

// task asks a pool worker to compute one part of a call.
type task struct {
	e  *Engine
	cl *call
	ws *workspace
	p  part
}

// pool is a set of long-lived worker goroutines. Starting goroutines per
// call would allocate (the go statement's closure escapes), so an Engine
// keeps its workers; they exit when the Engine is garbage collected.
type pool struct {
	work chan task
	wg   sync.WaitGroup
}

func newPool(e *Engine, n int) *pool {
	p := &pool{work: make(chan task, n)}
	for i := 0; i < n; i++ {
		go p.loop()
	}
	// The workers reference only p, not e, so e can become unreachable;
	// closing the channel then lets them return.
	runtime.AddCleanup(e, func(ch chan task) { close(ch) }, p.work)
	return p
}

func (p *pool) loop() {
	for t := range p.work {
		t.e.run(t.cl, t.ws, t.p)
		t = task{} // drop references to the Engine while idle
		p.wg.Done()
	}
}
