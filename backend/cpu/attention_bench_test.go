package cpu

import (
	"fmt"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
)

// BenchmarkAttention times a training step's attention, forward and
// backward, fused (Attention + AttentionGrad) and unfused on the same
// backend in the same run, alternating, and reports the unfused time
// over the fused one as "speedup" (ns/op covers both together). The
// unfused composition is what package graph does without the fused ops
// (models/llama's attention): q, k and v permuted from [B, T, heads, D]
// to [B, heads, T, D] with Copy, the scores with a batched MatMul of
// transposed keys (a group's query heads stacked against their shared
// key head), Softmax with the mask, a MatMul with v, the output permuted
// back; and the backward: dout permuted, dP = dout·vᵀ, SoftmaxGrad, the
// three gradient products and three permutes back. It asserts nothing.
func BenchmarkAttention(b *testing.B) {
	type shape struct{ B, T, H, KV, D int }
	var shapes []shape
	for _, t := range []int{128, 256, 512, 1024} {
		for _, kv := range []int{8, 2} {
			shapes = append(shapes, shape{4, t, 8, kv, 64})
		}
	}
	for _, s := range shapes {
		b.Run(fmt.Sprintf("B%d/T%d/H%d/KV%d/D%d/causal", s.B, s.T, s.H, s.KV, s.D), func(b *testing.B) {
			be := New(Options{})
			p := backend.AttentionParams{Scale: 0.125, Causal: true}
			alloc := func(shape ...int) backend.Tensor {
				t, err := be.Alloc(backend.Float32, shape...)
				if err != nil {
					b.Fatal(err)
				}
				return t
			}
			rng := newRNG(1)
			input := func(shape ...int) backend.Tensor {
				t := alloc(shape...)
				be.Upload(t, uniform(rng, t.Len(), -1, 1))
				return t
			}
			G := s.H / s.KV
			q, dout := input(s.B, s.T, s.H, s.D), input(s.B, s.T, s.H, s.D)
			k, v := input(s.B, s.T, s.KV, s.D), input(s.B, s.T, s.KV, s.D)

			// Fused.
			out, lse := alloc(s.B, s.T, s.H, s.D), alloc(s.B, s.H, s.T)
			dq, dk, dv := alloc(s.B, s.T, s.H, s.D), alloc(s.B, s.T, s.KV, s.D), alloc(s.B, s.T, s.KV, s.D)
			fused := func() {
				be.Attention(out, lse, q, k, v, p)
				be.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
			}

			// Unfused, with its own outputs and the stored scores.
			perm := func(t backend.Tensor) backend.Tensor {
				v, err := t.Permute(0, 2, 1, 3)
				if err != nil {
					b.Fatal(err)
				}
				return v
			}
			qp, kp, vp := alloc(s.B, s.H, s.T, s.D), alloc(s.B, s.KV, s.T, s.D), alloc(s.B, s.KV, s.T, s.D)
			dop, op := alloc(s.B, s.H, s.T, s.D), alloc(s.B, s.H, s.T, s.D)
			sc, pr := alloc(s.B*s.H, s.T, s.T), alloc(s.B*s.H, s.T, s.T)
			dqp, dkp, dvp := alloc(s.B, s.H, s.T, s.D), alloc(s.B, s.KV, s.T, s.D), alloc(s.B, s.KV, s.T, s.D)
			uout, udq, udk, udv := alloc(s.B, s.T, s.H, s.D), alloc(s.B, s.T, s.H, s.D), alloc(s.B, s.T, s.KV, s.D), alloc(s.B, s.T, s.KV, s.D)
			grp := func(t backend.Tensor, rows int) backend.Tensor { return t.MustReshape(s.B*s.KV, rows, t.Dim(-1)) }
			mask := p.Mask()
			nt := backend.MatMulParams{TransB: true, Alpha: 1}
			nn := backend.MatMulParams{Alpha: 1}
			tn := backend.MatMulParams{TransA: true, Alpha: 1}
			unfused := func() {
				be.Copy(qp, perm(q), false)
				be.Copy(kp, perm(k), false)
				be.Copy(vp, perm(v), false)
				be.MatMul(grp(sc, G*s.T), grp(qp, G*s.T), grp(kp, s.T), nt)
				be.Softmax(pr, sc, mask)
				be.MatMul(grp(op, G*s.T), grp(pr, G*s.T), grp(vp, s.T), nn)
				be.Copy(uout, perm(op), false)

				be.Copy(dop, perm(dout), false)
				be.MatMul(grp(sc, G*s.T), grp(dop, G*s.T), grp(vp, s.T), nt) // dP, over the scores
				be.SoftmaxGrad(sc, pr, sc, mask)
				be.MatMul(grp(dqp, G*s.T), grp(sc, G*s.T), grp(kp, s.T), nn)
				be.MatMul(grp(dkp, s.T), grp(sc, G*s.T), grp(qp, G*s.T), tn)
				be.MatMul(grp(dvp, s.T), grp(pr, G*s.T), grp(dop, G*s.T), tn)
				be.Copy(udq, perm(dqp), false)
				be.Copy(udk, perm(dkp), false)
				be.Copy(udv, perm(dvp), false)
			}
			fused()
			unfused()
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			// The two must agree, or the comparison means nothing.
			for _, c := range [][2]backend.Tensor{{out, uout}, {dq, udq}, {dk, udk}, {dv, udv}} {
				got, want := make([]float32, c[0].Len()), make([]float32, c[1].Len())
				if err := be.Download(got, c[0]); err != nil {
					b.Fatal(err)
				}
				if err := be.Download(want, c[1]); err != nil {
					b.Fatal(err)
				}
				if e := relErr(got, f64(want)); e > 1e-4 {
					b.Fatalf("fused and unfused differ: relative error %.3g", e)
				}
			}
			var tf, tu time.Duration
			for b.Loop() {
				t0 := time.Now()
				fused()
				t1 := time.Now()
				unfused()
				tu += time.Since(t1)
				tf += t1.Sub(t0)
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			n := float64(b.N)
			b.ReportMetric(float64(tf.Microseconds())/n/1e3, "fused-ms")
			b.ReportMetric(float64(tu.Microseconds())/n/1e3, "unfused-ms")
			b.ReportMetric(float64(tu)/float64(tf), "speedup")
		})
	}
}
