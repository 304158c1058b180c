package ascend

import (
	"errors"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/refops"
)

// TestStatRows checks the map from the interface's lse to the rows of the
// variable-length operators' statistics (one [N, s_d, 8] block per
// sequence) on a case worked by hand, and that it is a permutation whose
// inverse inverse returns, for random calls.
func TestStatRows(t *testing.T) {
	// One packed row of 8 queries in sequences of 3, 1 and 4 tokens, two
	// heads: the blocks are [2, 3] at row 0, [2, 1] at row 6, [2, 4] at 8.
	c := varlenCall{qRows: 8, kRows: 8, seqs: 1, cumQ: []int64{3, 4, 8}, cumK: []int64{3, 4, 8}}
	got := statRows(c, 2, 8)
	want := []int64{
		0, 1, 2, 6, 8, 9, 10, 11, // head 0, tokens 0-7
		3, 4, 5, 7, 12, 13, 14, 15, // head 1
	}
	if !slices.Equal(got, want) {
		t.Errorf("statRows = %v, want %v", got, want)
	}
	// Two packed rows in one call: the second row's tokens are 4-7 of the
	// call, its lse elements (1·N + h)·Tq + i.
	c = varlenCall{qRows: 8, kRows: 8, seqs: 2, cumQ: []int64{1, 4, 6, 8}, cumK: []int64{1, 4, 6, 8}}
	got = statRows(c, 2, 4)
	want = []int64{
		0, 2, 3, 4, // row 0, head 0: token 0 (sequence [0,1)), tokens 1-3 (sequence [1,4), block at row 2)
		1, 5, 6, 7, // row 0, head 1
		8, 9, 12, 13, // row 1, head 0: tokens 4-5 (block at 8), 6-7 (block at 12)
		10, 11, 14, 15, // row 1, head 1
	}
	if !slices.Equal(got, want) {
		t.Errorf("statRows (two rows) = %v, want %v", got, want)
	}

	r := rand.New(rand.NewSource(9))
	for trial := range 200 {
		seqs, queries, heads := 1+r.Intn(3), 1+r.Intn(9), 1+r.Intn(4)
		c := varlenCall{qRows: seqs * queries, seqs: seqs}
		for s := range seqs {
			for t := 1; t <= queries; t++ {
				if t == queries || r.Intn(3) == 0 {
					c.cumQ = append(c.cumQ, int64(s*queries+t))
				}
			}
		}
		p := statRows(c, heads, queries)
		inv := inverse(p)
		for i, row := range p {
			if row < 0 || int(row) >= len(p) || inv[row] != int64(i) {
				t.Fatalf("trial %d: %+v, %d heads: statRows %v is not a permutation (inverse %v)", trial, c, heads, p, inv)
			}
		}
	}
}

// refAttentionGrad is the interface's gradient in float64 for the loss
// Σ out ⊙ dout: P = softmax of the visible scores, dv_j += P_j dout,
// dS_j = P_j (dout·v_j − dout·out), dq += scale dS_j k_j, dk_j += scale
// dS_j q.
func refAttentionGrad(q, k, v, dout []float32, B, Tq, Tk, H, KV, D int, p backend.AttentionParams) (dq, dk, dv []float64) {
	dq, dk, dv = make([]float64, B*Tq*H*D), make([]float64, B*Tk*KV*D), make([]float64, B*Tk*KV*D)
	out, lse := refAttention(q, k, v, B, Tq, Tk, H, KV, D, p)
	G := H / KV
	for b := range B {
		for h := range H {
			g := h / G
			for i := range Tq {
				qi := ((b*Tq+i)*H + h) * D
				delta := 0.0
				for d := range D {
					delta += float64(dout[qi+d]) * out[qi+d]
				}
				for j := range Tk {
					if !refops.AttentionSees(p, Tk, b, i, j) {
						continue
					}
					kj := ((b*Tk+j)*KV + g) * D
					s, dp := 0.0, 0.0
					for d := range D {
						s += float64(q[qi+d]) * float64(k[kj+d])
						dp += float64(dout[qi+d]) * float64(v[kj+d])
					}
					P := math.Exp(s*float64(p.Scale) - lse[(b*H+h)*Tq+i])
					ds := P * (dp - delta) * float64(p.Scale)
					for d := range D {
						dv[kj+d] += P * float64(dout[qi+d])
						dq[qi+d] += ds * float64(k[kj+d])
						dk[kj+d] += ds * float64(q[qi+d])
					}
				}
			}
		}
	}
	return dq, dk, dv
}

// TestAttentionPackedStats checks packed (Segments) attention with several
// documents in each variable-length call and several heads, where the
// order of the operators' statistics matters: lse and out of the forward,
// and dq, dk, dv of the gradient against float64, the gradient fed both
// the backend's own lse and the float64 one (a layout error the forward
// and gradient made alike would cancel in the first). The cases cover
// the single call for the whole batch and the call per packed row, with
// grouped-query (2 and 4 query heads per key/value head) and multi-head
// attention.
func TestAttentionPackedStats(t *testing.T) {
	b, d := openDouble(t, Options{})
	r := rand.New(rand.NewSource(11))
	for _, tc := range []struct {
		name                string
		B, Tq, Tk, H, KV, D int
		p                   backend.AttentionParams
		calls               int // variable-length calls: 1 for the batch, B per row
	}{
		{"one call, causal, GQA 2", 2, 12, 12, 4, 2, 8, backend.AttentionParams{Scale: 0.4, Causal: true,
			Segments: append(docs(3, 5, 1, 3), docs(7, 2, 3)...)}, 1},
		{"one call, not causal, MQA", 2, 10, 10, 4, 1, 4, backend.AttentionParams{Scale: 0.5,
			Segments: append(docs(4, 6), docs(1, 2, 3, 4)...)}, 1},
		{"one call, window, MHA", 3, 9, 9, 3, 3, 4, backend.AttentionParams{Scale: 0.5, Causal: true, Window: 3,
			Segments: slices.Concat(docs(2, 7), docs(9), docs(5, 1, 3))}, 1},
		{"per row, a document before the queries, GQA 2", 2, 8, 12, 4, 2, 8, backend.AttentionParams{Scale: 0.4, Causal: true,
			QueryOffset: 4, Segments: append(docs(3, 4, 2, 3), docs(6, 6)...)}, 2},
		{"per row, not causal, keys after the queries, GQA 4", 2, 6, 10, 4, 1, 4, backend.AttentionParams{Scale: 0.5,
			QueryOffset: 2, Segments: append(docs(2, 3, 5), docs(4, 4, 2)...)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAttn(t, b, r, tc.B, tc.Tq, tc.Tk, tc.H, tc.KV, tc.D)
			do := randn(r, tc.B*tc.Tq*tc.H*tc.D, -1, 1)
			dout := upload(t, b, do, tc.B, tc.Tq, tc.H, tc.D)
			wantOut, wantLSE := refAttention(a.qv, a.kv, a.vv, tc.B, tc.Tq, tc.Tk, tc.H, tc.KV, tc.D, tc.p)
			lse64 := make([]float32, len(wantLSE))
			for i, x := range wantLSE {
				lse64[i] = float32(x)
			}
			refLSE := upload(t, b, lse64, tc.B, tc.H, tc.Tq)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			d.Reset()
			b.Attention(a.out, a.lse, a.q, a.k, a.v, tc.p)
			checkClose(t, "out", download(t, b, a.out), wantOut, 1e-10)
			checkClose(t, "lse", download(t, b, a.lse), wantLSE, 1e-12)
			if n := d.Calls("aclnnFlashAttentionVarLenScore"); n != tc.calls {
				t.Errorf("aclnnFlashAttentionVarLenScore ran %d times, want %d", n, tc.calls)
			}
			wq, wk, wv := refAttentionGrad(a.qv, a.kv, a.vv, do, tc.B, tc.Tq, tc.Tk, tc.H, tc.KV, tc.D, tc.p)
			for _, l := range []struct {
				name string
				lse  backend.Tensor
			}{{"the backend's lse", a.lse}, {"the float64 lse", refLSE}} {
				dq, _ := b.Alloc(backend.Float32, tc.B, tc.Tq, tc.H, tc.D)
				dk, _ := b.Alloc(backend.Float32, tc.B, tc.Tk, tc.KV, tc.D)
				dv, _ := b.Alloc(backend.Float32, tc.B, tc.Tk, tc.KV, tc.D)
				d.Reset()
				b.AttentionGrad(dq, dk, dv, a.q, a.k, a.v, a.out, l.lse, dout, tc.p)
				checkClose(t, "dq from "+l.name, download(t, b, dq), wq, 1e-10)
				checkClose(t, "dk from "+l.name, download(t, b, dk), wk, 1e-10)
				checkClose(t, "dv from "+l.name, download(t, b, dv), wv, 1e-10)
				if n := d.Calls("aclnnFlashAttentionUnpaddingScoreGrad"); n != tc.calls {
					t.Errorf("aclnnFlashAttentionUnpaddingScoreGrad ran %d times, want %d", n, tc.calls)
				}
				b.Free(dq)
				b.Free(dk)
				b.Free(dv)
			}
		})
	}
}

// TestAttentionPackedHeadDim: aclnnFlashAttentionUnpaddingScoreGrad takes
// head sizes up to 512 (the forward operator up to 768), so a packed
// gradient with a head size between them is composed, and still matches
// float64, while its forward runs on the fused operator.
func TestAttentionPackedHeadDim(t *testing.T) {
	b, d := openDouble(t, Options{})
	const B, T, H, KV, D = 1, 5, 2, 1, 520
	p := backend.AttentionParams{Scale: 0.05, Causal: true, Segments: []int32{0, 0, 1, 1, 1}}
	r := rand.New(rand.NewSource(4))
	a := newAttn(t, b, r, B, T, T, H, KV, D)
	do := randn(r, B*T*H*D, -1, 1)
	dout := upload(t, b, do, B, T, H, D)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	d.Reset()
	b.Attention(a.out, a.lse, a.q, a.k, a.v, p)
	wantOut, wantLSE := refAttention(a.qv, a.kv, a.vv, B, T, T, H, KV, D, p)
	checkClose(t, "out", download(t, b, a.out), wantOut, 1e-10)
	checkClose(t, "lse", download(t, b, a.lse), wantLSE, 1e-12)
	if n := d.Calls("aclnnFlashAttentionVarLenScore"); n != 1 {
		t.Errorf("the forward ran aclnnFlashAttentionVarLenScore %d times, want 1", n)
	}
	dq, _ := b.Alloc(backend.Float32, B, T, H, D)
	dk, _ := b.Alloc(backend.Float32, B, T, KV, D)
	dv, _ := b.Alloc(backend.Float32, B, T, KV, D)
	d.Reset()
	b.AttentionGrad(dq, dk, dv, a.q, a.k, a.v, a.out, a.lse, dout, p)
	wq, wk, wv := refAttentionGrad(a.qv, a.kv, a.vv, do, B, T, T, H, KV, D, p)
	checkClose(t, "dq", download(t, b, dq), wq, 1e-10)
	checkClose(t, "dk", download(t, b, dk), wk, 1e-10)
	checkClose(t, "dv", download(t, b, dv), wv, 1e-10)
	if n := d.Calls("aclnnFlashAttentionUnpaddingScoreGrad"); n != 0 || d.Calls("aclnnBatchMatMul") == 0 {
		t.Errorf("the gradient ran aclnnFlashAttentionUnpaddingScoreGrad %d times and aclnnBatchMatMul %d; want the composition",
			n, d.Calls("aclnnBatchMatMul"))
	}
}

// TestVarLenPlanTokens: a variable-length call takes at most 1M tokens
// (T), so a batch of more is split into calls per row, and a row of more
// is composed (composeReason), as a dense call of more than 1M queries or
// keys is.
func TestVarLenPlanTokens(t *testing.T) {
	const T = faMaxTokens/2 + 8
	seg := make([]int32, 2*T)
	for i := range seg {
		seg[i] = int32(i % T / 1000) // documents of 1000 tokens
	}
	calls, gaps, ok := varlenPlan(seg, 2, T, T, 0, true)
	if !ok || gaps || len(calls) != 2 {
		t.Fatalf("%d tokens in 2 rows: %d calls, gaps %v, ok %v; want one per row", 2*T, len(calls), gaps, ok)
	}
	calls, _, ok = varlenPlan(seg[:2*(T-16)], 2, T-16, T-16, 0, true)
	if !ok || len(calls) != 1 {
		t.Fatalf("%d tokens in 2 rows: %d calls, ok %v; want one", 2*(T-16), len(calls), ok)
	}
	for _, d := range []backend.AttentionDims{
		{Batch: 1, Queries: faMaxTokens + 1, Keys: faMaxTokens + 1, Heads: 1, KVHeads: 1, HeadDim: 8},
		{Batch: 1, Queries: 1, Keys: faMaxTokens + 1, Heads: 1, KVHeads: 1, HeadDim: 8},
	} {
		if composeReason(backend.AttentionParams{Scale: 1}, d, false) == "" {
			t.Errorf("%+v: not composed", d)
		}
	}
	if r := composeReason(backend.AttentionParams{Scale: 1}, backend.AttentionDims{Batch: 4, Queries: faMaxTokens,
		Keys: faMaxTokens, Heads: 1, KVHeads: 1, HeadDim: 8}, false); r != "" {
		t.Errorf("a call at the limit is composed: %s", r)
	}
}

// TestFlashAttentionGradDoubleLimits: the double refuses, in phase one,
// what the gradients' documentation and operator definition refuse and
// the forward takes: a UINT8 mask (FLOAT inputs pair with BOOL in the
// gradient's definition) and, in the variable-length gradient, a head size
// above 512.
func TestFlashAttentionGradDoubleLimits(t *testing.T) {
	b, _ := openDouble(t, Options{})
	const T, H = 4, 2
	causal := faPlan{mode: sparseRightDown, pre: maxTokens, next: 0, mask: true}
	u8mask := func(c *call) uintptr {
		m := make([]bool, compressedMask*compressedMask)
		for i := range compressedMask {
			for j := i + 1; j < compressedMask; j++ {
				m[i*compressedMask+j] = true
			}
		}
		v := c.uploadMask(m, compressedMask, compressedMask)
		v.dtype = 4 // ACL_UINT8: the same bytes
		return c.tensor(v)
	}
	args := func(op string, D int, u8 bool) func(c *call) faCall {
		return func(c *call) faCall {
			varlen := op == "FlashAttentionVarLenScore" || op == "FlashAttentionUnpaddingScoreGrad"
			grad := strings.HasSuffix(op, "Grad")
			shape := func(n int) []int {
				if varlen {
					return []int{T, n, D}
				}
				return []int{1, T, n, D}
			}
			filled := func(x float32, s ...int) uintptr {
				v := c.temp(s...)
				c.launch("InplaceFillScalar", c.tensor(v), c.scalar(x))
				return c.tensor(v)
			}
			st := []int{1, H, T, 8}
			a := faCall{q: filled(0.1, shape(H)...), k: filled(0.2, shape(1)...), v: filled(0.3, shape(1)...),
				scale: 0.5, heads: H, plan: causal, layout: cBSND, mask: c.faMask(causal), out: filled(0.5, shape(H)...)}
			if varlen {
				a.layout, st = cTND, []int{T, H, 8}
				a.seqQ, a.seqKv = c.intArray(1, 4), c.intArray(1, 4)
			}
			if u8 {
				a.mask = u8mask(c)
			}
			a.max, a.sum = filled(0, st...), filled(1, st...)
			if grad {
				a.dy = filled(1, shape(H)...)
				a.dq, a.dk, a.dv = c.tensor(c.temp(shape(H)...)), c.tensor(c.temp(shape(1)...)), c.tensor(c.temp(shape(1)...))
			}
			return a
		}
	}
	for _, tc := range []struct {
		op   string
		D    int
		u8   bool
		want string // "" for a valid call
	}{
		{"FlashAttentionScore", 8, true, ""},
		{"FlashAttentionVarLenScore", 8, true, ""},
		{"FlashAttentionScoreGrad", 8, true, "takes ACL_BOOL only"},
		{"FlashAttentionUnpaddingScoreGrad", 8, true, "takes ACL_BOOL only"},
		{"FlashAttentionUnpaddingScoreGrad", 8, false, ""},
		{"FlashAttentionVarLenScore", 520, false, ""},
		{"FlashAttentionScoreGrad", 520, false, ""},
		{"FlashAttentionUnpaddingScoreGrad", 512, false, ""},
		{"FlashAttentionUnpaddingScoreGrad", 520, false, "1 <= D <= 512"},
	} {
		err := rawFlash(b, tc.op, args(tc.op, tc.D, tc.u8))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s, D %d, UINT8 mask %v: a valid call failed: %v", tc.op, tc.D, tc.u8, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s, D %d, UINT8 mask %v: error %v, want one containing %q", tc.op, tc.D, tc.u8, err, tc.want)
		case tc.want != "":
			var ae *ACLError
			if !errors.As(err, &ae) {
				t.Errorf("error %v is not an *ACLError", err)
			}
		}
	}
}
