package cuda

// Fused attention on a GPU (scripts/gpu-check.sh runs every TestGPU test):
// the emulator's cases against the float64 reference, then a training-size
// shape against the composition from MatMul and Softmax (the path package
// graph takes on a backend without the fused ops), with the time and
// memory of both and whether the fused gradients repeat bit for bit.
// TestEmulatedAttentionUnfused runs the comparison at a small size on the
// emulated device, which tests the check itself.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/conformance"
)

// unfusedAttention holds the composition's tensors: q, k and v permuted to
// [B·H, T, D], the scores (then probabilities, then dS) and dP [B·H, T, T],
// and the [B·H, T, D] output and gradients before they are permuted back.
type unfusedAttention struct {
	batch, heads, seq, dim int
	qp, kp, vp, s, o       backend.Tensor // forward
	dop, dp, dqp, dkp, dvp backend.Tensor // backward
	forwardBytes, bytes    int64          // device memory of the forward's tensors, and of all
}

func newUnfusedAttention(t testing.TB, b *Backend, batch, heads, seq, dim int) *unfusedAttention {
	u := &unfusedAttention{batch: batch, heads: heads, seq: seq, dim: dim}
	bh := batch * heads
	before := b.MemoryStats().InUse
	u.qp, u.kp, u.vp = mustAlloc(t, b, bh, seq, dim), mustAlloc(t, b, bh, seq, dim), mustAlloc(t, b, bh, seq, dim)
	u.s, u.o = mustAlloc(t, b, bh, seq, seq), mustAlloc(t, b, bh, seq, dim)
	u.forwardBytes = b.MemoryStats().InUse - before
	u.dop, u.dp = mustAlloc(t, b, bh, seq, dim), mustAlloc(t, b, bh, seq, seq)
	u.dqp, u.dkp, u.dvp = mustAlloc(t, b, bh, seq, dim), mustAlloc(t, b, bh, seq, dim), mustAlloc(t, b, bh, seq, dim)
	u.bytes = b.MemoryStats().InUse - before
	return u
}

// toHeads copies x [B, T, H, D] into dst [B·H, T, D]; fromHeads the reverse.
func (u *unfusedAttention) toHeads(b *Backend, dst, x backend.Tensor) {
	src, err := x.Permute(0, 2, 1, 3)
	if err != nil {
		panic(err)
	}
	b.Copy(dst.MustReshape(u.batch, u.heads, u.seq, u.dim), src, false)
}

func (u *unfusedAttention) fromHeads(b *Backend, dst, x backend.Tensor) {
	src, err := x.MustReshape(u.batch, u.heads, u.seq, u.dim).Permute(0, 2, 1, 3)
	if err != nil {
		panic(err)
	}
	b.Copy(dst, src, false)
}

func (u *unfusedAttention) forward(b *Backend, out, q, k, v backend.Tensor, p backend.AttentionParams) {
	u.toHeads(b, u.qp, q)
	u.toHeads(b, u.kp, k)
	u.toHeads(b, u.vp, v)
	b.MatMul(u.s, u.qp, u.kp, backend.MatMulParams{TransB: true, Alpha: 1})
	b.Softmax(u.s, u.s, p.Mask())
	b.MatMul(u.o, u.s, u.vp, backend.MatMulParams{Alpha: 1})
	u.fromHeads(b, out, u.o)
}

// backward needs forward's state (the probabilities in s).
func (u *unfusedAttention) backward(b *Backend, dq, dk, dv, dout backend.Tensor, p backend.AttentionParams) {
	u.toHeads(b, u.dop, dout)
	b.MatMul(u.dp, u.dop, u.vp, backend.MatMulParams{TransB: true, Alpha: 1})
	b.MatMul(u.dvp, u.s, u.dop, backend.MatMulParams{TransA: true, Alpha: 1})
	b.SoftmaxGrad(u.dp, u.s, u.dp, p.Mask()) // dS, with the scale
	b.MatMul(u.dqp, u.dp, u.kp, backend.MatMulParams{Alpha: 1})
	b.MatMul(u.dkp, u.dp, u.qp, backend.MatMulParams{TransA: true, Alpha: 1})
	u.fromHeads(b, dq, u.dqp)
	u.fromHeads(b, dk, u.dkp)
	u.fromHeads(b, dv, u.dvp)
}

// bestTime runs f once to warm up, then reps times, and returns the
// fastest run (each ended by a Sync).
func bestTime(t testing.TB, b *Backend, reps int, f func()) time.Duration {
	t.Helper()
	f()
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	best := time.Duration(math.MaxInt64)
	for range reps {
		t0 := time.Now()
		f()
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(t0))
	}
	return best
}

// downloadAll returns x's elements.
func downloadAll(t testing.TB, b *Backend, x backend.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if err := b.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

// nmse32 is conformance.NMSE against a float32 reference.
func nmse32(got, want []float32) float64 {
	w := make([]float64, len(want))
	for i, x := range want {
		w[i] = float64(x)
	}
	return conformance.NMSE(got, w)
}

// checkAttentionUnfused compares fused causal attention with the
// composition on [batch, seq, heads, dim] inputs: the fused outputs and
// gradients must match the composition's within the conformance limits
// (both are float32 computations of the same values), and two runs of the
// fused backward must agree bit for bit. It logs the time of each path
// (best of reps) and the device memory of the tensors each allocates,
// with the ratios fused/unfused.
func checkAttentionUnfused(t *testing.T, b *Backend, batch, heads, seq, dim, reps int) {
	rng := rand.New(rand.NewPCG(17, uint64(seq)))
	shape := []int{batch, seq, heads, dim}
	n := batch * seq * heads * dim
	q, k, v := upload(t, b, uniform(rng, n, -1, 1), shape...), upload(t, b, uniform(rng, n, -1, 1), shape...), upload(t, b, uniform(rng, n, -1, 1), shape...)
	dout := upload(t, b, uniform(rng, n, -1, 1), shape...)
	p := backend.AttentionParams{Scale: float32(1 / math.Sqrt(float64(dim))), Causal: true}
	out, outU := mustAlloc(t, b, shape...), mustAlloc(t, b, shape...)
	grads := func() [3]backend.Tensor {
		return [3]backend.Tensor{mustAlloc(t, b, shape...), mustAlloc(t, b, shape...), mustAlloc(t, b, shape...)}
	}
	g, g2, gU := grads(), grads(), grads()

	before := b.MemoryStats().InUse
	lse := mustAlloc(t, b, batch, heads, seq)
	fusedBytes := b.MemoryStats().InUse - before
	u := newUnfusedAttention(t, b, batch, heads, seq, dim)

	fwdF := bestTime(t, b, reps, func() { b.Attention(out, lse, q, k, v, p) })
	fwdU := bestTime(t, b, reps, func() { u.forward(b, outU, q, k, v, p) })
	bwdF := bestTime(t, b, reps, func() { b.AttentionGrad(g[0], g[1], g[2], q, k, v, out, lse, dout, p) })
	bwdU := bestTime(t, b, reps, func() { u.backward(b, gU[0], gU[1], gU[2], dout, p) })
	b.AttentionGrad(g2[0], g2[1], g2[2], q, k, v, out, lse, dout, p)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}

	for i, name := range []string{"out", "dq", "dk", "dv"} {
		fused, unfused, again := out, outU, out
		limit := 1e-9 // the conformance limits of attention and attention_grad
		if i > 0 {
			fused, unfused, again = g[i-1], gU[i-1], g2[i-1]
		}
		f := downloadAll(t, b, fused)
		if e := nmse32(f, downloadAll(t, b, unfused)); !(e <= limit) {
			t.Errorf("%s: fused against unfused NMSE %.3g, limit %g", name, e, limit)
		} else {
			t.Logf("%s: fused against unfused NMSE %.3g", name, e)
		}
		for j, x := range downloadAll(t, b, again) {
			if math.Float32bits(x) != math.Float32bits(f[j]) {
				t.Errorf("%s: a second fused run differs at element %d: %g, then %g", name, j, f[j], x)
				break
			}
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	t.Logf("fused attention B=%d H=%d T=%d D=%d causal: forward %.3g ms vs unfused %.3g ms (%.3gx the time); backward %.3g ms vs %.3g ms (%.3gx); "+
		"tensors allocated: forward %.4g MiB vs %.4g MiB (%.3gx), with backward %.4g MiB vs %.4g MiB (%.3gx)",
		batch, heads, seq, dim, ms(fwdF), ms(fwdU), float64(fwdF)/float64(fwdU), ms(bwdF), ms(bwdU), float64(bwdF)/float64(bwdU),
		mib(fusedBytes), mib(u.forwardBytes), float64(fusedBytes)/float64(u.forwardBytes),
		mib(fusedBytes), mib(u.bytes), float64(fusedBytes)/float64(u.bytes))
}

// TestGPUAttention runs the emulator's attention cases (packed sequences
// included) on the device against the float64 reference, then the
// comparison with the unfused composition at B=4, H=16, T=2048, D=64
// (about 2.5 GB of device memory), and packed attention (documents of 256)
// at that size against the documents as separate sequences and against
// attention over whole sequences.
func TestGPUAttention(t *testing.T) {
	b := openGPU(t, Options{})
	for i, c := range attnCases() {
		t.Run(c.String(), func(t *testing.T) { checkAttentionCase(t, b, c, uint64(i+1)) })
	}
	for i, c := range attnSegmentCases() {
		t.Run(c.String(), func(t *testing.T) { checkAttentionCase(t, b, c, uint64(100+i)) })
	}
	t.Run("resources", func(t *testing.T) { checkAttentionResources(t, b) })
	t.Run("segments-unsynced", func(t *testing.T) { checkAttentionSegmentsUnsynced(t, b, 4, 8192, 2, 1, 64) })
	t.Run("unfused", func(t *testing.T) {
		checkAttentionUnfused(t, b, 4, 16, 2048, 64, 5)
	})
	t.Run("packed", func(t *testing.T) {
		checkAttentionPacked(t, b, 4, 16, 4, 2048, 64, 256, 5, backend.AttentionParams{Scale: 0.125, Causal: true})
	})
}

// checkAttentionPacked runs attention with base's mask (and scale, cap)
// over batch sequences of seq tokens, each packed with documents of doc
// tokens (doc a multiple of 64, so that every document starts at a tile
// edge of every kernel), three ways: packed (AttentionParams.Segments);
// with the documents as sequences of their own (the same tensors reshaped
// to [batch·seq/doc, doc, ...]); and over the whole sequences without
// segments (the work an attention blind to packing does). Packed and
// separate must agree bit for bit, outputs and gradients: the kernels
// visit the same tiles in the same order relative to each document. With
// reps > 0 it logs the time of each way (best of reps) and the ratios;
// with 0 it runs each way once, untimed.
func checkAttentionPacked(t *testing.T, b *Backend, batch, heads, kvHeads, seq, dim, doc, reps int, base backend.AttentionParams) {
	rng := rand.New(rand.NewPCG(23, uint64(seq)))
	docs := seq / doc
	qShape, kShape := []int{batch, seq, heads, dim}, []int{batch, seq, kvHeads, dim}
	nq, nk := batch*seq*heads*dim, batch*seq*kvHeads*dim
	q, k, v := upload(t, b, uniform(rng, nq, -1, 1), qShape...), upload(t, b, uniform(rng, nk, -1, 1), kShape...), upload(t, b, uniform(rng, nk, -1, 1), kShape...)
	dout := upload(t, b, uniform(rng, nq, -1, 1), qShape...)
	lens := make([][]int, batch)
	for i := range lens {
		for range docs {
			lens[i] = append(lens[i], doc)
		}
	}
	packed := base
	packed.Segments = packDocs(lens...)

	// Each way's outputs: out, lse, dq, dk, dv.
	type way struct {
		t [5]backend.Tensor
	}
	alloc := func() way {
		return way{[5]backend.Tensor{mustAlloc(t, b, qShape...), mustAlloc(t, b, batch, heads, seq),
			mustAlloc(t, b, qShape...), mustAlloc(t, b, kShape...), mustAlloc(t, b, kShape...)}}
	}
	pw, sw, ww := alloc(), alloc(), alloc()
	split := func(x backend.Tensor) backend.Tensor {
		sh := x.Shape()
		return x.MustReshape(batch*docs, doc, sh[2], sh[3])
	}
	sq, sk, sv, sdout := split(q), split(k), split(v), split(dout)
	// The separate sequences' lse is [batch·docs, heads, doc], not a
	// reshape of the packed [batch, heads, seq]: its own tensor.
	slse := mustAlloc(t, b, batch*docs, heads, doc)
	forward := map[string]func(){
		"packed":   func() { b.Attention(pw.t[0], pw.t[1], q, k, v, packed) },
		"separate": func() { b.Attention(split(sw.t[0]), slse, sq, sk, sv, base) },
		"whole":    func() { b.Attention(ww.t[0], ww.t[1], q, k, v, base) },
	}
	backward := map[string]func(){
		"packed": func() { b.AttentionGrad(pw.t[2], pw.t[3], pw.t[4], q, k, v, pw.t[0], pw.t[1], dout, packed) },
		"separate": func() {
			b.AttentionGrad(split(sw.t[2]), split(sw.t[3]), split(sw.t[4]), sq, sk, sv, split(sw.t[0]), slse, sdout, base)
		},
		"whole": func() { b.AttentionGrad(ww.t[2], ww.t[3], ww.t[4], q, k, v, ww.t[0], ww.t[1], dout, base) },
	}
	times := map[string][2]time.Duration{}
	for _, name := range []string{"packed", "separate", "whole"} {
		if reps == 0 {
			forward[name]()
			backward[name]()
			continue
		}
		times[name] = [2]time.Duration{bestTime(t, b, reps, forward[name]), bestTime(t, b, reps, backward[name])}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}

	// lse of the separate sequences in the packed layout.
	sl := downloadAll(t, b, slse)
	lse := make([]float32, len(sl))
	for bb := range batch {
		for d := range docs {
			for h := range heads {
				for i := range doc {
					lse[(bb*heads+h)*seq+d*doc+i] = sl[((bb*docs+d)*heads+h)*doc+i]
				}
			}
		}
	}
	for i, name := range []string{"out", "lse", "dq", "dk", "dv"} {
		want := lse
		if i != 1 {
			want = downloadAll(t, b, sw.t[i])
		}
		for j, x := range downloadAll(t, b, pw.t[i]) {
			if math.Float32bits(x) != math.Float32bits(want[j]) {
				t.Errorf("%s: packed and separate sequences differ at element %d: %g and %g", name, j, x, want[j])
				break
			}
		}
	}
	if reps == 0 {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	p, s, w := times["packed"], times["separate"], times["whole"]
	t.Logf("packed attention B=%d H=%d KV=%d T=%d D=%d, documents of %d, causal %v window %d: forward %.3g ms vs %.3g ms as separate sequences (%.3gx) "+
		"and %.3g ms over whole sequences (%.3gx); backward %.3g ms vs %.3g ms (%.3gx) and %.3g ms (%.3gx); packed and separate agree bit for bit",
		batch, heads, kvHeads, seq, dim, doc, base.Causal, base.Window, ms(p[0]), ms(s[0]), float64(p[0])/float64(s[0]), ms(w[0]), float64(p[0])/float64(w[0]),
		ms(p[1]), ms(s[1]), float64(p[1])/float64(s[1]), ms(w[1]), float64(p[1])/float64(w[1]))
}

// TestEmulatedAttentionPacked runs checkAttentionPacked at small sizes on
// the emulated device: causal with a window and a cap, untimed, and
// without a mask, timed once (the times mean nothing here; the run
// exercises the report).
func TestEmulatedAttentionPacked(t *testing.T) {
	b := openFake(t, Options{})
	checkAttentionPacked(t, b, 2, 2, 1, 128, 8, 64, 0, backend.AttentionParams{Scale: 0.4, Softcap: 3, Causal: true, Window: 20})
	checkAttentionPacked(t, b, 1, 1, 1, 128, 4, 64, 1, backend.AttentionParams{Scale: 0.4})
}

// TestEmulatedAttentionUnfused runs checkAttentionUnfused at a small size
// on the emulated device (its timings mean nothing).
func TestEmulatedAttentionUnfused(t *testing.T) {
	b := openFake(t, Options{})
	checkAttentionUnfused(t, b, 1, 2, 70, 8, 1)
}

// checkAttentionResources logs what the driver reports of each attention
// kernel's code (registers, local and static shared memory) in one line,
// and fails where a kernel cannot take the block size it is launched with,
// or where one of attn_fwd, attn_dq and attn_dkdv uses local memory: their
// accumulators are meant to stay in registers (the PTX checks see only
// arrays left in local memory by the front end, not ptxas's spills).
func checkAttentionResources(t *testing.T, b *Backend) {
	var report []string
	for _, k := range []*kernelSpec{kAttnFwd[0], kAttnFwd[1], kAttnFwd[2], kAttnDQ[0], kAttnDQ[1], kAttnDQ[2],
		kAttnDKV[0], kAttnDKV[1], kAttnDKV[2], kAttnDelta} {
		r, err := b.resources(k)
		if err != nil {
			t.Fatal(err)
		}
		threads := attnRowThreads
		switch {
		case k == kAttnDelta:
			threads = elemBlock
		case strings.HasPrefix(k.name, "attn_dkdv"):
			threads = attnColThreads
		}
		if r.maxThreads < threads {
			t.Errorf("%s: at most %d threads a block (%d registers a thread), launched with %d", k.name, r.maxThreads, r.registers, threads)
		}
		if k != kAttnDelta && r.localBytes > 0 {
			t.Errorf("%s: %d bytes of local memory a thread (%d registers): registers spilled", k.name, r.localBytes, r.registers)
		}
		report = append(report, fmt.Sprintf("%s %d regs %d B local %d B shared", k.name, r.registers, r.localBytes, r.sharedBytes))
	}
	t.Logf("attention kernels: %s", strings.Join(report, "; "))
}

// TestEmulatedAttentionResources: the emulated driver reports the largest
// block but, compiling nothing to SASS, no registers; resources passes its
// refusal on as an error naming the call.
func TestEmulatedAttentionResources(t *testing.T) {
	b := openFake(t, Options{})
	r, err := b.resources(kAttnFwd[0])
	if err == nil || !strings.Contains(err.Error(), "cuFuncGetAttribute(attn_fwd_64") || !strings.Contains(err.Error(), "CUDA_ERROR_NOT_SUPPORTED") {
		t.Errorf("resources on the emulated device: %v, want cuFuncGetAttribute's CUDA_ERROR_NOT_SUPPORTED", err)
	}
	if r.maxThreads != 1024 {
		t.Errorf("max threads a block %d, want the emulator's 1024", r.maxThreads)
	}
}

// checkAttentionSegmentsUnsynced issues Attention and AttentionGrad with
// one packing and then with another over the same tensors, with no Sync in
// between, and wants each call's outputs to have the bits they have when
// run alone. The calls share the backend's host staging of the document
// bounds: each upload must have consumed it (the driver stages pageable
// memory) before the next call rewrites it, and their scratch blocks,
// handed back to the pool at once, must not be overwritten before the
// kernels that read them have run (stream order).
func checkAttentionSegmentsUnsynced(t *testing.T, b *Backend, batch, seq, heads, kvHeads, dim int) {
	rng := rand.New(rand.NewPCG(5, uint64(seq)))
	a := attnCase{batch: batch, queries: seq, keys: seq, heads: heads, kvHeads: kvHeads, dim: dim,
		p: backend.AttentionParams{Scale: float32(1 / math.Sqrt(float64(dim))), Causal: true}}
	c := a
	lensA, lensC := make([][]int, batch), make([][]int, batch)
	for i := range batch {
		// Documents of seq/8 tokens, and a document of 1 token then one
		// of the rest of the sequence.
		for range 8 {
			lensA[i] = append(lensA[i], seq/8)
		}
		lensC[i] = []int{1, seq - 1}
	}
	a.p.Segments, c.p.Segments = packDocs(lensA...), packDocs(lensC...)
	nq, nk := batch*seq*heads*dim, batch*seq*kvHeads*dim
	qh, kh, vh, douth := uniform(rng, nq, -1, 1), uniform(rng, nk, -1, 1), uniform(rng, nk, -1, 1), uniform(rng, nq, -1, 1)
	wantA, wantC := runAttentionOn(t, b, a, qh, kh, vh, douth), runAttentionOn(t, b, c, qh, kh, vh, douth)

	q, k, v := upload(t, b, qh, a.qShape()...), upload(t, b, kh, a.kShape()...), upload(t, b, vh, a.kShape()...)
	dout := upload(t, b, douth, a.qShape()...)
	outs := func() [5]backend.Tensor {
		return [5]backend.Tensor{mustAlloc(t, b, a.qShape()...), mustAlloc(t, b, batch, heads, seq),
			mustAlloc(t, b, a.qShape()...), mustAlloc(t, b, a.kShape()...), mustAlloc(t, b, a.kShape()...)}
	}
	oa, oc := outs(), outs()
	b.Attention(oa[0], oa[1], q, k, v, a.p)
	b.Attention(oc[0], oc[1], q, k, v, c.p)
	b.AttentionGrad(oa[2], oa[3], oa[4], q, k, v, oa[0], oa[1], dout, a.p)
	b.AttentionGrad(oc[2], oc[3], oc[4], q, k, v, oc[0], oc[1], dout, c.p)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name string
		got  [5]backend.Tensor
		want [5][]float32
	}{{"documents of " + fmt.Sprint(seq/8), oa, wantA}, {"documents of 1 and " + fmt.Sprint(seq-1), oc, wantC}} {
		for o, name := range []string{"out", "lse", "dq", "dk", "dv"} {
			for j, x := range downloadAll(t, b, w.got[o]) {
				if math.Float32bits(x) != math.Float32bits(w.want[o][j]) {
					t.Errorf("%s, unsynchronised: %s[%d] = %g, run alone %g", w.name, name, j, x, w.want[o][j])
					break
				}
			}
		}
	}
}

// TestEmulatedAttentionSegmentsUnsynced runs the check small on the
// emulated device (which copies at once, so it tests the check itself).
func TestEmulatedAttentionSegmentsUnsynced(t *testing.T) {
	checkAttentionSegmentsUnsynced(t, openFake(t, Options{}), 2, 128, 2, 1, 8)
}
