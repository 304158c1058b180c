package peft

import (
	"gonum.org/v1/gonum/mat"
)

// factoredUpdate reports whether a method's update ΔW = W' − W0 is of low
// rank by construction, so that its spectrum can come from factors (see
// [Layer.updateFactors]) rather than from an SVD of the formed ΔW: LoRA
// and LoRA+ (rank ≤ r), Pre-Ortho and Post-Ortho (rank ≤ 2r_p + r). A
// diagonal conditioner (Pre-Diag, SORA), DoRA's norm diagonal, OFT and full
// fine-tuning make ΔW full-rank in general.
func factoredUpdate(spec Spec) bool {
	if !spec.LowRank {
		return false
	}
	lowRankCond := func(c Cond) bool { return c == Identity || c == Rotation }
	// Two rotations would give (R² − I)·W0 + R·s·B·A, of low rank too, but
	// no method has them and updateFactors does not write that case.
	return lowRankCond(spec.Pre) && lowRankCond(spec.Post) && !(spec.Pre == Rotation && spec.Post == Rotation)
}

// updateFactors writes a low-rank update (see factoredUpdate) as
// ΔW = left·right, left [out, k] and right [k, in] row-major, in float64
// from the host parameters, never forming an [out, in] product. With the
// rotation's R − I = u·φ·vᵀ (see rot64; φ = I for the first-order form,
// φ(vᵀu) for the exact exp(S)):
//
//	LoRA, LoRA+  ΔW = s·B·A                                       left = s·B,       right = A
//	Pre-Ortho    ΔW = (R − I)·W0 + s·B·A                          left = [u, s·B],  right = [φ·vᵀ·W0; A]
//	Post-Ortho   ΔW = (R − I)·(W0 + s·B·A) + s·B·A                left = [u, s·B],  right = [φ·vᵀ·W0 + φ·vᵀ·(s·B)·A; A]
//
// so k = r, or 2r_p + r with a rotation. These are the terms update64 adds
// up, regrouped: the same ΔW in exact arithmetic.
func (l *Layer) updateFactors(p hostParams) (k int, left, right []float64) {
	r := l.cfg.R
	sb := mat.NewDense(l.out, r, append([]float64(nil), p.bm...))
	sb.Scale(l.cfg.Scaling(), sb)
	a := mat.NewDense(r, l.in, p.a)
	if l.spec.Pre != Rotation && l.spec.Post != Rotation {
		return r, sb.RawMatrix().Data, append([]float64(nil), p.a...)
	}
	rp := l.cfg.RotationRank
	rot := newRot64(mat.NewDense(l.out, rp, p.c), mat.NewDense(l.out, rp, p.d), l.cfg.ExactRotation)
	top := rot.inner(mat.NewDense(l.out, l.in, p.w0)) // φ·vᵀ·W0 [2r_p, in]
	if l.spec.Post == Rotation {
		var t mat.Dense
		t.Mul(rot.inner(sb), a) // φ·vᵀ·(s·B)·A
		top.Add(top, &t)
	}
	k = 2*rp + r
	lm := mat.NewDense(l.out, k, nil)
	lm.Slice(0, l.out, 0, 2*rp).(*mat.Dense).Copy(rot.u)
	lm.Slice(0, l.out, 2*rp, k).(*mat.Dense).Copy(sb)
	rm := mat.NewDense(k, l.in, nil)
	rm.Slice(0, 2*rp, 0, l.in).(*mat.Dense).Copy(top)
	rm.Slice(2*rp, k, 0, l.in).(*mat.Dense).Copy(a)
	return k, lm.RawMatrix().Data, rm.RawMatrix().Data
}
