package graph_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
)

// dims are the shapes of the test transformer: batch B, sequence T, width
// D, heads H, feed-forward width F, vocabulary V.
type dims struct{ B, T, D, H, F, V int }

// blockParams are one pre-norm decoder block's weights.
type blockParams struct{ n1, wq, wk, wv, wo, n2, w1, w3, w2 *graph.Value }

func (p blockParams) list() []*graph.Value {
	return []*graph.Value{p.n1, p.wq, p.wk, p.wv, p.wo, p.n2, p.w1, p.w3, p.w2}
}

func randVals(rng *rand.Rand, n int, scale float64) []float32 {
	h := make([]float32, n)
	for i := range h {
		h[i] = float32(scale * rng.NormFloat64())
	}
	return h
}

func newBlock(t testing.TB, b backend.Backend, rng *rand.Rand, d dims, name string, train graph.Trainability) blockParams {
	t.Helper()
	norm := func(n string) *graph.Value {
		h := randVals(rng, d.D, 0.1)
		for i := range h {
			h[i]++
		}
		return param(t, b, name+n, train, h, d.D)
	}
	w := func(n string, out, in int) *graph.Value {
		return param(t, b, name+n, train, randVals(rng, out*in, 1/math.Sqrt(float64(in))), out, in)
	}
	return blockParams{
		n1: norm(".n1"), wq: w(".wq", d.D, d.D), wk: w(".wk", d.D, d.D), wv: w(".wv", d.D, d.D), wo: w(".wo", d.D, d.D),
		n2: norm(".n2"), w1: w(".w1", d.F, d.D), w3: w(".w3", d.F, d.D), w2: w(".w2", d.D, d.F),
	}
}

// dropFunc applies dropout (or nothing) inside a block.
type dropFunc func(g *graph.Tape, x *graph.Value) *graph.Value

// block is a pre-norm decoder block on x [B·T, D]: causal multi-head
// attention with RoPE and dropout on its probabilities and output, then a
// SwiGLU feed-forward, each with a residual connection.
func block(g *graph.Tape, x *graph.Value, p blockParams, d dims, drop dropFunc) *graph.Value {
	if drop == nil {
		drop = func(_ *graph.Tape, x *graph.Value) *graph.Value { return x }
	}
	hd := d.D / d.H
	h := g.RMSNorm(x, p.n1, 1e-5)
	rope := backend.RoPEParams{Layout: backend.HalfSplit, Theta: 10000}
	heads := func(w *graph.Value, rotate bool) *graph.Value {
		y := g.Reshape(g.Linear(h, w, nil), d.B, d.T, d.H, hd)
		if rotate {
			y = g.RoPE(y, rope)
		}
		return g.Permute(y, 0, 2, 1, 3) // [B, H, T, hd]
	}
	q, k, v := heads(p.wq, true), heads(p.wk, true), heads(p.wv, false)
	pr := g.Softmax(g.MatMulNT(q, k), backend.SoftmaxParams{Scale: float32(1 / math.Sqrt(float64(hd))), Causal: true})
	o := g.Reshape(g.Permute(g.MatMul(drop(g, pr), v), 0, 2, 1, 3), d.B*d.T, d.D)
	x = g.Add(x, drop(g, g.Linear(o, p.wo, nil)))
	h = g.RMSNorm(x, p.n2, 1e-5)
	f := g.Linear(g.Mul(g.SiLU(g.Linear(h, p.w1, nil)), g.Linear(h, p.w3, nil)), p.w2, nil)
	return g.Add(x, f)
}

// maybeCheckpoint runs f as a checkpointed segment when ckpt is set and
// directly otherwise: the two runs the tests compare.
func maybeCheckpoint(g *graph.Tape, ckpt bool, f func(*graph.Tape, []*graph.Value) []*graph.Value, in ...*graph.Value) []*graph.Value {
	if ckpt {
		return g.Checkpoint(f, in...)
	}
	return f(g, in)
}

// blockSeg is block as a segment function of one input.
func blockSeg(p blockParams, d dims, drop dropFunc) func(*graph.Tape, []*graph.Value) []*graph.Value {
	return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
		return []*graph.Value{block(g, in[0], p, d, drop)}
	}
}

// counterDrop is dropout with seeds from a counter that every call
// advances, as package peft derives them: state the segment mutates, so
// the recomputation would draw other masks if the tape did not replay
// the forward's seeds.
func counterDrop(p float64, seed uint64) dropFunc {
	calls := uint64(0)
	return func(g *graph.Tape, x *graph.Value) *graph.Value {
		s := graph.MixSeed(seed, calls)
		calls++
		return g.DropoutSeed(x, p, s)
	}
}

// rngDrop is dropout drawing from rng.
func rngDrop(p float64, rng *rand.Rand) dropFunc {
	return func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Dropout(x, p, rng) }
}

// ckptModel is a small model the equivalence cases build from.
type ckptModel struct {
	d       dims
	blocks  []blockParams
	head    *graph.Value // [V, D]
	embed   *graph.Value // [V, D], trainable
	extra   *graph.Value // [D, D], trainable
	xs      [][]float32  // one input [B·T, D] per micro-batch
	ids     [][]int32    // one token id sequence [B·T] per micro-batch
	targets [][]int32
}

func (m *ckptModel) params() []*graph.Value {
	ps := []*graph.Value{m.head, m.embed, m.extra}
	for _, b := range m.blocks {
		ps = append(ps, b.list()...)
	}
	return ps
}

func newCkptModel(t testing.TB, b backend.Backend, d dims, layers int, frozen map[int]bool) *ckptModel {
	rng := rand.New(rand.NewPCG(11, 12))
	m := &ckptModel{d: d}
	for l := range layers {
		train := graph.Trainable
		if frozen[l] {
			train = graph.Frozen
		}
		m.blocks = append(m.blocks, newBlock(t, b, rng, d, fmt.Sprintf("layers.%d", l), train))
	}
	m.head = param(t, b, "head", graph.Trainable, randVals(rng, d.V*d.D, 0.3), d.V, d.D)
	m.embed = param(t, b, "embed", graph.Trainable, randVals(rng, d.V*d.D, 1), d.V, d.D)
	m.extra = param(t, b, "extra", graph.Trainable, randVals(rng, d.D*d.D, 0.3), d.D, d.D)
	for range 2 {
		n := d.B * d.T
		m.xs = append(m.xs, randVals(rng, n*d.D, 1))
		ids, tg := make([]int32, n), make([]int32, n)
		for i := range n {
			ids[i], tg[i] = int32(rng.IntN(d.V)), int32(rng.IntN(d.V))
		}
		tg[1] = graph.IgnoreIndex
		m.ids, m.targets = append(m.ids, ids), append(m.targets, tg)
	}
	return m
}

// loss is the cross-entropy of the head over h [B·T, D].
func (m *ckptModel) loss(g *graph.Tape, h *graph.Value, micro int) *graph.Value {
	return g.CrossEntropy(g.Linear(h, m.head, nil), m.targets[micro], graph.CrossEntropyOptions{})
}

// runResult is what one run computes: the bits of its losses and of
// every trainable parameter's gradient.
type runResult struct {
	losses []float32
	grads  map[string][]float32
}

// run builds and backpropagates micro losses on a fresh tape, accumulating
// gradients, and checks that nothing stays allocated after each Reset.
func run(t *testing.T, b backend.Backend, params []*graph.Value, micro int, build func(g *graph.Tape, micro int) *graph.Value) runResult {
	t.Helper()
	for _, p := range params {
		p.ZeroGrad()
	}
	g := graph.New(b)
	defer g.Close()
	var r runResult
	for mi := range micro {
		loss := build(g, mi)
		if err := g.Backward(loss); err != nil {
			t.Fatalf("micro-batch %d: %v", mi, err)
		}
		r.losses = append(r.losses, host(t, loss)[0])
		g.Reset()
		if st := g.Stats(); st.LiveBytes != 0 {
			t.Errorf("micro-batch %d: %d bytes live after Reset", mi, st.LiveBytes)
		}
	}
	r.grads = map[string][]float32{}
	for _, p := range params {
		if p.Trainable() && !p.Grad().IsZero() {
			r.grads[p.Name()] = grad(t, p)
		}
	}
	return r
}

// compareBits reports every difference between two runs, to the bit.
func compareBits(t *testing.T, plain, ckpt runResult) {
	t.Helper()
	for i := range plain.losses {
		if math.Float32bits(plain.losses[i]) != math.Float32bits(ckpt.losses[i]) {
			t.Errorf("loss %d: %v checkpointed, %v plain", i, ckpt.losses[i], plain.losses[i])
		}
	}
	if len(plain.grads) != len(ckpt.grads) {
		t.Errorf("%d parameters got gradients checkpointed, %d plain", len(ckpt.grads), len(plain.grads))
	}
	for name, want := range plain.grads {
		got, ok := ckpt.grads[name]
		if !ok {
			t.Errorf("%s: no gradient checkpointed", name)
			continue
		}
		diff, maxDiff := 0, 0.0
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				diff++
				maxDiff = max(maxDiff, math.Abs(float64(got[i]-want[i])))
			}
		}
		if diff > 0 {
			t.Errorf("%s: %d of %d gradient elements differ (max |Δ| %g)", name, diff, len(want), maxDiff)
		}
	}
}

// TestCheckpointMatchesPlain runs models with and without checkpointed
// segments and requires the same losses and parameter gradients, to the
// bit, on the CPU backend.
func TestCheckpointMatchesPlain(t *testing.T) {
	b := openCPU(t)
	d := dims{B: 2, T: 5, D: 8, H: 2, F: 16, V: 7}
	tests := []struct {
		name   string
		layers int
		frozen map[int]bool
		micro  int
		build  func(m *ckptModel, g *graph.Tape, ckpt bool, micro int) *graph.Value
	}{
		{name: "three blocks, dropout from a generator", layers: 3, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				drop := rngDrop(0.2, rand.New(rand.NewPCG(1, uint64(mi))))
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				for _, p := range m.blocks {
					x = maybeCheckpoint(g, ckpt, blockSeg(p, d, drop), x)[0]
				}
				return m.loss(g, x, mi)
			}},
		{name: "dropout seeds from a counter the segment advances", layers: 2, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				drop := counterDrop(0.25, 99)
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				for _, p := range m.blocks {
					x = maybeCheckpoint(g, ckpt, blockSeg(p, d, drop), x)[0]
				}
				return m.loss(g, x, mi)
			}},
		{name: "gradients accumulate over micro-batches", layers: 2, micro: 2,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				drop := counterDrop(0.1, uint64(mi))
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				for _, p := range m.blocks {
					x = maybeCheckpoint(g, ckpt, blockSeg(p, d, drop), x)[0]
				}
				return m.loss(g, x, mi)
			}},
		{name: "a result used more than once", layers: 2, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				x1 := maybeCheckpoint(g, ckpt, blockSeg(m.blocks[0], d, nil), x)[0]
				x2 := maybeCheckpoint(g, ckpt, blockSeg(m.blocks[1], d, nil), x1)[0]
				return g.Add(m.loss(g, x2, mi), g.Scale(g.Mean(g.Mul(x1, x1)), 0.1))
			}},
		{name: "an input used outside the segment too", layers: 1, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				x := g.Linear(g.Input(m.xs[mi], d.B*d.T, d.D), m.extra, nil)
				y := g.Tanh(x) // before the segment
				x1 := maybeCheckpoint(g, ckpt, blockSeg(m.blocks[0], d, nil), x)[0]
				z := g.Mul(x, x) // after it
				return g.Add(m.loss(g, x1, mi), g.Mean(g.Add(y, z)))
			}},
		{name: "inputs and parameters that need no gradient", layers: 3, frozen: map[int]bool{0: true}, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				// The frozen first block on an input: its segment's
				// result needs no gradient, so nothing is recorded.
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				for _, p := range m.blocks {
					x = maybeCheckpoint(g, ckpt, blockSeg(p, d, counterDrop(0.2, 5)), x)[0]
				}
				return m.loss(g, x, mi)
			}},
		{name: "a trainable parameter as input", layers: 2, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				first := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
					return []*graph.Value{block(g, g.Gather(in[0], m.ids[mi]), m.blocks[0], d, nil)}
				}
				x := maybeCheckpoint(g, ckpt, first, m.embed)[0]
				x = maybeCheckpoint(g, ckpt, blockSeg(m.blocks[1], d, nil), x)[0]
				return m.loss(g, x, mi)
			}},
		{name: "nested segments", layers: 3, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				drop := rngDrop(0.2, rand.New(rand.NewPCG(3, 3)))
				pair := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
					x := maybeCheckpoint(g, ckpt, blockSeg(m.blocks[0], d, drop), in[0])[0]
					x = g.Tanh(x)
					return maybeCheckpoint(g, ckpt, blockSeg(m.blocks[1], d, drop), x)
				}
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				x = maybeCheckpoint(g, ckpt, pair, x)[0]
				x = maybeCheckpoint(g, ckpt, blockSeg(m.blocks[2], d, drop), x)[0]
				return m.loss(g, x, mi)
			}},
		{name: "two results, both used, and a parameter shared by segments", layers: 2, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				two := func(p blockParams) func(*graph.Tape, []*graph.Value) []*graph.Value {
					return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
						y := block(g, in[0], p, d, nil)
						return []*graph.Value{y, g.Mean(g.Square(g.Linear(y, m.extra, nil)))}
					}
				}
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				r0 := maybeCheckpoint(g, ckpt, two(m.blocks[0]), x)
				r1 := maybeCheckpoint(g, ckpt, two(m.blocks[1]), r0[0])
				return g.Add(g.Add(m.loss(g, r1[0], mi), r0[1]), r1[1])
			}},
		{name: "a result that is not used", layers: 1, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				f := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
					return []*graph.Value{block(g, in[0], m.blocks[0], d, nil), g.Linear(in[0], m.extra, nil)}
				}
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				return m.loss(g, maybeCheckpoint(g, ckpt, f, x)[0], mi)
			}},
		{name: "the loss inside the segment", layers: 2, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				x = maybeCheckpoint(g, ckpt, blockSeg(m.blocks[0], d, nil), x)[0]
				last := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
					return []*graph.Value{m.loss(g, block(g, in[0], m.blocks[1], d, nil), mi)}
				}
				return maybeCheckpoint(g, ckpt, last, x)[0]
			}},
		{name: "a captured value of the tape that needs a gradient", layers: 2, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				side := g.Linear(x, m.extra, nil) // read by both segments, passed to neither
				for _, p := range m.blocks {
					f := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
						return []*graph.Value{block(g, g.Add(in[0], side), p, d, nil)}
					}
					x = maybeCheckpoint(g, ckpt, f, x)[0]
				}
				return m.loss(g, x, mi)
			}},
		{name: "a segment returning its input and a parameter", layers: 1, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				x := g.Linear(g.Input(m.xs[mi], d.B*d.T, d.D), m.extra, nil)
				f := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
					return []*graph.Value{block(g, in[0], m.blocks[0], d, nil), in[0], m.head}
				}
				r := maybeCheckpoint(g, ckpt, f, x)
				return g.Add(g.Add(m.loss(g, r[0], mi), g.Mean(g.Tanh(r[1]))), g.Mean(g.Square(r[2])))
			}},
		{name: "inputs that are row slices of one value (a chunked head)", layers: 1, micro: 2,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				x = maybeCheckpoint(g, ckpt, blockSeg(m.blocks[0], d, nil), x)[0]
				h := g.Gather(x, []int32{0, 3, 4, 5, 7, 8, 9})
				tg := []int32{1, 2, 3, 4, 5, 6, 0}
				var loss *graph.Value
				for lo := 0; lo < len(tg); lo += 3 {
					hi := min(lo+3, len(tg))
					chunk := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
						return []*graph.Value{g.CrossEntropy(g.Linear(in[0], m.head, nil), tg[lo:hi], graph.CrossEntropyOptions{Divisor: 7})}
					}
					part := maybeCheckpoint(g, ckpt, chunk, g.Slice(h, 0, lo, hi))[0]
					if loss == nil {
						loss = part
					} else {
						loss = g.Add(loss, part)
					}
				}
				return loss
			}},
		{name: "results that are views of the input, a captured value, an intermediate and a parameter", layers: 1, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				x := g.Linear(g.Input(m.xs[mi], d.B*d.T, d.D), m.extra, nil)
				side := g.Tanh(x)
				f := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
					y := g.Linear(in[0], m.extra, nil)
					return []*graph.Value{g.Reshape(in[0], d.B, d.T*d.D), g.Slice(side, 0, 2, 5), g.Slice(y, 0, 1, 4), g.Reshape(m.extra, d.D*d.D)}
				}
				r := maybeCheckpoint(g, ckpt, f, x)
				l := g.Add(g.Mean(g.Square(r[0])), g.Mean(g.Mul(r[1], r[2])))
				l = g.Add(l, g.Mean(g.Square(r[3])))
				return g.Add(l, m.loss(g, block(g, x, m.blocks[0], d, nil), mi))
			}},
		{name: "a value passed twice, a parameter passed and captured", layers: 1, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				x := g.Gather(m.embed, m.ids[mi])
				f := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
					return []*graph.Value{g.Add(g.Linear(in[0], in[2], nil), g.Linear(in[1], m.embed, nil))}
				}
				r := maybeCheckpoint(g, ckpt, f, x, x, m.embed)
				return g.CrossEntropy(r[0], m.targets[mi], graph.CrossEntropyOptions{})
			}},
		{name: "results that are the input and a parameter themselves, used beside them", layers: 1, micro: 1,
			build: func(m *ckptModel, g *graph.Tape, ckpt bool, mi int) *graph.Value {
				// Later ops read x and the head both directly and through
				// the results: their gradients must add up in the plain
				// run's order.
				x := g.Linear(g.Input(m.xs[mi], d.B*d.T, d.D), m.extra, nil)
				f := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
					return []*graph.Value{in[0], g.Tanh(in[0]), m.head}
				}
				r := maybeCheckpoint(g, ckpt, f, x)
				l := g.Add(g.Mean(g.Tanh(x)), g.Mean(g.Square(g.Scale(r[0], 1.37))))
				l = g.Add(l, g.Mean(g.Exp(g.Scale(x, 0.71))))
				l = g.Add(l, g.Mean(g.Mul(r[1], r[0])))
				l = g.Add(l, g.Mean(g.Square(m.head)))
				l = g.Add(l, g.Mean(g.Tanh(r[2])))
				return g.Add(l, m.loss(g, x, mi))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newCkptModel(t, b, d, tt.layers, tt.frozen)
			plain := run(t, b, m.params(), tt.micro, func(g *graph.Tape, mi int) *graph.Value { return tt.build(m, g, false, mi) })
			ckpt := run(t, b, m.params(), tt.micro, func(g *graph.Tape, mi int) *graph.Value { return tt.build(m, g, true, mi) })
			if len(plain.grads) == 0 {
				t.Fatal("no parameter got a gradient: the comparison proves nothing")
			}
			compareBits(t, plain, ckpt)
		})
	}
}

// TestCheckpointDropout checks that dropout inside segments is active
// (the loss differs from the run without it) and that a generator is
// drawn from once per mask, as without checkpointing: a checkpointed run
// leaves it in the state a plain run does.
func TestCheckpointDropout(t *testing.T) {
	b := openCPU(t)
	d := dims{B: 1, T: 4, D: 8, H: 2, F: 8, V: 5}
	m := newCkptModel(t, b, d, 2, nil)
	next := map[bool]uint64{}
	losses := map[string]float32{}
	for _, p := range []float64{0, 0.3} {
		for _, ckpt := range []bool{false, true} {
			rng := rand.New(rand.NewPCG(8, 9))
			r := run(t, b, m.params(), 1, func(g *graph.Tape, mi int) *graph.Value {
				x := g.Input(m.xs[mi], d.B*d.T, d.D)
				for _, bp := range m.blocks {
					x = maybeCheckpoint(g, ckpt, blockSeg(bp, d, rngDrop(p, rng)), x)[0]
				}
				return m.loss(g, x, mi)
			})
			losses[fmt.Sprint(p, ckpt)] = r.losses[0]
			if p > 0 {
				next[ckpt] = rng.Uint64()
			}
		}
	}
	if losses["0 false"] == losses["0.3 false"] {
		t.Error("dropout 0.3 gives the loss of no dropout: the masks are not applied")
	}
	if losses["0.3 true"] != losses["0.3 false"] {
		t.Errorf("loss with dropout %v checkpointed, %v plain", losses["0.3 true"], losses["0.3 false"])
	}
	if next[true] != next[false] {
		t.Errorf("after a checkpointed step the generator's next draw is %#x, after a plain one %#x", next[true], next[false])
	}
}

// TestCheckpointGradcheck checks two checkpointed blocks with dropout and
// shared weights against finite differences (the case gradcheck's
// GraphCases runs on every backend).
func TestCheckpointGradcheck(t *testing.T) {
	b := openCPU(t)
	for _, c := range gradcheck.GraphCases() {
		if !strings.Contains(c.Name, "checkpoint") {
			continue
		}
		r, err := gradcheck.Check(b, c, gradcheck.Options{Seed: 4})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Passed() {
			t.Error(r)
		}
		return
	}
	t.Fatal("gradcheck has no checkpointed case")
}

// TestCheckpointNoGrad checks that with recording off Checkpoint runs f
// once, records nothing, and releases f's intermediates when it returns:
// a chain of blocks holds less memory than the same blocks run plainly,
// with the same bits.
func TestCheckpointNoGrad(t *testing.T) {
	b := openCPU(t)
	d := dims{B: 1, T: 3, D: 8, H: 2, F: 8, V: 5}
	m := newCkptModel(t, b, d, 1, nil)
	g := graph.New(b)
	defer g.Close()
	g.SetNoGrad(true)
	x := g.Input(m.xs[0], d.B*d.T, d.D)
	want := host(t, block(g, x, m.blocks[0], d, nil))
	calls := 0
	got := g.Checkpoint(func(g *graph.Tape, in []*graph.Value) []*graph.Value {
		calls++
		return []*graph.Value{block(g, in[0], m.blocks[0], d, nil)}
	}, x)
	if calls != 1 || g.Stats().Ops != 0 || got[0].RequiresGrad() {
		t.Errorf("no-grad Checkpoint: f ran %d times, %d ops recorded, result requires grad %v; want 1, 0, false",
			calls, g.Stats().Ops, got[0].RequiresGrad())
	}
	for i, v := range host(t, got[0]) {
		if v != want[i] {
			t.Fatalf("element %d: %v, want %v", i, v, want[i])
		}
	}

	// Four blocks in a chain, plainly and as segments, each on a fresh
	// tape: what the tape holds once the chain is done.
	chain := func(segments bool) ([]float32, int64) {
		g := graph.New(b)
		defer g.Close()
		g.SetNoGrad(true)
		base := b.BytesInUse()
		x := g.Input(m.xs[0], d.B*d.T, d.D)
		for range 4 {
			if segments {
				x = g.Checkpoint(func(g *graph.Tape, in []*graph.Value) []*graph.Value {
					return []*graph.Value{block(g, in[0], m.blocks[0], d, nil)}
				}, x)[0]
			} else {
				x = block(g, x, m.blocks[0], d, nil)
			}
		}
		held := b.BytesInUse() - base
		return host(t, x), held
	}
	plain, plainHeld := chain(false)
	seg, segHeld := chain(true)
	if !slices.Equal(plain, seg) {
		t.Errorf("no-grad segments changed the result")
	}
	if !(segHeld < plainHeld/2) {
		t.Errorf("a no-grad chain of segments holds %d bytes, the plain chain %d; want the segments' intermediates released", segHeld, plainHeld)
	}
}

// TestCheckpointErrors checks that a failing or misbehaving segment
// surfaces as an error of Backward (or of the tape), never a panic, and
// leaves nothing allocated once the tape is Reset.
func TestCheckpointErrors(t *testing.T) {
	b := openCPU(t)
	w := param(t, b, "w", graph.Trainable, randVals(rand.New(rand.NewPCG(1, 1)), 16, 1), 4, 4)
	good := func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Tanh(g.Linear(x, w, nil)) }
	tests := []struct {
		name string
		// segment is the segment's function; calls counts its runs.
		segment func(calls int) func(g *graph.Tape, in []*graph.Value) []*graph.Value
		after   func(t *testing.T, g *graph.Tape, r []*graph.Value) *graph.Value // the loss
		want    string
	}{
		{"an op error in the forward", func(int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				return []*graph.Value{g.Add(good(g, in[0]), g.Full(1, 3))}
			}
		}, nil, "Add"},
		{"an op error only in the recomputation", func(calls int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				y := good(g, in[0])
				if calls > 0 {
					y = g.Mul(y, g.Full(1, 5))
				}
				return []*graph.Value{y}
			}
		}, nil, "Mul"},
		{"a recomputation with more results", func(calls int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				r := []*graph.Value{good(g, in[0])}
				if calls > 0 {
					r = append(r, in[0])
				}
				return r
			}
		}, nil, "returns 2 results, the forward returned 1"},
		{"a recomputation of another shape", func(calls int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				y := good(g, in[0])
				if calls > 0 {
					y = g.Reshape(y, 2, 8)
				}
				return []*graph.Value{y}
			}
		}, nil, "result 0"},
		{"a recomputation drawing another dropout mask", func(calls int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				y := g.DropoutSeed(good(g, in[0]), 0.5, 1)
				if calls > 0 {
					y = g.DropoutSeed(y, 0.5, 2)
				}
				return []*graph.Value{y}
			}
		}, nil, "draws more dropout masks"},
		{"a recomputation drawing fewer dropout masks", func(calls int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				y := good(g, in[0])
				if calls == 0 {
					y = g.DropoutSeed(y, 0.5, 2)
				}
				return []*graph.Value{y}
			}
		}, nil, "draws 0 dropout masks, the forward drew 1"},
		{"a recomputation passing another value through", func(calls int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				through := w // the forward returns the parameter as it is
				if calls > 0 {
					through = in[0] // of its shape, but another value
				}
				return []*graph.Value{good(g, in[0]), through}
			}
		}, nil, "not the value"},
		{"a nil result", func(int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value { return []*graph.Value{good(g, in[0]), nil} }
		}, func(_ *testing.T, g *graph.Tape, r []*graph.Value) *graph.Value { return g.Sum(r[0]) }, "result 1 is nil"},
		{"an intermediate used after the segment", func(int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				leaked = g.Linear(in[0], w, nil)
				return []*graph.Value{g.Tanh(leaked)}
			}
		}, func(t *testing.T, g *graph.Tape, r []*graph.Value) *graph.Value {
			if _, err := leaked.Download(); err == nil || !strings.Contains(err.Error(), "checkpointed segment") {
				t.Errorf("Download of a released intermediate: %v, want an error naming the segment", err)
			}
			return g.Sum(g.Add(r[0], leaked))
		}, "intermediate of a checkpointed segment"},
		{"a segment that resets the tape", func(int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				y := good(g, in[0])
				g.Reset()
				return []*graph.Value{y}
			}
		}, nil, "reset the tape"},
		{"a segment that runs Backward", func(int) func(*graph.Tape, []*graph.Value) []*graph.Value {
			return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				y := good(g, in[0])
				_ = g.Backward(g.Sum(y))
				return []*graph.Value{y}
			}
		}, nil, "ran Backward"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.BytesInUse()
			g := graph.New(b)
			calls := 0
			f := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				defer func() { calls++ }()
				return tt.segment(calls)(g, in)
			}
			x := g.Linear(g.Input(randVals(rand.New(rand.NewPCG(2, 2)), 16, 1), 4, 4), w, nil)
			r := g.Checkpoint(f, x)
			var loss *graph.Value
			if tt.after != nil {
				loss = tt.after(t, g, r)
			} else {
				loss = g.Sum(r[0])
			}
			err := g.Backward(loss)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Backward: %v, want an error containing %q", err, tt.want)
			}
			g.Reset()
			if st := g.Stats(); st.LiveBytes != 0 {
				t.Errorf("%d bytes live after Reset", st.LiveBytes)
			}
			g.Close()
			if got := b.BytesInUse(); got != before {
				t.Errorf("the backend holds %d bytes after Close, %d before", got, before)
			}
			// The tape works again after the error.
			g = graph.New(b)
			defer g.Close()
			w.ZeroGrad()
			y := g.Checkpoint(func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				return []*graph.Value{good(g, in[0])}
			}, g.Input(make([]float32, 16), 4, 4))
			if err := g.Backward(g.Sum(y[0])); err != nil {
				t.Errorf("the next step: %v", err)
			}
		})
	}
	g := graph.New(b)
	defer g.Close()
	if r := g.Checkpoint(nil); r != nil || g.Err() == nil {
		t.Errorf("Checkpoint(nil) returned %v with tape error %v, want nil and an error", r, g.Err())
	}
}

// leaked is where a misbehaving segment keeps an intermediate.
var leaked *graph.Value

// TestCheckpointResetLeftoverGrads covers what Reset releases for a
// checkpointed segment that Backward never reached: a later segment's
// recomputation fails, so Backward stops after the ops that follow both
// segments have handed their gradients to the first segment's results.
// Reset must release the gradient of the result the segment made (no
// buffer stays live, and Close gives the backend back every byte), and
// must leave alone those of the results it passed through: the input,
// whose own op releases it, and the parameter, whose gradient buffer is
// the parameter's (releasing either would count bytes twice and put a
// buffer in use into the pool).
func TestCheckpointResetLeftoverGrads(t *testing.T) {
	b := openCPU(t)
	rng := rand.New(rand.NewPCG(7, 7))
	w := param(t, b, "w", graph.Trainable, randVals(rng, 16, 1), 4, 4)
	before := b.BytesInUse()
	g := graph.New(b)
	x := g.Linear(g.Input(randVals(rng, 16, 1), 4, 4), w, nil)
	r1 := g.Checkpoint(func(g *graph.Tape, in []*graph.Value) []*graph.Value {
		return []*graph.Value{g.Tanh(g.Linear(in[0], w, nil)), in[0], w}
	}, x)
	calls := 0
	r2 := g.Checkpoint(func(g *graph.Tape, in []*graph.Value) []*graph.Value {
		defer func() { calls++ }()
		y := g.Tanh(g.Linear(in[0], w, nil))
		if calls > 0 {
			y = g.Mul(y, g.Full(1, 5)) // fails, in the recomputation only
		}
		return []*graph.Value{y}
	}, r1[0])
	loss := g.Sum(g.Add(g.Add(r2[0], r1[0]), g.Add(r1[1], r1[2])))
	if err := g.Backward(loss); err == nil || !strings.Contains(err.Error(), "Mul") {
		t.Fatalf("Backward: %v, want the recomputation's Mul error", err)
	}
	for i, name := range []string{"made", "passed-through input", "passed-through parameter"} {
		if r1[i].Grad().IsZero() {
			t.Fatalf("the first segment's %s result has no gradient left: the test no longer reaches the case", name)
		}
	}
	g.Reset()
	if st := g.Stats(); st.LiveBytes != 0 {
		t.Errorf("%d bytes live after Reset, want 0", st.LiveBytes)
	}
	// The parameter's gradient is its own: the ones that Add handed it.
	if dw, err := w.DownloadGrad(); err != nil {
		t.Errorf("the parameter's gradient after Reset: %v", err)
	} else if !slices.Equal(dw, slices.Repeat([]float32{1}, 16)) {
		t.Errorf("the parameter's gradient after Reset is %v, want 16 ones", dw)
	}
	g.Close()
	if got := b.BytesInUse(); got != before {
		t.Errorf("the backend holds %d bytes after Close, %d before", got, before)
	}
}

// mlpLayer is a residual feed-forward layer x + W2·SiLU(W1·RMSNorm(x)),
// whose intermediates have sizes the memory test can count.
func mlpLayer(n, w1, w2 *graph.Value) func(*graph.Tape, []*graph.Value) []*graph.Value {
	return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
		h := g.Linear(g.SiLU(g.Linear(g.RMSNorm(in[0], n, 1e-5), w1, nil)), w2, nil)
		return []*graph.Value{g.Add(in[0], h)}
	}
}

// TestCheckpointMemory measures, with the tape's byte counts, what a stack
// of N layers keeps alive at the end of its forward: each checkpointed
// layer keeps its output only (O(1) layers of intermediates in all), each
// plain layer all its intermediates (O(N)); and the checkpointed step's
// peak, Backward included, stays below the plain one's.
func TestCheckpointMemory(t *testing.T) {
	b := openCPU(t)
	const rows, D, F = 16, 32, 128
	rng := rand.New(rand.NewPCG(5, 5))
	n := param(t, b, "n", graph.Trainable, randVals(rng, D, 1), D)
	w1 := param(t, b, "w1", graph.Trainable, randVals(rng, F*D, 0.1), F, D)
	w2 := param(t, b, "w2", graph.Trainable, randVals(rng, D*F, 0.1), D, F)
	layer := mlpLayer(n, w1, w2)
	xs := randVals(rng, rows*D, 1)
	const in, out = rows * D * 4, rows * D * 4 // bytes of the input and of a layer's output

	// A plain layer's buffers: everything it allocates in the forward.
	g := graph.New(b)
	defer g.Close()
	x := g.Input(xs, rows, D)
	layer(g, []*graph.Value{x})
	perLayer := g.Stats().LiveBytes - in
	g.Reset()
	if perLayer < 3*out {
		t.Fatalf("a layer allocates %d bytes, less than its intermediates' known size", perLayer)
	}

	type step struct{ endLive, peakLive, peakHeld, stepPeak int64 }
	measure := func(layers int, ckpt bool) step {
		g := graph.New(b)
		defer g.Close()
		x := g.Input(xs, rows, D)
		for range layers {
			x = maybeCheckpoint(g, ckpt, layer, x)[0]
		}
		st := g.Stats()
		s := step{endLive: st.LiveBytes, peakLive: st.PeakLiveBytes, peakHeld: st.PeakBytes}
		if err := g.Backward(g.Sum(x)); err != nil {
			t.Fatal(err)
		}
		s.stepPeak = g.Stats().PeakLiveBytes
		g.Reset()
		if g.Stats().LiveBytes != 0 {
			t.Errorf("%d layers, checkpointed %v: %d bytes live after Reset", layers, ckpt, g.Stats().LiveBytes)
		}
		return s
	}
	for _, layers := range []int{2, 8} {
		plain, ckpt := measure(layers, false), measure(layers, true)
		N := int64(layers)
		if want := in + N*perLayer; plain.endLive != want {
			t.Errorf("%d plain layers keep %d bytes at the forward's end, want input + N·layer = %d", layers, plain.endLive, want)
		}
		if want := in + N*out; ckpt.endLive != want {
			t.Errorf("%d checkpointed layers keep %d bytes at the forward's end, want input + N·output = %d", layers, ckpt.endLive, want)
		}
		if bound := in + (N-1)*out + perLayer; ckpt.peakLive > bound || ckpt.peakHeld > bound+out {
			t.Errorf("%d checkpointed layers: forward peak %d live, %d held; want at most one layer's intermediates over the outputs (%d)",
				layers, ckpt.peakLive, ckpt.peakHeld, bound)
		}
		if ckpt.stepPeak >= plain.stepPeak {
			t.Errorf("%d layers: step peak %d bytes checkpointed, %d plain", layers, ckpt.stepPeak, plain.stepPeak)
		}
		t.Logf("%d layers: forward end %d B plain, %d B checkpointed; step peak %d B plain, %d B checkpointed",
			layers, plain.endLive, ckpt.endLive, plain.stepPeak, ckpt.stepPeak)
	}
}

// BenchmarkCheckpoint trains a stack of decoder blocks (attention scores
// [B·H, T, T] dominate the activations) with and without a checkpointed
// segment per block, on the same shapes, alternating the two in every
// iteration so that both see the same machine load. It reports each run's
// time per step and peak tape bytes (peak_live: values and gradients at
// once; peak_held: with the pool), and the checkpointed run's over the
// plain run's (x_plain_*).
func BenchmarkCheckpoint(b *testing.B) {
	be := openCPU(b)
	d := dims{B: 2, T: 128, D: 64, H: 4, F: 256, V: 64}
	const layers = 4
	rng := rand.New(rand.NewPCG(6, 6))
	var blocks []blockParams
	var params []*graph.Value
	for l := range layers {
		blocks = append(blocks, newBlock(b, be, rng, d, fmt.Sprintf("layers.%d", l), graph.Trainable))
		params = append(params, blocks[l].list()...)
	}
	xs := randVals(rng, d.B*d.T*d.D, 1)
	tapes := [2]*graph.Tape{graph.New(be), graph.New(be)}
	defer tapes[0].Close()
	defer tapes[1].Close()
	var ns [2]float64
	var live, held [2]int64
	step := func(i int) {
		g, ckpt := tapes[i], i == 1
		start := nanotime()
		drop := counterDrop(0.1, 1)
		x := g.Input(xs, d.B*d.T, d.D)
		for _, p := range blocks {
			x = maybeCheckpoint(g, ckpt, blockSeg(p, d, drop), x)[0]
		}
		if err := g.Backward(g.Mean(g.Square(x))); err != nil {
			b.Fatal(err)
		}
		ns[i] += float64(nanotime() - start)
		s := g.Stats()
		live[i], held[i] = max(live[i], s.PeakLiveBytes), max(held[i], s.PeakBytes)
		g.Reset()
		for _, p := range params {
			p.ZeroGrad()
		}
	}
	for b.Loop() {
		step(0)
		step(1)
	}
	n := float64(b.N)
	b.ReportMetric(ns[0]/n/1e6, "plain_ms/step")
	b.ReportMetric(ns[1]/n/1e6, "ckpt_ms/step")
	b.ReportMetric(float64(live[0])/(1<<20), "plain_peak_live_MiB")
	b.ReportMetric(float64(live[1])/(1<<20), "ckpt_peak_live_MiB")
	b.ReportMetric(float64(held[0])/(1<<20), "plain_peak_held_MiB")
	b.ReportMetric(float64(held[1])/(1<<20), "ckpt_peak_held_MiB")
	b.ReportMetric(ns[1]/ns[0], "x_plain_time")
	b.ReportMetric(float64(live[1])/float64(live[0]), "x_plain_peak_live")
	b.ReportMetric(float64(held[1])/float64(held[0]), "x_plain_peak_held")
}

func nanotime() int64 { return time.Now().UnixNano() }
