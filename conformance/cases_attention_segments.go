package conformance

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sora-go/sora/backend"
)

// Cases of AttentionParams.Segments (sequence packing: a query sees only
// the keys of its own document, on top of the causal mask and window).
// The documents come in varied lengths, 1 included, and in runs that
// cross the 16, 32 and 64 key blocks kernels use (sequences of 70 to
// 130); a sequence may be one document (which must equal no segments);
// the two sequences of a batch are packed differently; queries may be
// only the last part of the keys (a query offset, Tq < Tk), in which case
// the keys of documents no query sits in get gradients of exactly 0; and
// document numbers need not start at 0 or be consecutive (gaps, negative
// numbers, and a batch whose second sequence starts with a number below
// the first's last, which is no decrease within a sequence). They run with
// and without the causal mask, with a window and a soft-cap, with grouped
// heads, and once with scores in the hundreds, where a row maximum taken
// over other documents' keys leaves nothing but underflow.
//
// Besides the float64 reference (ref.go, which applies the segment rule
// as the contract words it), the "vs_separate" cases run every document
// alone on the same backend, without segments, and compare: packed
// attention must be the documents' attention side by side. (Their
// backward checks against the reference too and stands in for the plain
// backward case.)

// docs builds AttentionParams.Segments from one spec per sequence, each
// its documents as number:length joined by "+" ("0:3+1:1+2:4" is three
// documents, numbered 0, 1 and 2, of 3, 1 and 4 keys). A malformed spec
// is a bug in the case table and panics.
func docs(seqs ...string) []int32 {
	var seg []int32
	for _, spec := range seqs {
		for _, d := range strings.Split(spec, "+") {
			num, n, ok := strings.Cut(d, ":")
			id, err1 := strconv.ParseInt(num, 10, 32)
			length, err2 := strconv.Atoi(n)
			if !ok || err1 != nil || err2 != nil || length < 1 {
				panic("conformance: bad document spec " + strconv.Quote(d))
			}
			for range length {
				seg = append(seg, int32(id))
			}
		}
	}
	return seg
}

// docsString writes segments (keys per sequence) back in docs' form, the
// sequences separated by ",".
func docsString(seg []int32, keys int) string {
	var sb strings.Builder
	for b0 := 0; b0 < len(seg); b0 += keys {
		if b0 > 0 {
			sb.WriteByte(',')
		}
		seq := seg[b0:min(b0+keys, len(seg))]
		for j0 := 0; j0 < len(seq); {
			j1 := j0 + 1
			for j1 < len(seq) && seq[j1] == seq[j0] {
				j1++
			}
			if j0 > 0 {
				sb.WriteByte('+')
			}
			fmt.Fprintf(&sb, "%d:%d", seq[j0], j1-j0)
			j0 = j1
		}
	}
	return sb.String()
}

// attnDocRun is one document of one packed sequence: keys [k0, k1) of
// sequence b, and the queries [i0, i1) that sit in it (empty when no
// query does).
type attnDocRun struct{ b, k0, k1, i0, i1 int }

// docRuns splits c's sequences into their documents, as runs of equal
// numbers.
func (c attnCase) docRuns() []attnDocRun {
	var runs []attnDocRun
	for b := 0; b < c.s.B; b++ {
		seq := c.p.Segments[b*c.s.Tk : (b+1)*c.s.Tk]
		for k0 := 0; k0 < c.s.Tk; {
			k1 := k0 + 1
			for k1 < c.s.Tk && seq[k1] == seq[k0] {
				k1++
			}
			// Query i sits at key i + QueryOffset.
			i0 := min(max(k0-c.p.QueryOffset, 0), c.s.Tq)
			i1 := max(min(k1-c.p.QueryOffset, c.s.Tq), i0)
			runs = append(runs, attnDocRun{b: b, k0: k0, k1: k1, i0: i0, i1: i1})
			k0 = k1
		}
	}
	return runs
}

// alone returns the case of document r by itself: batch 1, its queries,
// its keys, no segments, and the query offset that puts its first query
// where it sat in its document.
func (c attnCase) alone(r attnDocRun) attnCase {
	a := c
	a.s.B, a.s.Tq, a.s.Tk = 1, r.i1-r.i0, r.k1-r.k0
	a.p.Segments = nil
	a.p.QueryOffset = r.i0 + c.p.QueryOffset - r.k0
	return a
}

// rowsOf returns rows [t0, t1) of sequence b of x [B, T, width].
func rowsOf[E float32 | float64](x []E, b, t0, t1, T, width int) []E {
	return x[(b*T+t0)*width : (b*T+t1)*width]
}

// separate runs every document of c that holds a query alone on the
// backend, without segments, and returns their out and lse (and, when
// dov is not nil, dq, dk and dv for the upstream gradient dov) put back
// in the packed layout. Keys of documents without queries get gradients
// of 0.
func (c attnCase) separate(e *Env, in attnInputs, dov []float32) (out, lse, dq, dk, dv []float64) {
	qw, kw := c.s.H*c.s.D, c.s.KV*c.s.D
	out = make([]float64, len(in.qv))
	lse = make([]float64, c.s.B*c.s.H*c.s.Tq)
	if dov != nil {
		dq, dk, dv = make([]float64, len(in.qv)), make([]float64, len(in.kv)), make([]float64, len(in.kv))
	}
	for _, r := range c.docRuns() {
		if r.i1 == r.i0 {
			continue
		}
		a := c.alone(r)
		q := e.Input(rowsOf(in.qv, r.b, r.i0, r.i1, c.s.Tq, qw), a.qShape()...)
		k := e.Input(rowsOf(in.kv, r.b, r.k0, r.k1, c.s.Tk, kw), a.kShape()...)
		v := e.Input(rowsOf(in.vv, r.b, r.k0, r.k1, c.s.Tk, kw), a.kShape()...)
		o := e.Output(a.qShape()...).SetName(fmt.Sprintf("out of sequence %d's keys [%d, %d) alone", r.b, r.k0, r.k1))
		l := e.Output(a.lseShape()...).SetName("lse of that document alone")
		e.B.Attention(o.T, l.T, q, k, v, a.p)
		copy(rowsOf(out, r.b, r.i0, r.i1, c.s.Tq, qw), F64(e.Values(o)))
		lv := e.Values(l)
		for h := 0; h < c.s.H; h++ {
			for i := r.i0; i < r.i1; i++ {
				lse[(r.b*c.s.H+h)*c.s.Tq+i] = float64(lv[h*a.s.Tq+i-r.i0])
			}
		}
		if dov == nil {
			continue
		}
		dout := e.Input(rowsOf(dov, r.b, r.i0, r.i1, c.s.Tq, qw), a.qShape()...)
		gq, gk, gv := e.Output(a.qShape()...), e.Output(a.kShape()...), e.Output(a.kShape()...)
		e.B.AttentionGrad(gq.T, gk.T, gv.T, q, k, v, o.T, l.T, dout, a.p)
		copy(rowsOf(dq, r.b, r.i0, r.i1, c.s.Tq, qw), F64(e.Values(gq)))
		copy(rowsOf(dk, r.b, r.k0, r.k1, c.s.Tk, kw), F64(e.Values(gk)))
		copy(rowsOf(dv, r.b, r.k0, r.k1, c.s.Tk, kw), F64(e.Values(gv)))
	}
	return out, lse, dq, dk, dv
}

// attnSegmentCases are the packed shapes; vs marks those also compared
// with their documents run separately.
var attnSegmentCases = []struct {
	attnCase
	vs bool
}{
	// Small: documents of 3, 1 and 4 keys, causal; the same not causal,
	// a length-1 document first.
	{attnCase{s: attnShape{B: 1, Tq: 8, Tk: 8, H: 2, KV: 1, D: 4}, p: backend.AttentionParams{Scale: 0.5, Causal: true, Segments: docs("0:3+1:1+2:4")}, span: 1, noLSE: true}, true},
	{attnCase{s: attnShape{B: 1, Tq: 9, Tk: 9, H: 2, KV: 2, D: 5}, p: backend.AttentionParams{Scale: 0.45, Segments: docs("0:1+1:5+2:3")}, span: 1}, false},
	// One document: the same as no segments, causal and not (the latter
	// with queries the last 6 of 9 keys, all of which they see).
	{attnCase{s: attnShape{B: 1, Tq: 12, Tk: 12, H: 2, KV: 1, D: 4}, p: backend.AttentionParams{Scale: 0.5, Causal: true, Segments: docs("5:12")}, span: 1}, true},
	{attnCase{s: attnShape{B: 1, Tq: 6, Tk: 9, H: 2, KV: 1, D: 4}, p: backend.AttentionParams{Scale: 0.5, QueryOffset: 3, Segments: docs("7:9")}, span: 1}, true},
	// Across blocks: boundaries at 15, 33, 34 and 64 (a document of 18
	// spanning the edges at 16 and 32, one of 1, one ending at the edge
	// at 64 and one starting there), causal; not causal over 100 keys
	// with numbers 3, 4, 9.
	{attnCase{s: attnShape{B: 1, Tq: 70, Tk: 70, H: 2, KV: 1, D: 16}, p: backend.AttentionParams{Scale: 0.25, Causal: true, Segments: docs("0:15+1:18+2:1+3:30+4:6")}, span: 2}, false},
	{attnCase{s: attnShape{B: 1, Tq: 100, Tk: 100, H: 2, KV: 2, D: 8}, p: backend.AttentionParams{Scale: 0.3536, Segments: docs("3:40+4:47+9:13")}, span: 2, noLSE: true}, false},
	// A window of 16 and a soft-cap: windows that a document start cuts
	// short, and a document of 1.
	{attnCase{s: attnShape{B: 1, Tq: 96, Tk: 96, H: 4, KV: 2, D: 12}, p: backend.AttentionParams{Scale: 0.2887, Softcap: 10, Causal: true, Window: 16, Segments: docs("0:20+1:50+2:1+3:25")}, span: 3}, false},
	// A batch of 2 packed differently, groups of 4; the second sequence
	// starts below the first's last number and holds negative numbers.
	{attnCase{s: attnShape{B: 2, Tq: 80, Tk: 80, H: 8, KV: 2, D: 8}, p: backend.AttentionParams{Scale: 0.3536, Causal: true, Segments: docs("10:33+11:47", "-2:1+0:1+5:64+6:14")}, span: 2}, true},
	// Queries the last 30 of 100 keys: the first document holds none of
	// them (its keys' gradients are 0), the second is cut.
	{attnCase{s: attnShape{B: 1, Tq: 30, Tk: 100, H: 4, KV: 1, D: 8}, p: backend.AttentionParams{Scale: 0.3536, Causal: true, QueryOffset: 70, Segments: docs("0:50+1:30+2:20")}, span: 2}, true},
	// Keys after the last query (queries at keys 30 to 49 of 60), causal:
	// the last document's keys 50 to 59 are seen by no query (their
	// gradients are 0), the first document by all.
	{attnCase{s: attnShape{B: 1, Tq: 20, Tk: 60, H: 4, KV: 2, D: 8}, p: backend.AttentionParams{Scale: 0.3536, Causal: true, QueryOffset: 30, Segments: docs("0:25+1:20+2:15")}, span: 2}, true},
	// Decoding with a window of 17: the query's document is shorter than
	// the window, in the second sequence a single key.
	{attnCase{s: attnShape{B: 2, Tq: 1, Tk: 37, H: 4, KV: 2, D: 7}, p: backend.AttentionParams{Scale: 0.378, Causal: true, QueryOffset: 36, Window: 17, Segments: docs("0:30+1:7", "0:36+1:1")}, span: 2, noLSE: true}, false},
	// Not causal with a query offset: queries see their whole document,
	// keys after them included, and not the first document's keys.
	{attnCase{s: attnShape{B: 1, Tq: 20, Tk: 70, H: 2, KV: 1, D: 6}, p: backend.AttentionParams{Scale: 0.4, QueryOffset: 50, Segments: docs("0:10+1:45+2:15")}, span: 1}, true},
	// Soft-capped, not causal, documents of 64 and 1 in either order.
	{attnCase{s: attnShape{B: 2, Tq: 65, Tk: 65, H: 2, KV: 1, D: 9}, p: backend.AttentionParams{Scale: 0.3333, Softcap: 5, Segments: docs("0:64+1:1", "100:1+101:64")}, span: 3}, false},
	// Queries the last 66 of 130 keys with a window of 33: one query
	// alone in its document at key 64, then windows cut by the start of
	// the last document until position 97.
	{attnCase{s: attnShape{B: 1, Tq: 66, Tk: 130, H: 2, KV: 1, D: 8}, p: backend.AttentionParams{Scale: 0.3536, Causal: true, QueryOffset: 64, Window: 33, Segments: docs("0:31+1:33+2:1+3:65")}, span: 2}, false},
	// Scores in the hundreds (see largeScores).
	{attnCase{s: attnShape{B: 1, Tq: 24, Tk: 24, H: 2, KV: 1, D: 16}, p: backend.AttentionParams{Scale: 1, Causal: true, Segments: docs("0:9+1:15")}, span: 7}, false},
}

func init() {
	for _, c := range attnSegmentCases {
		registerAttention(c.attnCase)
		if c.vs {
			registerSeparate(c.attnCase)
		} else {
			registerAttentionGrad(c.attnCase, "", nil, nil)
		}
	}
	registerSegmentRefusals()
}

// registerSeparate registers the comparisons of c, forward and backward,
// with its documents run alone (see separate). Both check against the
// reference first, as the plain cases do; the backward is c's only
// backward case.
func registerSeparate(c attnCase) {
	Register(Case{
		Name: string(backend.OpAttention) + "/" + c.suffix() + "/vs_separate",
		Op:   backend.OpAttention,
		Run: func(e *Env) {
			in := c.inputs(e)
			out, lse := c.forward(e, in, false)
			so, sl, _, _, _ := c.separate(e, in, nil)
			key := string(backend.OpAttention)
			e.CheckValues("packed out against the documents' alone", key, F64(e.Values(out)), so)
			e.CheckValues("packed lse against the documents' alone", key, F64(e.Values(lse)), sl)
		},
	})
	registerAttentionGrad(c, "/vs_separate", nil, func(e *Env, in attnInputs, dov []float32, dq, dk, dv *Out) {
		_, _, sq, sk, sv := c.separate(e, in, dov)
		key := string(backend.OpAttentionGrad)
		e.CheckValues("packed dq against the documents' alone", key, F64(e.Values(dq)), sq)
		e.CheckValues("packed dk against the documents' alone", key, F64(e.Values(dk)), sk)
		e.CheckValues("packed dv against the documents' alone", key, F64(e.Values(dv)), sv)
	})
}

// registerSegmentRefusals registers the invalid calls with segments:
// every one would be valid without them.
func registerSegmentRefusals() {
	type refusal struct {
		name, what string
		b, tq, tk  int
		p          backend.AttentionParams
		grad       bool
	}
	for _, r := range []refusal{
		{"attention_segments_per_sequence_not_batch", "Attention of a batch of 2 with the 6 segment numbers of one sequence",
			2, 4, 6, backend.AttentionParams{Scale: 1, Causal: true, QueryOffset: 2, Segments: docs("0:2+1:4")}, false},
		{"attention_segments_one_too_many", "Attention of 6 keys with 7 segment numbers",
			1, 4, 6, backend.AttentionParams{Scale: 1, Causal: true, QueryOffset: 2, Segments: docs("0:2+1:5")}, false},
		{"attention_segments_decreasing", "Attention with segment numbers 0 0 1 1 0 0",
			1, 6, 6, backend.AttentionParams{Scale: 1, Causal: true, Segments: docs("0:2+1:2+0:2")}, false},
		{"attention_grad_segments_decreasing_in_second_sequence", "AttentionGrad whose second sequence's numbers go 0 0 0 2 1 1",
			2, 6, 6, backend.AttentionParams{Scale: 1, Segments: docs("3:2+7:4", "0:3+2:1+1:2")}, true},
		{"attention_segments_queries_past_keys", "Attention with segments of 4 queries at offset 3 over 6 keys",
			1, 4, 6, backend.AttentionParams{Scale: 1, Causal: true, QueryOffset: 3, Segments: docs("0:3+1:3")}, false},
		{"attention_segments_more_queries_than_keys", "Attention with segments of 9 queries over 5 keys",
			1, 9, 5, backend.AttentionParams{Scale: 1, Causal: true, Segments: docs("0:2+1:3")}, false},
		{"attention_grad_segments_negative_offset", "AttentionGrad with segments, not causal, at query offset -1",
			1, 4, 6, backend.AttentionParams{Scale: 1, QueryOffset: -1, Segments: docs("0:3+1:3")}, true},
	} {
		op := backend.OpAttention
		if r.grad {
			op = backend.OpAttentionGrad
		}
		rejects(r.name, op, r.what, func(e *Env) {
			const h, kv, d = 2, 1, 8
			q := scratch(e, r.b, r.tq, h, d)
			k, v := scratch(e, r.b, r.tk, kv, d), scratch(e, r.b, r.tk, kv, d)
			call := func(p backend.AttentionParams) {
				if !r.grad {
					e.B.Attention(e.Output(r.b, r.tq, h, d).T, e.Output(r.b, h, r.tq).T, q, k, v, p)
					return
				}
				e.B.AttentionGrad(e.Output(r.b, r.tq, h, d).T, e.Output(r.b, r.tk, kv, d).T, e.Output(r.b, r.tk, kv, d).T,
					q, k, v, scratch(e, r.b, r.tq, h, d), scratch(e, r.b, h, r.tq), scratch(e, r.b, r.tq, h, d), p)
			}
			// Without segments the call is valid: the segments alone are
			// what must be refused.
			p := r.p
			p.Segments = nil
			call(p)
			if err := e.B.Sync(); err != nil {
				e.Fatalf("the same call without segments was refused (a bug in the case): %v", err)
			}
			call(r.p)
		})
	}
}
