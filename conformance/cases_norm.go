package conformance

import (
	"fmt"

	"github.com/sora-go/sora/backend"
)

// normShapes are the shapes every normalisation is checked on; rows of
// one element are included on purpose (LayerNorm's output is then beta).
var normShapes = [][]int{{1, 1}, {7, 13}, {3, 127}, {2, 4096}, {2, 3, 64}, {301, 509}}

// paramGrad is an optional parameter gradient of a norm's backward, which
// adds into it: it starts from random values, or is absent.
type paramGrad struct {
	out  *Out // nil when absent
	init []float32
}

// newParamGrad draws the starting values (also when absent, so that the
// inputs drawn after it do not depend on present) and, when present,
// places them in an output named name.
func newParamGrad(e *Env, present bool, k int, name string) paramGrad {
	init := e.Uniform(k, -1, 1)
	if !present {
		return paramGrad{init: init}
	}
	return paramGrad{e.OutputInit(init, k).SetName(name), init}
}

// tensor is the op's argument: the zero Tensor when absent.
func (p paramGrad) tensor() backend.Tensor {
	if p.out == nil {
		return backend.Tensor{}
	}
	return p.out.T
}

// check compares the gradient with its starting values plus sum, the
// reference's sum over rows (which it modifies).
func (p paramGrad) check(e *Env, sum []float64) {
	if p.out == nil {
		return
	}
	for j := range sum {
		sum[j] += float64(p.init[j])
	}
	e.Check(p.out, sum)
}

func init() {
	const eps = 1e-5
	type nc struct {
		shape []int
		eps   float32
		shift float64 // added to x, giving rows a mean far from 0
		// inPlace writes the output over x (forward only): the row's
		// statistics must be complete before any of it is overwritten.
		inPlace bool
	}
	var fwd []nc
	for _, s := range normShapes {
		fwd = append(fwd, nc{shape: s, eps: eps})
	}
	// A large eps shows whether it is added where the doc says.
	fwd = append(fwd, nc{shape: []int{7, 13}, eps: 0.5})
	// The backwards of rows of one element are ill-conditioned (the
	// input gradient is the difference of two nearly equal terms, about
	// eps/x² of each), so they get rows of two, and one element only with
	// a large eps.
	var bwd []nc
	for _, c := range fwd {
		if c.shape[1] == 1 {
			bwd = append(bwd, nc{shape: []int{1, 2}, eps: eps}, nc{shape: []int{1, 1}, eps: 0.5})
			continue
		}
		bwd = append(bwd, c)
	}
	name := func(op string, c nc, extra string) string {
		s := fmt.Sprintf("%s/%s/eps=%g", op, dims(c.shape...), c.eps)
		if c.shift != 0 {
			s += "/mean=" + fmtF(c.shift)
		}
		if c.inPlace {
			s += "/inplace"
		}
		return s + extra
	}
	cols := func(s []int) int { return s[len(s)-1] }

	// In place: a short row, rows as wide as a model's hidden size (many
	// threads per row on a GPU) and enough rows to be split among workers.
	inPlace := []nc{
		{shape: []int{7, 13}, eps: eps, inPlace: true},
		{shape: []int{2, 4096}, eps: eps, inPlace: true},
		{shape: []int{301, 509}, eps: eps, inPlace: true},
	}
	for _, c := range append(append([]nc(nil), fwd...), inPlace...) {
		c := c
		Register(Case{
			Name: name("rmsnorm", c, ""),
			Op:   backend.OpRMSNorm,
			Run: func(e *Env) {
				n, k := backend.Shape(c.shape).NumElements(), cols(c.shape)
				xv, wv := e.Uniform(n, -1, 1), e.Uniform(k, -1, 1)
				x, o := e.inOut(xv, c.inPlace, c.shape...)
				w := e.Input(wv, k)
				e.B.RMSNorm(o.T, x, w, c.eps)
				e.Check(o, refRMSNorm(xv, wv, k, float64(c.eps)))
			},
		})
	}
	for _, c := range bwd {
		for _, withDW := range []bool{true, false} {
			c, withDW := c, withDW
			if !withDW && c.shape[len(c.shape)-1] != 13 && c.shape[len(c.shape)-1] != 4096 {
				continue
			}
			extra := "/dw"
			if !withDW {
				extra = "/no_dw"
			}
			Register(Case{
				Name: name("rmsnorm_grad", c, extra),
				Op:   backend.OpRMSNormGrad,
				Run: func(e *Env) {
					n, k := backend.Shape(c.shape).NumElements(), cols(c.shape)
					xv, wv, dyv := e.Uniform(n, -1, 1), e.Uniform(k, -1, 1), e.Uniform(n, -1, 1)
					x, w, dy := e.Input(xv, c.shape...), e.Input(wv, k), e.Input(dyv, c.shape...)
					dx := e.Output(c.shape...).SetName("dx")
					dw := newParamGrad(e, withDW, k, "dw")
					e.B.RMSNormGrad(dx.T, dw.tensor(), x, w, dy, c.eps)
					rdx, rdw := refRMSNormGrad(xv, wv, dyv, k, float64(c.eps))
					e.Check(dx, rdx)
					dw.check(e, rdw)
				},
			})
		}
	}

	lnFwd := append(append([]nc(nil), fwd...), nc{shape: []int{7, 13}, eps: eps, shift: 3}, nc{shape: []int{3, 127}, eps: eps, shift: -20})
	lnFwd = append(lnFwd, inPlace...)
	lnFwd = append(lnFwd, nc{shape: []int{3, 127}, eps: eps, shift: -20, inPlace: true})
	for _, c := range lnFwd {
		for _, withBeta := range []bool{true, false} {
			c, withBeta := c, withBeta
			if !withBeta && (c.shape[1] != 13 || c.shift != 0 || c.inPlace) {
				continue
			}
			extra := ""
			if !withBeta {
				extra = "/no_beta"
			}
			Register(Case{
				Name: name("layernorm", c, extra),
				Op:   backend.OpLayerNorm,
				Run: func(e *Env) {
					n, k := backend.Shape(c.shape).NumElements(), cols(c.shape)
					xv := e.Uniform(n, c.shift-1, c.shift+1)
					gv, bv := e.Uniform(k, -1, 1), e.Uniform(k, -1, 1)
					x, o := e.inOut(xv, c.inPlace, c.shape...)
					g := e.Input(gv, k)
					var bt backend.Tensor
					if withBeta {
						bt = e.Input(bv, k)
					} else {
						bv = nil
					}
					e.B.LayerNorm(o.T, x, g, bt, c.eps)
					e.Check(o, refLayerNorm(xv, gv, bv, k, float64(c.eps)))
				},
			})
		}
	}

	type params struct{ gamma, beta bool }
	// LayerNorm maps any row of two to ±1, so the input gradient of a row
	// of two is pure cancellation that float32 statistics (as CANN's
	// LayerNorm returns them) cannot resolve; its short-row case uses three.
	var lnBwd []nc
	for _, c := range bwd {
		if c.shape[1] == 2 && c.eps == eps {
			c.shape = []int{1, 3}
		}
		lnBwd = append(lnBwd, c)
	}
	lnBwd = append(lnBwd, nc{shape: []int{7, 13}, eps: eps, shift: 3}, nc{shape: []int{3, 127}, eps: eps, shift: -20})
	for _, c := range lnBwd {
		for _, pp := range []params{{true, true}, {true, false}, {false, true}, {false, false}} {
			c, pp := c, pp
			if !(pp.gamma && pp.beta) && (c.shape[1] != 13 || c.shift != 0 || c.eps != eps) {
				continue
			}
			extra := "/dgamma,dbeta"
			switch {
			case pp.gamma && !pp.beta:
				extra = "/dgamma"
			case !pp.gamma && pp.beta:
				extra = "/dbeta"
			case !pp.gamma && !pp.beta:
				extra = "/dx_only"
			}
			Register(Case{
				Name: name("layernorm_grad", c, extra),
				Op:   backend.OpLayerNormGrad,
				Run: func(e *Env) {
					n, k := backend.Shape(c.shape).NumElements(), cols(c.shape)
					xv := e.Uniform(n, c.shift-1, c.shift+1)
					gv, dyv := e.Uniform(k, -1, 1), e.Uniform(n, -1, 1)
					x, g, dy := e.Input(xv, c.shape...), e.Input(gv, k), e.Input(dyv, c.shape...)
					dx := e.Output(c.shape...).SetName("dx")
					dg := newParamGrad(e, pp.gamma, k, "dgamma")
					db := newParamGrad(e, pp.beta, k, "dbeta")
					e.B.LayerNormGrad(dx.T, dg.tensor(), db.tensor(), x, g, dy, c.eps)
					rdx, rdg, rdb := refLayerNormGrad(xv, gv, dyv, k, float64(c.eps))
					e.Check(dx, rdx)
					dg.check(e, rdg)
					db.check(e, rdb)
				},
			})
		}
	}
}
