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
// over the fused one as "speedup" (ns/op covers both together; each
// goes first in every other iteration). The
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
			alloc := func(shape ...int) backend.Tensor { return poisoned(b, be, shape...) }
			rng := newRNG(1)
			input := func(shape ...int) backend.Tensor {
				return upload(b, be, uniform(rng, backend.Shape(shape).NumElements(), -1, 1), shape...)
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
				if e := relErr(download(b, be, c[0]), f64(download(b, be, c[1]))); !(e <= 1e-4) {
					b.Fatalf("fused and unfused differ: relative error %.3g", e)
				}
			}
			t := inTurns(b, fused, unfused)
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			n := float64(b.N)
			b.ReportMetric(float64(t[0].Microseconds())/n/1e3, "fused-ms")
			b.ReportMetric(float64(t[1].Microseconds())/n/1e3, "unfused-ms")
			b.ReportMetric(float64(t[1])/float64(t[0]), "speedup")
		})
	}
}

// BenchmarkAttentionPacked times a training step's fused attention
// (Attention + AttentionGrad) on packed sequences, B sequences of 1024
// positions each holding documents of the lengths the name gives, against
// the same documents run unpacked (a call per document length, each
// document a batch element of its own) and against the same sequences
// as one causal document each without segments (what packing without
// segments would cost, and the work a mask-blind kernel would do), all in
// the same run, taking turns. It reports each time and the ratios
// alone/packed and full/packed; ns/op covers all three. It checks that
// packed and unpacked agree and asserts nothing about speed.
func BenchmarkAttentionPacked(b *testing.B) {
	const T, H, D = 1024, 8, 64
	layouts := []struct {
		name string
		docs []int
	}{
		{"8x128", repeatLen(8, 128)},
		{"mixed", []int{300, 17, 1, 64, 200, 150, 100, 192}},
		{"64x16", repeatLen(64, 16)},
		{"256x4", repeatLen(256, 4)},
	}
	for _, kv := range []int{8, 2} {
		for _, l := range layouts {
			b.Run(fmt.Sprintf("B2/T%d/H%d/KV%d/D%d/%s", T, H, kv, D, l.name), func(b *testing.B) {
				benchPacked(b, 2, T, H, kv, D, l.docs)
			})
		}
	}
}

// inTurns runs the steps in turn for b.Loop, each iteration starting
// one step later than the one before, so that none always follows the
// same one (and finds the caches as it left them), and returns each
// step's total time.
func inTurns(b *testing.B, steps ...func()) []time.Duration {
	sums := make([]time.Duration, len(steps))
	for i := 0; b.Loop(); i++ {
		for x := range steps {
			s := (i + x) % len(steps)
			t0 := time.Now()
			steps[s]()
			sums[s] += time.Since(t0)
		}
	}
	return sums
}

// repeatLen returns n lengths of l.
func repeatLen(n, l int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = l
	}
	return r
}

func benchPacked(b *testing.B, B, T, H, KV, D int, docs []int) {
	be := New(Options{})
	p := backend.AttentionParams{Scale: 0.125, Causal: true}
	alloc := func(shape ...int) backend.Tensor { return poisoned(b, be, shape...) }
	put := func(data []float32, shape ...int) backend.Tensor { return upload(b, be, data, shape...) }
	get := func(t backend.Tensor) []float32 { return download(b, be, t) }
	// call is one fused step on its own tensors.
	type call struct {
		q, k, v, dout, out, lse, dq, dk, dv backend.Tensor
		p                                   backend.AttentionParams
	}
	newCall := func(q, k, v, dout []float32, bn, t, kv int, p backend.AttentionParams) *call {
		return &call{
			q: put(q, bn, t, H, D), k: put(k, bn, t, kv, D), v: put(v, bn, t, kv, D), dout: put(dout, bn, t, H, D),
			out: alloc(bn, t, H, D), lse: alloc(bn, H, t), dq: alloc(bn, t, H, D), dk: alloc(bn, t, kv, D), dv: alloc(bn, t, kv, D),
			p: p,
		}
	}
	run := func(c *call) {
		be.Attention(c.out, c.lse, c.q, c.k, c.v, c.p)
		be.AttentionGrad(c.dq, c.dk, c.dv, c.q, c.k, c.v, c.out, c.lse, c.dout, c.p)
	}
	rng := newRNG(1)
	q, dout := uniform(rng, B*T*H*D, -1, 1), uniform(rng, B*T*H*D, -1, 1)
	k, v := uniform(rng, B*T*KV*D, -1, 1), uniform(rng, B*T*KV*D, -1, 1)
	var segs [][]int
	for range B {
		segs = append(segs, docs)
	}
	packedCall := newCall(q, k, v, dout, B, T, KV, withSegments(p, packed(segs...)))
	fullCall := newCall(q, k, v, dout, B, T, KV, p)

	// Unpacked: the documents of each length, gathered from every
	// sequence into a batch. where records each one's place.
	type place struct{ seq, start, n, group, index int }
	var places []place
	var alone []*call
	byLen := map[int]int{}
	var lens []int
	for _, n := range docs {
		if _, ok := byLen[n]; !ok {
			byLen[n] = len(lens)
			lens = append(lens, n)
		}
	}
	for gi, n := range lens {
		var gq, gk, gv, gd []float32
		idx := 0
		for s := range B {
			start := 0
			for _, m := range docs {
				if m == n {
					qr, kr := func(x []float32) []float32 { return x[(s*T+start)*H*D : (s*T+start+n)*H*D] }, func(x []float32) []float32 { return x[(s*T+start)*KV*D : (s*T+start+n)*KV*D] }
					gq, gd = append(gq, qr(q)...), append(gd, qr(dout)...)
					gk, gv = append(gk, kr(k)...), append(gv, kr(v)...)
					places = append(places, place{s, start, n, gi, idx})
					idx++
				}
				start += m
			}
		}
		alone = append(alone, newCall(gq, gk, gv, gd, idx, n, KV, p))
	}
	runAlone := func() {
		for _, c := range alone {
			run(c)
		}
	}

	run(packedCall)
	runAlone()
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	// Packed and unpacked must agree, or the comparison means nothing.
	pout, pdk := get(packedCall.out), get(packedCall.dk)
	var want, got, wantK, gotK []float32
	for _, pl := range places {
		aout, adk := get(alone[pl.group].out), get(alone[pl.group].dk)
		want = append(want, aout[pl.index*pl.n*H*D:(pl.index+1)*pl.n*H*D]...)
		got = append(got, pout[(pl.seq*T+pl.start)*H*D:(pl.seq*T+pl.start+pl.n)*H*D]...)
		wantK = append(wantK, adk[pl.index*pl.n*KV*D:(pl.index+1)*pl.n*KV*D]...)
		gotK = append(gotK, pdk[(pl.seq*T+pl.start)*KV*D:(pl.seq*T+pl.start+pl.n)*KV*D]...)
	}
	if e := max(relErr(got, f64(want)), relErr(gotK, f64(wantK))); e > 1e-5 {
		b.Fatalf("packed and unpacked differ: relative error %.3g", e)
	}

	t := inTurns(b, func() { run(packedCall) }, runAlone, func() { run(fullCall) })
	tp, ta, tf := t[0], t[1], t[2]
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	n := float64(b.N)
	b.ReportMetric(float64(tp.Microseconds())/n/1e3, "packed-ms")
	b.ReportMetric(float64(ta.Microseconds())/n/1e3, "alone-ms")
	b.ReportMetric(float64(tf.Microseconds())/n/1e3, "full-ms")
	b.ReportMetric(float64(ta)/float64(tp), "alone/packed")
	b.ReportMetric(float64(tf)/float64(tp), "full/packed")
}
