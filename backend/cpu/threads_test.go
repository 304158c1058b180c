package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// threadCounts are the thread caps whose results must agree bit for bit:
// one, two, and counts that divide none of the shapes below evenly.
var threadCounts = []int{1, 2, 3, 5, 8}

// sweep is what a threadCase's run works with: the backend under test and
// a generator seeded alike for every thread count, so that each count sees
// the same inputs.
type sweep struct {
	t   *testing.T
	be  *Backend
	rng *rand.Rand
}

// in uploads a tensor of the given shape, uniform in [lo, hi).
func (s sweep) in(lo, hi float64, shape ...int) backend.Tensor {
	return upload(s.t, s.be, uniform(s.rng, backend.Shape(shape).NumElements(), lo, hi), shape...)
}

// inBF16 is in for a bfloat16 tensor.
func (s sweep) inBF16(lo, hi float64, shape ...int) backend.Tensor {
	return uploadDType(s.t, s.be, backend.BFloat16, uniform(s.rng, backend.Shape(shape).NumElements(), lo, hi), shape...)
}

// wide uploads a tensor of the given shape whose values spread over
// sixteen orders of magnitude, either sign, so that float64 sums of them
// round and their order shows in the result.
func (s sweep) wide(shape ...int) backend.Tensor {
	x := make([]float32, backend.Shape(shape).NumElements())
	for i := range x {
		x[i] = float32(math.Copysign(math.Pow(10, -12+16*s.rng.Float64()), s.rng.Float64()-0.5))
	}
	return upload(s.t, s.be, x, shape...)
}

// out allocates an output filled with NaN, so that an element left
// unwritten shows.
func (s sweep) out(shape ...int) backend.Tensor { return poisoned(s.t, s.be, shape...) }

// get downloads the outputs.
func (s sweep) get(ts ...backend.Tensor) [][]float32 {
	out := make([][]float32, len(ts))
	for i, x := range ts {
		out[i] = download(s.t, s.be, x)
	}
	return out
}

// ids returns n indices below vocab, many repeated (as a batch's tokens
// are), with ignore (when not 0) at every seventh position.
func (s sweep) ids(n, vocab int, ignore int32) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(s.rng.IntN(vocab))
		if ignore != 0 && i%7 == 3 {
			ids[i] = ignore
		}
	}
	return ids
}

// threadCase is one op call whose outputs must not depend on the thread
// count: run draws its inputs from s.rng, runs the op and returns every
// output.
type threadCase struct {
	name string
	run  func(s sweep) [][]float32
}

// threadCases lists calls of every op, with shapes that split into
// several pieces of uneven size (rows that are multiples of no chunk,
// vector or tile size) at the grains the test uses.
func threadCases() []threadCase {
	var cs []threadCase
	add := func(name string, run func(s sweep) [][]float32) { cs = append(cs, threadCase{name, run}) }

	// MatMul through each of package gemm's paths: the tiled product
	// split by rows and by columns, the skinny one (n ≤ 16), the row dot
	// products (m ≤ 4, Bᵀ), bfloat16 B, and a batch spread over engines.
	type mm struct {
		batch, m, n, k int
		ta, tb, bf16   bool
		alpha, beta    float32
	}
	for _, c := range []mm{
		{1, 161, 143, 97, false, false, false, 1, 0},
		{1, 161, 143, 97, true, false, false, 0.5, 1},
		{1, 161, 143, 97, false, true, false, 1, 0},
		{1, 161, 143, 97, true, true, false, 1, -0.5},
		{1, 301, 203, 111, false, false, false, 1, 0},
		{1, 30, 701, 150, false, false, false, 1, 0},
		{1, 1100, 8, 128, false, false, false, 1, 0},
		{1, 1100, 13, 70, false, true, false, 1, 1},
		{1, 3, 901, 300, false, true, false, 1, 0},
		{1, 3, 901, 300, false, true, true, 1, 0},
		{1, 161, 143, 97, false, false, true, 1, 0},
		{1, 1100, 8, 128, false, false, true, 1, 0},
		{1, 1100, 13, 70, false, true, true, 0.5, 1},
		{5, 3, 300, 200, false, true, true, 1, 0},
		{7, 33, 41, 29, false, false, false, 0.5, 1},
		{9, 20, 20, 70, false, true, false, 1, 0},
	} {
		name := fmt.Sprintf("matmul/%dx%dx%dx%d/ta%v/tb%v/bf16%v", c.batch, c.m, c.n, c.k, c.ta, c.tb, c.bf16)
		add(name, func(s sweep) [][]float32 {
			ash, bsh := []int{c.batch, c.m, c.k}, []int{c.batch, c.k, c.n}
			if c.ta {
				ash = []int{c.batch, c.k, c.m}
			}
			if c.tb {
				bsh = []int{c.batch, c.n, c.k}
			}
			a := s.in(-1, 1, ash...)
			var b backend.Tensor
			if c.bf16 {
				b = s.inBF16(-1, 1, bsh...)
			} else {
				b = s.in(-1, 1, bsh...)
			}
			out := s.in(-1, 1, c.batch, c.m, c.n)
			s.be.MatMul(out, a, b, backend.MatMulParams{TransA: c.ta, TransB: c.tb, Alpha: c.alpha, Beta: c.beta})
			return s.get(out)
		})
	}

	// Element-wise ops, over lengths that end in partial vectors, and
	// broadcasts by row, by column and of one value.
	const n = 10007
	for _, op := range backend.BinaryOps {
		for _, bc := range []string{"none", "row", "column", "scalar"} {
			add(fmt.Sprintf("binary/%v/%s", op, bc), func(s sweep) [][]float32 {
				rows, cols := 301, 67
				ash, bsh := []int{rows, cols}, []int{rows, cols}
				switch bc {
				case "row":
					bsh = []int{cols}
				case "column":
					bsh = []int{rows, 1}
				case "scalar":
					ash, bsh = []int{n, 1}, []int{1}
				}
				a, b := s.in(-2, 2, ash...), s.in(0.5, 2, bsh...)
				out := s.out(ash...)
				s.be.Binary(op, out, a, b)
				return s.get(out)
			})
		}
	}
	add("scale", func(s sweep) [][]float32 {
		x, out := s.in(-2, 2, n), s.out(n)
		s.be.Scale(out, x, 0.37)
		return s.get(out)
	})
	add("axpy", func(s sweep) [][]float32 {
		x, y := s.in(-2, 2, n), s.in(-2, 2, n)
		s.be.Axpy(y, -0.37, x)
		return s.get(y)
	})
	for _, op := range backend.UnaryOps {
		lo, hi := -3.0, 3.0
		if op == backend.Log || op == backend.Sqrt || op == backend.Rsqrt {
			lo, hi = 0.05, 4
		}
		add(fmt.Sprintf("unary/%v", op), func(s sweep) [][]float32 {
			x, out := s.in(lo, hi, n), s.out(n)
			s.be.Unary(op, out, x)
			return s.get(out)
		})
		add(fmt.Sprintf("unary_grad/%v", op), func(s sweep) [][]float32 {
			x, dy, dx := s.in(lo, hi, n), s.in(-1, 1, n), s.out(n)
			s.be.UnaryGrad(op, dx, x, dy)
			return s.get(dx)
		})
	}

	// Reductions along rows and down columns.
	for _, sh := range [][2]int{{301, 67}, {37, 3001}, {1001, 5}, {40, 1000}, {2000, 33}} {
		rows, cols := sh[0], sh[1]
		for _, op := range []backend.ReduceOp{backend.Sum, backend.SumSquares, backend.Max} {
			add(fmt.Sprintf("reduce_rows/%v/%dx%d", op, rows, cols), func(s sweep) [][]float32 {
				x, out := s.in(-1, 1, rows, cols), s.out(rows)
				s.be.ReduceRows(op, out, x)
				return s.get(out)
			})
		}
		add(fmt.Sprintf("sum_columns/%dx%d", rows, cols), func(s sweep) [][]float32 {
			x, out := s.in(-1, 1, rows, cols), s.out(cols)
			s.be.SumColumns(out, x)
			return s.get(out)
		})
		add(fmt.Sprintf("sum_columns/wide/%dx%d", rows, cols), func(s sweep) [][]float32 {
			x, out := s.wide(rows, cols), s.out(cols)
			s.be.SumColumns(out, x)
			return s.get(out)
		})
	}

	// Columns whose float64 sum lands on a float32 rounding tie unless
	// the tiny terms are added among themselves before the large ones: 1
	// and 2⁻²⁴ (half an ulp of 1) in the first rows, 2⁻⁶⁰ in every other.
	// Added one by one to 1 + 2⁻²⁴ each tiny term is lost and the tie
	// rounds to 1; summed apart first, they survive and the sum rounds
	// up: a split of the rows shows.
	add("sum_columns/tie", func(s sweep) [][]float32 {
		const rows, cols = 1000, 3
		x := make([]float32, rows*cols)
		for r := range rows {
			for c := range cols {
				switch {
				case r == c:
					x[r*cols+c] = 1
				case r == c+1:
					x[r*cols+c] = 0x1p-24
				default:
					x[r*cols+c] = 0x1p-60
				}
			}
		}
		out := s.out(cols)
		s.be.SumColumns(out, upload(s.t, s.be, x, rows, cols))
		return s.get(out)
	})

	// Softmax, plain, causal and windowed, and its backward.
	for _, p := range []backend.SoftmaxParams{{Scale: 0.3}, {Causal: true}, {Causal: true, Window: 17, QueryOffset: 5}} {
		name := fmt.Sprintf("causal%v/window%d", p.Causal, p.Window)
		add("softmax/"+name, func(s sweep) [][]float32 {
			x, out := s.in(-4, 4, 3, 101, 106), s.out(3, 101, 106)
			s.be.Softmax(out, x, p)
			return s.get(out)
		})
		add("softmax_grad/"+name, func(s sweep) [][]float32 {
			y, dy, dx := s.in(0, 0.05, 3, 101, 106), s.in(-1, 1, 3, 101, 106), s.out(3, 101, 106)
			s.be.SoftmaxGrad(dx, y, dy, p)
			return s.get(dx)
		})
	}

	// Norms and their gradients, with and without the parameters'
	// gradients, which sum over rows (added to what they held).
	for _, sh := range [][2]int{{300, 64}, {301, 67}, {1000, 17}, {33, 515}} {
		rows, cols := sh[0], sh[1]
		dims := fmt.Sprintf("%dx%d", rows, cols)
		add("rmsnorm/"+dims, func(s sweep) [][]float32 {
			x, w, out := s.in(-2, 2, rows, cols), s.in(0.5, 1.5, cols), s.out(rows, cols)
			s.be.RMSNorm(out, x, w, 1e-5)
			return s.get(out)
		})
		for _, withDW := range []bool{true, false} {
			add(fmt.Sprintf("rmsnorm_grad/%s/dw%v", dims, withDW), func(s sweep) [][]float32 {
				x, w, dy, dx := s.in(-2, 2, rows, cols), s.in(0.5, 1.5, cols), s.in(-1, 1, rows, cols), s.out(rows, cols)
				var dw backend.Tensor
				if withDW {
					dw = s.in(-0.1, 0.1, cols)
				}
				s.be.RMSNormGrad(dx, dw, x, w, dy, 1e-5)
				if withDW {
					return s.get(dx, dw)
				}
				return s.get(dx)
			})
		}
		for _, withBeta := range []bool{true, false} {
			add(fmt.Sprintf("layernorm/%s/beta%v", dims, withBeta), func(s sweep) [][]float32 {
				x, g, out := s.in(-2, 3, rows, cols), s.in(0.5, 1.5, cols), s.out(rows, cols)
				var b backend.Tensor
				if withBeta {
					b = s.in(-0.5, 0.5, cols)
				}
				s.be.LayerNorm(out, x, g, b, 1e-5)
				return s.get(out)
			})
		}
		for _, which := range []string{"both", "gamma", "beta", "neither"} {
			add(fmt.Sprintf("layernorm_grad/%s/%s", dims, which), func(s sweep) [][]float32 {
				x, g, dy, dx := s.in(-2, 3, rows, cols), s.in(0.5, 1.5, cols), s.in(-1, 1, rows, cols), s.out(rows, cols)
				var dg, db backend.Tensor
				outs := []backend.Tensor{dx}
				if which == "both" || which == "gamma" {
					dg = s.in(-0.1, 0.1, cols)
					outs = append(outs, dg)
				}
				if which == "both" || which == "beta" {
					db = s.in(-0.1, 0.1, cols)
					outs = append(outs, db)
				}
				s.be.LayerNormGrad(dx, dg, db, x, g, dy, 1e-5)
				return s.get(outs...)
			})
		}
	}

	for _, layout := range []backend.RoPELayout{backend.Interleaved, backend.HalfSplit} {
		for _, inv := range []bool{false, true} {
			add(fmt.Sprintf("rope/layout%d/inverse%v", layout, inv), func(s sweep) [][]float32 {
				x, out := s.in(-1, 1, 3, 37, 5, 16), s.out(3, 37, 5, 16)
				s.be.RoPE(out, x, backend.RoPEParams{Layout: layout, Theta: 10000, Offset: 3, Inverse: inv})
				return s.get(out)
			})
		}
	}

	// Fused attention, forward and backward, where the backward's work
	// per (batch element, key/value head) is split (batch 1, few
	// key/value heads: stories260K's 8 heads over 4) and where it is not.
	causal := backend.AttentionParams{Scale: 0.35, Causal: true}
	for _, c := range []struct {
		s attnShape
		p backend.AttentionParams
	}{
		{attnShape{1, 150, 150, 8, 4, 8}, causal},
		{attnShape{1, 130, 130, 4, 1, 16}, backend.AttentionParams{Scale: 0.35, Causal: true, Window: 40}},
		{attnShape{2, 70, 90, 4, 2, 8}, backend.AttentionParams{Scale: 0.35}},
		{attnShape{3, 50, 50, 6, 3, 8}, backend.AttentionParams{Scale: 0.35, Causal: true, Softcap: 2}},
		{attnShape{1, 200, 200, 4, 2, 8}, withSegments(causal, packed([]int{1, 70, 30, 64, 35}))},
		{attnShape{2, 100, 100, 2, 1, 4}, withSegments(backend.AttentionParams{Scale: 0.35}, packed([]int{50, 50}, []int{10, 1, 89}))},
	} {
		name := fmt.Sprintf("attention/%v/causal%v/window%d/softcap%v/segments%v", c.s, c.p.Causal, c.p.Window, c.p.Softcap, c.p.Segments != nil)
		add(name, func(s sweep) [][]float32 {
			x := newAttnData(s.rng, c.s)
			r := newAttnRun(s.t, s.be, c.s, x)
			r.forward(s.be, c.p)
			r.backward(s.be, c.p)
			return s.get(r.out, r.lse, r.dq, r.dk, r.dv)
		})
	}

	// Embeddings: the gather, from float32 and bfloat16 tables, and its
	// backward, which adds repeated ids' rows into one.
	add("gather", func(s sweep) [][]float32 {
		table, ids := s.in(-1, 1, 50, 67), s.ids(301, 50, 0)
		out := s.out(301, 67)
		s.be.Gather(out, table, ids)
		return s.get(out)
	})
	add("gather/bf16", func(s sweep) [][]float32 {
		table, ids := s.inBF16(-1, 1, 50, 67), s.ids(301, 50, 0)
		out := s.out(301, 67)
		s.be.Gather(out, table, ids)
		return s.get(out)
	})
	for _, sh := range [][3]int{{50, 67, 301}, {7, 1030, 900}} {
		vocab, dim, nids := sh[0], sh[1], sh[2]
		add(fmt.Sprintf("scatter_add/%dx%d/%d", vocab, dim, nids), func(s sweep) [][]float32 {
			table, dy, ids := s.in(-1, 1, vocab, dim), s.in(-1, 1, nids, dim), s.ids(nids, vocab, 0)
			s.be.ScatterAdd(table, dy, ids)
			return s.get(table)
		})
	}

	// Cross-entropy with ignored rows and label smoothing.
	for _, eps := range []float32{0, 0.1} {
		p := backend.CrossEntropyParams{IgnoreIndex: -100, Smoothing: eps, Scale: 1.0 / 37}
		add(fmt.Sprintf("cross_entropy/smoothing%g", eps), func(s sweep) [][]float32 {
			x, ts, loss := s.in(-4, 4, 37, 1001), s.ids(37, 1001, -100), s.out(37)
			s.be.CrossEntropy(loss, x, ts, p)
			return s.get(loss)
		})
		add(fmt.Sprintf("cross_entropy_grad/smoothing%g", eps), func(s sweep) [][]float32 {
			x, ts, d := s.in(-4, 4, 37, 1001), s.ids(37, 1001, -100), s.out(37, 1001)
			s.be.CrossEntropyGrad(d, x, ts, p)
			return s.get(d)
		})
	}

	add("adamw", func(s sweep) [][]float32 {
		p, g, m, v := s.in(-1, 1, n), s.in(-1, 1, n), s.in(-0.1, 0.1, n), s.in(0, 0.01, n)
		s.be.AdamW(p, g, m, v, backend.AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 3})
		return s.get(p, m, v)
	})

	// Copies: a transpose, added into its destination, a broadcast of one
	// value, and bfloat16 widened into float32 (added).
	add("copy/transpose_accumulate", func(s sweep) [][]float32 {
		x, y := s.in(-1, 1, 151, 67), s.in(-1, 1, 67, 151)
		xt, err := x.Permute(1, 0)
		if err != nil {
			s.t.Fatal(err)
		}
		s.be.Copy(y, xt, true)
		return s.get(y)
	})
	add("copy/broadcast", func(s sweep) [][]float32 {
		one, y := s.in(1, 2, 1), s.out(301, 67)
		all, err := one.Strided(0, backend.Shape{301, 67}, []int{0, 0})
		if err != nil {
			s.t.Fatal(err)
		}
		s.be.Copy(y, all, false)
		return s.get(y)
	})
	add("copy/bf16_accumulate", func(s sweep) [][]float32 {
		h, y := s.inBF16(-1, 1, n), s.in(-1, 1, n)
		s.be.Copy(y, h, true)
		return s.get(y)
	})
	add("copy/bf16", func(s sweep) [][]float32 {
		h, y := s.inBF16(-1, 1, n), s.out(n)
		s.be.Copy(y, h, false)
		return s.get(y)
	})
	add("upload_download/bf16", func(s sweep) [][]float32 {
		return s.get(s.inBF16(-3, 3, n))
	})
	add("fill", func(s sweep) [][]float32 {
		y := s.out(n)
		s.be.Fill(y, 0.3)
		return s.get(y)
	})
	return cs
}

// TestThreadIndependence runs every op at each of threadCounts and
// requires the same bits from all of them, so that a run computes the same
// on a 2-core laptop and a 64-core server and resumes on either bit for
// bit (which is why Device leaves the thread count out). It does so for
// each row kernel set this CPU runs, at the production grain and at small
// ones, which split even these shapes into many pieces (and make batched
// products spread over engines); at one of them it also runs the
// streaming kernels (as where operands outgrow the last-level cache, whose
// size Device does not name either), whose aligned-head split falls in
// other places in each piece, and requires the same bits again. -short
// keeps the best kernel set at one grain.
func TestThreadIndependence(t *testing.T) {
	grains := []int{defaultGrain, 1, 700}
	kerns := vec.All()
	if testing.Short() {
		grains, kerns = grains[2:], kerns[len(kerns)-1:]
	}
	cases := threadCases()
	for _, k := range kerns {
		for _, grain := range grains {
			t.Run(fmt.Sprintf("%s/grain%d", k.Name, grain), func(t *testing.T) {
				type setup struct {
					name string
					be   *Backend
				}
				var bes []setup
				for _, stream := range []bool{false, true} {
					if stream && grain != 700 {
						continue
					}
					for _, n := range threadCounts {
						be := New(Options{Threads: n, Portable: k == vec.Go})
						be.kern, be.grain = k, grain
						if grain < defaultGrain {
							be.gemmGrain = 1
						}
						name := fmt.Sprintf("%d threads", n)
						if stream {
							be.stream = 0
							name += ", streaming"
						}
						bes = append(bes, setup{name, be})
						t.Cleanup(func() { be.Close() })
					}
				}
				for ci, c := range cases {
					var want [][]float32
					for i, su := range bes {
						got := c.run(sweep{t, su.be, newRNG(uint64(1000 + ci))})
						if err := su.be.Sync(); err != nil {
							t.Fatalf("%s, %s: %v", c.name, su.name, err)
						}
						if i == 0 {
							want = got
							continue
						}
						if msg := bitsDiffer(got, want); msg != "" {
							t.Errorf("%s: %s differ from %s: %s", c.name, su.name, bes[0].name, msg)
						}
					}
				}
			})
		}
	}
}

// bitsDiffer describes where got and want, outputs of one op, differ in
// any bit ("" where they do not): per output, how many elements and the
// first of them.
func bitsDiffer(got, want [][]float32) string {
	msg := ""
	for o := range want {
		diff, first := 0, -1
		for i := range want[o] {
			if math.Float32bits(got[o][i]) != math.Float32bits(want[o][i]) {
				if first < 0 {
					first = i
				}
				diff++
			}
		}
		if diff > 0 {
			msg += fmt.Sprintf("output %d: %d of %d elements, first [%d] %g, want %g; ", o, diff, len(want[o]), first, got[o][first], want[o][first])
		}
	}
	return msg
}
