package ascend

import (
	"encoding/binary"
	"math"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// tableKey names a cached device table of constants.
type tableKey struct {
	kind       string
	a, b, c, d int
	f          float32
	bits       string // further float64 parameters, their bits as bytes (RoPE's Freqs)
}

// float64Bits returns the bits of v as a string, a map key that tells
// apart any two slices that differ in any bit.
func float64Bits(v []float64) string {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return string(b)
}

// maxTables bounds the cached tables; past it the cache starts over.
const maxTables = 64

// table returns a device view of the float32 constants build makes,
// uploading them once per key. Tables outlive the op; they go back to the
// pool when the cache is emptied, which the stream orders after every
// queued use.
func (c *call) table(key tableKey, shape []int, build func() []float32) view {
	if c.err != nil {
		return view{}
	}
	b := c.b
	if t, ok := b.tables[key]; ok {
		return view{ptr: t.Ptr, elems: t.N, dtype: aclFloat}.reshape(shape...)
	}
	if len(b.tables) >= maxTables {
		for k, t := range b.tables {
			b.put(t.Ptr, t.Class)
			delete(b.tables, k)
		}
	}
	data := build()
	t, err := b.newBuffer(len(data))
	if err != nil {
		c.fail(err)
		return view{}
	}
	if err := b.stage(t.Ptr, int64(t.N)*4, unsafe.Pointer(&data[0]), int64(len(data))*4); err != nil {
		b.put(t.Ptr, t.Class)
		c.fail(err)
		return view{}
	}
	b.tables[key] = t
	return view{ptr: t.Ptr, elems: t.N, dtype: aclFloat}.reshape(shape...)
}

// causalMask is the additive mask [queries, keys]: 0 where query i may see
// key j (j ≤ i + offset, and with a window w > 0 also i + offset − j < w),
// −Inf elsewhere, so that softmax gives exactly 0 there. CheckSoftmax has
// made sure every row keeps a key, so no row is all −Inf (which would make
// it NaN).
func (c *call) causalMask(queries, keys, offset, window int) view {
	if window >= queries+offset {
		window = 0 // hides nothing: share the plain causal table
	}
	return c.table(tableKey{kind: "causal", a: queries, b: keys, c: offset, d: window}, []int{queries, keys}, func() []float32 {
		m := make([]float32, queries*keys)
		for i := 0; i < queries; i++ {
			row := m[i*keys : (i+1)*keys]
			pos := i + offset
			if window > 0 {
				for j := range min(max(pos-window+1, 0), keys) {
					row[j] = float32(math.Inf(-1))
				}
			}
			for j := pos + 1; j < keys; j++ {
				row[j] = float32(math.Inf(-1))
			}
		}
		return m
	})
}

// Softmax computes softmax(scale·src) over rows with aclnnSoftmax. Scale
// is aclnnMuls into a temporary; the causal mask, sliding window included,
// is an additive table added with aclnnAdd/aclnnInplaceAdd (aclnn has no
// softmax with a causal mask and query offset of this form).
func (b *Backend) Softmax(dst, src backend.Tensor, p backend.SoftmaxParams) {
	if b.Failed() {
		return
	}
	batch, queries, keys, err := backend.CheckSoftmax(backend.OpSoftmax, dst, src, backend.Tensor{}, p)
	if err != nil {
		b.Record(err)
		return
	}
	if batch*queries == 0 {
		return
	}
	b.do(backend.OpSoftmax, []backend.Tensor{dst, src}, func(c *call) {
		S := c.tensorOf(src).reshape(batch, queries, keys)
		D := c.tensorOf(dst).reshape(batch, queries, keys)
		in := S
		scale := p.EffectiveScale()
		if scale != 1 {
			in = c.temp(batch, queries, keys)
			c.launch("Muls", c.tensor(S), c.scalar(scale), c.tensor(in))
		}
		if p.Causal {
			mask := c.tensor(c.causalMask(queries, keys, p.QueryOffset, p.Window))
			if scale != 1 {
				c.launch("InplaceAdd", c.tensor(in), mask, c.scalar(1))
			} else {
				in = c.temp(batch, queries, keys)
				c.launch("Add", c.tensor(S), mask, c.scalar(1), c.tensor(in))
			}
		}
		if scale == 1 && !p.Causal && overlap(dst, src) {
			// aclnnSoftmax is not documented to allow out == self.
			in = c.temp(batch, queries, keys)
			c.launch("InplaceCopy", c.tensor(in), c.tensor(S))
		}
		c.launch("Softmax", c.tensor(in), i64(-1), c.tensor(D))
	})
}

// SoftmaxGrad computes scale·y ⊙ (dy − Σ dy⊙y) with aclnnSoftmaxBackward
// (then aclnnMuls for the scale). It needs no mask: masked positions
// (causal or outside a sliding window) have y = 0, so they get 0 and add
// nothing to the row's Σ dy⊙y.
func (b *Backend) SoftmaxGrad(dx, y, dy backend.Tensor, p backend.SoftmaxParams) {
	if b.Failed() {
		return
	}
	batch, queries, keys, err := backend.CheckSoftmax(backend.OpSoftmaxGrad, dx, dy, y, p)
	if err != nil {
		b.Record(err)
		return
	}
	rows := batch * queries
	if rows == 0 {
		return
	}
	b.do(backend.OpSoftmaxGrad, []backend.Tensor{dx, y, dy}, func(c *call) {
		Y, DY := c.tensor(c.tensorOf(y).reshape(rows, keys)), c.tensor(c.tensorOf(dy).reshape(rows, keys))
		DX := c.tensorOf(dx).reshape(rows, keys)
		scale := p.EffectiveScale()
		if scale == 1 && !overlap(dx, y) && !overlap(dx, dy) {
			c.launch("SoftmaxBackward", DY, Y, i64(-1), c.tensor(DX))
			return
		}
		t := c.tensor(c.temp(rows, keys))
		c.launch("SoftmaxBackward", DY, Y, i64(-1), t)
		c.launch("Muls", t, c.scalar(scale), c.tensor(DX))
	})
}

// outFor returns the view to write an op's result into: dst itself, or a
// temporary when dst overlaps an input (the result is copied over after).
func (c *call) outFor(dst backend.Tensor, inputs ...backend.Tensor) (out view, copyBack bool) {
	d := c.tensorOf(dst)
	for _, in := range inputs {
		if overlap(dst, in) {
			return c.temp(d.shape...), true
		}
	}
	return d, false
}

// RMSNorm is aclnnRmsNorm on x viewed as [rows, cols]; its rstd output
// goes to a temporary.
func (b *Backend) RMSNorm(dst, x, w backend.Tensor, eps float32) {
	if b.Failed() {
		return
	}
	all := []backend.Tensor{dst, x, w}
	rows, cols, err := backend.CheckNorm(backend.OpRMSNorm, dst, x, w)
	if err != nil {
		b.Record(err)
		return
	}
	if rows*cols == 0 {
		return
	}
	b.do(backend.OpRMSNorm, all, func(c *call) {
		X, W := c.tensorOf(x).reshape(rows, cols), c.tensorOf(w).reshape(cols)
		out, back := c.outFor(dst, x, w)
		out = out.reshape(rows, cols)
		c.launchRmsNorm(c.tensor(X), c.tensor(W), float64(eps), c.tensor(out), c.tensor(c.temp(rows, 1)))
		if back {
			c.launch("InplaceCopy", c.tensor(c.tensorOf(dst).reshape(rows, cols)), c.tensor(out))
		}
	})
}

// RMSNormGrad recomputes rstd with aclnnRmsNorm, then calls
// aclnnRmsNormGrad; the weight gradient is added into dw.
func (b *Backend) RMSNormGrad(dx, dw, x, w, dy backend.Tensor, eps float32) {
	if b.Failed() {
		return
	}
	const op = backend.OpRMSNormGrad
	all := []backend.Tensor{dx, dw, x, w, dy}
	rows, cols, err := backend.CheckNormGrad(op, dx, x, dy, w, dw)
	if err != nil {
		b.Record(err)
		return
	}
	if rows*cols == 0 {
		return
	}
	b.do(op, all, func(c *call) {
		X, W, DY := c.tensor(c.tensorOf(x).reshape(rows, cols)), c.tensor(c.tensorOf(w).reshape(cols)), c.tensor(c.tensorOf(dy).reshape(rows, cols))
		rstd := c.tensor(c.temp(rows, 1))
		c.launchRmsNorm(X, W, float64(eps), c.tensor(c.temp(rows, cols)), rstd)
		out, back := c.outFor(dx, x, w, dy, dw)
		out = out.reshape(rows, cols)
		dg := c.tensor(c.temp(cols))
		c.launch("RmsNormGrad", DY, X, rstd, W, c.tensor(out), dg)
		if back {
			c.launch("InplaceCopy", c.tensor(c.tensorOf(dx).reshape(rows, cols)), c.tensor(out))
		}
		if !dw.IsZero() {
			c.launch("InplaceAdd", c.tensor(c.tensorOf(dw).reshape(cols)), dg, c.scalar(1))
		}
	})
}

// LayerNorm is aclnnLayerNorm over the last axis (normalizedShape [cols]).
func (b *Backend) LayerNorm(dst, x, gamma, beta backend.Tensor, eps float32) {
	if b.Failed() {
		return
	}
	all := []backend.Tensor{dst, x, gamma, beta}
	rows, cols, err := backend.CheckNorm(backend.OpLayerNorm, dst, x, gamma, beta)
	if err != nil {
		b.Record(err)
		return
	}
	if rows*cols == 0 {
		return
	}
	b.do(backend.OpLayerNorm, all, func(c *call) {
		X, G := c.tensor(c.tensorOf(x).reshape(rows, cols)), c.tensor(c.tensorOf(gamma).reshape(cols))
		var B uintptr
		if !beta.IsZero() {
			B = c.tensor(c.tensorOf(beta).reshape(cols))
		}
		out, back := c.outFor(dst, x, gamma, beta)
		out = out.reshape(rows, cols)
		c.launchLayerNorm(X, c.intArray(int64(cols)), G, B, float64(eps), c.tensor(out), 0, 0)
		if back {
			c.launch("InplaceCopy", c.tensor(c.tensorOf(dst).reshape(rows, cols)), c.tensor(out))
		}
	})
}

// LayerNormGrad recomputes mean and rstd with aclnnLayerNorm, then calls
// aclnnLayerNormBackward with an output mask for the gradients wanted;
// parameter gradients are added into dgamma and dbeta.
func (b *Backend) LayerNormGrad(dx, dgamma, dbeta, x, gamma, dy backend.Tensor, eps float32) {
	if b.Failed() {
		return
	}
	const op = backend.OpLayerNormGrad
	all := []backend.Tensor{dx, dgamma, dbeta, x, gamma, dy}
	rows, cols, err := backend.CheckNormGrad(op, dx, x, dy, gamma, dgamma, dbeta)
	if err != nil {
		b.Record(err)
		return
	}
	if rows*cols == 0 {
		return
	}
	b.do(op, all, func(c *call) {
		X, G, DY := c.tensor(c.tensorOf(x).reshape(rows, cols)), c.tensor(c.tensorOf(gamma).reshape(cols)), c.tensor(c.tensorOf(dy).reshape(rows, cols))
		ns := c.intArray(int64(cols))
		mean, rstd := c.tensor(c.temp(rows, 1)), c.tensor(c.temp(rows, 1))
		c.launchLayerNorm(X, ns, G, 0, float64(eps), c.tensor(c.temp(rows, cols)), mean, rstd)
		out, back := c.outFor(dx, x, gamma, dy, dgamma, dbeta)
		out = out.reshape(rows, cols)
		needG, needB := !dgamma.IsZero(), !dbeta.IsZero()
		var dg, db uintptr
		if needG {
			dg = c.tensor(c.temp(cols))
		}
		if needB {
			db = c.tensor(c.temp(cols))
		}
		c.launch("LayerNormBackward", DY, X, ns, mean, rstd, G, 0, c.boolArray(true, needG, needB), c.tensor(out), dg, db)
		if back {
			c.launch("InplaceCopy", c.tensor(c.tensorOf(dx).reshape(rows, cols)), c.tensor(out))
		}
		if needG {
			c.launch("InplaceAdd", c.tensor(c.tensorOf(dgamma).reshape(cols)), dg, c.scalar(1))
		}
		if needB {
			c.launch("InplaceAdd", c.tensor(c.tensorOf(dbeta).reshape(cols)), db, c.scalar(1))
		}
	})
}

// RoPE rotates pairs of each head by pos·theta^(−2i/headDim), or by
// pos·p.Freqs[i] when Freqs is set. aclnn's
// rotary operators fix one layout and fused cos/sin inputs, so it is
// composed: the two halves of every pair are strided views (stride 2 for
// the interleaved layout, the two halves of the head for the half-split
// one), cos and sin come from a cached [seq, 1, headDim/2] table that
// broadcasts over batch and heads, and
//
//	y1 = x1·cos ∓ x2·sin,  y2 = x2·cos ± x1·sin
//
// go through temporaries (aclnnMul, aclnnSub, aclnnAdd) before
// aclnnInplaceCopy writes them into dst's halves, so dst may alias src.
func (b *Backend) RoPE(dst, src backend.Tensor, p backend.RoPEParams) {
	if b.Failed() {
		return
	}
	batch, seq, heads, hd, err := backend.CheckRoPE(dst, src, p)
	if err != nil {
		b.Record(err)
		return
	}
	half := hd / 2
	if batch*seq*heads*half == 0 {
		return
	}
	b.do(backend.OpRoPE, []backend.Tensor{dst, src}, func(c *call) {
		key := tableKey{kind: "rope", a: seq, b: hd, c: p.Offset, f: p.Theta}
		if p.Freqs != nil {
			key.f, key.bits = 0, float64Bits(p.Freqs)
		}
		tab := c.table(key, []int{2, seq, 1, half}, func() []float32 {
			inv := p.Freqs
			if inv == nil {
				inv = make([]float64, half)
				for i := range inv {
					inv[i] = math.Pow(float64(p.Theta), -float64(2*i)/float64(hd))
				}
			}
			t := make([]float32, 2*seq*half)
			for s := 0; s < seq; s++ {
				pos := float64(p.Offset + s)
				for i := 0; i < half; i++ {
					ang := pos * inv[i]
					t[s*half+i] = float32(math.Cos(ang))
					t[seq*half+s*half+i] = float32(math.Sin(ang))
				}
			}
			return t
		})
		cosT := c.tensor(tab.sub(0, []int{seq, 1, half}, []int{half, half, 1}))
		sinT := c.tensor(tab.sub(seq*half, []int{seq, 1, half}, []int{half, half, 1}))
		shape := []int{batch, seq, heads, half}
		step, second := 1, half // element stride within a half, offset of x2
		if p.Layout == backend.Interleaved {
			step, second = 2, 1
		}
		strides := []int{seq * heads * hd, heads * hd, hd, step}
		S, D := c.tensorOf(src), c.tensorOf(dst)
		x1, x2 := c.tensor(S.sub(0, shape, strides)), c.tensor(S.sub(second, shape, strides))
		t1, t2, t3, t4 := c.tensor(c.temp(shape...)), c.tensor(c.temp(shape...)), c.tensor(c.temp(shape...)), c.tensor(c.temp(shape...))
		c.launch("Mul", x1, cosT, t1)
		c.launch("Mul", x2, sinT, t2)
		c.launch("Mul", x2, cosT, t3)
		c.launch("Mul", x1, sinT, t4)
		one := c.scalar(1)
		if p.Inverse {
			c.launch("Add", t1, t2, one, t1)
			c.launch("Sub", t3, t4, one, t3)
		} else {
			c.launch("Sub", t1, t2, one, t1)
			c.launch("Add", t3, t4, one, t3)
		}
		c.launch("InplaceCopy", c.tensor(D.sub(0, shape, strides)), t1)
		c.launch("InplaceCopy", c.tensor(D.sub(second, shape, strides)), t3)
	})
}

// Gather is aclnnEmbedding with the ids uploaded as int64.
func (b *Backend) Gather(dst, table backend.Tensor, ids []int32) {
	if b.Failed() {
		return
	}
	vocab, dim, err := backend.CheckGather(backend.OpGather, dst, table, ids)
	if err != nil {
		b.Record(err)
		return
	}
	if len(ids)*dim == 0 {
		return
	}
	b.do(backend.OpGather, []backend.Tensor{dst, table}, func(c *call) {
		idx := c.uploadI64(widen(ids), len(ids))
		c.launch("Embedding", c.tensor(c.tensorOf(table).reshape(vocab, dim)), c.tensor(idx),
			c.tensor(c.tensorOf(dst).reshape(len(ids), dim)))
	})
}

func widen(ids []int32) []int64 {
	out := make([]int64, len(ids))
	for i, v := range ids {
		out[i] = int64(v)
	}
	return out
}

// ScatterAdd is aclnnIndexAdd along axis 0 with out = dtable (the in-place
// index_add_ form), which adds repeated ids once per occurrence.
// aclnnEmbeddingDenseBackward would need a dense [vocab, dim] temporary.
func (b *Backend) ScatterAdd(dtable, dy backend.Tensor, ids []int32) {
	if b.Failed() {
		return
	}
	vocab, dim, err := backend.CheckGather(backend.OpScatterAdd, dy, dtable, ids)
	if err != nil {
		b.Record(err)
		return
	}
	if len(ids)*dim == 0 {
		return
	}
	b.do(backend.OpScatterAdd, []backend.Tensor{dtable, dy}, func(c *call) {
		idx := c.uploadI64(widen(ids), len(ids))
		T := c.tensor(c.tensorOf(dtable).reshape(vocab, dim))
		c.launch("IndexAdd", T, i64(0), c.tensor(idx), c.tensor(c.tensorOf(dy).reshape(len(ids), dim)), c.scalar(1), T)
	})
}

// targetsOf turns targets into gather indices (0 for ignored rows) and,
// when some row is ignored, a mask of the ignored rows.
func targetsOf(targets []int32, ignore int32) (idx []int64, ignored []bool) {
	idx = make([]int64, len(targets))
	for i, t := range targets {
		if t != ignore {
			idx[i] = int64(t)
			continue
		}
		if ignored == nil {
			ignored = make([]bool, len(targets))
		}
		ignored[i] = true
	}
	return idx, ignored
}

// CrossEntropy composes −((1−ε)·logp[target] + ε/V·Σ logp) per row from
// aclnnLogSoftmax, aclnnGather and aclnnReduceSum. Ignored rows are then
// set to 0 with aclnnInplaceMaskedFillScalar: multiplying them by 0 would
// leave NaN where their logits hold infinities or NaN, and package backend
// says their loss is 0.
func (b *Backend) CrossEntropy(loss, logits backend.Tensor, targets []int32, p backend.CrossEntropyParams) {
	if b.Failed() {
		return
	}
	const op = backend.OpCrossEntropy
	rows, vocab, err := backend.CheckCrossEntropy(op, loss, logits, targets, p)
	if err != nil {
		b.Record(err)
		return
	}
	if rows == 0 {
		return
	}
	b.do(op, []backend.Tensor{loss, logits}, func(c *call) {
		out := c.tensor(c.tensorOf(loss).reshape(rows, 1))
		if vocab == 0 { // every row is ignored
			c.launch("InplaceFillScalar", out, c.scalar(0))
			return
		}
		idx, ignored := targetsOf(targets, p.IgnoreIndex)
		L := c.tensor(c.temp(rows, vocab))
		c.launch("LogSoftmax", c.tensor(c.tensorOf(logits).reshape(rows, vocab)), i64(-1), L)
		g := c.tensor(c.temp(rows, 1))
		c.launch("Gather", L, i64(1), c.tensor(c.uploadI64(idx, rows, 1)), g)
		c.launch("Muls", g, c.scalar(-(1 - p.Smoothing)), out)
		if p.Smoothing > 0 {
			s := c.tensor(c.temp(rows, 1))
			c.launch("ReduceSum", L, c.intArray(1), flag(true), aclFloat, s)
			c.launch("InplaceAdd", out, s, c.scalar(-p.Smoothing/float32(vocab)))
		}
		if ignored != nil {
			c.launch("InplaceMaskedFillScalar", out, c.tensor(c.uploadMask(ignored, rows, 1)), c.scalar(0))
		}
	})
}

// CrossEntropyGrad composes scale·(softmax(logits) − q) from aclnnSoftmax,
// aclnnInplaceAdds (the ε/V of every class), aclnnScatterAdd (the 1−ε of
// the target) and aclnnInplaceMuls; ignored rows are then set to 0 with
// aclnnInplaceMaskedFillScalar (see CrossEntropy).
func (b *Backend) CrossEntropyGrad(dlogits, logits backend.Tensor, targets []int32, p backend.CrossEntropyParams) {
	if b.Failed() {
		return
	}
	const op = backend.OpCrossEntropyGrad
	rows, vocab, err := backend.CheckCrossEntropy(op, dlogits, logits, targets, p)
	if err != nil {
		b.Record(err)
		return
	}
	if rows*vocab == 0 {
		return
	}
	b.do(op, []backend.Tensor{dlogits, logits}, func(c *call) {
		idx, ignored := targetsOf(targets, p.IgnoreIndex)
		P := c.tensor(c.temp(rows, vocab))
		c.launch("Softmax", c.tensor(c.tensorOf(logits).reshape(rows, vocab)), i64(-1), P)
		if p.Smoothing > 0 {
			c.launch("InplaceAdds", P, c.scalar(p.Smoothing/float32(vocab)), c.scalar(-1))
		}
		src := c.tensor(c.temp(rows, 1))
		c.launch("InplaceFillScalar", src, c.scalar(-(1 - p.Smoothing)))
		D := c.tensor(c.tensorOf(dlogits).reshape(rows, vocab))
		c.launch("ScatterAdd", P, i64(1), c.tensor(c.uploadI64(idx, rows, 1)), src, D)
		c.launch("InplaceMuls", D, c.scalar(p.Scale))
		if ignored != nil {
			c.launch("InplaceMaskedFillScalar", D, c.tensor(c.uploadMask(ignored, rows, 1)), c.scalar(0))
		}
	})
}

// AdamW composes torch.optim.AdamW's step from element-wise operators:
//
//	param ·= 1 − lr·wd
//	m = β₁m + (1−β₁)g;  v = β₂v + (1−β₂)g²
//	param −= lr/(1−β₁ᵗ) · m / (sqrt(v)/sqrt(1−β₂ᵗ) + eps)
//
// aclnnApplyAdamWV2 fuses this, but it takes the step as a device tensor
// and its handling of maxGradNorm and float32 was not verified here.
func (b *Backend) AdamW(param, grad, m, v backend.Tensor, p backend.AdamWParams) {
	if b.Failed() {
		return
	}
	const op = backend.OpAdamW
	n, err := backend.CheckAdamW(param, grad, m, v, p)
	if err != nil {
		b.Record(err)
		return
	}
	if n == 0 {
		return
	}
	b.do(op, []backend.Tensor{param, grad, m, v}, func(c *call) {
		P, G := c.tensor(c.tensorOf(param).reshape(n)), c.tensor(c.tensorOf(grad).reshape(n))
		M, V := c.tensor(c.tensorOf(m).reshape(n)), c.tensor(c.tensorOf(v).reshape(n))
		b1, b2 := p.Beta1, p.Beta2
		bc1 := 1 - math.Pow(b1, float64(p.Step))
		bc2 := 1 - math.Pow(b2, float64(p.Step))
		if p.WeightDecay != 0 {
			c.launch("InplaceMuls", P, c.scalar(float32(1-p.LR*p.WeightDecay)))
		}
		c.launch("InplaceMuls", M, c.scalar(float32(b1)))
		c.launch("InplaceAdd", M, G, c.scalar(float32(1-b1)))
		t, d := c.tensor(c.temp(n)), c.tensor(c.temp(n))
		c.launch("Mul", G, G, t)
		c.launch("InplaceMuls", V, c.scalar(float32(b2)))
		c.launch("InplaceAdd", V, t, c.scalar(float32(1-b2)))
		c.launch("Sqrt", V, d)
		c.launch("InplaceMuls", d, c.scalar(float32(1/math.Sqrt(bc2))))
		c.launch("InplaceAdds", d, c.scalar(float32(p.Eps)), c.scalar(1))
		c.launch("Div", M, d, t)
		c.launch("InplaceAdd", P, t, c.scalar(float32(-p.LR/bc1)))
	})
}
