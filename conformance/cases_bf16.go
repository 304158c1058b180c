package conformance

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
)

// Cases of the optional op matmul_bf16: MatMul with a bfloat16 B, and the
// bfloat16 buffers that come with it (Alloc, Upload rounding to nearest
// even, exact Download, Copy into float32). Every one has the op
// matmul_bf16, so a backend whose Supports says no skips them all; the
// last case here checks that such a backend refuses bfloat16 cleanly
// instead.

func init() {
	registerMatMulBF16Cases()
	registerBF16MemoryCases()
	registerBF16GatherCases()
	registerBF16RefusalCases()
}

func registerMatMulBF16Cases() {
	var cs []mmCase
	trans := [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}}
	plain := func(m, n, k int, t [2]bool, alpha, beta float32) mmCase {
		return mmCase{batch: 1, batchA: 1, batchB: 1, rankA: 2, rankB: 2,
			m: m, n: n, k: k, transA: t[0], transB: t[1], alpha: alpha, beta: beta, bf16: true}
	}
	// Tiny, prime and odd sizes; one token (m = 1, the row-dot path of a
	// CPU when B is transposed) with a large k; a narrow C; a few rows
	// with B not transposed; sizes across the CPU's tiles and threads.
	for _, s := range [][3]int{
		{1, 1, 1}, {1, 7, 3}, {7, 1, 13}, {3, 7, 13}, {13, 127, 7}, {33, 17, 129},
		{1, 127, 4096}, {1, 300, 64}, {4, 37, 129}, {100, 9, 70}, {2, 300, 33},
		{12, 32, 257}, {97, 211, 263}, {200, 300, 520},
	} {
		for _, t := range trans {
			cs = append(cs, plain(s[0], s[1], s[2], t, 1, 0))
		}
	}
	for _, ab := range [][2]float32{{0.5, 0}, {-2, 0.5}, {0, 1}} {
		for _, t := range [][2]bool{{false, false}, {false, true}, {true, true}} {
			cs = append(cs, plain(13, 7, 33, t, ab[0], ab[1]))
		}
	}
	cs = append(cs, plain(1, 37, 300, [2]bool{false, true}, 0.75, -1))
	for _, t := range trans {
		cs = append(cs,
			// Every operand batched; B shared as a batch of 1; A shared.
			mmCase{batch: 3, batchA: 3, batchB: 3, rankA: 3, rankB: 3, m: 5, n: 7, k: 9, transA: t[0], transB: t[1], alpha: 1, bf16: true},
			mmCase{batch: 3, batchA: 3, batchB: 1, rankA: 3, rankB: 3, m: 5, n: 7, k: 9, transA: t[0], transB: t[1], alpha: 1, bf16: true},
			mmCase{batch: 3, batchA: 1, batchB: 3, rankA: 3, rankB: 3, m: 5, n: 7, k: 9, transA: t[0], transB: t[1], alpha: 1, bf16: true},
		)
	}
	cs = append(cs,
		// A linear layer with a frozen bfloat16 weight W [n, k]: x·Wᵀ for
		// a batch of sequences, its backward dx = dy·W, and one token.
		mmCase{batch: 4, batchA: 4, batchB: 1, rankA: 3, rankB: 2, m: 7, n: 13, k: 33, transB: true, alpha: 1, bf16: true},
		mmCase{batch: 4, batchA: 4, batchB: 1, rankA: 3, rankB: 2, m: 7, n: 33, k: 13, alpha: 1, bf16: true},
		mmCase{batch: 2, batchA: 2, batchB: 1, rankA: 3, rankB: 2, m: 1, n: 129, k: 257, transB: true, alpha: 1, bf16: true},
		mmCase{batch: 3, batchA: 3, batchB: 1, rankA: 3, rankB: 3, m: 5, n: 7, k: 9, transA: true, alpha: 0.5, beta: -1, bf16: true},
		mmCase{batch: 2, batchA: 2, batchB: 2, rankA: 3, rankB: 3, m: 3, n: 5, k: 4096, transB: true, alpha: 1, bf16: true},
	)
	for _, c := range cs {
		// Needs MatMul: it is the op called.
		Register(Case{Name: c.name(), Op: backend.OpMatMulBF16, Needs: []backend.Op{backend.OpMatMul}, Run: c.run})
	}
}

// bf16Specials are float32 values (by their bits) whose rounding to
// bfloat16 is easy to get wrong.
var bf16Specials = []uint32{
	0x3f800000, 0xbf800000, // ±1
	0x3f808000, 0x3f818000, 0xbf818000, // ties: to even down, to even up, negative
	0x3f807fff, 0x3f808001, // just below and above a tie
	0x3f80ffff, 0x7f7f0000, // rounds up a binade; the largest bfloat16
	0x7f7f7fff, 0x7f7f8000, 0x7f7fffff, 0xff7fffff, // below halfway to infinity; halfway; float32's largest, ±
	0x7f800000, 0xff800000, // ±Inf
	0x00000000, 0x80000000, // ±0
	0x00000001, 0x00008000, 0x00018000, 0x00010000, 0x807fffff, // subnormals: tiny, ties, exact, the largest negative
	0x00800000, 0x0080c000, // the smallest normal, and a tie above it
	0x7fc00000, 0xffc00000, 0x7f800001, 0x7f80ffff, 0xff800001, 0x7fbfffff, // NaNs, payloads in the low half only included
}

// roundedEqual reports whether got is what RoundBF16 gives for in: the
// same bits, or any NaN for a NaN.
func roundedEqual(got, in float32) bool {
	if math.IsNaN(float64(in)) {
		return math.IsNaN(float64(got))
	}
	return math.Float32bits(got) == math.Float32bits(RoundBF16(in))
}

func registerBF16MemoryCases() {
	// Upload rounds to nearest even, into a view in the middle of a
	// bfloat16 buffer whose guards must not change.
	for _, n := range []int{len(bf16Specials), 4099} {
		Register(Case{
			Name: fmt.Sprintf("%s/upload_rounding/%d", backend.OpMatMulBF16, n),
			Op:   backend.OpMatMulBF16,
			Run: func(e *Env) {
				x := make([]float32, n)
				for i := range x {
					switch {
					case i < len(bf16Specials):
						x[i] = math.Float32frombits(bf16Specials[i])
					case i%3 == 0:
						// A random tie: the dropped half is exactly 0x8000.
						x[i] = math.Float32frombits(e.Rand.Uint32()&0xffff0000 | 0x8000)
					default:
						x[i] = math.Float32frombits(e.Rand.Uint32())
					}
				}
				// The guards are bfloat16 values (a float32 sentinel would
				// be rounded).
				g := e.placeDType(backend.BFloat16, "bfloat16 upload", backend.Shape{n}, nil, func(full []float32, index []int) {
					for i := range full {
						full[i] = RoundBF16(sentinel(i))
					}
				})
				e.B.Upload(g.view, x)
				full := e.download(g.full, g.name)
				e.checkGuards(&g, full)
				bad := 0
				for i, p := range g.index {
					if !roundedEqual(full[p], x[i]) {
						if bad++; bad <= 5 {
							e.Errorf("element %d: uploaded %g (%#08x), downloaded %g (%#08x); rounded to nearest even it is %g (%#08x)",
								i, x[i], math.Float32bits(x[i]), full[p], math.Float32bits(full[p]), RoundBF16(x[i]), math.Float32bits(RoundBF16(x[i])))
						}
					}
				}
				if bad > 0 {
					e.Errorf("%d of %d elements rounded wrongly", bad, n)
				}
				// Download of the view itself gives the same values.
				got := make([]float32, n)
				if err := e.B.Download(got, g.view); err != nil {
					e.Fatalf("Download of the view: %v", err)
				}
				for i, p := range g.index {
					if math.Float32bits(got[i]) != math.Float32bits(full[p]) {
						e.Fatalf("Download of the view: element %d is %g, of the whole buffer %g", i, got[i], full[p])
					}
				}
			},
		})
	}

	// Values that are bfloat16 already come back bit for bit, every
	// exponent and sign among them.
	Register(Case{
		Name: string(backend.OpMatMulBF16) + "/roundtrip_exact/3x5x7",
		Op:   backend.OpMatMulBF16,
		Run: func(e *Env) {
			x := make([]float32, 105)
			for i := range x {
				h := uint32(e.Rand.Intn(1 << 16))
				if h&0x7f80 == 0x7f80 && h&0x7f != 0 {
					h &^= 0x7f // no NaN: its bits need not survive
				}
				x[i] = math.Float32frombits(h << 16)
			}
			t, err := e.B.Alloc(backend.BFloat16, 3, 5, 7)
			if err != nil {
				e.Fatalf("Alloc(bfloat16, 3, 5, 7): %v", err)
			}
			e.allocs = append(e.allocs, t)
			e.B.Upload(t, x)
			got := e.download(t, "bfloat16 tensor")
			for i := range x {
				if math.Float32bits(got[i]) != math.Float32bits(x[i]) {
					e.Fatalf("element %d: uploaded the bfloat16 value %g, downloaded %g", i, x[i], got[i])
				}
			}
		},
	})

	// Alloc gives a contiguous bfloat16 tensor, which takes half the bytes
	// of a float32 one.
	Register(Case{
		Name: string(backend.OpMatMulBF16) + "/alloc/256x4096",
		Op:   backend.OpMatMulBF16,
		Run: func(e *Env) {
			shape := backend.Shape{256, 4096}
			n := int64(shape.NumElements())
			before := e.B.BytesInUse()
			t, err := e.B.Alloc(backend.BFloat16, shape...)
			if err != nil {
				e.Fatalf("Alloc(bfloat16, %v): %v", shape, err)
			}
			defer e.B.Free(t)
			if !t.Shape().Equal(shape) || t.DType() != backend.BFloat16 || !t.Contiguous() {
				e.Errorf("Alloc(bfloat16, %v) returned %v, want a contiguous bfloat16 tensor of that shape", shape, t)
			}
			used := e.B.BytesInUse()
			if used < 2*n {
				e.Errorf("BytesInUse = %d with a live bfloat16 tensor of %d bytes", used, 2*n)
			}
			if grew := used - before; grew >= 4*n {
				e.Errorf("BytesInUse grew by %d bytes for %d bfloat16 elements: as much as float32 takes, want about 2 per element", grew, n)
			}
		},
	})

	// Copy widens into float32 (exactly), or adds.
	for _, s := range [][]int{{1}, {13, 7}, {3, 5, 7}, {4099}} {
		for _, acc := range []bool{false, true} {
			name := fmt.Sprintf("%s/copy/%s", backend.OpMatMulBF16, dims(s...))
			if acc {
				name = fmt.Sprintf("%s/copy/accumulate/%s", backend.OpMatMulBF16, dims(s...))
			}
			Register(Case{
				Name:  name,
				Op:    backend.OpMatMulBF16,
				Needs: []backend.Op{backend.OpCopy},
				Run: func(e *Env) {
					n := backend.Shape(s).NumElements()
					src, vals := e.InputBF16(e.Uniform(n, -3, 3), s...)
					key, o := "copy", e.Output(s...)
					ref := F64(vals)
					if acc {
						init := e.Uniform(n, -1, 1)
						key, o = "copy_accumulate", e.OutputInit(init, s...)
						for i := range ref {
							ref[i] += float64(init[i])
						}
					}
					e.B.Copy(o.T, src, acc)
					e.CheckTol(key, o, ref)
				},
			})
		}
	}
}

// bf16GatherSpecials are bfloat16 values (by their bits) whose widening
// is easy to get wrong: signed zeros, subnormals, the extremes, infinities
// and a NaN.
var bf16GatherSpecials = []uint16{
	0x0000, 0x8000, 0x0001, 0x807f, 0x0080, 0x8080, 0x7f7f, 0xff7f,
	0x7f80, 0xff80, 0x7fc0, 0x3f80, 0xbf81, 0x4049, 0x0040,
}

// registerBF16GatherCases registers what the gather cases of
// cases_embed.go (bfloat16 tables of the shapes of the float32 ones) do
// not cover: every special value widened bit for bit, and ids out of
// range refused with the output untouched.
func registerBF16GatherCases() {
	Register(Case{
		Name:  string(backend.OpMatMulBF16) + "/gather/specials/9/table=6x37",
		Op:    backend.OpMatMulBF16,
		Needs: []backend.Op{backend.OpGather},
		Run: func(e *Env) {
			const vocab, dim = 6, 37
			vals := make([]float32, vocab*dim)
			for i := range vals {
				h := uint32(e.Rand.Intn(1 << 16))
				if i%dim < len(bf16GatherSpecials) && i/dim%2 == 0 {
					h = uint32(bf16GatherSpecials[(i%dim+i/dim)%len(bf16GatherSpecials)])
				}
				vals[i] = math.Float32frombits(h << 16)
			}
			table, tv := e.InputBF16(vals, vocab, dim)
			ids := []int32{5, 0, 2, 2, 4, 1, 3, 0, 5}
			o := e.Output(len(ids), dim)
			e.B.Gather(o.T, table, ids)
			full := e.download(o.full, o.name)
			e.checkGuards(&o.guarded, full)
			bad := 0
			for r, id := range ids {
				for j := range dim {
					got, want := full[o.index[r*dim+j]], tv[int(id)*dim+j]
					same := math.Float32bits(got) == math.Float32bits(want)
					if math.IsNaN(float64(want)) {
						same = math.IsNaN(float64(got))
					}
					if !same {
						if bad++; bad <= 5 {
							e.Errorf("row %d (id %d) column %d: %g (%#08x), want the stored bfloat16 widened: %g (%#08x)",
								r, id, j, got, math.Float32bits(got), want, math.Float32bits(want))
						}
					}
				}
			}
			if bad > 0 {
				e.Errorf("%d of %d elements differ", bad, len(ids)*dim)
			}
		},
	})

	// An id outside [0, vocab) is refused as for a float32 table: a
	// recorded *OpError, no element written, the backend working after.
	for _, bad := range []int32{7, -1} {
		Register(Case{
			Name:  fmt.Sprintf("%s/refused/gather_id_out_of_range/%d", backend.OpMatMulBF16, bad),
			Op:    backend.OpMatMulBF16,
			Needs: []backend.Op{backend.OpGather, backend.OpScale},
			Run: func(e *Env) {
				table, _ := e.InputBF16(e.Uniform(7*5, -1, 1), 7, 5)
				o := e.Output(3, 5)
				e.B.Gather(o.T, table, []int32{0, bad, 6})
				expectOpError(e, fmt.Sprintf("Sync after Gather of id %d from a bfloat16 table of 7 rows", bad), e.B.Sync(), backend.OpGather)
				expectCleared(e)
				expectUntouched(e, o, "Gather")
				afterwards(e)
			},
		})
	}
}

// hostBF16 is a Buffer no backend owns, of n bfloat16 elements.
type hostBF16 int

func (h hostBF16) Len() int             { return int(h) }
func (h hostBF16) DType() backend.DType { return backend.BFloat16 }

func registerBF16RefusalCases() {
	// Ops other than MatMul's B and Copy's src refuse a bfloat16 tensor
	// of the backend's own, as an invalid call: a recorded *OpError,
	// cleared by Sync, and the backend working afterwards.
	refuse := func(name string, op backend.Op, call func(e *Env, h backend.Tensor)) {
		Register(Case{
			Name:  fmt.Sprintf("%s/refused/%s", backend.OpMatMulBF16, name),
			Op:    backend.OpMatMulBF16,
			Needs: []backend.Op{op, backend.OpScale},
			Run: func(e *Env) {
				h, _ := e.InputBF16(e.Uniform(4*8, -1, 1), 4, 8)
				call(e, h)
				expectOpError(e, "Sync after "+name+" with a bfloat16 tensor", e.B.Sync(), op)
				expectCleared(e)
				afterwards(e)
			},
		})
	}
	refuse("unary_src", backend.OpUnary, func(e *Env, h backend.Tensor) {
		e.B.Unary(backend.Exp, e.Output(4, 8).T, h)
	})
	refuse("binary_b", backend.OpBinary, func(e *Env, h backend.Tensor) {
		e.B.Binary(backend.Add, e.Output(4, 8).T, scratch(e, 4, 8), h)
	})
	refuse("scale_dst", backend.OpScale, func(e *Env, h backend.Tensor) {
		e.B.Scale(h, scratch(e, 4, 8), 2)
	})
	refuse("fill", backend.OpFill, func(e *Env, h backend.Tensor) { e.B.Fill(h, 1) })
	refuse("copy_into", backend.OpCopy, func(e *Env, h backend.Tensor) {
		e.B.Copy(h, scratch(e, 4, 8), false)
	})
	refuse("copy_strided", backend.OpCopy, func(e *Env, h backend.Tensor) {
		tr, err := h.Permute(1, 0)
		if err != nil {
			e.Fatalf("Permute: %v", err)
		}
		e.B.Copy(e.Output(8, 4).T, tr, false)
	})
	refuse("matmul_a", backend.OpMatMul, func(e *Env, h backend.Tensor) {
		e.B.MatMul(e.Output(4, 4).T, h, scratch(e, 8, 4), backend.MatMulParams{Alpha: 1})
	})
	refuse("matmul_c", backend.OpMatMul, func(e *Env, h backend.Tensor) {
		e.B.MatMul(h, scratch(e, 4, 3), scratch(e, 3, 8), backend.MatMulParams{Alpha: 1})
	})
	refuse("rmsnorm_weight", backend.OpRMSNorm, func(e *Env, h backend.Tensor) {
		e.B.RMSNorm(e.Output(1, 32).T, scratch(e, 1, 32), h.MustReshape(32), 1e-5)
	})
	// Gather takes a bfloat16 table (registerBF16GatherCases), but not a
	// bfloat16 dst; ScatterAdd's dtable accumulates gradients in float32.
	refuse("gather_dst", backend.OpGather, func(e *Env, h backend.Tensor) {
		e.B.Gather(h, scratch(e, 5, 8), []int32{0, 1, 2, 3})
	})
	refuse("scatter_add_table", backend.OpScatterAdd, func(e *Env, h backend.Tensor) {
		e.B.ScatterAdd(h, scratch(e, 2, 8), []int32{0, 3})
	})
	refuse("softmax_src", backend.OpSoftmax, func(e *Env, h backend.Tensor) {
		e.B.Softmax(e.Output(4, 8).T, h, backend.SoftmaxParams{})
	})
	refuse("adamw_param", backend.OpAdamW, func(e *Env, h backend.Tensor) {
		e.B.AdamW(h, scratch(e, 4, 8), scratch(e, 4, 8), scratch(e, 4, 8),
			backend.AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1})
	})
	refuse("cross_entropy_logits", backend.OpCrossEntropy, func(e *Env, h backend.Tensor) {
		e.B.CrossEntropy(e.Output(4).T, h, []int32{0, 1, 2, 3}, backend.CrossEntropyParams{IgnoreIndex: -100})
	})

	// Every backend, with the op or without: a bfloat16 tensor the backend
	// does not own (or, without the op, any bfloat16 tensor) is refused
	// by Upload, Download, Copy (either way), MatMul (B or Bᵀ), Gather
	// (as its table) and Scale with an error, never a panic, and the
	// output is left alone. A backend without the op refuses to
	// allocate one.
	Register(Case{
		Name:  "memory/bf16_refused_where_not_owned",
		Needs: []backend.Op{backend.OpCopy, backend.OpMatMul, backend.OpScale, backend.OpGather},
		Run: func(e *Env) {
			if !e.B.Supports(backend.OpMatMulBF16) {
				t, err := e.B.Alloc(backend.BFloat16, 4, 8)
				if err == nil {
					e.B.Free(t)
					e.Errorf("Alloc(bfloat16) succeeded on a backend whose Supports(%s) is false", backend.OpMatMulBF16)
				}
			}
			h, err := backend.NewTensor(hostBF16(32), 0, 4, 8)
			if err != nil {
				e.Fatalf("NewTensor: %v", err)
			}
			calls := []struct {
				what string
				op   backend.Op
				call func(o *Out)
			}{
				{"Upload into it", "upload", func(*Out) { e.B.Upload(h, make([]float32, 32)) }},
				{"Copy from it", backend.OpCopy, func(o *Out) { e.B.Copy(o.T, h, false) }},
				{"MatMul with it as B", backend.OpMatMul, func(o *Out) {
					e.B.MatMul(o.T, scratch(e, 4, 4), h, backend.MatMulParams{Alpha: 1})
				}},
				{"MatMul with it as Bᵀ", backend.OpMatMul, func(o *Out) {
					e.B.MatMul(o.T, scratch(e, 4, 4), h.MustReshape(8, 4), backend.MatMulParams{TransB: true, Alpha: 1})
				}},
				{"Gather from it", backend.OpGather, func(o *Out) { e.B.Gather(o.T, h, []int32{0, 3, 1, 2}) }},
				{"Copy into it", backend.OpCopy, func(o *Out) { e.B.Copy(h, o.T, true) }},
				{"Scale into it", backend.OpScale, func(o *Out) { e.B.Scale(h, o.T, 2) }},
			}
			for _, c := range calls {
				o := e.Output(4, 8).SetName("output of " + c.what)
				c.call(o)
				expectOpError(e, "Sync after "+c.what+" (a bfloat16 tensor of no backend)", e.B.Sync(), c.op)
				expectCleared(e)
				expectUntouched(e, o, c.what)
			}
			err = e.B.Download(make([]float32, 32), h)
			expectOpError(e, "Download from it (a bfloat16 tensor of no backend)", err, "download")
			expectCleared(e)
			afterwards(e)
		},
	})
}
