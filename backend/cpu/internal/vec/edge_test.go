package vec

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// Edge cases of the assembly kernels that the tables of vec_test.go do
// not reach: special values in reductions and row steps, row steps
// written in place, a NaN's bits through Max, and inputs too short.

// exactToGo reports whether set k claims to agree with Go bit for bit in
// the row steps whose last multiply-add the AVX kernels fuse and Go on
// amd64 does not: Go itself, and NEON, which fuses where Go on arm64 does.
func exactToGo(k *Kernels) bool { return k.Name == "go" || k.Name == "neon" }

// sameFloat reports whether a and b are the same value: equal bits, or
// both NaN (payloads may differ), or zeros of either sign.
func sameFloat(a, b float32) bool {
	return a == b || a != a && b != b
}

// TestReductionsSpecialValues runs the float64 reductions over rows with
// NaN, ±Inf, the largest floats, subnormals and signed zeros, at every
// length 0..67 and several offsets: a NaN or infinite term must make the
// result what Go's is (NaN, or the infinity), and finite results agree
// with Go's to 1e-12 of the sum of the terms' magnitudes (the order of
// summation differs).
func TestReductionsSpecialValues(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(11, 11))}
	type red struct {
		name string
		f    func(k *Kernels, a, b, c []float32) []float64
	}
	reds := []red{
		{"Sum", func(k *Kernels, a, _, _ []float32) []float64 { return []float64{k.Sum(a)} }},
		{"SumSquares", func(k *Kernels, a, _, _ []float32) []float64 { return []float64{k.SumSquares(a)} }},
		{"Dot", func(k *Kernels, a, b, _ []float32) []float64 { return []float64{k.Dot(a, b)} }},
		{"SumSquaresDot3", func(k *Kernels, a, b, c []float32) []float64 {
			ss, dot := k.SumSquaresDot3(a, b, c)
			return []float64{ss, dot}
		}},
		{"SumsAbout", func(k *Kernels, a, _, _ []float32) []float64 {
			sd, ssd := k.SumsAbout(a, 0.25)
			return []float64{sd, ssd}
		}},
		{"LayerNormGradStats", func(k *Kernels, a, b, c []float32) []float64 {
			sd, ssd, sg, sgd := k.LayerNormGradStats(a, b, c, -0.5)
			return []float64{sd, ssd, sg, sgd}
		}},
	}
	for _, k := range All()[1:] {
		for _, r := range reds {
			for n := 0; n <= 67; n++ {
				for _, off := range []int{0, 1, 3} {
					for trial := range 3 {
						in := make([][]float32, 3)
						for i := range in {
							buf := make([]float32, n+off)
							copy(buf[off:], g.wild(n))
							if trial == 0 { // finite only: the sums themselves
								for j := off; j < len(buf); j++ {
									if v := float64(buf[j]); math.IsNaN(v) || math.IsInf(v, 0) {
										buf[j] = float32(j%5) - 2
									}
								}
							}
							in[i] = buf[off:]
						}
						got, want := r.f(k, in[0], in[1], in[2]), r.f(Go, in[0], in[1], in[2])
						// Σ |term| over the finite terms of every result
						// bounds the difference the order of summation
						// makes where the result is finite.
						var mag float64
						fin := func(v float32) float64 {
							if v != v || math.IsInf(float64(v), 0) {
								return 0
							}
							return math.Abs(float64(v))
						}
						for j := range n {
							a := 1.5 + fin(in[0][j])
							mag += a*a + a*(1+fin(in[1][j]))*(1+fin(in[2][j]))
						}
						for i := range got {
							ok := got[i] == want[i] || math.IsNaN(got[i]) && math.IsNaN(want[i]) ||
								!math.IsInf(want[i], 0) && !math.IsNaN(want[i]) && math.Abs(got[i]-want[i]) <= 1e-12*mag
							if !ok {
								t.Fatalf("%s (%s) n=%d off=%d trial %d: result %d = %v, Go gives %v (inputs %v)",
									r.name, k.Name, n, off, trial, i, got[i], want[i], in)
							}
						}
					}
				}
			}
		}
	}
}

// rowStep is a row step with one float32 output, adapted to inputs in.
type rowStep struct {
	name string
	ins  int
	// fused: the AVX kernels fuse a multiply-add that Go on amd64 rounds
	// twice.
	fused bool
	run   func(k *Kernels, dst []float32, in [][]float32)
}

var rowSteps = []rowStep{
	{"ScaleTo", 1, false, func(k *Kernels, dst []float32, in [][]float32) { k.ScaleTo(dst, in[0], -0.37) }},
	{"ScaleMul", 2, false, func(k *Kernels, dst []float32, in [][]float32) { k.ScaleMul(dst, in[0], in[1], 1.3) }},
	{"Normalize", 2, false, func(k *Kernels, dst []float32, in [][]float32) {
		k.Normalize(dst, in[0], in[1], nil, 0.1+1e-9, 1.7)
	}},
	{"NormalizeShift", 3, true, func(k *Kernels, dst []float32, in [][]float32) {
		k.Normalize(dst, in[0], in[1], in[2], 0.1+1e-9, 1.7)
	}},
	{"SoftmaxGrad", 2, false, func(k *Kernels, dst []float32, in [][]float32) {
		k.SoftmaxGrad(dst, in[0], in[1], 0.5, 0.3+1e-9)
	}},
	{"RMSNormGrad", 3, true, func(k *Kernels, dst []float32, in [][]float32) {
		k.RMSNormGrad(dst, in[0], in[1], in[2], 0.9, -0.04)
	}},
	{"LayerNormGrad", 3, true, func(k *Kernels, dst []float32, in [][]float32) {
		k.LayerNormGrad(dst, in[0], in[1], in[2], 0.1+1e-9, 1.2, 0.3, -0.2)
	}},
	{"Axpy", 2, false, func(k *Kernels, dst []float32, in [][]float32) {
		// y is dst: in[0] is its starting value unless dst is in[0].
		if len(dst) == 0 || &dst[0] != &in[0][0] {
			copy(dst, in[0])
		}
		k.Axpy(dst, 0.75, in[1])
	}},
}

// TestRowStepsWild runs the row steps over special values (NaN, ±Inf,
// the largest floats, subnormals, signed zeros) at every length 0..67 and
// several offsets: sets that claim Go's results bit for bit (Go and NEON,
// everywhere; the AVX sets where they do not fuse) must give them, NaNs
// where Go has NaNs.
func TestRowStepsWild(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(12, 12))}
	for _, k := range All()[1:] {
		for _, s := range rowSteps {
			if s.fused && !exactToGo(k) {
				continue
			}
			for n := 0; n <= 67; n++ {
				for _, off := range []int{0, 1, 2, 3} {
					in := make([][]float32, s.ins)
					for i := range in {
						buf := make([]float32, n+off)
						copy(buf[off:], g.wild(n))
						in[i] = buf[off:]
					}
					want, got := make([]float32, n), make([]float32, n+off)[off:]
					s.run(Go, want, in)
					s.run(k, got, in)
					for i := range want {
						if !sameFloat(got[i], want[i]) {
							t.Fatalf("%s (%s) n=%d off=%d: element %d = %v, Go gives %v", s.name, k.Name, n, off, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}

// TestRowStepsInPlace checks that each row step may write over each of its
// inputs (dst == input, element for element), at lengths through every
// loop and tail, against Go writing elsewhere.
func TestRowStepsInPlace(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(13, 13))}
	for _, k := range All()[1:] {
		for _, s := range rowSteps {
			for _, n := range []int{1, 3, 4, 7, 16, 17, 35, 67, 1000} {
				in := make([][]float32, s.ins)
				for i := range in {
					in[i] = g.uniform(n, -2, 2)
				}
				want := make([]float32, n)
				s.run(Go, want, in)
				for alias := range in {
					if s.name == "Axpy" && alias == 1 {
						continue // the adapter copies y into dst first
					}
					cp := make([][]float32, len(in))
					for i := range in {
						cp[i] = append([]float32(nil), in[i]...)
					}
					s.run(k, cp[alias], cp)
					for i := range want {
						if got := cp[alias][i]; !sameFloat(got, want[i]) && !(s.fused && !exactToGo(k) && math.Abs(float64(got-want[i])) <= 1e-6) {
							t.Fatalf("%s (%s) over input %d, n=%d: element %d = %v, Go gives %v", s.name, k.Name, alias, n, i, got, want[i])
						}
					}
				}
			}
		}
	}
}

// TestAccumulateWild adds special values into float64 accumulators, which
// every set does exactly as Go does.
func TestAccumulateWild(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(14, 14))}
	for _, k := range All()[1:] {
		for n := 0; n <= 67; n++ {
			x := g.wild(n + 1)[1:]
			acc0 := make([]float64, n)
			for i := range acc0 {
				acc0[i] = float64(g.wild(1)[0]) * 1e10
			}
			want, got := append([]float64(nil), acc0...), append([]float64(nil), acc0...)
			Go.Accumulate(want, x)
			k.Accumulate(got, x)
			for i := range want {
				if !(got[i] == want[i] || math.IsNaN(got[i]) && math.IsNaN(want[i])) {
					t.Fatalf("Accumulate (%s) n=%d: element %d = %v, Go gives %v", k.Name, n, i, got[i], want[i])
				}
			}
		}
	}
}

// TestMaxNaNBits checks that Max returns a NaN of x, bits and all (the
// payload and the signalling bit kept), wherever it is, and +Inf where x
// holds it; MaxScaled returns +Inf too.
func TestMaxNaNBits(t *testing.T) {
	nans := []uint32{0x7fc00000, 0x7fc00123, 0xffc00001, 0x7f800001, 0xff812345}
	inf := float32(math.Inf(1))
	for _, k := range All() {
		for n := 1; n <= 67; n++ {
			for _, at := range []int{0, n / 2, n - 1} {
				for _, bits := range nans {
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(i%9) - 4
					}
					x[at] = math.Float32frombits(bits)
					if got := math.Float32bits(k.Max(x)); got != bits {
						t.Fatalf("Max (%s) n=%d with the NaN %#08x at %d = %#08x", k.Name, n, bits, at, got)
					}
				}
				x := make([]float32, n)
				for i := range x {
					x[i] = -3e38
				}
				x[at] = inf
				if got := k.Max(x); got != inf {
					t.Fatalf("Max (%s) n=%d with +Inf at %d = %v", k.Name, n, at, got)
				}
				if got := k.MaxScaled(x, 0.5); got != inf {
					t.Fatalf("MaxScaled (%s) n=%d with +Inf at %d = %v", k.Name, n, at, got)
				}
				if want := float32(3e38); n > 1 && k.MaxScaled(x, -1) != want {
					t.Fatalf("MaxScaled(−1) (%s) n=%d with +Inf at %d = %v, want %v", k.Name, n, at, k.MaxScaled(x, -1), want)
				}
			}
		}
	}
}

// TestShortInputsPanic checks that every set panics, as the Go kernels do,
// when an input is shorter than the output sets (or, for the reductions,
// than the first input), rather than reading past it.
func TestShortInputsPanic(t *testing.T) {
	const n = 9
	long, short := make([]float32, n), make([]float32, n-1)
	acc := make([]float64, n)
	step := NewAdamWStep(1e-3, 0.9, 0.999, 1e-8, 0, 1)
	calls := []struct {
		name string
		f    func(k *Kernels)
	}{
		{"Add", func(k *Kernels) { k.Add(long, long, short) }},
		{"Div", func(k *Kernels) { k.Div(long, short, long) }},
		{"AddScalar", func(k *Kernels) { k.AddScalar(long, short, 1) }},
		{"DivScalar", func(k *Kernels) { k.DivScalar(long, short, 1) }},
		{"Axpy", func(k *Kernels) { k.Axpy(long, 2, short) }},
		{"Sqrt", func(k *Kernels) { k.Sqrt(long, short) }},
		{"Exp", func(k *Kernels) { k.Exp(long, short) }},
		{"ReLUGrad", func(k *Kernels) { k.ReLUGrad(long, long, short) }},
		{"Dot", func(k *Kernels) { k.Dot(long, short) }},
		{"SumSquaresDot3", func(k *Kernels) { k.SumSquaresDot3(long, long, short) }},
		{"LayerNormGradStats", func(k *Kernels) { k.LayerNormGradStats(long, short, long, 0) }},
		{"Accumulate", func(k *Kernels) { k.Accumulate(acc, short) }},
		{"ScaleTo", func(k *Kernels) { k.ScaleTo(long, short, 2) }},
		{"ScaleMul", func(k *Kernels) { k.ScaleMul(long, long, short, 2) }},
		{"Normalize", func(k *Kernels) { k.Normalize(long, long, short, nil, 0, 1) }},
		{"NormalizeShift", func(k *Kernels) { k.Normalize(long, long, long, short, 0, 1) }},
		{"SoftmaxGrad", func(k *Kernels) { k.SoftmaxGrad(long, long, short, 1, 0) }},
		{"RMSNormGrad", func(k *Kernels) { k.RMSNormGrad(long, long, long, short, 1, 0) }},
		{"RMSNormGradAcc", func(k *Kernels) { k.RMSNormGradAcc(long, long, long, long, short, 1, 0) }},
		{"LayerNormGrad", func(k *Kernels) { k.LayerNormGrad(long, short, long, long, 0, 1, 0, 0) }},
		{"LayerNormGradAcc", func(k *Kernels) { k.LayerNormGradAcc(long, long, long, long, long, short, 0, 1, 0, 0) }},
		{"LayerNormGradAcc without accB", func(k *Kernels) { k.LayerNormGradAcc(long, long, long, long, short, nil, 0, 1, 0, 0) }},
		{"LayerNormGradStatsAcc", func(k *Kernels) { k.LayerNormGradStatsAcc(long, long, long, short, 0) }},
		{"LayerNormGradAccNext", func(k *Kernels) {
			k.LayerNormGradAccNext(long, long, long, long, short, 0, 1, 0, 0, long, long, long, 0)
		}},
		{"LayerNormGradAccNext next", func(k *Kernels) {
			k.LayerNormGradAccNext(long, long, long, long, long, 0, 1, 0, 0, short, long, long, 0)
		}},
		{"LayerNormGradAccNext nextDy", func(k *Kernels) {
			k.LayerNormGradAccNext(long, long, long, long, long, 0, 1, 0, 0, long, short, long, 0)
		}},
		{"LayerNormGradAccNext accB", func(k *Kernels) {
			k.LayerNormGradAccNext(long, long, long, long, long, 0, 1, 0, 0, long, long, short, 0)
		}},
		{"LayerNormGradNext", func(k *Kernels) { k.LayerNormGradNext(long, long, short, long, 0, 1, 0, 0, long, long, 0) }},
		{"LayerNormGradNext next", func(k *Kernels) { k.LayerNormGradNext(long, long, long, long, 0, 1, 0, 0, short, long, 0) }},
		{"LayerNormGradNext nextDy", func(k *Kernels) { k.LayerNormGradNext(long, long, long, long, 0, 1, 0, 0, long, short, 0) }},
		{"SoftmaxGradNext", func(k *Kernels) { k.SoftmaxGradNext(long, long, short, 1, 0, long, long) }},
		{"SoftmaxGradNext nextY", func(k *Kernels) { k.SoftmaxGradNext(long, long, long, 1, 0, short, long) }},
		{"SoftmaxGradNext nextDy", func(k *Kernels) { k.SoftmaxGradNext(long, long, long, 1, 0, long, short) }},
		{"RMSNormGradNext", func(k *Kernels) { k.RMSNormGradNext(long, long, long, short, 1, 0, long, long) }},
		{"RMSNormGradNext next", func(k *Kernels) { k.RMSNormGradNext(long, long, long, long, 1, 0, short, long) }},
		{"RMSNormGradNext nextDy", func(k *Kernels) { k.RMSNormGradNext(long, long, long, long, 1, 0, long, short) }},
		{"RMSNormGradAccNext", func(k *Kernels) { k.RMSNormGradAccNext(long, long, long, long, short, 1, 0, long, long) }},
		{"RMSNormGradAccNext nextDy", func(k *Kernels) { k.RMSNormGradAccNext(long, long, long, long, long, 1, 0, long, short) }},
		{"ExpShift", func(k *Kernels) { k.ExpShift(long, short, 1, 0) }},
		{"AdamW", func(k *Kernels) { k.AdamW(long, long, long, short, &step) }},
		{"Max", func(k *Kernels) { k.Max(nil) }},
		{"MaxScaled", func(k *Kernels) { k.MaxScaled(nil, 1) }},
	}
	for _, k := range All() {
		for _, c := range calls {
			if strings.HasPrefix(c.name, "LayerNormGradStatsAcc") && k.LayerNormGradStatsAcc == nil ||
				strings.HasPrefix(c.name, "LayerNormGradAccNext") && k.LayerNormGradAccNext == nil {
				continue // the set has none (see Kernels)
			}
			if !panics(func() { c.f(k) }) {
				t.Errorf("%s (%s) with an input too short did not panic", c.name, k.Name)
			}
		}
	}
}

// TestAdamWWild runs AdamW over special values (v kept non-negative, as
// the optimizer keeps it) at every length 0..67 and several offsets:
// every set computes each step as Go does, in float64 with every product
// rounded, so p, m and v must be Go's, NaNs where Go has NaNs.
func TestAdamWWild(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(15, 15))}
	step := NewAdamWStep(1e-3, 0.9, 0.999, 1e-8, 0.01, 3)
	for _, k := range All()[1:] {
		for n := 0; n <= 67; n++ {
			for _, off := range []int{0, 1, 3} {
				in := make([][]float32, 4) // p, g, m, v
				for i := range in {
					in[i] = append(make([]float32, off), g.wild(n)...)[off:]
				}
				for i, v := range in[3] {
					in[3][i] = abs32(v)
				}
				run := func(k *Kernels) [][]float32 {
					cp := make([][]float32, 4)
					for i := range in {
						cp[i] = append(make([]float32, off), in[i]...)[off:]
					}
					k.AdamW(cp[0], cp[1], cp[2], cp[3], &step)
					return cp
				}
				want, got := run(Go), run(k)
				for o, name := range map[int]string{0: "p", 2: "m", 3: "v"} {
					for i := range want[o] {
						if !sameFloat(got[o][i], want[o][i]) {
							t.Fatalf("AdamW (%s) n=%d off=%d: %s[%d] = %v, Go gives %v (p, g, m, v = %v, %v, %v, %v)", k.Name, n, off,
								name, i, got[o][i], want[o][i], in[0][i], in[1][i], in[2][i], in[3][i])
						}
					}
				}
			}
		}
	}
}
