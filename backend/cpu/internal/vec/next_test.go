package vec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// nextCase is one of the Next forms: run calls it on the slices of in
// (outputs first) and returns its statistics; twoPass does the same with
// the set's row step and statistics kernel, one after the other.
type nextCase struct {
	name    string
	outs    int // leading slices of in that the kernel writes
	ins     int
	run     func(k *Kernels, in [][]float32, next [][]float32) []float64
	twoPass func(k *Kernels, in [][]float32, next [][]float32) []float64
	has     func(k *Kernels) bool // whether k has the form; nil for every set
}

var nextCases = []nextCase{
	{"ScaleMulNext", 1, 3,
		func(k *Kernels, in, nx [][]float32) []float64 {
			return []float64{k.ScaleMulNext(in[0], in[1], in[2], 0.7, nx[0])}
		},
		func(k *Kernels, in, nx [][]float32) []float64 {
			k.ScaleMul(in[0], in[1], in[2], 0.7)
			return []float64{k.SumSquares(nx[0])}
		}, nil},
	{"NormalizeNext", 1, 3,
		func(k *Kernels, in, nx [][]float32) []float64 {
			sd, ssd := k.NormalizeNext(in[0], in[1], in[2], nil, 0.1, 1.3, nx[0], 0.25)
			return []float64{sd, ssd}
		},
		func(k *Kernels, in, nx [][]float32) []float64 {
			k.Normalize(in[0], in[1], in[2], nil, 0.1, 1.3)
			sd, ssd := k.SumsAbout(nx[0], 0.25)
			return []float64{sd, ssd}
		}, nil},
	{"NormalizeNextShift", 1, 4,
		func(k *Kernels, in, nx [][]float32) []float64 {
			sd, ssd := k.NormalizeNext(in[0], in[1], in[2], in[3], 0.1, 1.3, nx[0], -0.5)
			return []float64{sd, ssd}
		},
		func(k *Kernels, in, nx [][]float32) []float64 {
			k.Normalize(in[0], in[1], in[2], in[3], 0.1, 1.3)
			sd, ssd := k.SumsAbout(nx[0], -0.5)
			return []float64{sd, ssd}
		}, nil},
	softmaxGradNextCase(false),
	softmaxGradNextCase(true),
	// The norm gradients. in: dx and the accumulators (written), then
	// x, w, dy; next: x and dy.
	{"RMSNormGradNext", 1, 4,
		func(k *Kernels, in, nx [][]float32) []float64 {
			ss, dot := k.RMSNormGradNext(in[0], in[1], in[2], in[3], 1.3, -0.2, nx[0], nx[1])
			k.Fence()
			return []float64{ss, dot}
		},
		func(k *Kernels, in, nx [][]float32) []float64 {
			k.RMSNormGrad(in[0], in[1], in[2], in[3], 1.3, -0.2)
			k.Fence()
			ss, dot := k.SumSquaresDot3(nx[0], in[2], nx[1])
			return []float64{ss, dot}
		}, nil},
	{"RMSNormGradAccNext", 2, 5,
		func(k *Kernels, in, nx [][]float32) []float64 {
			ss, dot := k.RMSNormGradAccNext(in[0], in[2], in[3], in[4], in[1], 1.3, -0.2, nx[0], nx[1])
			k.Fence()
			return []float64{ss, dot}
		},
		func(k *Kernels, in, nx [][]float32) []float64 {
			k.RMSNormGradAcc(in[0], in[2], in[3], in[4], in[1], 1.3, -0.2)
			k.Fence()
			ss, dot := k.SumSquaresDot3(nx[0], in[3], nx[1])
			return []float64{ss, dot}
		}, nil},
	{"LayerNormGradNext", 1, 4,
		func(k *Kernels, in, nx [][]float32) []float64 {
			sd, ssd, sg, sgd := k.LayerNormGradNext(in[0], in[1], in[2], in[3], 0.1, 1.3, -0.2, 0.4, nx[0], nx[1], 0.25)
			k.Fence()
			return []float64{sd, ssd, sg, sgd}
		},
		func(k *Kernels, in, nx [][]float32) []float64 {
			k.LayerNormGrad(in[0], in[1], in[2], in[3], 0.1, 1.3, -0.2, 0.4)
			k.Fence()
			sd, ssd, sg, sgd := k.LayerNormGradStats(nx[0], in[2], nx[1], 0.25)
			return []float64{sd, ssd, sg, sgd}
		}, nil},
	{"LayerNormGradAccNext", 3, 6,
		func(k *Kernels, in, nx [][]float32) []float64 {
			sd, ssd, sg, sgd := k.LayerNormGradAccNext(in[0], in[3], in[4], in[5], in[1], 0.1, 1.3, -0.2, 0.4,
				nx[0], nx[1], in[2], 0.25)
			k.Fence()
			return []float64{sd, ssd, sg, sgd}
		},
		func(k *Kernels, in, nx [][]float32) []float64 {
			k.LayerNormGradAcc(in[0], in[3], in[4], in[5], in[1], nil, 0.1, 1.3, -0.2, 0.4)
			k.Fence()
			if len(nx[0]) == 0 {
				return []float64{0, 0, 0, 0}
			}
			sd, ssd, sg, sgd := k.LayerNormGradStatsAcc(nx[0], in[4], nx[1], in[2], 0.25)
			return []float64{sd, ssd, sg, sgd}
		},
		func(k *Kernels) bool { return k.LayerNormGradAccNext != nil }},
	softmaxStepCase(1, "middle", func(n int) int { return n/2 - 1 }), // -1 (none) for 0 or 1 element
	softmaxStepCase(1, "last", func(n int) int { return n - 1 }),     // the tail vector's, where n%16 ≠ 0
	softmaxStepCase(0.37, "first", func(int) int { return 0 }),
	softmaxStepCase(0.37, "none", func(int) int { return -1 }),
	// Not fused: the maximum of scale·next is not scale·max.
	softmaxStepCase(-0.5, "middle", func(n int) int { return n/2 - 1 }),
}

// softmaxGradNextCase is SoftmaxGradNext (in: dx, y and, out of place,
// dy; next: y and dy) against SoftmaxGrad and Dot; in place dx is dy, as
// the CPU backend's tape calls it.
func softmaxGradNextCase(inPlace bool) nextCase {
	name, ins := "SoftmaxGradNext", 3
	dy := func(in [][]float32) []float32 { return in[2] }
	if inPlace {
		name, ins = "SoftmaxGradNext in place", 2
		dy = func(in [][]float32) []float32 { return in[0] }
	}
	return nextCase{name, 1, ins,
		func(k *Kernels, in, nx [][]float32) []float64 {
			dot := k.SoftmaxGradNext(in[0], in[1], dy(in), 0.7, -0.3, nx[0], nx[1])
			k.Fence()
			return []float64{dot}
		},
		func(k *Kernels, in, nx [][]float32) []float64 {
			k.SoftmaxGrad(in[0], in[1], dy(in), 0.7, -0.3)
			k.Fence()
			return []float64{k.Dot(nx[0], nx[1])}
		}, nil}
}

// softmaxStepCase is SoftmaxStep (writing the exponentials to in[0] and
// the previous row's output to in[1] from in[3]; x is in[2]) against
// ExpShift, MaxScaled and ScaleTo, with out[hole] = 42 at hole(n) (−1
// for none) where the row holds it. Where next holds a NaN the maximum
// may be NaN or the largest of some of the others, −Inf if none (either
// kernel's choice), and is not compared.
func softmaxStepCase(scale float32, where string, holeAt func(n int) int) nextCase {
	const shift, c = 0.75, 0.3
	maxStat := func(m float32, next []float32) float64 {
		if slices.ContainsFunc(next, func(v float32) bool { return v != v }) {
			return math.NaN()
		}
		return float64(m)
	}
	hole := func(n int) int {
		if h := holeAt(n); h < n {
			return h
		}
		return -1
	}
	return nextCase{fmt.Sprintf("SoftmaxStep(scale %v, hole %s)", scale, where), 2, 4,
		func(k *Kernels, in, nx [][]float32) []float64 {
			hole := hole(len(in[0]))
			sum, m := k.SoftmaxStep(in[0], in[2], nx[0], in[3], in[1], scale, shift, c, hole, 42)
			k.Fence()
			return []float64{sum, maxStat(m, nx[0])}
		},
		func(k *Kernels, in, nx [][]float32) []float64 {
			sum := k.ExpShift(in[0], in[2], scale, shift)
			m := float32(math.Inf(-1))
			if len(nx[0]) > 0 {
				m = k.MaxScaled(nx[0], scale)
			}
			k.ScaleTo(in[1], in[3], c)
			k.Fence()
			if hole := hole(len(in[0])); hole >= 0 {
				in[1][hole] = 42
			}
			return []float64{sum, maxStat(m, nx[0])}
		}, nil}
}

// TestNextFormsAreTheTwoPasses checks every Next form of every set (and
// its streaming twin) against the same set's row step followed by its
// statistics kernel: the outputs and the statistics must agree bit for
// bit, which is what lets the CPU backend take a row's statistics from
// either. It runs every length of lengths() at several offsets of the
// output, over ordinary values and over wild ones (NaN, infinities,
// subnormals), and with an empty next row.
func TestNextFormsAreTheTwoPasses(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	g := gen{rng}
	sets := withTwins(All())
	sameStat := func(a, b float64) bool { return a == b || a != a && b != b }
	for _, c := range nextCases {
		for _, k := range sets {
			if c.has != nil && !c.has(k) {
				continue
			}
			for _, wild := range []bool{false, true} {
				for _, n := range lengths() {
					for _, off := range []int{0, 3, 16} {
						draw := func() []float32 {
							if wild {
								return g.wild(n + off)[off:]
							}
							return g.uniform(n+off, -2, 2)[off:]
						}
						in := make([][]float32, c.ins)
						for i := range in {
							in[i] = draw()
						}
						nx := [][]float32{draw(), draw()}
						if n > 0 && rng.IntN(8) == 0 {
							nx = [][]float32{{}, {}}
						}
						in2 := make([][]float32, len(in))
						for i := range in {
							in2[i] = slices.Clone(in[i])
							if off == 16 && i < c.outs {
								// 64-byte aligned, for the streaming kernels.
								in2[i] = aligned64(in[i])
							}
						}
						got := c.run(k, in2, nx)
						want := c.twoPass(k, in, nx)
						where := fmt.Sprintf("%s/%s wild=%v n=%d off=%d", c.name, k.Name, wild, n, off)
						for i := range want {
							if !sameStat(got[i], want[i]) {
								t.Fatalf("%s: statistic %d = %v, the two passes give %v", where, i, got[i], want[i])
							}
						}
						for o := range c.outs {
							for j := range in[o] {
								if a, b := in2[o][j], in[o][j]; !sameFloat(a, b) {
									t.Fatalf("%s: output %d[%d] = %v, the two passes give %v", where, o, j, a, b)
								}
							}
						}
					}
				}
			}
		}
	}
}

// aligned64 returns a copy of x that starts on a 64-byte boundary.
func aligned64(x []float32) []float32 {
	buf := make([]float32, len(x)+16)
	a := (16 - int(uintptr(unsafe.Pointer(unsafe.SliceData(buf)))%64/4)) % 16
	return append(buf[a:a], x...)
}
