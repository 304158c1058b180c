package conformance

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/sora-go/sora/backend"
)

// The sticky-error contract of package backend: an invalid call records an
// error instead of panicking or returning one; Sync (and Download) return
// the first recorded error and clear it; ops after a recorded error are
// skipped; the backend works normally after the error has been taken.

// expectOpError checks that err is an *backend.OpError for op.
func expectOpError(e *Env, what string, err error, op backend.Op) {
	if err == nil {
		e.Fatalf("%s: got nil, want an error recorded by the invalid %s call", what, op)
	}
	var oe *backend.OpError
	if !errors.As(err, &oe) {
		e.Errorf("%s: error %q is a %T, want a *backend.OpError (backends validate with the shared Check functions)", what, err, err)
		return
	}
	if oe.Op != string(op) {
		e.Errorf("%s: error %q names op %q, want %q (the first invalid call)", what, err, oe.Op, op)
	}
}

// expectCleared checks that the error was taken: Sync now returns nil.
func expectCleared(e *Env) {
	if err := e.B.Sync(); err != nil {
		e.Fatalf("second Sync returned %v; the first Sync must clear the error", err)
	}
}

// expectUntouched checks that a refused call (named what) left the
// poisoned output o as it was: NaN, guards intact.
func expectUntouched(e *Env, o *Out, what string) {
	full := e.download(o.full, o.name)
	e.checkGuards(&o.guarded, full)
	for i, p := range o.index {
		if !math.IsNaN(float64(full[p])) {
			e.Errorf("%s: element %d of the poisoned output became %g; a refused call must not write", what, i, full[p])
			return
		}
	}
}

// afterwards checks that the backend still computes correctly.
func afterwards(e *Env) {
	x := e.Uniform(13, -1, 1)
	src := e.Input(x, 13)
	o := e.Output(13).SetName("valid op after the error")
	e.B.Scale(o.T, src, 2)
	ref := make([]float64, len(x))
	for i, v := range x {
		ref[i] = 2 * float64(v)
	}
	e.CheckTol(string(backend.OpScale), o, ref)
}

// scratch is an input of the shape with values in [-1, 1].
func scratch(e *Env, shape ...int) backend.Tensor {
	return e.Input(e.Uniform(backend.Shape(shape).NumElements(), -1, 1), shape...)
}

// rejects registers the case sticky/name: call makes one invalid call of
// op (what describes it), after which Sync must return that call's
// *backend.OpError, clear it, and leave the backend working.
func rejects(name string, op backend.Op, what string, call func(e *Env)) {
	Register(Case{
		Name:  "sticky/" + name,
		Op:    op,
		Needs: []backend.Op{backend.OpScale},
		Run: func(e *Env) {
			call(e)
			expectOpError(e, "Sync after "+what, e.B.Sync(), op)
			expectCleared(e)
			afterwards(e)
		},
	})
}

func init() {
	rejects("binary_shape_mismatch", backend.OpBinary, "Binary of [7,13] and [13,7]", func(e *Env) {
		e.B.Binary(backend.Add, e.Output(7, 13).T, scratch(e, 7, 13), scratch(e, 13, 7))
	})
	rejects("matmul_inner_mismatch", backend.OpMatMul, "MatMul of [3,5]·[4,7]", func(e *Env) {
		e.B.MatMul(e.Output(3, 7).T, scratch(e, 3, 5), scratch(e, 4, 7), backend.MatMulParams{Alpha: 1})
	})
	rejects("gather_id_out_of_range", backend.OpGather, "Gather of id 5 from a table of 5 rows", func(e *Env) {
		e.B.Gather(e.Output(2, 3).T, scratch(e, 5, 3), []int32{1, 5})
	})
	rejects("cross_entropy_target_out_of_range", backend.OpCrossEntropy, "CrossEntropy with target -1", func(e *Env) {
		e.B.CrossEntropy(e.Output(2).T, scratch(e, 2, 7), []int32{3, -1}, backend.CrossEntropyParams{IgnoreIndex: -100})
	})
	// AdamW's bias correction divides by 1−β^step: step 0 or β = 1 must be
	// refused, not turned into NaN weights.
	for _, c := range []struct {
		name string
		p    backend.AdamWParams
	}{
		{"adamw_step_zero", backend.AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}},
		{"adamw_beta_one", backend.AdamWParams{LR: 1e-3, Beta1: 1, Beta2: 0.999, Eps: 1e-8, Step: 1}},
	} {
		rejects(c.name, backend.OpAdamW, fmt.Sprintf("AdamW with %+v", c.p), func(e *Env) {
			e.B.AdamW(scratch(e, 9), scratch(e, 9), scratch(e, 9), scratch(e, 9), c.p)
		})
	}
	// A sliding window is a narrowed causal mask and must leave every
	// query a key: backends refuse the rest alike (CheckSoftmax).
	for _, c := range []struct {
		name string
		p    backend.SoftmaxParams
	}{
		{"softmax_window_without_causal", backend.SoftmaxParams{Window: 3}},
		{"softmax_window_negative", backend.SoftmaxParams{Causal: true, Window: -1}},
		{"softmax_window_leaves_no_key", backend.SoftmaxParams{Causal: true, QueryOffset: 5, Window: 2}},
	} {
		rejects(c.name, backend.OpSoftmax, fmt.Sprintf("Softmax of [2,3,6] with %+v", c.p), func(e *Env) {
			e.B.Softmax(e.Output(2, 3, 6).T, scratch(e, 2, 3, 6), c.p)
		})
		rejects(strings.Replace(c.name, "softmax", "softmax_grad", 1), backend.OpSoftmaxGrad, fmt.Sprintf("SoftmaxGrad of [2,3,6] with %+v", c.p), func(e *Env) {
			e.B.SoftmaxGrad(e.Output(2, 3, 6).T, scratch(e, 2, 3, 6), scratch(e, 2, 3, 6), c.p)
		})
	}
	Register(Case{
		Name:  "sticky/first_error_wins",
		Op:    backend.OpMatMul,
		Needs: []backend.Op{backend.OpBinary, backend.OpScale},
		Run: func(e *Env) {
			a, b := scratch(e, 3, 5), scratch(e, 4, 7)
			o := e.Output(3, 7)
			e.B.MatMul(o.T, a, b, backend.MatMulParams{Alpha: 1})
			e.B.Binary(backend.Add, o.T, a, b)
			expectOpError(e, "Sync after an invalid MatMul then an invalid Binary", e.B.Sync(), backend.OpMatMul)
			expectCleared(e)
			afterwards(e)
		},
	})
	Register(Case{
		Name:  "sticky/later_ops_skipped",
		Op:    backend.OpSoftmax,
		Needs: []backend.Op{backend.OpFill, backend.OpScale},
		Run: func(e *Env) {
			x := e.Uniform(13, -1, 1)
			o := e.OutputInit(x, 13)
			bad := e.Output(4, 13)
			e.B.Softmax(bad.T, scratch(e, 13, 4), backend.SoftmaxParams{})
			e.B.Fill(o.T, 3) // must not run: an error is pending
			expectOpError(e, "Sync after Softmax of [13,4] into [4,13]", e.B.Sync(), backend.OpSoftmax)
			expectCleared(e)
			e.CheckTol("transfer", o.SetName("tensor filled after the error"), F64(x))
			e.B.Fill(o.T, 3)
			ref := make([]float64, 13)
			for i := range ref {
				ref[i] = 3
			}
			e.CheckTol(string(backend.OpFill), o.SetName("tensor filled after Sync"), ref)
			afterwards(e)
		},
	})
	Register(Case{
		Name:  "sticky/download_returns_error",
		Op:    backend.OpRMSNorm,
		Needs: []backend.Op{backend.OpScale},
		Run: func(e *Env) {
			x, w := scratch(e, 7, 13), scratch(e, 7)
			o := e.Output(7, 13)
			e.B.RMSNorm(o.T, x, w, 1e-5)
			host := make([]float32, 7*13)
			expectOpError(e, "Download after RMSNorm with a weight of the wrong length", e.B.Download(host, x), backend.OpRMSNorm)
			expectCleared(e)
			afterwards(e)
		},
	})
	Register(Case{
		Name:  "sticky/upload_length_mismatch",
		Needs: []backend.Op{backend.OpScale},
		Run: func(e *Env) {
			o := e.Output(7)
			e.B.Upload(o.T, make([]float32, 8))
			err := e.B.Sync()
			if err == nil {
				e.Fatalf("Sync after uploading 8 values into a tensor of 7: got nil, want an error")
			}
			if !strings.Contains(strings.ToLower(err.Error()), "upload") {
				e.Errorf("Sync after a bad Upload: error %q does not name Upload", err)
			}
			expectCleared(e)
			afterwards(e)
		},
	})
}
