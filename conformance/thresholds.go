package conformance

import "github.com/sora-go/sora/backend"

// thresholds is the one table of NMSE limits, by op (and, for the few
// variants that need their own limit, by op_variant). A case checks an
// output against its op's entry unless it names another key.
//
// How the numbers are chosen: a relative error of 1e-3 on every element of
// an output gives an NMSE of exactly 1e-6, so every limit is at most 1e-7
// (ggml's default), ten times tighter, and a backend that is consistently
// wrong in the third digit fails. Float32 rounding must pass with a wide
// margin: one rounding per element gives at most (2⁻²⁴)² ≈ 3.6e-15, a few
// ulps of a float32 transcendental about 1e-13, and sums grow the error
// with their length, so reductions, norms and matmul get more room, large
// inner dimensions the most. Exact data movement gets 0: the bits must
// match.
//
// The limits are not fitted to one backend. The CPU backend, which
// accumulates in float64 and rounds once, stays at or below 3e-15 on
// every entry except matmul (6e-14), matmul_large_k (3e-13) and
// adamw_update (3e-11, the float32 rounding of the parameter itself
// against a small step), over 20 seeds on both its SIMD and portable
// paths. A float32 kernel that accumulates naively in float32 over 4096
// elements still lands near 1e-11. A new backend (a GPU's TF32 or HF32
// matmul, say) that needs a looser limit gets an entry of its own here,
// with its reason.
var thresholds = map[string]float64{
	// Exact data movement: upload/download round trips, Fill, Copy, Gather.
	"transfer":                   0,
	string(backend.OpFill):       0,
	string(backend.OpCopy):       0,
	string(backend.OpGather):     0,
	"copy_accumulate":            1e-12,
	string(backend.OpScale):      1e-12,
	string(backend.OpAxpy):       1e-12,
	string(backend.OpBinary):     1e-12,
	string(backend.OpScatterAdd): 1e-12,

	// Element-wise functions: float32 transcendental kernels are allowed a
	// few ulps.
	string(backend.OpUnary):     1e-10,
	string(backend.OpUnaryGrad): 1e-10,

	// Reductions and sums along rows or columns of up to 4096 elements.
	string(backend.OpReduceRows): 1e-9,
	string(backend.OpSumColumns): 1e-9,

	// Matrix products; "large_k" is for inner dimensions in the thousands.
	// A bfloat16 B is compared with the product of the values it holds
	// (rounded on upload), so its products get the float32 limits.
	string(backend.OpMatMul):     1e-9,
	string(backend.OpMatMulBF16): 1e-9,
	"matmul_large_k":             1e-8,

	// Row-wise normalisations and their backwards (which subtract
	// correlated terms and so lose a few more bits).
	string(backend.OpSoftmax):       1e-9,
	string(backend.OpSoftmaxGrad):   1e-9,
	string(backend.OpRMSNorm):       1e-10,
	string(backend.OpRMSNormGrad):   1e-9,
	string(backend.OpLayerNorm):     1e-9,
	string(backend.OpLayerNormGrad): 1e-9,

	// Fused attention: a softmax between two products over head sizes
	// and sequences of up to 130; its backward subtracts Σ dout⊙out, as
	// softmax's does. The limits are those of Softmax and MatMul. The CPU
	// backend's portable path and a plain float32 host implementation
	// (broken_attention_test.go) stay at or below 4e-13 over 100 seeds,
	// and at 3e-11 on the cases of scores in the hundreds, whose dq and
	// dk are measured against the size of their terms (Env.checkTerms).
	string(backend.OpAttention):     1e-9,
	string(backend.OpAttentionGrad): 1e-9,

	// RoPE: float32 angles pos·θ^(−2i/d) lose about pos·2⁻²⁴ radians.
	string(backend.OpRoPE): 1e-8,

	// Losses: the loss is logsumexp − logit, which can cancel.
	string(backend.OpCrossEntropy):     1e-9,
	string(backend.OpCrossEntropyGrad): 1e-9,

	// AdamW: "adamw" is for the moments and the parameter itself;
	// "adamw_update" is for the change of the parameter in one step,
	// which is small next to the parameter and so needs its own check.
	string(backend.OpAdamW): 1e-10,
	"adamw_update":          1e-8,
}

// Threshold returns the NMSE limit registered under key in the threshold
// table. It panics for an unknown key: a case naming a missing entry is a
// programming error.
func Threshold(key string) float64 {
	t, ok := thresholds[key]
	if !ok {
		panic("conformance: no threshold for " + key)
	}
	return t
}
