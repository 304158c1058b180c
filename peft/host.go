package peft

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/sora-go/sora/graph"
)

// Update64 is a layer's update computed on the host in float64 from its
// (float32) parameters, independently of the device code but for DoRA's
// row norms n, which it takes as the forward computes them (in float32 on
// the device) so that k = m ⊘ n is exactly 1 at initialisation: the
// reference for Merge and the input of the spectral analysis. (DoRA's
// norms are checked against an independent float64 computation by the
// PyTorch test vectors and the gradient checks, not through Update64.)
type Update64 struct {
	Rows, Cols int
	// W0 is the frozen weight, row-major [Rows, Cols].
	W0 []float64
	// Delta is ΔW = W' − W0, computed from the factors (for LoRA s·B·A
	// itself, of rank ≤ r to float64 precision) rather than by subtracting
	// two nearly equal matrices.
	Delta []float64
	// Bias is the effective bias b' (nil when the base has no bias).
	Bias []float64
}

// Weight returns W' = W0 + ΔW.
func (u Update64) Weight() []float64 {
	w := make([]float64, len(u.W0))
	for i := range w {
		w[i] = u.W0[i] + u.Delta[i]
	}
	return w
}

// errPretrainedGone is the error of a Full layer's update after
// [Model.ForgetPretrained].
var errPretrainedGone = errors.New("the pretrained weights W0 were let go (Model.ForgetPretrained), so the update W − W0 is unknown")

// widen returns x in float64 (nil for nil).
func widen(x []float32) []float64 {
	if x == nil {
		return nil
	}
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func download64(v *graph.Value) ([]float64, error) {
	h, err := v.Download()
	if err != nil {
		return nil, err
	}
	return widen(h), nil
}

// rot64 is the rotation of package documentation in float64: R − I = u·φ·vᵀ
// (φ = I for the first-order form).
type rot64 struct {
	u, v, phi *mat.Dense
	sp        float64
}

func newRot64(c, d *mat.Dense, exact bool) rot64 {
	out, rp := c.Dims()
	var e mat.Dense
	e.Sub(d, c)
	sp := math.Min(1, 1/(mat.Norm(c, 2)+mat.Norm(d, 2)+1e-6))
	v := mat.NewDense(out, 2*rp, nil)
	u := mat.NewDense(out, 2*rp, nil)
	for i := range out {
		for k := range rp {
			v.Set(i, k, c.At(i, k))
			v.Set(i, rp+k, e.At(i, k))
			u.Set(i, k, sp*e.At(i, k))
			u.Set(i, rp+k, -sp*c.At(i, k))
		}
	}
	r := rot64{u: u, v: v, sp: sp}
	if exact {
		var m mat.Dense
		m.Mul(v.T(), u)
		r.phi = phi64(&m)
	}
	return r
}

// phi64 returns φ(M) = Σₖ Mᵏ/(k+1)! as the top-right block of
// exp([[M, I], [0, 0]]), by gonum's matrix exponential.
func phi64(m *mat.Dense) *mat.Dense {
	n, _ := m.Dims()
	big := mat.NewDense(2*n, 2*n, nil)
	for i := range n {
		for j := range n {
			big.Set(i, j, m.At(i, j))
		}
		big.Set(i, n+i, 1)
	}
	var e mat.Dense
	e.Exp(big)
	return mat.DenseCopyOf(e.Slice(0, n, n, 2*n))
}

// inner returns φ·vᵀ·x ([2r_p, k] for x [out, k]), so that
// (R − I)·x = u·inner(x).
func (r rot64) inner(x mat.Matrix) *mat.Dense {
	var t mat.Dense
	t.Mul(r.v.T(), x)
	if r.phi != nil {
		var p mat.Dense
		p.Mul(r.phi, &t)
		return &p
	}
	return &t
}

// minusI returns (R − I)·x.
func (r rot64) minusI(x mat.Matrix) *mat.Dense {
	var y mat.Dense
	y.Mul(r.u, r.inner(x))
	return &y
}

// dense returns R as an [out, out] matrix (tests only: never needed to
// train or merge).
func (r rot64) dense() *mat.Dense {
	out, _ := r.u.Dims()
	id := mat.NewDiagDense(out, nil)
	for i := range out {
		id.SetDiag(i, 1)
	}
	m := r.minusI(id)
	for i := range out {
		m.Set(i, i, m.At(i, i)+1)
	}
	return m
}

// hostParams holds a layer's parameters in float64, row-major; nil for
// those the method lacks.
type hostParams struct {
	w0, b0, a, bm, diag, mag, c, d, oft, w, wb []float64
	// doraN, when set, replaces DoRA's row norms n: Update64 takes them
	// as the forward computes them, and a gradient check holds them fixed,
	// as the detached norm is in backward.
	doraN []float64
}

// Update64 downloads the layer's parameters and computes its update in
// float64.
func (l *Layer) Update64() (Update64, error) {
	p, err := l.hostParams(true)
	if err != nil {
		return Update64{}, err
	}
	return l.update64(p), nil
}

// hostParams downloads the layer's parameters to the host in float64.
// withBase false leaves out the frozen W0 and bias, for a caller that
// computes something they do not enter (LoRA's factored update): for a
// large layer W0 is most of what there is to download. It uses the
// layer's backend, so it runs on the goroutine that owns the backend.
func (l *Layer) hostParams(withBase bool) (hostParams, error) {
	var p hostParams
	var err error
	get := func(v *graph.Value) []float64 {
		if err != nil || v == nil {
			return nil
		}
		var h []float64
		h, err = download64(v)
		return h
	}
	switch {
	case withBase && l.method == Full:
		// Full trains the base tensors themselves: W0 is the copy kept on
		// the host.
		if l.w0Host == nil {
			err = errPretrainedGone
		}
		p.w0, p.b0 = widen(l.w0Host), widen(l.b0Host)
	case withBase:
		p.w0, p.b0 = get(l.base.W), get(l.base.B)
	}
	p.a, p.bm, p.diag, p.mag = get(l.a), get(l.bm), get(l.diag), get(l.mag)
	p.c, p.d, p.oft, p.w, p.wb = get(l.c), get(l.d), get(l.oftR), get(l.w), get(l.wb)
	if err == nil && l.spec.Post == NormDiagonal {
		// DoRA's k = m ⊘ n with n as the forward computes it (in float32,
		// from the cached ‖W0ᵢ‖² for DoRA): m was taken from the same
		// float32 norms, so k is exactly 1 at initialisation, as the
		// forward's is, where n recomputed in float64 would leave k − 1 of
		// about 1e−8 and with it a full-rank (k − 1)·W0 in ΔW.
		g := graph.New(l.b)
		g.SetNoGrad(true)
		p.doraN = get(l.doraNorm(g))
		if gerr := g.Err(); err == nil && gerr != nil {
			err = gerr
		}
		g.Close()
	}
	if err != nil {
		return hostParams{}, fmt.Errorf("peft: update of %q: %w", l.name, err)
	}
	return p, nil
}

// update64 computes the update from host parameters.
func (l *Layer) update64(p hostParams) Update64 {
	u := Update64{Rows: l.out, Cols: l.in, W0: p.w0}
	w0 := mat.NewDense(l.out, l.in, p.w0)
	delta := mat.NewDense(l.out, l.in, nil)
	var bias *mat.VecDense
	if p.b0 != nil {
		bias = mat.NewVecDense(l.out, append([]float64(nil), p.b0...))
	}
	switch l.method {
	case Full:
		delta.Sub(mat.NewDense(l.out, l.in, p.w), w0)
		if p.wb != nil {
			bias = mat.NewVecDense(l.out, append([]float64(nil), p.wb...))
		}
	case OFT:
		l.oftDelta64(w0, mat.NewDense(l.oft.nb, l.oft.bs*(l.oft.bs-1)/2, p.oft), delta)
	default:
		r := l.cfg.R
		a, bm := mat.NewDense(r, l.in, p.a), mat.NewDense(l.out, r, p.bm)
		d := p.diag
		var rot rot64
		if p.c != nil {
			rp := l.cfg.RotationRank
			rot = newRot64(mat.NewDense(l.out, rp, p.c), mat.NewDense(l.out, rp, p.d), l.cfg.ExactRotation)
		}
		var sba mat.Dense
		sba.Mul(bm, a)
		sba.Scale(l.cfg.Scaling(), &sba)
		// delta gathers Pre·W0 − W0 + s·B·A; x = Pre·W0 + s·B·A is what
		// the post conditioner acts on.
		switch l.spec.Pre {
		case Diagonal:
			for i := range l.out {
				for j := range l.in {
					delta.Set(i, j, (d[i]-1)*w0.At(i, j))
				}
			}
			if bias != nil {
				for i := range l.out {
					bias.SetVec(i, d[i]*bias.AtVec(i))
				}
			}
		case Rotation:
			delta.Copy(rot.minusI(w0))
			if bias != nil {
				bias.AddVec(bias, rot.minusI(bias).ColView(0))
			}
		}
		delta.Add(delta, &sba)
		var x mat.Dense
		x.Add(w0, delta)
		switch l.spec.Post {
		case Diagonal:
			for i := range l.out {
				for j := range l.in {
					delta.Set(i, j, delta.At(i, j)+(d[i]-1)*x.At(i, j))
				}
			}
			if bias != nil {
				for i := range l.out {
					bias.SetVec(i, d[i]*bias.AtVec(i))
				}
			}
		case Rotation:
			delta.Add(delta, rot.minusI(&x))
			if bias != nil {
				bias.AddVec(bias, rot.minusI(bias).ColView(0))
			}
		case NormDiagonal:
			// W' = diag(m/n)·x: ΔW = diag(m/n − 1)·W0 + diag(m/n)·s·B·A.
			for i := range l.out {
				var n float64
				if p.doraN != nil {
					n = p.doraN[i]
				} else {
					for _, v := range x.RawRowView(i) {
						n += v * v
					}
					n = math.Sqrt(n)
				}
				k := p.mag[i] / n
				for j := range l.in {
					delta.Set(i, j, (k-1)*w0.At(i, j)+k*sba.At(i, j))
				}
			}
		}
	}
	u.Delta = delta.RawMatrix().Data
	if bias != nil {
		u.Bias = bias.RawVector().Data
	}
	return u
}

// doraNorms64 returns DoRA's row norms n of W0 + s·B·A in float64.
func (l *Layer) doraNorms64(p hostParams) []float64 {
	r := l.cfg.R
	var x mat.Dense
	x.Mul(mat.NewDense(l.out, r, p.bm), mat.NewDense(r, l.in, p.a))
	x.Scale(l.cfg.Scaling(), &x)
	x.Add(&x, mat.NewDense(l.out, l.in, p.w0))
	n := make([]float64, l.out)
	for i := range n {
		n[i] = mat.Norm(x.RowView(i), 2)
	}
	return n
}

// oftBlocks64 returns the blocks R_r of an OFT layer in float64 from the
// packed vectors q [nb, bs(bs−1)/2], by the same Cayley–Neumann series.
func (l *Layer) oftBlocks64(q *mat.Dense) []*mat.Dense {
	nb, bs := l.oft.nb, l.oft.bs
	rs := make([]*mat.Dense, nb)
	for r := range nb {
		qs := mat.NewDense(bs, bs, nil)
		k := 0
		for i := range bs {
			for j := i + 1; j < bs; j++ {
				qs.Set(i, j, q.At(r, k))
				qs.Set(j, i, -q.At(r, k))
				k++
			}
		}
		rs[r] = cayleyNeumann64(qs, l.cfg.OFTNeumannTerms)
	}
	return rs
}

// cayleyNeumann64 is Hugging Face PEFT's truncated Cayley series, term for
// term: I + 2Q (n > 1), + 2Q² + 2Q³ + … + 2Qⁿ⁻² + Qⁿ⁻¹ (n > 2; n = 3 and 4
// both stop at Q³).
func cayleyNeumann64(q *mat.Dense, n int) *mat.Dense {
	bs, _ := q.Dims()
	r := mat.NewDense(bs, bs, nil)
	for i := range bs {
		r.Set(i, i, 1)
	}
	addScaled := func(alpha float64, x *mat.Dense) {
		var t mat.Dense
		t.Scale(alpha, x)
		r.Add(r, &t)
	}
	if n > 1 {
		addScaled(2, q)
		if n > 2 {
			var p mat.Dense
			p.Mul(q, q)
			addScaled(2, &p)
			for i := 3; i < n-1; i++ {
				var t mat.Dense
				t.Mul(&p, q)
				p = t
				addScaled(2, &p)
			}
			var t mat.Dense
			t.Mul(&p, q)
			addScaled(1, &t)
		}
	}
	return r
}

// oftDelta64 writes W0·(R_bdᵀ − I) into delta.
func (l *Layer) oftDelta64(w0, q, delta *mat.Dense) {
	bs := l.oft.bs
	for r, rr := range l.oftBlocks64(q) {
		var rt mat.Dense
		rt.CloneFrom(rr.T())
		for i := range bs {
			rt.Set(i, i, rt.At(i, i)-1)
		}
		blk := w0.Slice(0, l.out, r*bs, (r+1)*bs)
		var prod mat.Dense
		prod.Mul(blk, &rt)
		delta.Slice(0, l.out, r*bs, (r+1)*bs).(*mat.Dense).Copy(&prod)
	}
}
