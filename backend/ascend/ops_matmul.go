package ascend

import (
	"github.com/sora-go/sora/backend"
)

// matView describes op(X) for operand t of a MatMul: a view of shape
// [batch, rows, cols] (or [rows, cols] when flat) whose strides express
// the transpose, so no transposed copy is made; aclnn takes non-contiguous
// (transposed) operands.
func matView(v view, rows, cols int, trans bool, flat bool) view {
	s := v.shape
	r, c := s[len(s)-2], s[len(s)-1] // stored extents
	batch := 1
	if len(s) == 3 {
		batch = s[0]
	}
	rs, cs := c, 1 // element strides of op(X) rows and columns
	if trans {
		rs, cs = 1, c
	}
	if flat {
		return v.sub(0, []int{rows, cols}, []int{rs, cs})
	}
	return v.sub(0, []int{batch, rows, cols}, []int{r * c, rs, cs})
}

// MatMul computes C = alpha·op(A)·op(B) + beta·C. The product is one
// aclnn call: aclnnMm for single matrices (and for a batched A times a
// shared B, whose batch folds into the rows), aclnnBatchMatMul for equal
// batches, aclnnMatmul (which broadcasts a batch of one) otherwise. With
// alpha = 1 and beta = 0 it writes C directly; otherwise it goes through a
// temporary and aclnnMuls / aclnnInplaceMuls / aclnnInplaceAdd. The cube
// unit's mode is the backend's MatMulMode.
func (b *Backend) MatMul(cT, a, bm backend.Tensor, p backend.MatMulParams) {
	if b.Failed() {
		return
	}
	d, err := backend.CheckMatMul(cT, a, bm, p)
	if err != nil {
		b.Record(err)
		return
	}
	if d.Batch*d.M*d.N == 0 {
		return
	}
	all := []backend.Tensor{cT, a, bm}
	b.do(backend.OpMatMul, all, func(c *call) {
		C := c.tensorOf(cT).reshape(d.Batch, d.M, d.N)
		if d.K == 0 { // an empty sum: C = beta·C
			if p.Beta == 0 {
				c.launch("InplaceFillScalar", c.tensor(C), c.scalar(0))
			} else if p.Beta != 1 {
				c.launch("InplaceMuls", c.tensor(C), c.scalar(p.Beta))
			}
			return
		}
		A, B := c.tensorOf(a), c.tensorOf(bm)
		if c.err != nil {
			return
		}
		cube := uintptr(uint8(b.opts.MatMul.cubeMathType()))
		direct := p.Alpha == 1 && p.Beta == 0 && !overlap(cT, a) && !overlap(cT, bm)
		// product writes op(A)·op(B) into out, which has C's shape or, when
		// both operands are shared by the whole batch, [1, m, n].
		var out view
		switch {
		case d.Batch == 1:
			out = C.reshape(d.M, d.N)
			if !direct {
				out = c.temp(d.M, d.N)
			}
			c.launch("Mm", c.tensor(matView(A, d.M, d.K, p.TransA, true)), c.tensor(matView(B, d.K, d.N, p.TransB, true)),
				c.tensor(out), cube)
			out = out.reshape(1, d.M, d.N)
		case d.StrideB == 0 && d.StrideA != 0 && !p.TransA:
			// [batch·m, k] · [k, n]: one aclnnMm.
			out = C.reshape(d.Batch*d.M, d.N)
			if !direct {
				out = c.temp(d.Batch*d.M, d.N)
			}
			c.launch("Mm", c.tensor(A.reshape(d.Batch*d.M, d.K)), c.tensor(matView(B, d.K, d.N, p.TransB, true)),
				c.tensor(out), cube)
			out = out.reshape(d.Batch, d.M, d.N)
		case d.StrideA == 0 && d.StrideB == 0:
			// Every matrix of C gets the same product.
			out = c.temp(1, d.M, d.N)
			c.launch("Mm", c.tensor(matView(A, d.M, d.K, p.TransA, true)), c.tensor(matView(B, d.K, d.N, p.TransB, true)),
				c.tensor(out.reshape(d.M, d.N)), cube)
			direct = false
		default:
			out = C
			if !direct {
				out = c.temp(d.Batch, d.M, d.N)
			}
			op := "BatchMatMul"
			if d.StrideA == 0 || d.StrideB == 0 {
				op = "Matmul"
			}
			c.launch(op, c.tensor(matView(A, d.M, d.K, p.TransA, false)), c.tensor(matView(B, d.K, d.N, p.TransB, false)),
				c.tensor(out), cube)
		}
		if direct {
			return
		}
		Ct := c.tensor(C)
		switch {
		case p.Beta == 0 && out.shape[0] == d.Batch:
			c.launch("Muls", c.tensor(out), c.scalar(p.Alpha), Ct)
		case p.Beta == 0:
			// C's old contents (NaN included) must not leak in.
			c.launch("InplaceFillScalar", Ct, c.scalar(0))
			c.launch("InplaceAdd", Ct, c.tensor(out), c.scalar(p.Alpha))
		default:
			if p.Beta != 1 {
				c.launch("InplaceMuls", Ct, c.scalar(p.Beta))
			}
			c.launch("InplaceAdd", Ct, c.tensor(out), c.scalar(p.Alpha))
		}
	})
}
