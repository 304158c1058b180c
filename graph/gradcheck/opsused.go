package gradcheck

import (
	"sort"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// OpsUsed returns the backend ops that checking c calls, sorted: the ops
// of its forward and backward and of the check's own reduction. It finds
// them by running the case on a backend that records each call and
// computes nothing, so it needs no device. A suite skips a case whose ops a
// backend does not support.
func OpsUsed(c Case) []backend.Op {
	return opsUsed(c, &recorder{used: map[backend.Op]bool{}})
}

func opsUsed(c Case, r *recorder) []backend.Op {
	g := graph.New(r)
	defer g.Close()
	in := make([]*graph.Value, len(c.Inputs))
	for i, spec := range c.Inputs {
		t, _ := r.Alloc(backend.Float32, spec.Shape...)
		in[i], _ = graph.NewParam(r, spec.Name, t, graph.Trainable)
	}
	// Two steps, as Check runs: the second accumulates into the first's
	// gradients, which takes other paths (Axpy among them).
	for range 2 {
		out := c.Forward(g, in)
		w := g.Input(make([]float32, out.Len()), out.Shape()...)
		_ = g.Backward(g.Sum(g.Mul(out, w)))
		g.Reset()
	}
	ops := make([]backend.Op, 0, len(r.used))
	for op := range r.used {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i] < ops[j] })
	return ops
}

// recorder is a backend that records which ops are called. Without an
// inner backend it computes nothing and its buffers hold no data; with one
// (in tests) it passes every call on.
type recorder struct {
	used  map[backend.Op]bool
	inner backend.Backend
}

type nullBuffer int

func (n nullBuffer) Len() int           { return int(n) }
func (nullBuffer) DType() backend.DType { return backend.Float32 }

func (r *recorder) note(op backend.Op) bool {
	r.used[op] = true
	return r.inner != nil
}

func (r *recorder) Name() string             { return "recorder" }
func (r *recorder) Device() string           { return "records op calls" }
func (r *recorder) Supports(backend.Op) bool { return true }
func (r *recorder) Close() error             { return nil }

func (r *recorder) Sync() error {
	if r.inner != nil {
		return r.inner.Sync()
	}
	return nil
}

func (r *recorder) BytesInUse() int64 {
	if r.inner != nil {
		return r.inner.BytesInUse()
	}
	return 0
}

func (r *recorder) Alloc(dt backend.DType, shape ...int) (backend.Tensor, error) {
	if r.inner != nil {
		return r.inner.Alloc(dt, shape...)
	}
	return backend.NewTensor(nullBuffer(backend.Shape(shape).NumElements()), 0, shape...)
}

func (r *recorder) Free(t backend.Tensor) {
	if r.inner != nil {
		r.inner.Free(t)
	}
}

func (r *recorder) Upload(t backend.Tensor, h []float32) {
	if r.inner != nil {
		r.inner.Upload(t, h)
	}
}

func (r *recorder) Download(h []float32, t backend.Tensor) error {
	if r.inner != nil {
		return r.inner.Download(h, t)
	}
	return nil
}

func (r *recorder) Fill(t backend.Tensor, v float32) {
	if r.note(backend.OpFill) {
		r.inner.Fill(t, v)
	}
}

func (r *recorder) Copy(d, s backend.Tensor, acc bool) {
	if r.note(backend.OpCopy) {
		r.inner.Copy(d, s, acc)
	}
}

func (r *recorder) MatMul(c, a, b backend.Tensor, p backend.MatMulParams) {
	if r.note(backend.OpMatMul) {
		r.inner.MatMul(c, a, b, p)
	}
}

func (r *recorder) Binary(op backend.BinaryOp, d, a, b backend.Tensor) {
	if r.note(backend.OpBinary) {
		r.inner.Binary(op, d, a, b)
	}
}

func (r *recorder) Scale(d, s backend.Tensor, a float32) {
	if r.note(backend.OpScale) {
		r.inner.Scale(d, s, a)
	}
}

func (r *recorder) Axpy(y backend.Tensor, a float32, x backend.Tensor) {
	if r.note(backend.OpAxpy) {
		r.inner.Axpy(y, a, x)
	}
}

func (r *recorder) Unary(op backend.UnaryOp, d, s backend.Tensor) {
	if r.note(backend.OpUnary) {
		r.inner.Unary(op, d, s)
	}
}

func (r *recorder) UnaryGrad(op backend.UnaryOp, dx, x, dy backend.Tensor) {
	if r.note(backend.OpUnaryGrad) {
		r.inner.UnaryGrad(op, dx, x, dy)
	}
}

func (r *recorder) ReduceRows(op backend.ReduceOp, d, s backend.Tensor) {
	if r.note(backend.OpReduceRows) {
		r.inner.ReduceRows(op, d, s)
	}
}

func (r *recorder) SumColumns(d, s backend.Tensor) {
	if r.note(backend.OpSumColumns) {
		r.inner.SumColumns(d, s)
	}
}

func (r *recorder) Softmax(d, s backend.Tensor, p backend.SoftmaxParams) {
	if r.note(backend.OpSoftmax) {
		r.inner.Softmax(d, s, p)
	}
}

func (r *recorder) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	if r.note(backend.OpAttention) {
		r.inner.Attention(out, lse, q, k, v, p)
	}
}

func (r *recorder) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	if r.note(backend.OpAttentionGrad) {
		r.inner.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
	}
}

func (r *recorder) SoftmaxGrad(dx, y, dy backend.Tensor, p backend.SoftmaxParams) {
	if r.note(backend.OpSoftmaxGrad) {
		r.inner.SoftmaxGrad(dx, y, dy, p)
	}
}

func (r *recorder) RMSNorm(d, x, w backend.Tensor, eps float32) {
	if r.note(backend.OpRMSNorm) {
		r.inner.RMSNorm(d, x, w, eps)
	}
}

func (r *recorder) RMSNormGrad(dx, dw, x, w, dy backend.Tensor, eps float32) {
	if r.note(backend.OpRMSNormGrad) {
		r.inner.RMSNormGrad(dx, dw, x, w, dy, eps)
	}
}

func (r *recorder) LayerNorm(d, x, g, b backend.Tensor, eps float32) {
	if r.note(backend.OpLayerNorm) {
		r.inner.LayerNorm(d, x, g, b, eps)
	}
}

func (r *recorder) LayerNormGrad(dx, dg, db, x, g, dy backend.Tensor, eps float32) {
	if r.note(backend.OpLayerNormGrad) {
		r.inner.LayerNormGrad(dx, dg, db, x, g, dy, eps)
	}
}

func (r *recorder) RoPE(d, s backend.Tensor, p backend.RoPEParams) {
	if r.note(backend.OpRoPE) {
		r.inner.RoPE(d, s, p)
	}
}

func (r *recorder) Gather(d, t backend.Tensor, ids []int32) {
	if r.note(backend.OpGather) {
		r.inner.Gather(d, t, ids)
	}
}

func (r *recorder) ScatterAdd(d, dy backend.Tensor, ids []int32) {
	if r.note(backend.OpScatterAdd) {
		r.inner.ScatterAdd(d, dy, ids)
	}
}

func (r *recorder) CrossEntropy(l, x backend.Tensor, t []int32, p backend.CrossEntropyParams) {
	if r.note(backend.OpCrossEntropy) {
		r.inner.CrossEntropy(l, x, t, p)
	}
}

func (r *recorder) CrossEntropyGrad(d, x backend.Tensor, t []int32, p backend.CrossEntropyParams) {
	if r.note(backend.OpCrossEntropyGrad) {
		r.inner.CrossEntropyGrad(d, x, t, p)
	}
}

func (r *recorder) AdamW(p, g, m, v backend.Tensor, q backend.AdamWParams) {
	if r.note(backend.OpAdamW) {
		r.inner.AdamW(p, g, m, v, q)
	}
}
