package cpu

import (
	"testing"

	"github.com/sora-go/sora/backend"
)

// scratchCase is one op whose scratch Reserved must count; setup
// allocates its tensors and returns it.
type scratchCase struct {
	name    string
	opts    Options
	tune    func(be *Backend) // lowers grains and thresholds before setup
	matmuls bool              // the op runs products, so the engines grow
	setup   func(t *testing.T, be *Backend) scratchOp
}

// scratchOp is an op to run twice, the bytes of the backend's own scratch
// (rows, partials, attention blocks, plans; the engines' workspaces are
// counted apart) that it holds afterwards, and the tensors it uses.
type scratchOp struct {
	run     func()
	scratch int64
	live    []backend.Tensor
	// copies is, for AttentionGrad, the bytes of its dk and dv copies
	// worked out from the shape and the splits alone: PeakReserved −
	// PeakInUse must be at least that.
	copies int64
}

// streamingRowChunks skips where the row kernels have no streaming
// variant (then op, a row op that keeps two rows of scratch per chunk
// only for streaming stores, takes none) and returns how many chunks
// rows of cols floats run in, failing unless they are want.
func streamingRowChunks(t *testing.T, be *Backend, op string, rows, cols, want int) int64 {
	t.Helper()
	if be.kernels(0) == be.kern {
		t.Skipf("these row kernels have no streaming variant, so %s takes no scratch", op)
	}
	chunks := be.chunks(rows, cols*8)
	if chunks != want {
		t.Fatalf("%s runs in %d chunks, want %d", op, chunks, want)
	}
	return int64(chunks)
}

// softmaxScratchCase is Softmax's streaming scratch, two rows (softmaxRows)
// per chunk, on threads threads with tune applied.
func softmaxScratchCase(name string, threads int, tune func(*Backend)) scratchCase {
	return scratchCase{
		name: name,
		opts: Options{Threads: threads},
		tune: tune,
		setup: func(t *testing.T, be *Backend) scratchOp {
			const rows, keys = 64, 1000
			chunks := streamingRowChunks(t, be, "Softmax", rows, keys, threads)
			x, y := upload(t, be, uniform(newRNG(uint64(threads)), rows*keys, -2, 2), rows, keys), poisoned(t, be, rows, keys)
			return scratchOp{run: func() { be.Softmax(y, x, backend.SoftmaxParams{Scale: 1}) }, scratch: padded(2*4*keys*chunks, chunks), live: []backend.Tensor{x, y}}
		},
	}
}

// padded is the bytes of scratch buffers holding data bytes in all,
// each with its scratchPad.
func padded(data, buffers int64) int64 { return data + buffers*scratchPad }

// strideTargets returns rows targets r·stride mod vocab.
func strideTargets(rows, vocab, stride int) []int32 {
	targets := make([]int32, rows)
	for r := range targets {
		targets[r] = int32(r * stride % vocab)
	}
	return targets
}

// scratchCases are the ops that take scratch, at shapes that do. The
// expected bytes are worked out from the shapes, with the backend's own
// sizing (chunks, pieces, gradPlan, scratchLen and copiesLen) where the
// count of parts depends on it.
var scratchCases = []scratchCase{
	softmaxScratchCase("softmax, streaming, one thread", 1, func(be *Backend) { be.stream = 0 }), // every op streams its stores
	softmaxScratchCase("softmax, streaming, rows per chunk", 3, func(be *Backend) { be.stream, be.grain = 0, 1 }),
	{
		name: "sum columns: float64 partials per piece",
		opts: Options{Threads: 2},
		setup: func(t *testing.T, be *Backend) scratchOp {
			const rows, cols = 4096, 64
			x, y := upload(t, be, uniform(newRNG(3), rows*cols, -1, 1), rows, cols), poisoned(t, be, cols)
			pieces := be.pieces(rows, cols, cols)
			if pieces < 2 {
				t.Fatalf("SumColumns cuts %d×%d into %d pieces; want several", rows, cols, pieces)
			}
			return scratchOp{run: func() { be.SumColumns(y, x) }, scratch: padded(8*cols*int64(pieces), int64(pieces)), live: []backend.Tensor{x, y}}
		},
	},
	{
		name: "cross entropy: a block of rows' float64 parts and sums per chunk",
		opts: Options{Threads: 2},
		tune: func(be *Backend) { be.grain = 1 }, // two chunks
		setup: func(t *testing.T, be *Backend) scratchOp {
			const rows, vocab = 37, 100 // blocks of 19 rows, a chunk's (not ceBlockBytes' 327)
			x, y := upload(t, be, uniform(newRNG(9), rows*vocab, -3, 3), rows, vocab), poisoned(t, be, rows)
			targets := strideTargets(rows, vocab, 7)
			targets[5] = -100
			p := backend.CrossEntropyParams{IgnoreIndex: -100, Smoothing: 0.1, Scale: 1}
			return scratchOp{run: func() { be.CrossEntropy(y, x, targets, p) }, scratch: padded(2*8*(2*19+2), 2), live: []backend.Tensor{x, y}}
		},
	},
	{
		name: "cross entropy gradient, streaming: two rows of exponentials per chunk",
		opts: Options{Threads: 3},
		tune: func(be *Backend) { be.stream, be.grain = 0, 1 },
		setup: func(t *testing.T, be *Backend) scratchOp {
			const rows, vocab = 64, 1000
			chunks := streamingRowChunks(t, be, "CrossEntropyGrad", rows, vocab, 3)
			x, d := upload(t, be, uniform(newRNG(10), rows*vocab, -3, 3), rows, vocab), poisoned(t, be, rows, vocab)
			targets := strideTargets(rows, vocab, 13)
			p := backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 1}
			return scratchOp{run: func() { be.CrossEntropyGrad(d, x, targets, p) }, scratch: padded(2*4*vocab*chunks, chunks), live: []backend.Tensor{x, d}}
		},
	},
	{
		name:    "matmul: the engine's workspace",
		opts:    Options{Threads: 2},
		matmuls: true,
		setup: func(t *testing.T, be *Backend) scratchOp {
			const m, n, k = 150, 120, 200
			a, b := upload(t, be, uniform(newRNG(4), m*k, -1, 1), m, k), upload(t, be, uniform(newRNG(5), k*n, -1, 1), k, n)
			c := poisoned(t, be, m, n)
			return scratchOp{run: func() { be.MatMul(c, a, b, backend.MatMulParams{Alpha: 1}) }, scratch: 0, live: []backend.Tensor{a, b, c}}
		},
	},
	{
		name: "batched matmul: one engine per worker",
		opts: Options{Threads: 3},
		// A grain of one matrix's work: the batch, too small for the
		// engine's threads, is shared among the backend's.
		tune:    func(be *Backend) { be.gemmGrain = 2 * 20 * 30 * 40 },
		matmuls: true,
		setup: func(t *testing.T, be *Backend) scratchOp {
			const batch, m, n, k = 6, 20, 30, 40
			a := upload(t, be, uniform(newRNG(6), batch*m*k, -1, 1), batch, m, k)
			b := upload(t, be, uniform(newRNG(7), batch*k*n, -1, 1), batch, k, n)
			c := poisoned(t, be, batch, m, n)
			if got := be.batchChunks(backend.MatMulDims{Batch: batch, M: m, N: n, K: k}); got != 3 {
				t.Fatalf("the batch is split %d ways, want one per thread", got)
			}
			return scratchOp{run: func() { be.MatMul(c, a, b, backend.MatMulParams{Alpha: 1}) }, scratch: 0, live: []backend.Tensor{a, b, c}}
		},
	},
	attentionScratchCase("attention forward, one thread", Options{Threads: 1}, nil, false,
		backend.AttentionParams{Scale: 0.35, Causal: true}),
	attentionScratchCase("attention forward, three threads", Options{Threads: 3}, func(be *Backend) { be.grain = 1 }, false,
		backend.AttentionParams{Scale: 0.35, Causal: true}),
	attentionScratchCase("attention, split backward, one thread", Options{Threads: 1}, nil, true,
		backend.AttentionParams{Scale: 0.35, Causal: true, Softcap: 20}),
	attentionScratchCase("attention, split backward, three threads", Options{Threads: 3}, func(be *Backend) { be.grain = 1 }, true,
		backend.AttentionParams{Scale: 0.35, Causal: true}),
	attentionScratchCase("attention with packed documents", Options{Threads: 1}, nil, true,
		withSegments(backend.AttentionParams{Scale: 0.35, Causal: true}, packed([]int{1, 40, 29}, []int{70}))),
}

// attentionScratchCase runs Attention, then AttentionGrad if backward,
// at a shape whose backward splits (on any number of threads: the splits
// follow from the shape). The scratch is one buffer of float32s carved
// per worker, as long as the larger of the ops' needs: the forward's
// blocks, or the backward's blocks plus its dk and dv copies; with packed
// documents, the block plan's int32s too.
func attentionScratchCase(name string, opts Options, tune func(*Backend), backward bool, p backend.AttentionParams) scratchCase {
	return scratchCase{name: name, opts: opts, tune: tune, matmuls: true,
		setup: func(t *testing.T, be *Backend) scratchOp {
			s := attnShape{2, 70, 70, 4, 2, 8}
			d := backend.AttentionDims{Batch: s.B, Queries: s.Tq, Keys: s.Tk, Heads: s.H, KVHeads: s.KV, HeadDim: s.D}
			c := newAttnCall(d, p, be.kern)
			var ints int64
			if p.Segments != nil {
				// Planned in a slice of the test's, not in be's scratch,
				// which the op's first run must be the one to grow.
				c.planBlocks(p.Segments, make([]int32, c.segLen()))
				ints = 4 * int64(c.segLen())
			}
			c.dk = make([]float32, s.kLen()) // copiesLen reads its length
			workers, splits := be.gradPlan(&c)
			if splits < 2 {
				t.Fatalf("the backward does not split at this shape (%d splits)", splits)
			}
			// The copies' size from the shape alone: dk and dv, [B, Tk, KV, D]
			// each, once per split after the first.
			copies := 2 * (splits - 1) * s.B * s.Tk * s.KV * s.D
			if copies != c.copiesLen(splits) {
				t.Fatalf("copiesLen(%d) = %d floats, want dk and dv once per split after the first, %d", splits, c.copiesLen(splits), copies)
			}
			fwdWorkers := workers
			if p.Segments == nil {
				fwdWorkers = be.chunks(s.B*s.KV*c.nb, c.rows()*s.Tk*s.D*4)
			} else {
				tasks, cost := c.segTasks(4)
				fwdWorkers = be.chunks(tasks, cost)
			}
			floats := fwdWorkers * c.scratchLen(false)
			if backward {
				floats = max(floats, workers*c.scratchLen(true)+copies)
			} else {
				copies = 0
			}
			r := newAttnRun(t, be, s, newAttnData(newRNG(8), s))
			return scratchOp{
				run: func() {
					r.forward(be, p)
					if backward {
						r.backward(be, p)
					}
				},
				scratch: padded(4*int64(floats), 1) + ints,
				live:    []backend.Tensor{r.q, r.k, r.v, r.dout, r.out, r.lse, r.dq, r.dk, r.dv},
				copies:  4 * int64(copies),
			}
		},
	}
}

// TestReservedCountsScratch checks that Reserved is the tensors plus the
// scratch the ops keep, exactly, through a first run of each op, a warm
// one (which grows nothing), ResetPeakMemory, freeing the tensors and
// Close: Reserved − InUse is the op's scratch worked out from its shape
// plus the engines' workspaces as package gemm reports them, and an op
// that multiplies raises Reserved by exactly the engines' growth. Without
// the scratch counted, Reserved would equal InUse and every case fails.
func TestReservedCountsScratch(t *testing.T) {
	for _, tc := range scratchCases {
		t.Run(tc.name, func(t *testing.T) {
			be := New(tc.opts)
			if tc.tune != nil {
				tc.tune(be)
			}
			o := tc.setup(t, be)
			op, scratch := o.run, o.scratch
			if err := be.Sync(); err != nil {
				t.Fatal(err)
			}
			before, engines := be.MemoryUsage(), be.engineBytes()
			if before.Reserved != before.InUse || engines != 0 {
				t.Fatalf("before the op: %+v, engines' workspaces %d bytes; want Reserved as InUse and nothing in the engines", before, engines)
			}
			op()
			if err := be.Sync(); err != nil {
				t.Fatal(err)
			}
			u := be.MemoryUsage()
			grown := be.engineBytes() - engines
			if tc.matmuls && grown <= 0 {
				t.Errorf("the engines' workspaces grew by %d bytes in a first product", grown)
			}
			if u.InUse != before.InUse || u.PeakInUse != before.PeakInUse {
				t.Errorf("the op changed InUse %d → %d or PeakInUse %d → %d", before.InUse, u.InUse, before.PeakInUse, u.PeakInUse)
			}
			if got, want := u.Reserved-before.Reserved, scratch+grown; got != want {
				t.Errorf("Reserved grew by %d, want %d (scratch %d, engines %d)", got, want, scratch, grown)
			}
			if got, want := u.PeakReserved-u.PeakInUse, scratch+engines+grown; got != want {
				t.Errorf("PeakReserved − PeakInUse = %d, want %d", got, want)
			}
			if got := u.PeakReserved - u.PeakInUse; got < o.copies {
				t.Errorf("PeakReserved − PeakInUse = %d, less than AttentionGrad's dk and dv copies, %d bytes", got, o.copies)
			}
			if scratch == 0 && !tc.matmuls {
				t.Fatal("the case takes no scratch")
			}

			// A warm op takes no new scratch of the backend's own. On
			// several threads the engines may still grow: the workers
			// take blocks in any order, so an engine may meet a shape
			// the first run gave to another; Reserved follows them.
			engines = be.engineBytes()
			op()
			w := be.MemoryUsage()
			grown = be.engineBytes() - engines
			if tc.opts.Threads == 1 && grown != 0 {
				t.Errorf("a warm op on one thread grew the engine by %d bytes", grown)
			}
			if want := (backend.MemoryUsage{InUse: u.InUse, PeakInUse: u.PeakInUse, Reserved: u.Reserved + grown, PeakReserved: u.PeakReserved + grown}); w != want {
				t.Errorf("after a warm op: %+v; want %+v (the engines grew by %d)", w, want, grown)
			}

			// Freeing every tensor leaves the scratch reserved and the
			// peaks where they were; ResetPeakMemory brings them down to
			// what is held then, the scratch included.
			held := w.Reserved - w.InUse
			for _, x := range o.live {
				be.Free(x)
			}
			if f := be.MemoryUsage(); f != (backend.MemoryUsage{InUse: 0, PeakInUse: w.PeakInUse, Reserved: held, PeakReserved: w.PeakReserved}) {
				t.Errorf("with the tensors freed: %+v; want InUse 0, Reserved %d (the scratch), peaks %d and %d", f, held, w.PeakInUse, w.PeakReserved)
			}
			be.ResetPeakMemory()
			if r := be.MemoryUsage(); r != (backend.MemoryUsage{Reserved: held, PeakReserved: held}) {
				t.Errorf("after ResetPeakMemory: %+v; want nothing in use and the scratch's %d bytes reserved, peaks the same", r, held)
			}
			if err := be.Close(); err != nil {
				t.Fatal(err)
			}
			if c := be.MemoryUsage(); c != (backend.MemoryUsage{PeakReserved: held}) {
				t.Errorf("after Close: %+v; want Reserved 0 (the scratch dropped) and the peak %d kept", c, held)
			}
		})
	}
}

// TestCloseDropsScratchOnly: tensors still live at Close stay counted
// in both figures, the scratch leaves Reserved, and freeing the tensors
// afterwards brings both to 0.
func TestCloseDropsScratchOnly(t *testing.T) {
	be := New(Options{Threads: 1})
	x := upload(t, be, uniform(newRNG(9), 4096*8, -1, 1), 4096, 8)
	y := poisoned(t, be, 8)
	be.SumColumns(y, x)
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	tensors := int64(4 * (4096*8 + 8))
	if u := be.MemoryUsage(); u.Reserved <= u.InUse || u.InUse != tensors {
		t.Fatalf("before Close: %+v; want %d bytes of tensors and some scratch above them", u, tensors)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if u := be.MemoryUsage(); u.InUse != tensors || u.Reserved != tensors {
		t.Errorf("after Close: %+v; want InUse and Reserved the tensors' %d bytes", u, tensors)
	}
	if err := be.Close(); err != nil { // a second Close drops nothing more
		t.Fatal(err)
	}
	be.Free(x)
	be.Free(y)
	if u := be.MemoryUsage(); u.InUse != 0 || u.Reserved != 0 {
		t.Errorf("with the tensors freed after Close: %+v; want 0 and 0", u)
	}
}

// TestAttentionCopiesSize checks the figure MemoryUsage's doc gives for
// AttentionGrad's dk and dv copies: 120 MiB at batch 1, one key/value
// head, 8192 keys of 128 dimensions (15 copies of each 4 MiB matrix), and
// that Reserved would count them: the scratch a backward asks for
// includes them. Nothing is run at that size.
func TestAttentionCopiesSize(t *testing.T) {
	be := New(Options{Threads: 1})
	d := backend.AttentionDims{Batch: 1, Queries: 8192, Keys: 8192, Heads: 1, KVHeads: 1, HeadDim: 128}
	c := newAttnCall(d, backend.AttentionParams{Scale: 0.1, Causal: true}, be.kern)
	c.dk = make([]float32, d.Batch*d.Keys*d.KVHeads*d.HeadDim)
	_, splits := be.gradPlan(&c)
	if got := 4 * c.copiesLen(splits); got != 120<<20 {
		t.Errorf("%d splits: the copies take %d bytes, want 120 MiB as MemoryUsage's doc says", splits, got)
	}
}
