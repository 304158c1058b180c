package ascend

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/refops"
)

// cannSees is which keys CANN's documentation says a sparse mode leaves to
// query i of a sequence of s1 queries and s2 keys, when the mask (the
// compressed one for modes 2 to 4) is given: mode 0 without a mask sees
// everything; 2 counts from the top-left corner (j ≤ i); 3 and 4 from the
// bottom-right (j ≤ i + s2 − s1, and for 4 the band of preTokens and
// nextTokens around that diagonal). It is written from the documentation,
// independently of densePlan and varlenPlan.
func cannSees(pl faPlan, s1, s2, i, j int) bool {
	o := int64(s2 - s1)
	I, J := int64(i), int64(j)
	switch pl.mode {
	case sparseDefault:
		return !pl.mask
	case sparseLeftUp:
		return J <= I
	case sparseRightDown:
		return J <= I+o
	case sparseBand:
		return J >= I+o-pl.pre && J <= I+o+pl.next
	}
	panic(fmt.Sprintf("mode %d", pl.mode))
}

// validMask reports whether every query of p sees a key, which the
// interface requires (CheckAttention refuses the rest).
func validMask(p backend.AttentionParams, batch, queries, keys int) bool {
	for b := range batch {
		for i := range queries {
			any := false
			for j := range keys {
				any = any || refops.AttentionSees(p, keys, b, i, j)
			}
			if !any {
				return false
			}
		}
	}
	return true
}

// TestDensePlan checks the sparse mode, preTokens and nextTokens chosen
// for masks without segments: the expected ones for the cases the plan
// singles out, and for every small shape, offset and window that the
// interface accepts, that the keys CANN's rule leaves are exactly the
// interface's.
func TestDensePlan(t *testing.T) {
	for _, tc := range []struct {
		name          string
		tq, tk        int
		p             backend.AttentionParams
		mode          int64
		pre, next     int64
		compressedMsk bool
	}{
		{"not causal", 3, 5, backend.AttentionParams{QueryOffset: 2}, sparseDefault, maxTokens, maxTokens, false},
		{"training", 8, 8, backend.AttentionParams{Causal: true}, sparseRightDown, maxTokens, 0, true},
		{"prefill after a cache", 4, 10, backend.AttentionParams{Causal: true, QueryOffset: 6}, sparseRightDown, maxTokens, 0, true},
		{"decoding", 1, 13, backend.AttentionParams{Causal: true, QueryOffset: 12}, sparseRightDown, maxTokens, 0, true},
		{"more queries than keys", 9, 5, backend.AttentionParams{Causal: true}, sparseLeftUp, maxTokens, 0, true},
		{"keys after the last query", 5, 9, backend.AttentionParams{Causal: true, QueryOffset: 2}, sparseBand, maxTokens, -2, true},
		{"decoding with a window", 1, 37, backend.AttentionParams{Causal: true, QueryOffset: 36, Window: 17}, sparseBand, 16, 0, true},
		{"window 1", 9, 9, backend.AttentionParams{Causal: true, Window: 1}, sparseBand, 0, 0, true},
		{"window hiding nothing", 4, 4, backend.AttentionParams{Causal: true, Window: 4}, sparseRightDown, maxTokens, 0, true},
		{"window and offset", 4, 10, backend.AttentionParams{Causal: true, QueryOffset: 6, Window: 3}, sparseBand, 2, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := densePlan(tc.p, tc.tq, tc.tk)
			want := faPlan{mode: tc.mode, pre: tc.pre, next: tc.next, mask: tc.compressedMsk}
			if got != want {
				t.Errorf("densePlan = %+v, want %+v", got, want)
			}
		})
	}
	checked := 0
	for tq := 1; tq <= 7; tq++ {
		for tk := 1; tk <= 7; tk++ {
			for off := 0; off <= tk; off++ {
				for window := 0; window <= tq+off; window++ {
					for _, causal := range []bool{false, true} {
						if !causal && (window > 0 || off > 0) {
							continue
						}
						p := backend.AttentionParams{Scale: 1, Causal: causal, QueryOffset: off, Window: window}
						if !validMask(p, 1, tq, tk) {
							continue
						}
						pl := densePlan(p, tq, tk)
						for i := range tq {
							for j := range tk {
								if got, want := cannSees(pl, tq, tk, i, j), refops.AttentionSees(p, tk, 0, i, j); got != want {
									t.Fatalf("tq %d, tk %d, %+v: plan %+v lets query %d see key %d: %v, want %v", tq, tk, p, pl, i, j, got, want)
								}
							}
						}
						checked++
					}
				}
			}
		}
	}
	t.Logf("%d masks checked", checked)
}

// docs returns AttentionParams.Segments for one sequence of documents of
// the given lengths, numbered from 0.
func docs(lens ...int) []int32 {
	var s []int32
	for d, n := range lens {
		for range n {
			s = append(s, int32(d))
		}
	}
	return s
}

// TestVarLenPlan checks the split of packed rows into the variable-length
// operators' sequences: the calls, cumulative lengths and gaps of a few
// cases, and for random packings, offsets, windows and causality that the
// keys each query sees through its sequence (CANN's rule for the mode,
// counted within the sequence) are exactly the interface's, and that
// every query is in exactly one sequence.
func TestVarLenPlan(t *testing.T) {
	for _, tc := range []struct {
		name        string
		seg         []int32
		batch, q, k int
		off         int
		causal      bool
		calls       []varlenCall
		gaps        bool
	}{
		{"training: one call for the batch", append(docs(3, 1, 4), docs(8)...), 2, 8, 8, 0, true,
			[]varlenCall{{qRows: 16, kRows: 16, seqs: 2, cumQ: []int64{3, 4, 8, 16}, cumK: []int64{3, 4, 8, 16}}}, false},
		{"queries the last 30 of 100 keys", docs(50, 30, 20), 1, 30, 100, 70, true,
			[]varlenCall{{qRows: 30, kRow: 50, kRows: 50, seqs: 1, cumQ: []int64{10, 30}, cumK: []int64{30, 50}}}, true},
		{"not causal: the whole last document", docs(10, 45, 15), 1, 20, 70, 50, false,
			[]varlenCall{{qRows: 20, kRow: 10, kRows: 60, seqs: 1, cumQ: []int64{5, 20}, cumK: []int64{45, 60}}}, true},
		{"causal: keys after the last query cut", docs(4, 8), 1, 6, 12, 2, true,
			[]varlenCall{{qRows: 6, kRows: 8, seqs: 1, cumQ: []int64{2, 6}, cumK: []int64{4, 8}}}, true},
		{"a row per call when one has gaps", append(docs(6), docs(2, 4)...), 2, 4, 6, 2, true,
			[]varlenCall{
				{qRows: 4, kRows: 6, seqs: 1, cumQ: []int64{4}, cumK: []int64{6}},
				{qRow: 4, qRows: 4, kRow: 8, kRows: 4, seq0: 1, seqs: 1, cumQ: []int64{4}, cumK: []int64{4}},
			}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, gaps, ok := varlenPlan(tc.seg, tc.batch, tc.q, tc.k, tc.off, tc.causal)
			if !ok || gaps != tc.gaps || !slices.EqualFunc(calls, tc.calls, func(a, b varlenCall) bool {
				return a.qRow == b.qRow && a.qRows == b.qRows && a.kRow == b.kRow && a.kRows == b.kRows &&
					a.seq0 == b.seq0 && a.seqs == b.seqs && slices.Equal(a.cumQ, b.cumQ) && slices.Equal(a.cumK, b.cumK)
			}) {
				t.Errorf("varlenPlan = %+v, gaps %v, ok %v; want %+v, gaps %v", calls, gaps, ok, tc.calls, tc.gaps)
			}
		})
	}

	r := rand.New(rand.NewSource(5))
	for trial := range 3000 {
		batch, keys := 1+r.Intn(3), 1+r.Intn(12)
		queries := 1 + r.Intn(keys)
		off := r.Intn(keys - queries + 1)
		s := make([]int32, batch*keys)
		for b := range batch {
			doc := int32(r.Intn(3) - 1)
			for j := range keys {
				if j > 0 && r.Intn(3) == 0 {
					doc += int32(1 + r.Intn(2))
				}
				s[b*keys+j] = doc
			}
		}
		p := backend.AttentionParams{Scale: 1, Causal: r.Intn(3) > 0, QueryOffset: off, Segments: s}
		if p.Causal && r.Intn(2) == 0 {
			p.Window = 1 + r.Intn(keys)
		}
		if !validMask(p, batch, queries, keys) {
			continue
		}
		calls, gaps, ok := varlenPlan(s, batch, queries, keys, off, p.Causal)
		if !ok {
			t.Fatalf("trial %d: no plan", trial)
		}
		pl := varlenMode(p)
		seen := make([]int, batch*queries)
		covered := make([]bool, batch*keys)
		for _, c := range calls {
			if c.qRow%queries != 0 || c.qRows != c.seqs*queries || c.qRow/queries != c.seq0 {
				t.Fatalf("trial %d: call %+v does not cover whole rows", trial, c)
			}
			q0, k0 := int64(0), int64(0)
			for n := range c.cumQ {
				s1, s2 := int(c.cumQ[n]-q0), int(c.cumK[n]-k0)
				if s1 == 0 || s2 == 0 {
					t.Fatalf("trial %d: call %+v has an empty sequence %d", trial, c, n)
				}
				if pl.mode == sparseRightDown && s1 > s2 {
					t.Fatalf("trial %d: sequence with %d queries over %d keys in mode 3", trial, s1, s2)
				}
				for i := range s1 {
					qr := c.qRow + int(q0) + i // absolute query row
					b, qi := qr/queries, qr%queries
					seen[qr]++
					for j := range s2 {
						kr := c.kRow + int(k0) + j
						if kr/keys != b {
							t.Fatalf("trial %d: query row %d meets key row %d of another sequence", trial, qr, kr)
						}
						covered[kr] = true
						if got, want := cannSees(pl, s1, s2, i, j), refops.AttentionSees(p, keys, b, qi, kr%keys); got != want {
							t.Fatalf("trial %d: %+v, batch %d: query %d sees key %d: %v, want %v (calls %+v)",
								trial, p, b, qi, kr%keys, got, want, calls)
						}
					}
				}
				q0, k0 = c.cumQ[n], c.cumK[n]
			}
			if int(q0) != c.qRows || int(k0) != c.kRows {
				t.Fatalf("trial %d: call %+v: lengths sum to %d, %d", trial, c, q0, k0)
			}
		}
		for i, n := range seen {
			if n != 1 {
				t.Fatalf("trial %d: query row %d is in %d sequences", trial, i, n)
			}
		}
		// Keys outside every call must be ones no query sees, and then
		// gaps must say so.
		for kr, in := range covered {
			if in {
				continue
			}
			if !gaps {
				t.Fatalf("trial %d: key row %d is in no call but gaps is false", trial, kr)
			}
			for i := range queries {
				if refops.AttentionSees(p, keys, kr/keys, i, kr%keys) {
					t.Fatalf("trial %d: key row %d is in no call but query %d sees it", trial, kr, i)
				}
			}
		}
	}
}

// refAttention computes out and lse in float64 by the interface's
// definition.
func refAttention(q, k, v []float32, B, Tq, Tk, H, KV, D int, p backend.AttentionParams) (out, lse []float64) {
	out, lse = make([]float64, B*Tq*H*D), make([]float64, B*H*Tq)
	G := H / KV
	for b := range B {
		for h := range H {
			g := h / G
			for i := range Tq {
				s := make([]float64, Tk)
				m := math.Inf(-1)
				for j := range Tk {
					s[j] = math.Inf(-1)
					if !refops.AttentionSees(p, Tk, b, i, j) {
						continue
					}
					dot := 0.0
					for d := range D {
						dot += float64(q[((b*Tq+i)*H+h)*D+d]) * float64(k[((b*Tk+j)*KV+g)*D+d])
					}
					x := dot * float64(p.Scale)
					if p.Softcap > 0 {
						x = float64(p.Softcap) * math.Tanh(x/float64(p.Softcap))
					}
					s[j] = x
					m = math.Max(m, x)
				}
				sum := 0.0
				for j := range Tk {
					sum += math.Exp(s[j] - m)
				}
				lse[(b*H+h)*Tq+i] = m + math.Log(sum)
				for d := range D {
					acc := 0.0
					for j := range Tk {
						acc += math.Exp(s[j]-m) / sum * float64(v[((b*Tk+j)*KV+g)*D+d])
					}
					out[((b*Tq+i)*H+h)*D+d] = acc
				}
			}
		}
	}
	return out, lse
}

// attnInputs uploads random q, k, v and allocates out and lse.
type attnSetup struct {
	B, Tq, Tk, H, KV, D int
	q, k, v, out, lse   backend.Tensor
	qv, kv, vv          []float32
}

func newAttn(t *testing.T, b *Backend, r *rand.Rand, B, Tq, Tk, H, KV, D int) *attnSetup {
	t.Helper()
	a := &attnSetup{B: B, Tq: Tq, Tk: Tk, H: H, KV: KV, D: D}
	a.qv, a.kv, a.vv = randn(r, B*Tq*H*D, -1, 1), randn(r, B*Tk*KV*D, -1, 1), randn(r, B*Tk*KV*D, -1, 1)
	a.q, a.k, a.v = upload(t, b, a.qv, B, Tq, H, D), upload(t, b, a.kv, B, Tk, KV, D), upload(t, b, a.vv, B, Tk, KV, D)
	var err error
	if a.out, err = b.Alloc(backend.Float32, B, Tq, H, D); err != nil {
		t.Fatal(err)
	}
	if a.lse, err = b.Alloc(backend.Float32, B, H, Tq); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAttentionPaths checks which operators each kind of call reaches on
// the double, and that its results match the float64 reference: the
// dense operator for plain, causal and windowed grouped-query attention,
// the variable-length one (once for the batch, or once per row when a
// row's first keys hold no query) for segments, and the composition for
// a soft-cap; each call's gradient goes the same way.
func TestAttentionPaths(t *testing.T) {
	b, d := openDouble(t, Options{})
	if !b.Supports(backend.OpAttention) || !b.Supports(backend.OpAttentionGrad) {
		t.Fatal("the backend on the double does not support the fused attention")
	}
	r := rand.New(rand.NewSource(3))
	for _, tc := range []struct {
		name                string
		B, Tq, Tk, H, KV, D int
		p                   backend.AttentionParams
		fwd, grad           string // the operator each runs ("" for the composition)
		calls               int    // how many times
	}{
		{"plain, groups of 2", 2, 3, 5, 4, 2, 8, backend.AttentionParams{Scale: 0.35}, "FlashAttentionScore", "FlashAttentionScoreGrad", 1},
		{"causal", 1, 6, 6, 2, 1, 4, backend.AttentionParams{Scale: 0.5, Causal: true}, "FlashAttentionScore", "FlashAttentionScoreGrad", 1},
		{"window and offset", 1, 4, 9, 3, 3, 4, backend.AttentionParams{Scale: 0.5, Causal: true, QueryOffset: 5, Window: 3}, "FlashAttentionScore", "FlashAttentionScoreGrad", 1},
		{"segments, training", 2, 8, 8, 2, 1, 4, backend.AttentionParams{Scale: 0.5, Causal: true,
			Segments: []int32{0, 0, 0, 1, 2, 2, 2, 2, 5, 5, 5, 5, 5, 5, 5, 5}}, "FlashAttentionVarLenScore", "FlashAttentionUnpaddingScoreGrad", 1},
		{"segments, a document before the queries", 2, 4, 6, 2, 2, 4, backend.AttentionParams{Scale: 0.5, Causal: true, QueryOffset: 2,
			Segments: []int32{0, 0, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3}}, "FlashAttentionVarLenScore", "FlashAttentionUnpaddingScoreGrad", 2},
		{"segments, keys after the last query", 1, 3, 8, 2, 1, 4, backend.AttentionParams{Scale: 0.5, Causal: true, QueryOffset: 2,
			Segments: []int32{0, 0, 0, 1, 1, 1, 1, 1}}, "FlashAttentionVarLenScore", "FlashAttentionUnpaddingScoreGrad", 1},
		{"segments, not causal", 1, 6, 6, 2, 1, 4, backend.AttentionParams{Scale: 0.5,
			Segments: []int32{0, 0, 1, 1, 1, 1}}, "FlashAttentionVarLenScore", "FlashAttentionUnpaddingScoreGrad", 1},
		{"soft-cap", 1, 5, 5, 4, 2, 4, backend.AttentionParams{Scale: 0.5, Softcap: 2, Causal: true}, "", "", 0},
		{"soft-cap with segments", 1, 5, 5, 2, 1, 4, backend.AttentionParams{Scale: 0.5, Softcap: 2, Causal: true,
			Segments: []int32{0, 0, 1, 1, 1}}, "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAttn(t, b, r, tc.B, tc.Tq, tc.Tk, tc.H, tc.KV, tc.D)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			d.Reset()
			b.Attention(a.out, a.lse, a.q, a.k, a.v, tc.p)
			gotOut, gotLSE := download(t, b, a.out), download(t, b, a.lse)
			wantOut, wantLSE := refAttention(a.qv, a.kv, a.vv, tc.B, tc.Tq, tc.Tk, tc.H, tc.KV, tc.D, tc.p)
			checkClose(t, "out", gotOut, wantOut, 1e-10)
			checkClose(t, "lse", gotLSE, wantLSE, 1e-12)
			fused := 0
			for _, op := range []string{"FlashAttentionScore", "FlashAttentionVarLenScore"} {
				n := d.Calls("aclnn" + op)
				fused += n
				if op == tc.fwd && n != tc.calls {
					t.Errorf("aclnn%s called %d times, want %d", op, n, tc.calls)
				}
			}
			if tc.fwd == "" && (fused != 0 || d.Calls("aclnnBatchMatMul") == 0) {
				t.Errorf("the composition ran %d fused operators and %d aclnnBatchMatMul", fused, d.Calls("aclnnBatchMatMul"))
			}
			if tc.fwd != "" && (fused != tc.calls || d.Calls("aclnnBatchMatMul") != 0) {
				t.Errorf("%d fused operators and %d aclnnBatchMatMul, want %d and none", fused, d.Calls("aclnnBatchMatMul"), tc.calls)
			}

			d.Reset()
			dq, _ := b.Alloc(backend.Float32, tc.B, tc.Tq, tc.H, tc.D)
			dk, _ := b.Alloc(backend.Float32, tc.B, tc.Tk, tc.KV, tc.D)
			dv, _ := b.Alloc(backend.Float32, tc.B, tc.Tk, tc.KV, tc.D)
			dout := upload(t, b, randn(r, tc.B*tc.Tq*tc.H*tc.D, -1, 1), tc.B, tc.Tq, tc.H, tc.D)
			b.AttentionGrad(dq, dk, dv, a.q, a.k, a.v, a.out, a.lse, dout, tc.p)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			grads := d.Calls("aclnnFlashAttentionScoreGrad") + d.Calls("aclnnFlashAttentionUnpaddingScoreGrad")
			if tc.grad != "" && (d.Calls("aclnn"+tc.grad) != tc.calls || grads != tc.calls) {
				t.Errorf("aclnn%s called %d times (%d fused gradients), want %d", tc.grad, d.Calls("aclnn"+tc.grad), grads, tc.calls)
			}
			if tc.grad == "" && grads != 0 {
				t.Errorf("the composed gradient ran %d fused operators", grads)
			}
			// The gradient against central differences of the reference
			// loss Σ out⊙dout, for a few elements of each input.
			do := download(t, b, dout)
			loss := func(q, k, v []float32) float64 {
				o, _ := refAttention(q, k, v, tc.B, tc.Tq, tc.Tk, tc.H, tc.KV, tc.D, tc.p)
				s := 0.0
				for i := range o {
					s += o[i] * float64(do[i])
				}
				return s
			}
			for _, g := range []struct {
				name string
				t    backend.Tensor
				x    []float32
			}{{"dq", dq, a.qv}, {"dk", dk, a.kv}, {"dv", dv, a.vv}} {
				got := download(t, b, g.t)
				for _, i := range []int{0, len(g.x) / 2, len(g.x) - 1} {
					x := slices.Clone(g.x)
					x[i] = g.x[i] + 1e-3
					hi := float64(x[i])
					plus := lossWith(loss, a, g.name, x)
					x[i] = g.x[i] - 1e-3
					lo := float64(x[i])
					minus := lossWith(loss, a, g.name, x)
					want := (plus - minus) / (hi - lo)
					if math.Abs(float64(got[i])-want) > 1e-3*(1+math.Abs(want)) {
						t.Errorf("%s[%d] = %g, finite difference %g", g.name, i, got[i], want)
					}
				}
			}
		})
	}
}

// lossWith evaluates loss with x in place of the input name names.
func lossWith(loss func(q, k, v []float32) float64, a *attnSetup, name string, x []float32) float64 {
	switch name {
	case "dq":
		return loss(x, a.kv, a.vv)
	case "dk":
		return loss(a.qv, x, a.vv)
	}
	return loss(a.qv, a.kv, x)
}

// TestAttentionNotOnOlderChips: CANN documents its attention operators for
// Atlas A2 and A3 parts only; elsewhere Supports is false (so package
// graph composes attention) and a call is refused as unsupported.
func TestAttentionNotOnOlderChips(t *testing.T) {
	for _, soc := range []string{"Ascend910A", "Ascend310P3", "Ascend310B1"} {
		t.Run(soc, func(t *testing.T) {
			useChip(t, soc)
			b, _ := openDouble(t, Options{MatMul: MatMulFast})
			if b.Supports(backend.OpAttention) || b.Supports(backend.OpAttentionGrad) {
				t.Fatalf("Supports(attention) on %s", soc)
			}
			r := rand.New(rand.NewSource(1))
			a := newAttn(t, b, r, 1, 2, 2, 1, 1, 4)
			b.Attention(a.out, a.lse, a.q, a.k, a.v, backend.AttentionParams{Scale: 1})
			if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "does not implement this optional op") {
				t.Errorf("Attention on %s: %v, want the unsupported-op error", soc, err)
			}
		})
	}
}
