package conformance

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/refops"
)

// Cases of GELU's tanh approximation (backend.GELUTanh, Gemma's
// activation) beyond the shapes every unary op gets (cases_elementwise.go):
// every length up to 17 and a few past multiples of 8, 16 and 32, so that
// each remainder a vectorised kernel handles separately is met; the left
// tail, where 0.5·x·(1 + tanh z) cancels; and saturation out to the
// largest float, where x³ and x·y′ overflow in float32.

// geluTanhLengths are the tails' lengths: 1 to 17, then around 24, 32,
// 48 and 64.
var geluTanhLengths = []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
	23, 25, 31, 33, 47, 49, 63, 65, 67}

// geluTanhExtremes are inputs where the function has saturated (both
// signs of each): x itself from 10 on, 0 below −10.6 (x·σ(y) under the
// smallest float). 1.9e19 is where x² leaves the float range.
var geluTanhExtremes = []float64{10, 10.75, 13, 20, 50, 100, 1e3, 1e4, 1e10, 1.9e19, 1e20, 1e30, 3e38, math.MaxFloat32}

func init() {
	// Tails, forward and backward (the backward in place every other
	// length), inputs over the range where the function bends.
	for _, grad := range []bool{false, true} {
		op, name := backend.OpUnary, "unary/gelu_tanh/tails"
		if grad {
			op, name = backend.OpUnaryGrad, "unary_grad/gelu_tanh/tails"
		}
		Register(Case{
			Name: name,
			Op:   op,
			Run: func(e *Env) {
				for k, n := range geluTanhLengths {
					x := e.Uniform(n, -6, 6)
					ref := make([]float64, n)
					if !grad {
						src := e.Input(x, n)
						o := e.Output(n).SetName(fmt.Sprintf("out[%d]", n))
						e.B.Unary(backend.GELUTanh, o.T, src)
						for i, v := range x {
							ref[i] = refops.Unary(backend.GELUTanh, float64(v))
						}
						e.Check(o, ref)
						continue
					}
					dyv := e.Uniform(n, -1, 1)
					xt := e.Input(x, n)
					dy, o := e.inOut(dyv, k%2 == 1, n)
					o.SetName(fmt.Sprintf("dx[%d]", n))
					e.B.UnaryGrad(backend.GELUTanh, o.T, xt, dy)
					for i, v := range x {
						ref[i] = float64(dyv[i]) * refops.UnaryDeriv(backend.GELUTanh, float64(v))
					}
					e.Check(o, ref)
				}
			},
		})
	}

	// The left tail: x in [−6, −2], where the function falls from −0.045
	// to −1e−13 and a float evaluation of 0.5·x·(1 + tanh z) loses most
	// of its digits to the cancellation of 1 + tanh z (the NMSE, led by
	// the largest outputs, sees that at x near −2 already).
	Register(Case{
		Name: "unary/gelu_tanh/left_tail/3x129",
		Op:   backend.OpUnary,
		Run: func(e *Env) {
			x := e.Uniform(3*129, -6, -2)
			src := e.Input(x, 3, 129)
			o := e.Output(3, 129)
			e.B.Unary(backend.GELUTanh, o.T, src)
			ref := make([]float64, len(x))
			for i, v := range x {
				ref[i] = refops.Unary(backend.GELUTanh, float64(v))
			}
			e.Check(o, ref)
		},
	})
	Register(Case{
		Name: "unary_grad/gelu_tanh/left_tail/3x129",
		Op:   backend.OpUnaryGrad,
		Run: func(e *Env) {
			x, dyv := e.Uniform(3*129, -6, -2), e.Uniform(3*129, -1, 1)
			xt, dy := e.Input(x, 3, 129), e.Input(dyv, 3, 129)
			o := e.Output(3, 129)
			e.B.UnaryGrad(backend.GELUTanh, o.T, xt, dy)
			ref := make([]float64, len(x))
			for i, v := range x {
				ref[i] = float64(dyv[i]) * refops.UnaryDeriv(backend.GELUTanh, float64(v))
			}
			e.Check(o, ref)
		},
	})

	// Saturation: every element finite; GELUTanh(x) within 1e−6 of x and
	// its derivative of 1 from x = 10 on; both below 1e−30 in magnitude
	// (0 or −0, in float) from x = −10.75 down; 0 at 0 with derivative ½.
	// The NMSE against the reference, led by the largest values, is
	// checked too.
	for _, grad := range []bool{false, true} {
		op, name := backend.OpUnary, "unary/gelu_tanh/extremes"
		if grad {
			op, name = backend.OpUnaryGrad, "unary_grad/gelu_tanh/extremes"
		}
		Register(Case{
			Name: name,
			Op:   op,
			Run: func(e *Env) {
				x := []float32{0}
				for _, v := range geluTanhExtremes {
					x = append(x, float32(v), float32(-v))
				}
				n := len(x)               // 29: a full vector of 16 lanes and a tail
				dyv := make([]float32, n) // unused by the forward
				o := e.Output(n)
				if grad {
					dyv = e.AwayFromZero(n, 0.5, 1)
					e.B.UnaryGrad(backend.GELUTanh, o.T, e.Input(x, n), e.Input(dyv, n))
				} else {
					e.B.Unary(backend.GELUTanh, o.T, e.Input(x, n))
				}
				got := e.Values(o)
				for i, v := range x {
					xv, g, dy := float64(v), float64(got[i]), float64(dyv[i])
					var ok bool
					switch {
					case math.IsNaN(g) || math.IsInf(g, 0):
						ok = false
					case xv == 0 && grad:
						ok = math.Abs(g-0.5*dy) <= 1e-6*math.Abs(dy)
					case xv == 0:
						ok = g == 0
					case xv > 0 && grad:
						ok = math.Abs(g-dy) <= 1e-6*math.Abs(dy)
					case xv > 0:
						ok = math.Abs(g-xv) <= 1e-6*xv
					default:
						ok = math.Abs(g) <= 1e-30
					}
					if !ok {
						want := "x"
						switch {
						case xv == 0 && grad:
							want = "dy/2"
						case xv == 0:
							want = "0"
						case xv > 0 && grad:
							want = "dy"
						case xv < 0:
							want = "0"
						}
						e.Errorf("%s: element %d, x = %g (dy %g): got %g, want %s", o.Name(), i, xv, dy, g, want)
					}
				}
				ref := make([]float64, n)
				for i, v := range x {
					if grad {
						ref[i] = float64(dyv[i]) * refops.UnaryDeriv(backend.GELUTanh, float64(v))
					} else {
						ref[i] = refops.Unary(backend.GELUTanh, float64(v))
					}
				}
				e.Check(o, ref)
			},
		})
	}
}
