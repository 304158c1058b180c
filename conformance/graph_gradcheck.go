package conformance

import (
	"github.com/sora-go/sora/graph/gradcheck"
)

// Gradient cases: every op of package graph checked against the derivative
// of a float64 reference of its forward ("grad/op/…"), and whole small
// graphs (an MLP, attention blocks with RoPE and grouped-query heads, an
// RMSNorm + SwiGLU block, a SORA layer, an embedding + LayerNorm
// regression) against central finite differences run on the backend
// ("grad/graph/…"). The machinery and the cases live in graph/gradcheck,
// whose own tests show that each planted fault in a backward kernel (a
// wrong sign, a dropped term or factor, an overwrite instead of an
// accumulation) fails the cases that use it.
//
// These cases use many ops each and judge gradients with gradcheck's own
// tolerances (normwise relative errors, see gradcheck.RefTol and FDTol),
// not the NMSE table: a case's Op is the kernel it most likely points at,
// and its Needs are exactly the ops it calls (gradcheck.OpsUsed), so a
// backend without one of them skips it.

func init() {
	for _, c := range append(gradcheck.OpCases(), gradcheck.GraphCases()...) {
		registerGradCase(c)
	}
}

func registerGradCase(c gradcheck.Case) {
	Register(Case{
		Name:  c.Name,
		Op:    c.Op,
		Needs: gradcheck.OpsUsed(c),
		Run: func(e *Env) {
			r, err := gradcheck.Check(e.B, c, gradcheck.Options{Seed: e.Rand.Uint64()})
			if err != nil {
				e.Fatalf("%v", err)
			}
			if !r.Passed() {
				e.Errorf("gradient check against %s failed: %s", r.Method, r.Detail())
				return
			}
			e.Logf("%s: %s", r.Method, r.Detail())
		},
	})
}
