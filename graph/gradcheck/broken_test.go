package gradcheck_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
)

// The gradient checks must be able to fail. Each backend here wraps the CPU
// backend and plants one fault in a backward kernel, of the kinds a new
// backend gets wrong: a wrong sign, a dropped term, a dropped factor, an
// overwrite instead of an accumulation. Exactly the whole-graph cases that
// use the broken kernel must fail, and so must the op case of that kernel,
// while the CPU backend itself passes everything.

func mustAlloc(b backend.Backend, shape ...int) backend.Tensor {
	t, err := b.Alloc(backend.Float32, shape...)
	if err != nil {
		panic(err)
	}
	return t
}

// signSiLUGrad returns −dy⊙silu'(x): a wrong sign.
type signSiLUGrad struct{ backend.Backend }

func (b signSiLUGrad) UnaryGrad(op backend.UnaryOp, dx, x, dy backend.Tensor) {
	b.Backend.UnaryGrad(op, dx, x, dy)
	if op == backend.SiLU {
		b.Backend.Scale(dx, dx, -1)
	}
}

// ropeNoInverse ignores Inverse: the backward rotates the wrong way.
type ropeNoInverse struct{ backend.Backend }

func (b ropeNoInverse) RoPE(dst, src backend.Tensor, p backend.RoPEParams) {
	p.Inverse = false
	b.Backend.RoPE(dst, src, p)
}

// rmsNormGradNoMeanTerm computes dx = dy⊙w/rms(x), dropping the term that
// comes from differentiating rms(x) itself.
type rmsNormGradNoMeanTerm struct{ backend.Backend }

func (b rmsNormGradNoMeanTerm) RMSNormGrad(dx, dw, x, w, dy backend.Tensor, eps float32) {
	rows, cols := x.Rows()
	tmp := mustAlloc(b.Backend, rows, cols) // keeps dw's update right
	defer b.Backend.Free(tmp)
	b.Backend.RMSNormGrad(tmp, dw, x, w, dy, eps)
	r := mustAlloc(b.Backend, rows, 1)
	defer b.Backend.Free(r)
	b.Backend.ReduceRows(backend.SumSquares, r, x.MustReshape(rows, cols))
	b.Backend.Scale(r, r, 1/float32(cols))
	epsT := mustAlloc(b.Backend, 1)
	defer b.Backend.Free(epsT)
	b.Backend.Fill(epsT, eps)
	b.Backend.Binary(backend.Add, r, r, epsT)
	b.Backend.Unary(backend.Rsqrt, r, r)
	d2 := dx.MustReshape(rows, cols)
	b.Backend.Binary(backend.Mul, d2, dy.MustReshape(rows, cols), w.MustReshape(cols))
	b.Backend.Binary(backend.Mul, d2, d2, r)
}

// softmaxGradNoScale ignores the softmax scale in the backward: a dropped
// factor.
type softmaxGradNoScale struct{ backend.Backend }

func (b softmaxGradNoScale) SoftmaxGrad(dx, y, dy backend.Tensor, p backend.SoftmaxParams) {
	p.Scale = 1
	b.Backend.SoftmaxGrad(dx, y, dy, p)
}

// scatterOverwrites writes dtable[ids[i]] = dy[i] instead of adding: repeated
// ids and earlier contents are lost.
type scatterOverwrites struct{ backend.Backend }

func (b scatterOverwrites) ScatterAdd(dtable, dy backend.Tensor, ids []int32) {
	dim := dtable.Dim(1)
	for i, id := range ids {
		row := dtable.MustSlice(int(id), int(id)+1).MustReshape(dim)
		b.Backend.Copy(row, dy.MustReshape(len(ids), dim).MustSlice(i, i+1).MustReshape(dim), false)
	}
}

// matmulNoBeta ignores beta: a product meant to accumulate into a gradient
// overwrites it, dropping the earlier contributions.
type matmulNoBeta struct{ backend.Backend }

func (b matmulNoBeta) MatMul(c, a, x backend.Tensor, p backend.MatMulParams) {
	p.Beta = 0
	b.Backend.MatMul(c, a, x, p)
}

// attentionGradNoCap's AttentionGrad leaves out the soft-cap's
// derivative (its forward still caps).
type attentionGradNoCap struct{ backend.Backend }

func (b attentionGradNoCap) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	// Uncapped scores for the probabilities too, so the backward is that
	// of a different forward.
	p.Softcap = 0
	b.Backend.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
}

func TestBrokenBackwardsAreCaught(t *testing.T) {
	t.Setenv(graph.AttentionEnv, "") // the fused case must run fused
	cpu := openCPU(t)
	tests := []struct {
		name string
		b    backend.Backend
		// graphs lists every whole-graph case that must fail (the others
		// must pass); op names an op case prefix that must fail too, if
		// not empty.
		graphs []string
		op     string
	}{
		{"wrong sign in silu backward", signSiLUGrad{cpu},
			[]string{"rmsnorm_swiglu", "checkpointed_blocks"}, "grad/op/silu"},
		{"rope backward rotates forward", ropeNoInverse{cpu},
			[]string{"attention_rope_gqa", "attention_rope_interleaved", "fused_attention_gqa_window_softcap"}, "grad/op/rope/"},
		{"fused attention backward without the cap", attentionGradNoCap{cpu},
			[]string{"fused_attention_gqa_window_softcap"}, ""},
		{"rmsnorm backward drops a term", rmsNormGradNoMeanTerm{cpu},
			[]string{"rmsnorm_swiglu", "checkpointed_blocks"}, "grad/op/rmsnorm"},
		{"softmax backward drops the scale", softmaxGradNoScale{cpu},
			[]string{"attention_rope_gqa", "attention_rope_interleaved"}, "grad/op/softmax/scaled"},
		{"scatter-add overwrites", scatterOverwrites{cpu},
			[]string{"embedding_layernorm_mse"}, "grad/op/gather"},
		{"matmul ignores beta", matmulNoBeta{cpu},
			// Every case with a weight in a product: the second step of
			// each check accumulates the weights' gradients with beta 1.
			// Within one step, only where a 2-D value feeds two products
			// directly (rmsnorm_swiglu, sora_layer, checkpointed_blocks):
			// x of the attention blocks is 3-D and reaches its products
			// through reshapes, whose gradients are summed by Axpy.
			[]string{"mlp_cross_entropy", "attention_rope_gqa", "attention_rope_interleaved",
				"fused_attention_gqa_window_softcap", "rmsnorm_swiglu", "sora_layer",
				"embedding_layernorm_mse", "checkpointed_blocks"}, "grad/op/matmul_nt/shared_a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var failed []string
			for _, c := range gradcheck.GraphCases() {
				r, err := gradcheck.Check(tc.b, c, gradcheck.Options{Seed: 3})
				if err != nil {
					t.Fatal(err)
				}
				if !r.Passed() {
					failed = append(failed, strings.TrimPrefix(c.Name, "grad/graph/"))
					t.Log(r)
				}
			}
			want := append([]string(nil), tc.graphs...)
			sort.Strings(want)
			sort.Strings(failed)
			if strings.Join(failed, ",") != strings.Join(want, ",") {
				t.Errorf("failing graph cases %v, want %v", failed, want)
			}
			if tc.op == "" {
				return // no op case of its own
			}
			opFailed := false
			for _, c := range gradcheck.OpCases() {
				if !strings.HasPrefix(c.Name, tc.op) {
					continue
				}
				r, err := gradcheck.Check(tc.b, c, gradcheck.Options{Seed: 3})
				if err != nil {
					t.Fatal(err)
				}
				if !r.Passed() {
					opFailed = true
					t.Log(r)
				}
			}
			if !opFailed {
				t.Errorf("no op case %s* failed", tc.op)
			}
		})
	}
	t.Run("unbroken cpu passes", func(t *testing.T) {
		for _, c := range append(gradcheck.GraphCases(), gradcheck.OpCases()...) {
			r, err := gradcheck.Check(cpu, c, gradcheck.Options{Seed: 3})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Passed() {
				t.Error(r)
			}
		}
	})
}
