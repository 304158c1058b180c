package vec

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// simdSetsForTest returns every assembly kernel set with its streaming
// twin where it has one (NEON has none: its Streaming is itself, tested
// once), or skips the test where the CPU has none.
func simdSetsForTest(t *testing.T) []*Kernels {
	t.Helper()
	ks := withTwins(All()[1:])
	if len(ks) == 0 {
		t.Skip("no assembly kernels on this CPU")
	}
	return ks
}

// withTwins returns ks, each followed by its streaming twin where it has
// one.
func withTwins(ks []*Kernels) []*Kernels {
	var sets []*Kernels
	for _, k := range ks {
		sets = append(sets, k)
		if s := k.Streaming(); s != k {
			sets = append(sets, s)
		}
	}
	return sets
}

// lengths are the lengths every kernel is checked at: all of 0..67 (every
// tail of an 8- and a 16-lane vector, with and without full vectors
// before it) and a few longer ones that run the unrolled loops.
func lengths() []int {
	var ns []int
	for n := 0; n <= 67; n++ {
		ns = append(ns, n)
	}
	return append(ns, 128, 255, 1000, 4099)
}

// offsets are the start offsets, in elements, of the slices within their
// buffers: aligned, and every misalignment of a 64-byte vector.
var offsets = []int{0, 1, 3, 5, 7, 8, 13, 15}

// ulps returns the distance between a and b in float32 units in the last
// place: 0 for equal values and for two NaNs, +Inf for a NaN against a
// number.
func ulps(a, b float32) float64 {
	if a != a || b != b {
		if a != a && b != b {
			return 0
		}
		return math.Inf(1)
	}
	ord := func(x float32) int64 {
		i := int64(int32(math.Float32bits(x)))
		if i < 0 {
			i = math.MinInt32 - i
		}
		return i
	}
	d := ord(a) - ord(b)
	if d < 0 {
		d = -d
	}
	return float64(d)
}

// gen draws inputs for a kernel.
type gen struct {
	rng *rand.Rand
}

func (g gen) uniform(n int, lo, hi float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(lo + (hi-lo)*g.rng.Float64())
	}
	return v
}

// wild returns values over many magnitudes, both signs, with the special
// values (±0, ±Inf, NaN, subnormals, the largest float) sprinkled in.
func (g gen) wild(n int) []float32 {
	specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1e-40, -3e-42, math.MaxFloat32, -math.MaxFloat32, 0x1p-126, 1, -1}
	v := make([]float32, n)
	for i := range v {
		if g.rng.IntN(8) == 0 {
			v[i] = specials[g.rng.IntN(len(specials))]
			continue
		}
		v[i] = float32(math.Ldexp(g.rng.Float64()*2-1, g.rng.IntN(20)-8))
	}
	return v
}

// elementwise describes how to test one element-wise kernel.
type elementwise struct {
	name string
	get  func(k *Kernels) func(dst []float32, in ...[]float32) // adapts the kernel
	ins  int
	// inputs draws the i-th input of length n.
	inputs func(g gen, i, n int) []float32
	// tol is the allowed difference from the Go kernel: 0 demands the
	// same bits.
	tol func(got, want float32, in []float32) bool
}

func exact(got, want float32, _ []float32) bool { return ulps(got, want) == 0 }

// within returns a tolerance of u ulps, or of abs·(1 + |terms|) in
// absolute terms where a result cancels. The absolute tolerance holds
// for finite inputs and results only: an infinite one would make it
// infinite, and let any result through (GELU(±Inf) is +Inf or 0, and
// must be within u ulps of it).
func within(u float64, abs float64) func(got, want float32, in []float32) bool {
	finite := func(v float32) bool { return !math.IsInf(float64(v), 0) }
	return func(got, want float32, in []float32) bool {
		if ulps(got, want) <= u {
			return true
		}
		if !finite(got) || !finite(want) {
			return false
		}
		scale := 1.0
		for _, v := range in {
			if !finite(v) {
				return false
			}
			scale *= 1 + math.Abs(float64(v))
		}
		return math.Abs(float64(got)-float64(want)) <= abs*scale
	}
}

func un(f func(k *Kernels) func(dst, x []float32)) func(k *Kernels) func(dst []float32, in ...[]float32) {
	return func(k *Kernels) func(dst []float32, in ...[]float32) {
		return func(dst []float32, in ...[]float32) { f(k)(dst, in[0]) }
	}
}

func bi(f func(k *Kernels) func(dst, a, b []float32)) func(k *Kernels) func(dst []float32, in ...[]float32) {
	return func(k *Kernels) func(dst []float32, in ...[]float32) {
		return func(dst []float32, in ...[]float32) { f(k)(dst, in[0], in[1]) }
	}
}

func sc(f func(k *Kernels) func(dst, a []float32, s float32), s float32) func(k *Kernels) func(dst []float32, in ...[]float32) {
	return func(k *Kernels) func(dst []float32, in ...[]float32) {
		return func(dst []float32, in ...[]float32) { f(k)(dst, in[0], s) }
	}
}

func wildIn(g gen, _, n int) []float32 { return g.wild(n) }

// gradIn draws x from x(g, n) and dy uniform in [−2, 2].
func gradIn(x func(g gen, i, n int) []float32) func(g gen, i, n int) []float32 {
	return func(g gen, i, n int) []float32 {
		if i == 1 {
			return g.uniform(n, -2, 2)
		}
		return x(g, i, n)
	}
}

// mixedIn mostly draws from [lo, hi] and sometimes wild values.
func mixedIn(lo, hi float64) func(g gen, i, n int) []float32 {
	return func(g gen, i, n int) []float32 {
		if g.rng.IntN(4) == 0 {
			return g.wild(n)
		}
		return g.uniform(n, lo, hi)
	}
}

var elementwiseCases = []elementwise{
	{"Fill", func(k *Kernels) func(dst []float32, in ...[]float32) {
		return func(dst []float32, in ...[]float32) { k.Fill(dst, -2.5) }
	}, 0, wildIn, exact},
	{"Add", bi(func(k *Kernels) func(d, a, b []float32) { return k.Add }), 2, wildIn, exact},
	{"Sub", bi(func(k *Kernels) func(d, a, b []float32) { return k.Sub }), 2, wildIn, exact},
	{"Mul", bi(func(k *Kernels) func(d, a, b []float32) { return k.Mul }), 2, wildIn, exact},
	{"Div", bi(func(k *Kernels) func(d, a, b []float32) { return k.Div }), 2, wildIn, exact},
	{"AddScalar", sc(func(k *Kernels) func(d, a []float32, s float32) { return k.AddScalar }, 0.37), 1, wildIn, exact},
	{"SubScalar", sc(func(k *Kernels) func(d, a []float32, s float32) { return k.SubScalar }, -1.5), 1, wildIn, exact},
	{"MulScalar", sc(func(k *Kernels) func(d, a []float32, s float32) { return k.MulScalar }, 3e-3), 1, wildIn, exact},
	{"DivScalar", sc(func(k *Kernels) func(d, a []float32, s float32) { return k.DivScalar }, 7), 1, wildIn, exact},
	{"Exp", un(func(k *Kernels) func(d, x []float32) { return k.Exp }), 1, mixedIn(-110, 90), within(2, 0)},
	{"Log", un(func(k *Kernels) func(d, x []float32) { return k.Log }), 1, mixedIn(0, 1e4), within(2, 0)},
	{"Sqrt", un(func(k *Kernels) func(d, x []float32) { return k.Sqrt }), 1, wildIn, exact},
	{"Rsqrt", un(func(k *Kernels) func(d, x []float32) { return k.Rsqrt }), 1, wildIn, exact},
	{"Tanh", un(func(k *Kernels) func(d, x []float32) { return k.Tanh }), 1, mixedIn(-5, 5), within(3, 0)},
	{"Sigmoid", un(func(k *Kernels) func(d, x []float32) { return k.Sigmoid }), 1, mixedIn(-20, 20), within(4, 0)},
	{"SiLU", un(func(k *Kernels) func(d, x []float32) { return k.SiLU }), 1, mixedIn(-20, 20), within(6, 0)},
	// The GELU family's contract is absolute where the result is small
	// (see accuracy_test.go): the amd64 sets' tails are not Go's, relatively.
	{"GELU", un(func(k *Kernels) func(d, x []float32) { return k.GELU }), 1, mixedIn(-8, 8), within(10, 4e-7)},
	{"GELUTanh", un(func(k *Kernels) func(d, x []float32) { return k.GELUTanh }), 1, mixedIn(-12, 12), within(4, 4e-7)},
	{"ReLU", un(func(k *Kernels) func(d, x []float32) { return k.ReLU }), 1, wildIn, exact},
	{"Neg", un(func(k *Kernels) func(d, x []float32) { return k.Neg }), 1, wildIn, exact},
	{"Square", un(func(k *Kernels) func(d, x []float32) { return k.Square }), 1, wildIn, exact},
	{"ExpGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.ExpGrad }), 2, gradIn(mixedIn(-100, 80)), within(3, 0)},
	{"LogGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.LogGrad }), 2, gradIn(wildIn), exact},
	{"SqrtGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.SqrtGrad }), 2, gradIn(wildIn), exact},
	{"RsqrtGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.RsqrtGrad }), 2, gradIn(wildIn), exact},
	{"TanhGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.TanhGrad }), 2, gradIn(mixedIn(-6, 6)), within(5, 0)},
	{"SigmoidGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.SigmoidGrad }), 2, gradIn(mixedIn(-20, 20)), within(9, 0)},
	// The assembly fuses x·σ(1−σ) + σ, Go does not: near its zero
	// crossing the two differ by the rounding of the terms. The GELU
	// derivatives' contract is absolute, as GELU's.
	{"SiLUGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.SiLUGrad }), 2, gradIn(mixedIn(-20, 20)), within(9, 3e-7)},
	{"GELUGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.GELUGrad }), 2, gradIn(mixedIn(-8, 8)), within(11, 5e-7)},
	{"GELUTanhGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.GELUTanhGrad }), 2, gradIn(mixedIn(-12, 12)), within(9, 5e-7)},
	{"ReLUGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.ReLUGrad }), 2, wildIn, exact},
	{"NegGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.NegGrad }), 2, wildIn, exact},
	{"SquareGrad", bi(func(k *Kernels) func(d, a, b []float32) { return k.SquareGrad }), 2, wildIn, exact},
	{"Axpy", func(k *Kernels) func(dst []float32, in ...[]float32) {
		return func(dst []float32, in ...[]float32) {
			copy(dst, in[0])
			k.Axpy(dst, -0.75, in[1])
		}
	}, 2, wildIn, exact},
}

// The tolerances of the transcendental kernels are twice the accuracy
// bounds of accuracy_test.go, give or take an ulp: each implementation is
// within its bound of the true value.

// TestElementwiseAgainstGo runs every element-wise assembly kernel, both
// plain and streaming, against the Go kernel on all lengths and offsets,
// and checks that nothing outside the output slice is written.
func TestElementwiseAgainstGo(t *testing.T) {
	sets := simdSetsForTest(t)
	const guard = 32 // elements before and after the output, poisoned
	for _, c := range elementwiseCases {
		t.Run(c.name, func(t *testing.T) {
			g := gen{rand.New(rand.NewPCG(1, uint64(len(c.name))))}
			want := c.get(Go)
			for _, k := range sets {
				got := c.get(k)
				for _, n := range lengths() {
					for _, off := range offsets {
						in := make([][]float32, c.ins)
						for i := range in {
							buf := make([]float32, n+off+guard)
							copy(buf[off:], c.inputs(g, i, n))
							in[i] = buf[off : off+n]
						}
						ref := make([]float32, n)
						want(ref, in...)
						buf := make([]float32, n+off+2*guard)
						for i := range buf {
							buf[i] = -12345
						}
						dst := buf[off+guard : off+guard+n]
						got(dst, in...)
						for i := range dst {
							ins := make([]float32, len(in))
							for j := range in {
								ins[j] = in[j][i]
							}
							if !c.tol(dst[i], ref[i], ins) {
								t.Fatalf("%s (%s) n=%d off=%d: element %d of inputs %v = %g, Go gives %g (%.0f ulps)",
									c.name, setName(k), n, off, i, ins, dst[i], ref[i], ulps(dst[i], ref[i]))
							}
						}
						for i, v := range buf {
							if (i < off+guard || i >= off+guard+n) && v != -12345 {
								t.Fatalf("%s (%s) n=%d off=%d: wrote outside the output at %d", c.name, setName(k), n, off, i-off-guard)
							}
						}
					}
				}
			}
		})
	}
}

func setName(k *Kernels) string {
	if k.streaming == k {
		return k.Name + " streaming"
	}
	return k.Name
}

// TestElementwiseInPlace checks that the kernels may write over an input.
func TestElementwiseInPlace(t *testing.T) {
	sets := simdSetsForTest(t)
	g := gen{rand.New(rand.NewPCG(2, 2))}
	for _, c := range elementwiseCases {
		for _, k := range sets {
			for _, n := range []int{7, 33, 1000} {
				in := make([][]float32, c.ins)
				for i := range in {
					in[i] = c.inputs(g, i, n)
				}
				ref := make([]float32, n)
				c.get(Go)(ref, in...)
				for alias := range in {
					if c.name == "Axpy" && alias == 1 {
						continue // the adapter copies y into dst first
					}
					cp := make([][]float32, len(in))
					for i := range in {
						cp[i] = append([]float32(nil), in[i]...)
					}
					c.get(k)(cp[alias], cp...)
					for i := range ref {
						ins := make([]float32, len(in))
						for j := range in {
							ins[j] = in[j][i]
						}
						if !c.tol(cp[alias][i], ref[i], ins) {
							t.Fatalf("%s (%s) in place over input %d, n=%d: element %d = %g, want %g",
								c.name, setName(k), alias, n, i, cp[alias][i], ref[i])
						}
					}
				}
			}
		}
	}
}

// TestReductionsAgainstGo checks the float64-accumulating reductions
// against the Go kernels: the summation order differs, so they agree to a
// relative 1e-12 of the sum of the terms' magnitudes.
func TestReductionsAgainstGo(t *testing.T) {
	sets := simdSetsForTest(t)
	g := gen{rand.New(rand.NewPCG(3, 3))}
	type red struct {
		name string
		f    func(k *Kernels, a, b, c []float32) float64
		abs  func(a, b, c []float32) float64 // Σ |term|
		rel  float64                         // tolerance relative to abs; 0 means 1e-12
	}
	sumAbs := func(f func(i int) float64, n int) float64 {
		var s float64
		for i := 0; i < n; i++ {
			s += math.Abs(f(i))
		}
		return s
	}
	reds := []red{
		{"Sum", func(k *Kernels, a, _, _ []float32) float64 { return k.Sum(a) },
			func(a, _, _ []float32) float64 { return sumAbs(func(i int) float64 { return float64(a[i]) }, len(a)) }, 0},
		{"SumSquares", func(k *Kernels, a, _, _ []float32) float64 { return k.SumSquares(a) },
			func(a, _, _ []float32) float64 {
				return sumAbs(func(i int) float64 { return float64(a[i]) * float64(a[i]) }, len(a))
			}, 0},
		{"Dot", func(k *Kernels, a, b, _ []float32) float64 { return k.Dot(a, b) },
			func(a, b, _ []float32) float64 {
				return sumAbs(func(i int) float64 { return float64(a[i]) * float64(b[i]) }, len(a))
			}, 0},
		{"SumsAbout.sd", func(k *Kernels, a, _, _ []float32) float64 { s, _ := k.SumsAbout(a, 0.3); return s },
			func(a, _, _ []float32) float64 {
				return sumAbs(func(i int) float64 { return float64(a[i]) - 0.3 }, len(a))
			}, 0},
		{"SumsAbout.ssd", func(k *Kernels, a, _, _ []float32) float64 { _, s := k.SumsAbout(a, 0.3); return s },
			func(a, _, _ []float32) float64 {
				return sumAbs(func(i int) float64 { d := float64(a[i]) - 0.3; return d * d }, len(a))
			}, 0},
		{"ExpShift", func(k *Kernels, a, _, _ []float32) float64 {
			dst := make([]float32, len(a))
			s := k.ExpShift(dst, a, 1.5, 2)
			// The stored terms must match too (within exp's tolerance).
			// The assembly rounds 1.5·x − 2 once, Go twice: exp
			// magnifies the argument's rounding by its size.
			ref := make([]float32, len(a))
			Go.ExpShift(ref, a, 1.5, 2)
			for i := range ref {
				if ulps(dst[i], ref[i]) > 4+2*math.Abs(1.5*float64(a[i])-2) {
					return math.NaN()
				}
			}
			return s
		}, func(a, _, _ []float32) float64 {
			return sumAbs(func(i int) float64 { return math.Exp(1.5*float64(a[i]) - 2) }, len(a))
		}, 1e-6},
		{"ExpShiftSum", func(k *Kernels, a, _, _ []float32) float64 { return k.ExpShiftSum(a, 1) },
			func(a, _, _ []float32) float64 {
				return sumAbs(func(i int) float64 { return math.Exp(float64(a[i]) - 1) }, len(a))
			}, 1e-6},
		{"SumSquaresDot3.ss", func(k *Kernels, a, b, c []float32) float64 { s, _ := k.SumSquaresDot3(a, b, c); return s },
			func(a, _, _ []float32) float64 {
				return sumAbs(func(i int) float64 { return float64(a[i]) * float64(a[i]) }, len(a))
			}, 0},
		{"SumSquaresDot3.dot", func(k *Kernels, a, b, c []float32) float64 { _, s := k.SumSquaresDot3(a, b, c); return s },
			func(a, b, c []float32) float64 {
				return sumAbs(func(i int) float64 { return float64(a[i]) * float64(b[i]) * float64(c[i]) }, len(a))
			}, 0},
		{"LayerNormGradStats.sd", func(k *Kernels, a, b, c []float32) float64 {
			s, _, _, _ := k.LayerNormGradStats(a, b, c, 0.3)
			return s
		},
			func(a, _, _ []float32) float64 {
				return sumAbs(func(i int) float64 { return float64(a[i]) - 0.3 }, len(a))
			}, 0},
		{"LayerNormGradStats.ssd", func(k *Kernels, a, b, c []float32) float64 {
			_, s, _, _ := k.LayerNormGradStats(a, b, c, 0.3)
			return s
		},
			func(a, _, _ []float32) float64 {
				return sumAbs(func(i int) float64 { d := float64(a[i]) - 0.3; return d * d }, len(a))
			}, 0},
		{"LayerNormGradStats.sg", func(k *Kernels, a, b, c []float32) float64 {
			_, _, s, _ := k.LayerNormGradStats(a, b, c, 0.3)
			return s
		},
			func(a, b, c []float32) float64 {
				return sumAbs(func(i int) float64 { return float64(b[i]) * float64(c[i]) }, len(a))
			}, 0},
		{"LayerNormGradStats.sgd", func(k *Kernels, a, b, c []float32) float64 {
			_, _, _, s := k.LayerNormGradStats(a, b, c, 0.3)
			return s
		},
			func(a, b, c []float32) float64 {
				return sumAbs(func(i int) float64 {
					return float64(b[i]) * float64(c[i]) * (float64(a[i]) - 0.3)
				}, len(a))
			}, 0},
	}
	for _, r := range reds {
		for _, k := range sets {
			for _, n := range lengths() {
				for _, off := range offsets {
					in := make([][]float32, 3)
					for i := range in {
						buf := g.uniform(n+off, -3, 3)
						in[i] = buf[off:]
					}
					got, want := r.f(k, in[0], in[1], in[2]), r.f(Go, in[0], in[1], in[2])
					rel := r.rel
					if rel == 0 {
						rel = 1e-12
					}
					if !(math.Abs(got-want) <= rel*r.abs(in[0], in[1], in[2])+1e-300) {
						t.Fatalf("%s (%s) n=%d off=%d: %v, Go gives %v", r.name, setName(k), n, off, got, want)
					}
				}
			}
		}
	}
}

// TestMax checks Max and MaxScaled against Go, including NaN, −Inf rows
// and a maximum in the tail.
func TestMax(t *testing.T) {
	sets := simdSetsForTest(t)
	g := gen{rand.New(rand.NewPCG(4, 4))}
	nan := float32(math.NaN())
	for _, k := range sets {
		for _, n := range lengths()[1:] {
			for _, off := range offsets {
				for trial := 0; trial < 4; trial++ {
					buf := g.uniform(n+off, -5, 5)
					x := buf[off:]
					switch trial {
					case 1:
						x[n-1] = 100 // in the tail
					case 2:
						x[g.rng.IntN(n)] = nan
					case 3:
						for i := range x {
							x[i] = float32(math.Inf(-1))
						}
					}
					got, want := k.Max(x), Go.Max(x)
					if ulps(got, want) != 0 {
						t.Fatalf("Max (%s) n=%d off=%d trial %d: %v, want %v", setName(k), n, off, trial, got, want)
					}
					if trial == 2 {
						continue // MaxScaled may ignore NaN
					}
					for _, s := range []float32{1, 0.125, -2} {
						got, want := k.MaxScaled(x, s), Go.MaxScaled(x, s)
						if ulps(got, want) != 0 {
							t.Fatalf("MaxScaled(%v) (%s) n=%d off=%d trial %d: %v, want %v", s, setName(k), n, off, trial, got, want)
						}
					}
				}
			}
		}
	}
	if !panics(func() { Best().Max(nil) }) {
		t.Error("Max of an empty slice did not panic")
	}
}

func panics(f func()) (p bool) {
	defer func() { p = recover() != nil }()
	f()
	return false
}

// TestLayerNormGradStatsAcc checks that every set's LayerNormGradStatsAcc
// returns its LayerNormGradStats bit for bit and adds dy to accB as Go
// does (one float32 addition), writing nothing beside accB, at every
// length around the vector widths and misaligned.
func TestLayerNormGradStatsAcc(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(6, 6))}
	const guard = 16
	checked := 0
	for _, k := range simdSetsForTest(t) {
		if k.LayerNormGradStatsAcc == nil {
			continue
		}
		checked++
		for n := 0; n <= 67; n++ {
			for _, off := range []int{0, 1, 3} {
				x, w, dy := g.uniform(n+off, -2, 2)[off:], g.uniform(n+off, -2, 2)[off:], g.uniform(n+off, -2, 2)[off:]
				buf := g.uniform(n+off+2*guard, -1, 1)
				before := slices.Clone(buf)
				accB := buf[off+guard : off+guard+n]
				sd, ssd, sg, sgd := k.LayerNormGradStatsAcc(x, w, dy, accB, 0.3)
				wd, wssd, wsg, wsgd := k.LayerNormGradStats(x, w, dy, 0.3)
				if sd != wd || ssd != wssd || sg != wsg || sgd != wsgd {
					t.Fatalf("%s n=%d off=%d: sums %v %v %v %v, LayerNormGradStats gives %v %v %v %v",
						setName(k), n, off, sd, ssd, sg, sgd, wd, wssd, wsg, wsgd)
				}
				for i, v := range buf {
					want := before[i]
					if j := i - off - guard; j >= 0 && j < n {
						want += dy[j]
					}
					if v != want {
						t.Fatalf("%s n=%d off=%d: accB buffer element %d = %v, want %v", setName(k), n, off, i-off-guard, v, want)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Skip("no kernel set here has LayerNormGradStatsAcc (AVX-512 only)")
	}
}

// TestRowKernelsAgainstGo checks the row kernels and their float64
// accumulators against the Go kernels, which do the same operations in the
// same order: they agree bit for bit, except where the assembly fuses the
// last multiply-add (tol: then they differ by the rounding of a product,
// under an ulp of the largest term).
func TestRowKernelsAgainstGo(t *testing.T) {
	sets := simdSetsForTest(t)
	g := gen{rand.New(rand.NewPCG(5, 5))}
	type rowCase struct {
		name string
		tol  float64
		// run applies the kernel to inputs in (4 of them, length n),
		// writing outputs out (3 float32 slices) and acc (2 float64).
		run func(k *Kernels, in, out [][]float32, acc [][]float64)
	}
	step := NewAdamWStep(1e-3, 0.9, 0.999, 1e-8, 0.01, 7)
	cases := []rowCase{
		{"Accumulate", 0, func(k *Kernels, in, out [][]float32, acc [][]float64) { k.Accumulate(acc[0], in[0]) }},
		{"ScaleTo", 0, func(k *Kernels, in, out [][]float32, acc [][]float64) { k.ScaleTo(out[0], in[0], 0.37) }},
		{"ScaleMul", 0, func(k *Kernels, in, out [][]float32, acc [][]float64) { k.ScaleMul(out[0], in[0], in[1], -1.3) }},
		{"Normalize", 0, func(k *Kernels, in, out [][]float32, acc [][]float64) {
			k.Normalize(out[0], in[0], in[1], nil, 0.2, 1.9)
		}},
		{"NormalizeShift", 1e-6, func(k *Kernels, in, out [][]float32, acc [][]float64) {
			k.Normalize(out[0], in[0], in[1], in[2], 0.2, 1.9)
		}},
		{"SoftmaxGrad", 0, func(k *Kernels, in, out [][]float32, acc [][]float64) {
			k.SoftmaxGrad(out[0], in[0], in[1], 0.125, 0.3)
		}},
		{"RMSNormGrad", 1e-6, func(k *Kernels, in, out [][]float32, acc [][]float64) {
			k.RMSNormGrad(out[0], in[0], in[1], in[2], 0.8, 0.05)
		}},
		{"RMSNormGradAcc", 1e-6, func(k *Kernels, in, out [][]float32, acc [][]float64) {
			copy(out[1], in[3])
			k.RMSNormGradAcc(out[0], in[0], in[1], in[2], out[1], 0.8, 0.05)
		}},
		{"LayerNormGrad", 1e-6, func(k *Kernels, in, out [][]float32, acc [][]float64) {
			k.LayerNormGrad(out[0], in[0], in[1], in[2], 0.1, 1.2, 0.3, -0.2)
		}},
		{"LayerNormGradAcc", 1e-6, func(k *Kernels, in, out [][]float32, acc [][]float64) {
			copy(out[1], in[3])
			copy(out[2], in[0])
			k.LayerNormGradAcc(out[0], in[0], in[1], in[2], out[1], out[2], 0.1, 1.2, 0.3, -0.2)
		}},
		{"LayerNormGradAcc without accB", 1e-6, func(k *Kernels, in, out [][]float32, acc [][]float64) {
			copy(out[1], in[3])
			k.LayerNormGradAcc(out[0], in[0], in[1], in[2], out[1], nil, 0.1, 1.2, 0.3, -0.2)
		}},
		{"AdamW", 0, func(k *Kernels, in, out [][]float32, acc [][]float64) {
			copy(out[0], in[0])
			copy(out[1], in[2])
			copy(out[2], in[3])
			for i := range out[2] {
				out[2][i] = float32(math.Abs(float64(out[2][i]))) * 1e-3
			}
			k.AdamW(out[0], in[1], out[1], out[2], &step)
		}},
	}
	const guard = 16
	for _, c := range cases {
		for _, k := range sets {
			for _, n := range lengths() {
				for _, off := range offsets {
					in := make([][]float32, 4)
					for i := range in {
						buf := g.uniform(n+off, -2, 2)
						in[i] = buf[off:]
					}
					accInit := g.uniform(n, -1, 1)
					mk := func() ([][]float32, [][]float64, [][]float64) {
						out := make([][]float32, 3)
						var accBufs, acc [][]float64
						for i := range out {
							out[i] = make([]float32, n+off)[off:]
						}
						for i := 0; i < 2; i++ {
							buf := make([]float64, n+off+2*guard)
							for j := range buf {
								buf[j] = -777
							}
							a := buf[off+guard : off+guard+n]
							for j := range a {
								a[j] = float64(accInit[j])
							}
							accBufs, acc = append(accBufs, buf), append(acc, a)
						}
						return out, acc, accBufs
					}
					outG, accG, _ := mk()
					outK, accK, bufK := mk()
					c.run(Go, in, outG, accG)
					c.run(k, in, outK, accK)
					for o := range outG {
						for i := range outG[o] {
							if d := math.Abs(float64(outK[o][i]) - float64(outG[o][i])); ulps(outK[o][i], outG[o][i]) != 0 && !(d <= c.tol) {
								t.Fatalf("%s (%s) n=%d off=%d: output %d element %d = %v, Go gives %v",
									c.name, setName(k), n, off, o, i, outK[o][i], outG[o][i])
							}
						}
					}
					for a := range accG {
						for i := range accG[a] {
							if accK[a][i] != accG[a][i] {
								t.Fatalf("%s (%s) n=%d off=%d: accumulator %d element %d = %v, Go gives %v",
									c.name, setName(k), n, off, a, i, accK[a][i], accG[a][i])
							}
						}
						for i, v := range bufK[a] {
							if (i < off+guard || i >= off+guard+n) && v != -777 {
								t.Fatalf("%s (%s) n=%d off=%d: accumulator %d written outside at %d", c.name, setName(k), n, off, a, i-off-guard)
							}
						}
					}
				}
			}
		}
	}
}

// TestAllocations checks that the kernels allocate nothing.
func TestAllocations(t *testing.T) {
	x, y, z, w := make([]float32, 1000), make([]float32, 1000), make([]float32, 1000), make([]float32, 1000)
	step := NewAdamWStep(1e-3, 0.9, 0.999, 1e-8, 0, 1)
	for _, k := range All() {
		for _, kk := range []*Kernels{k, k.Streaming()} {
			n := testing.AllocsPerRun(10, func() {
				kk.Add(z, x, y)
				kk.GELU(z, x)
				kk.SiLUGrad(z, x, y)
				sd, ssd := kk.SumsAbout(x, 1)
				_ = kk.Sum(x) + kk.Dot(x, y) + sd + ssd
				_ = kk.ExpShift(z, x, 1, 0)
				kk.Normalize(z, x, y, nil, 0, 1)
				kk.LayerNormGrad(z, x, y, x, 0, 1, 0, 0)
				_, _, _, _ = kk.LayerNormGradStats(x, y, z, 1)
				kk.LayerNormGradAcc(z, x, y, x, w, w, 0, 1, 0, 0)
				kk.LayerNormGradAcc(z, x, y, x, w, nil, 0, 1, 0, 0)
				if kk.LayerNormGradStatsAcc != nil {
					_, _, _, _ = kk.LayerNormGradStatsAcc(x, y, z, w, 1)
				}
				kk.RMSNormGradAcc(z, x, y, x, w, 1, 0)
				kk.AdamW(x, y, z, z, &step)
			})
			if n != 0 {
				t.Errorf("%s: %v allocations per run", setName(kk), n)
			}
		}
	}
}

func TestAllNamesGoFirst(t *testing.T) {
	all := All()
	if all[0] != Go || Go.Name != "go" {
		t.Fatalf("All()[0] = %q, want the Go kernels", all[0].Name)
	}
	seen := map[string]bool{}
	for _, k := range all {
		if seen[k.Name] {
			t.Errorf("duplicate kernel set %q", k.Name)
		}
		seen[k.Name] = true
	}
	if b := Best(); b != all[len(all)-1] {
		t.Errorf("Best() = %q, want the last of All(), %q", b.Name, all[len(all)-1].Name)
	}
}

// TestPrefetch checks that Prefetch, a hint, accepts any slice (nil,
// empty, short, unaligned, ending at the end of its array) and leaves its
// contents as they were.
func TestPrefetch(t *testing.T) {
	buf := make([]float32, 1000)
	for i := range buf {
		buf[i] = float32(i)
	}
	for _, set := range All() {
		// The streaming twin is the set that prefetches on amd64.
		for _, k := range []*Kernels{set, set.Streaming()} {
			for _, x := range [][]float32{nil, buf[:0], buf[3:4], buf[1:17], buf[5:], buf} {
				k.Prefetch(x)
			}
			for i, v := range buf {
				if v != float32(i) {
					t.Fatalf("%s: Prefetch changed element %d to %v", k.Name, i, v)
				}
			}
		}
	}
}

// TestScaleToWith checks ScaleToWith of every set (and its streaming
// twin) against x·float32(s) with dst[at] = v, for every at (and none) of
// rows that start at each float of a cache line, so that the line it
// writes with ordinary stores falls at every place in the row: its first
// and last lines, cut short by the row's ends, included.
func TestScaleToWith(t *testing.T) {
	const s, v = 0.3, 42
	x := make([]float32, 100)
	for i := range x {
		x[i] = float32(i)/7 - 3
	}
	buf := make([]float32, 200)
	for _, set := range All() {
		for _, k := range []*Kernels{set, set.Streaming()} {
			for off := range lineBytes / 4 {
				for _, n := range []int{1, 5, 16, 17, 40, 100} {
					for at := -1; at < n; at++ {
						clear(buf)
						dst := buf[off : off+n]
						k.ScaleToWith(dst, x[:n], s, at, v)
						k.Fence()
						for i, got := range dst {
							want := x[i] * float32(s)
							if i == at {
								want = v
							}
							if got != want {
								t.Fatalf("%s: ScaleToWith (row at offset %d, %d long, at %d): dst[%d] = %v, want %v", k.Name, off, n, at, i, got, want)
							}
						}
						if slices.ContainsFunc(buf[:off], func(f float32) bool { return f != 0 }) ||
							slices.ContainsFunc(buf[off+n:], func(f float32) bool { return f != 0 }) {
							t.Fatalf("%s: ScaleToWith (row at offset %d, %d long, at %d) wrote outside dst", k.Name, off, n, at)
						}
					}
				}
			}
		}
	}
}

// TestScaleToWithLine checks which elements ScaleToWith leaves to ScaleTo:
// all but those in the cache line holding dst[at], for rows that start at
// each float of a line. Where the row starts inside that line, the part
// written by the Go loop still ends where the line does, and ScaleTo
// writes the next line from its start, so that no line gets stores from
// both (ScaleTo's own division, binWrapper.parts, is TestBinWrapperParts').
func TestScaleToWithLine(t *testing.T) {
	const line = lineBytes / 4
	buf := lineAligned(100 + 2*line)
	x := make([]float32, 100)
	for off := range line {
		for _, n := range []int{1, 5, 16, 17, 40, 100} {
			dst := buf[off : off+n]
			for at := range n {
				// written[i] counts ScaleTo's writes of dst[i].
				written := make([]int, n)
				k := *Go
				k.ScaleTo = func(d, _ []float32, _ float64) {
					if len(d) == 0 {
						return
					}
					i := int(uintptr(unsafe.Pointer(&d[0]))-uintptr(unsafe.Pointer(&dst[0]))) / 4
					for j := range d {
						written[i+j]++
					}
				}
				k.ScaleToWith(dst, x[:n], 0.5, at, 1)
				for i, w := range written {
					inLine := (off+i)/line == (off+at)/line
					want := 1
					if inLine {
						want = 0
					}
					if w != want {
						t.Fatalf("row at offset %d, %d long, at %d: ScaleTo wrote dst[%d] %d times, want %d (in dst[at]'s line: %v)", off, n, at, i, w, want, inLine)
					}
				}
			}
		}
	}
}

// lineAligned returns n floats that start on a 64-byte (cache line)
// boundary.
func lineAligned(n int) []float32 {
	buf := make([]float32, n+lineBytes/4)
	base := 0
	for uintptr(unsafe.Pointer(&buf[base]))%lineBytes != 0 {
		base++
	}
	return buf[base : base+n]
}
