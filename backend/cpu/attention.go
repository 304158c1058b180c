package cpu

import "github.com/sora-go/sora/backend"

// Attention records an error: this backend lacks the optional fused
// attention ([backend.OpAttention]; Supports reports false), and package
// graph composes attention from MatMul and Softmax on it instead.
func (b *Backend) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	b.Record(backend.Unsupported(backend.OpAttention, b.Name(), out, lse, q, k, v))
}

// AttentionGrad records an error, as Attention does.
func (b *Backend) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	b.Record(backend.Unsupported(backend.OpAttentionGrad, b.Name(), dq, dk, dv, q, k, v, out, lse, dout))
}
