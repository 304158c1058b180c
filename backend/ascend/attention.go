package ascend

import (
	"fmt"
	"math"
	"strings"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// Fused attention on CANN's FlashAttention operators.
//
// # Which CANN documentation this follows
//
// The operators are aclnnFlashAttentionScore, aclnnFlashAttentionVarLenScore
// and their gradients aclnnFlashAttentionScoreGrad and
// aclnnFlashAttentionUnpaddingScoreGrad, as the aclnn API reference of CANN
// 8.0.0 (commercial), 8.1.RC1 and 8.2/8.3 (community editions) documents
// them, together with the docs and host code of the open ops-transformer
// sources of the same operators (attention/flash_attention_score*, including
// the "sparse mode" introduction), which fill in what the reference leaves
// out (how sparse modes 2 to 4 count preTokens and nextTokens, which
// combinations the host code refuses). Prototypes (argument order, int64_t
// and double arguments, char* inputLayout) are the 8.0 ones; earlier
// releases (23.0.RC2) had a shorter aclnnFlashAttentionScore without
// prefixOptional and sparseMode. The backend uses the operators only when
// aclnnFlashAttentionVarLenScore and aclnnFlashAttentionUnpaddingScoreGrad
// are present too, which those older releases lack, so that it never calls
// the older prototype.
//
// # Mapping
//
// q, k, v and out are [batch, sequence, heads, headDim], which is CANN's
// "BSND" layout, so they are passed as they are (headNum = heads; kvHeads
// below heads is CANN's GQA, Nq a multiple of Nkv). Scale is scaleValue,
// keepProb is 1 and there is no pse, dropout or prefix. Without Segments:
//
//   - not causal: sparseMode 0 and no attenMask (full computation);
//   - causal, no window, QueryOffset = keys − queries: sparseMode 3
//     (rightDownCausal), which training (queries = keys) and prefill use;
//   - causal, no window, QueryOffset 0: sparseMode 2 (leftUpCausal);
//   - otherwise (a window, or another offset): sparseMode 4 (band) with
//     nextTokens = QueryOffset − (keys − queries) and preTokens = Window − 1
//     − nextTokens (2147483647 without a window), both counted from the
//     bottom-right corner as mode 4 counts them: query i sees key j when
//     i + keys − queries − preTokens ≤ j ≤ i + keys − queries + nextTokens.
//
// Modes 2 to 4 take the compressed mask, [2048, 2048] booleans that are
// true (masked) above the diagonal, uploaded once and cached.
//
// With Segments the variable-length operators (layout "TND") run each
// document as a sequence of its own: the queries in a document are a
// sequence's queries and its keys (cut at the last query when causal, as
// later keys are hidden) the sequence's keys, given as cumulative
// actualSeqQLen / actualSeqKvLen. Every document then has its queries at the
// end of its keys, so causal is sparseMode 3 per sequence and a window is
// sparseMode 4 with preTokens = Window − 1, nextTokens = 0; not causal is
// sparseMode 0 without a mask. When every document of every packed row holds
// a query and nothing is cut (training's QueryOffset 0, queries = keys), and
// the batch holds at most 2048 documents and 1M tokens (the operators'
// limits on actualSeqQLen and T), one call covers the whole batch, q and k
// reshaped to [B·T, N, D]; otherwise one call per row covers that row's keys
// from its first document that holds a query to the end of its last, and dk
// and dv are zeroed first for the keys outside. Documents without queries
// never become empty sequences, which only the newest documentation allows.
//
// softmaxMax and softmaxSum are [B, N, Sq, 8] (each value 8 times); the
// log-sum-exp the interface wants is softmaxMax + log(softmaxSum). For the
// gradient they are made from lse: softmaxMax = lse (all 8 copies) and
// softmaxSum = 1, so that the operator's exp(s − max)/sum is exp(s − lse).
//
// The variable-length operators' statistics are declared [T, N, 8] (the
// shape their shape inference gives) but laid out as one [N, s_d, 8] block
// per sequence d, the blocks in actualSeqQLen order: token t of sequence d
// (which starts at cumulative query Q_d and holds s_d queries) has head h's
// statistic at row Q_d·N + h·s_d + (t − Q_d) of the [T·N, 8] data. That
// agrees with a single [N, T, 8] block (what the V4 documentation's "NTD"
// suggests) only for one sequence per call or N = 1. The layout is read from
// the V1 kernels of the open ops-transformer sources (snapshot c29bc10):
// flash_attention_score_s1s2_bn2gs1.h writes softmaxMax at (s1SizeAcc·n2G +
// n2oIdx·G·s1Size + goIdx·s1Size + s1oIdx·s1Base)·8 with s1Size the current
// sequence's queries and s1SizeAcc those before it;
// flash_attention_var_len_score.h zero-fills an empty sequence's as one run
// at accumSize·n2G·8; the gradient reads them back the same way
// (flash_attention_score_grad_s1s2_bn2gs1s2.h, basic_modules/vec_op.h), and
// Ascend's MindSpeed (context_parallel/utils.py, flatten_softmax) splits TND
// softmax_max into per-sequence [N, s, 8] blocks. So the forward computes
// lse in that row order (the first of the 8 copies, viewed [T·N, 8]) and
// gathers it into [B, N, T] with aclnnEmbedding through an index built on
// the host from the sequence lengths (statRows); the gradient gathers lse
// through the inverse permutation (every token of a call is in one sequence)
// and broadcasts it into the 8 copies. The softmaxOutLayout =
// "same_as_input" of aclnnFlashAttentionVarLenScoreV4 (CANN 8.3+) would give
// a [T, N, 8] layout instead. It is not used: in the same snapshot the
// forward writes that layout at (t·N + h)·8, while the gradient's reader for
// softmaxInLayout (flash_attention_score_grad_s1s2_bn2gs1s2.h, tndSoftmaxIn)
// computes (h·T + t)·8, so which layouts pair is not certain without
// hardware.
//
// # What CANN has no counterpart for
//
// Soft-capping (Gemma 2): the operators compute no tanh of the scores. The
// interface gives a backend no way to refuse one call so that package graph
// composes it (Supports takes no parameters), so calls with a Softcap, and
// calls past the operators' documented limits (more than 256 query heads,
// head size above 768 or, for the packed gradient
// (aclnnFlashAttentionUnpaddingScoreGrad), above 512, more than 2048
// documents or 1M tokens in a row), are composed here, in one op, from
// aclnnBatchMatMul, aclnnTanh, the additive mask,
// aclnnAmax/aclnnExp/aclnnReduceSum and aclnnTanhBackward: the same
// arithmetic as graph's composition, with the [heads·queries, keys] scores
// as temporaries of the call (freed when it returns) rather than kept on the
// tape. Every other call runs on the fused operators.
//
// # Assumptions not checked on hardware
//
// Beyond what the documentation states (float32 inputs are supported; BSND
// and TND layouts; attenMask true means masked, BOOL for the gradients; GQA;
// D ≤ 768, ≤ 512 for the packed gradient; N ≤ 256; at most 2048 sequences
// and 1M tokens), the backend assumes: that float32 inputs are computed in
// float32 (no HF32 rounding in the cube unit), which the conformance
// thresholds need; the sparse-mode semantics and the preTokens/nextTokens
// corner conventions read from the sparse-mode introduction and the host
// code; the per-sequence [N, s_d, 8] blocks of the variable-length
// statistics (read from the kernel sources above, not from a statement of
// the documentation); that the gradient recomputes the weights as exp(s −
// softmaxMax)/softmaxSum from any consistent pair (softmaxSum = 1 included);
// that it writes every element of dq, dk and dv, 0 for keys no query sees;
// that softmaxOut, softmaxIn, dpse and prefix may be NULL; that the
// operators exist on Atlas A2 and A3 parts only (Supports is false on the
// Atlas training and inference series and the 310B); and that CANN releases
// with aclnnFlashAttentionVarLenScore have the 8.0 prototypes above.

// Sparse modes (sparseMode) of the FlashAttention operators.
const (
	sparseDefault   = 0 // defaultMask: no mask means full computation
	sparseLeftUp    = 2 // leftUpCausal, compressed mask
	sparseRightDown = 3 // rightDownCausal, compressed mask
	sparseBand      = 4 // band from the bottom-right corner, compressed mask

	// maxTokens is preTokens/nextTokens' default: no limit.
	maxTokens = 2147483647
	// compressedMask is the side of the compressed mask of modes 2 to 4.
	compressedMask = 2048
	// The operators' documented limits: query heads; head size (512 for
	// aclnnFlashAttentionUnpaddingScoreGrad); sequences per call
	// (actualSeqQLen entries); tokens: S of the dense operators, T (all
	// the tokens of a call) of the variable-length ones.
	faMaxHeads        = 256
	faMaxHeadDim      = 768
	faMaxUnpadHeadDim = 512
	faMaxSeqs         = 2048
	faMaxTokens       = 1 << 20
)

// The layouts, as NUL-terminated strings for inputLayout. Package
// variables never move.
var (
	cBSND = []byte("BSND\x00")
	cTND  = []byte("TND\x00")
)

// Phase one of the four operators. Pointers to ACL objects are uintptr;
// optional ones are 0 (NULL).
type (
	faScoreFunc func(q, k, v, pse, dropMask, paddingMask, attenMask, prefix uintptr, scale, keepProb float64,
		preTokens, nextTokens, headNum int64, layout *byte, innerPrecise, sparseMode int64,
		softmaxMax, softmaxSum, softmaxOut, out uintptr, ws *uint64, ex *uintptr) int32
	faVarLenFunc func(q, k, v, pse, dropMask, paddingMask, attenMask, prefix, seqQ, seqKv uintptr, scale, keepProb float64,
		preTokens, nextTokens, headNum int64, layout *byte, innerPrecise, sparseMode int64,
		softmaxMax, softmaxSum, softmaxOut, out uintptr, ws *uint64, ex *uintptr) int32
	faGradFunc func(q, k, v, dy, pse, dropMask, paddingMask, attenMask, softmaxMax, softmaxSum, softmaxIn, attentionIn, prefix uintptr,
		scale, keepProb float64, preTokens, nextTokens, headNum int64, layout *byte, innerPrecise, sparseMode int64,
		dq, dk, dv, dpse uintptr, ws *uint64, ex *uintptr) int32
	faUnpadGradFunc func(q, k, v, dy, pse, dropMask, paddingMask, attenMask, softmaxMax, softmaxSum, softmaxIn, attentionIn, prefix,
		seqQ, seqKv uintptr, scale, keepProb float64, preTokens, nextTokens, headNum int64, layout *byte, innerPrecise, sparseMode int64,
		dq, dk, dv, dpse uintptr, ws *uint64, ex *uintptr) int32
)

// registerAttention binds phase one of the attention operators found.
func (l *lib) registerAttention() {
	if f, ok := l.ops["FlashAttentionScore"]; ok {
		registerFunc(&l.faScoreWS, f.getWS)
	}
	if f, ok := l.ops["FlashAttentionVarLenScore"]; ok {
		registerFunc(&l.faVarLenWS, f.getWS)
	}
	if f, ok := l.ops["FlashAttentionScoreGrad"]; ok {
		registerFunc(&l.faGradWS, f.getWS)
	}
	if f, ok := l.ops["FlashAttentionUnpaddingScoreGrad"]; ok {
		registerFunc(&l.faUnpadGradWS, f.getWS)
	}
}

// flashAttentionChip reports whether CANN documents its FlashAttention
// operators for the chip soc: Atlas A2 and A3 parts, not the Atlas
// training series (the first 910s) nor the inference series (310P) nor the
// Atlas 200I/500 A2 (310B). An unknown name is taken for a chip that has
// them, as for the matrix products.
func flashAttentionChip(soc string) bool {
	return !float16Cube(soc) && !strings.HasPrefix(soc, "Ascend310")
}

// faPlan is how one call of an operator maps a mask.
type faPlan struct {
	mode      int64
	pre, next int64
	mask      bool // the compressed mask goes with the call
}

// densePlan maps the mask of p for queries over keys (no Segments).
func densePlan(p backend.AttentionParams, queries, keys int) faPlan {
	if !p.Causal {
		return faPlan{mode: sparseDefault, pre: maxTokens, next: maxTokens}
	}
	off := p.QueryOffset
	window := p.Window
	if window >= queries+off {
		window = 0 // hides nothing
	}
	switch {
	case window == 0 && off == keys-queries:
		return faPlan{mode: sparseRightDown, pre: maxTokens, next: 0, mask: true}
	case window == 0 && off == 0:
		return faPlan{mode: sparseLeftUp, pre: maxTokens, next: 0, mask: true}
	}
	next := int64(off - (keys - queries))
	pre := int64(maxTokens)
	if window > 0 {
		pre = int64(window-1) - next
	}
	return faPlan{mode: sparseBand, pre: pre, next: next, mask: true}
}

// varlenCall is one call of a variable-length operator: query rows
// [qRow, qRow+qRows) and key rows [kRow, kRow+kRows) of q and k viewed as
// [batch·sequence, heads, headDim], split into sequences by the cumulative
// lengths cumQ and cumK. Its query rows are whole packed rows: seqs of
// them, from row seq0.
type varlenCall struct {
	qRow, qRows, kRow, kRows int
	seq0, seqs               int
	cumQ, cumK               []int64
}

// varlenPlan splits the packed batch (segments as AttentionParams.Segments
// holds them) into variable-length calls; gaps reports whether some keys
// are in no call (their gradients must be zeroed). One call covers the
// batch when it can (no gaps, at most faMaxSeqs sequences and faMaxTokens
// tokens), else one per row. ok is false when a row holds more documents
// with queries than the operators take.
func varlenPlan(seg []int32, batch, queries, keys, off int, causal bool) (calls []varlenCall, gaps, ok bool) {
	type doc struct{ nq, k0, k1 int }
	rows := make([][]doc, batch)
	for b := range batch {
		s := seg[b*keys : (b+1)*keys]
		for k0 := 0; k0 < keys; {
			k1 := k0 + 1
			for k1 < keys && s[k1] == s[k0] {
				k1++
			}
			// Query i sits at key i + off.
			q0, q1 := max(k0, off), min(k1, off+queries)
			if q1 > q0 {
				end := k1
				if causal {
					end = q1 // later keys are hidden from every query of the document
				}
				rows[b] = append(rows[b], doc{nq: q1 - q0, k0: k0, k1: end})
			}
			k0 = k1
		}
		if len(rows[b]) > faMaxSeqs {
			return nil, false, false
		}
		r := rows[b]
		if r[0].k0 > 0 || r[len(r)-1].k1 < keys {
			gaps = true
		}
	}
	add := func(c *varlenCall, docs []doc) {
		for _, d := range docs {
			c.cumQ = append(c.cumQ, c.last(c.cumQ)+int64(d.nq))
			c.cumK = append(c.cumK, c.last(c.cumK)+int64(d.k1-d.k0))
		}
	}
	total := 0
	for _, r := range rows {
		total += len(r)
	}
	if !gaps && total <= faMaxSeqs && batch*max(queries, keys) <= faMaxTokens {
		c := varlenCall{qRows: batch * queries, kRows: batch * keys, seqs: batch}
		for _, r := range rows {
			add(&c, r)
		}
		return []varlenCall{c}, false, true
	}
	for b, r := range rows {
		c := varlenCall{qRow: b * queries, qRows: queries, kRow: b*keys + r[0].k0, kRows: r[len(r)-1].k1 - r[0].k0, seq0: b, seqs: 1}
		add(&c, r)
		calls = append(calls, c)
	}
	return calls, gaps, true
}

func (varlenCall) last(x []int64) int64 {
	if len(x) == 0 {
		return 0
	}
	return x[len(x)-1]
}

// composeReason says why a valid call (of the gradient when grad) cannot
// run on the fused operators, or "" when it can. Packed calls also need a
// plan (varlenPlan's ok). The limit on tokens is the dense operators' S,
// and for packed calls that one call per row respects.
func composeReason(p backend.AttentionParams, d backend.AttentionDims, grad bool) string {
	switch {
	case p.Softcap > 0:
		return "soft-capping has no counterpart in CANN's attention operators"
	case d.Heads > faMaxHeads:
		return fmt.Sprintf("%d query heads, more than the operators' %d", d.Heads, faMaxHeads)
	case d.HeadDim > faMaxHeadDim:
		return fmt.Sprintf("head size %d, more than the operators' %d", d.HeadDim, faMaxHeadDim)
	case grad && p.Segments != nil && d.HeadDim > faMaxUnpadHeadDim:
		return fmt.Sprintf("head size %d, more than aclnnFlashAttentionUnpaddingScoreGrad's %d", d.HeadDim, faMaxUnpadHeadDim)
	case d.Queries > faMaxTokens || d.Keys > faMaxTokens:
		return fmt.Sprintf("%d queries over %d keys, more than the operators' %d tokens", d.Queries, d.Keys, faMaxTokens)
	}
	return ""
}

// Attention is scaled dot-product attention on aclnnFlashAttentionScore
// (aclnnFlashAttentionVarLenScore with Segments); see the mapping above.
// Calls with a soft-cap are composed from general operators in the op.
func (b *Backend) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	if b.Failed() {
		return
	}
	all := []backend.Tensor{out, lse, q, k, v}
	if !b.Supports(backend.OpAttention) {
		b.Record(backend.Unsupported(backend.OpAttention, b.Name(), all...))
		return
	}
	d, err := backend.CheckAttention(out, lse, q, k, v, p)
	if err != nil {
		b.Record(err)
		return
	}
	if d.Batch*d.Queries*d.Heads == 0 {
		return
	}
	b.do(backend.OpAttention, all, func(c *call) {
		var calls []varlenCall
		fused := composeReason(p, d, false) == ""
		if fused && p.Segments != nil {
			calls, _, fused = varlenPlan(p.Segments, d.Batch, d.Queries, d.Keys, p.QueryOffset, p.Causal)
		}
		switch {
		case !fused:
			c.attentionComposed(out, lse, q, k, v, p, d)
		case p.Segments != nil:
			c.attentionVarLen(out, lse, q, k, v, p, d, calls)
		default:
			c.attentionDense(out, lse, q, k, v, p, d)
		}
	})
}

// AttentionGrad is Attention's backward on aclnnFlashAttentionScoreGrad
// (aclnnFlashAttentionUnpaddingScoreGrad with Segments), or composed as
// Attention is.
func (b *Backend) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	if b.Failed() {
		return
	}
	all := []backend.Tensor{dq, dk, dv, q, k, v, out, lse, dout}
	if !b.Supports(backend.OpAttentionGrad) {
		b.Record(backend.Unsupported(backend.OpAttentionGrad, b.Name(), all...))
		return
	}
	d, err := backend.CheckAttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
	if err != nil {
		b.Record(err)
		return
	}
	if d.Batch*d.Keys*d.KVHeads == 0 {
		return
	}
	b.do(backend.OpAttentionGrad, all, func(c *call) {
		if d.Queries*d.Heads == 0 {
			// No query sees anything: the gradients are 0.
			c.launch("InplaceFillScalar", c.tensor(c.tensorOf(dk)), c.scalar(0))
			c.launch("InplaceFillScalar", c.tensor(c.tensorOf(dv)), c.scalar(0))
			return
		}
		var calls []varlenCall
		var gaps bool
		fused := composeReason(p, d, true) == ""
		if fused && p.Segments != nil {
			calls, gaps, fused = varlenPlan(p.Segments, d.Batch, d.Queries, d.Keys, p.QueryOffset, p.Causal)
		}
		switch {
		case !fused:
			c.attentionGradComposed(dq, dk, dv, q, k, v, out, lse, dout, p, d)
		case p.Segments != nil:
			c.attentionGradVarLen(dq, dk, dv, q, k, v, out, lse, dout, p, d, calls, gaps)
		default:
			c.attentionGradDense(dq, dk, dv, q, k, v, out, lse, dout, p, d)
		}
	})
}

// faMask returns the compressed mask of sparse modes 2 to 4 for plan, or
// 0 when the plan has none.
func (c *call) faMask(plan faPlan) uintptr {
	if !plan.mask {
		return 0
	}
	return c.tensor(c.byteTable(tableKey{kind: "fa-compressed-mask"}, []int{compressedMask, compressedMask}, aclBool,
		func() []byte {
			m := make([]byte, compressedMask*compressedMask)
			for r := range compressedMask {
				for col := r + 1; col < compressedMask; col++ {
					m[r*compressedMask+col] = 1
				}
			}
			return m
		}))
}

// byteTable is table for one-byte elements of dtype dt (ACL_BOOL).
func (c *call) byteTable(key tableKey, shape []int, dt int32, build func() []byte) view {
	if c.err != nil {
		return view{}
	}
	b := c.b
	n := backend.Shape(shape).NumElements()
	if t, ok := b.tables[key]; ok {
		return view{ptr: t.Ptr, elems: n, dtype: dt}.reshape(shape...)
	}
	if len(b.tables) >= maxTables {
		for k, t := range b.tables {
			b.put(t.Ptr, t.Class)
			delete(b.tables, k)
		}
	}
	data := build()
	t, err := b.newBuffer((n + 3) / 4) // float32 elements enough for n bytes
	if err != nil {
		c.fail(err)
		return view{}
	}
	if err := b.stage(t.Ptr, int64(t.N)*4, unsafe.Pointer(&data[0]), int64(len(data))); err != nil {
		b.put(t.Ptr, t.Class)
		c.fail(err)
		return view{}
	}
	b.tables[key] = t
	return view{ptr: t.Ptr, elems: n, dtype: dt}.reshape(shape...)
}

// faCall holds the arguments of one operator call; pointers are aclTensor
// (or aclIntArray) handles, 0 for NULL.
type faCall struct {
	q, k, v, mask  uintptr
	seqQ, seqKv    uintptr
	scale          float64
	heads          int64
	plan           faPlan
	layout         []byte
	max, sum, out  uintptr // forward outputs; gradient inputs (out: attentionIn)
	dy, dq, dk, dv uintptr // gradient
}

// flash runs operator name ("FlashAttentionScore", ...) with a's
// arguments: phase one through its typed binding, then phase two.
func (c *call) flash(name string, a faCall) {
	if c.err != nil {
		return
	}
	f, ok := c.fn(name)
	if !ok {
		return
	}
	l := c.b.lib
	var ws uint64
	var ex uintptr
	lay := &a.layout[0]
	var st int32
	switch name {
	case "FlashAttentionScore":
		st = l.faScoreWS(a.q, a.k, a.v, 0, 0, 0, a.mask, 0, a.scale, 1, a.plan.pre, a.plan.next, a.heads, lay, 0,
			a.plan.mode, a.max, a.sum, 0, a.out, &ws, &ex)
	case "FlashAttentionVarLenScore":
		st = l.faVarLenWS(a.q, a.k, a.v, 0, 0, 0, a.mask, 0, a.seqQ, a.seqKv, a.scale, 1, a.plan.pre, a.plan.next,
			a.heads, lay, 0, a.plan.mode, a.max, a.sum, 0, a.out, &ws, &ex)
	case "FlashAttentionScoreGrad":
		st = l.faGradWS(a.q, a.k, a.v, a.dy, 0, 0, 0, a.mask, a.max, a.sum, 0, a.out, 0, a.scale, 1, a.plan.pre,
			a.plan.next, a.heads, lay, 0, a.plan.mode, a.dq, a.dk, a.dv, 0, &ws, &ex)
	case "FlashAttentionUnpaddingScoreGrad":
		st = l.faUnpadGradWS(a.q, a.k, a.v, a.dy, 0, 0, 0, a.mask, a.max, a.sum, 0, a.out, 0, a.seqQ, a.seqKv, a.scale,
			1, a.plan.pre, a.plan.next, a.heads, lay, 0, a.plan.mode, a.dq, a.dk, a.dv, 0, &ws, &ex)
	default:
		panic("ascend: unknown attention operator " + name)
	}
	if st != 0 {
		c.fail(l.status("aclnn"+name+"GetWorkspaceSize", uintptr(uint32(st))))
		return
	}
	c.run(name, f, ws, ex)
}

// lseFromStats writes lse = softmaxMax + log(softmaxSum), given views of
// the first of the 8 copies of each, shaped like lse.
func (c *call) lseFromStats(lse, mx, sum view) {
	t := c.temp(lse.shape...)
	c.launch("Log", c.tensor(sum), c.tensor(t))
	c.launch("Add", c.tensor(mx), c.tensor(t), c.scalar(1), c.tensor(lse))
}

// statsFromLSE fills the gradient's softmaxMax (view mx, the 8 copies on
// the last axis) with lse and all of sum with 1.
func (c *call) statsFromLSE(mx, lse view, sum view) {
	c.launch("InplaceCopy", c.tensor(mx), c.tensor(lse))
	c.launch("InplaceFillScalar", c.tensor(sum), c.scalar(1))
}

func (c *call) attentionDense(out, lse, q, k, v backend.Tensor, p backend.AttentionParams, d backend.AttentionDims) {
	B, Tq, H := d.Batch, d.Queries, d.Heads
	plan := densePlan(p, Tq, d.Keys)
	mx, sum := c.temp(B, H, Tq, 8), c.temp(B, H, Tq, 8)
	c.flash("FlashAttentionScore", faCall{q: c.tensor(c.tensorOf(q)), k: c.tensor(c.tensorOf(k)), v: c.tensor(c.tensorOf(v)),
		mask: c.faMask(plan), scale: float64(p.Scale), heads: int64(H), plan: plan, layout: cBSND,
		max: c.tensor(mx), sum: c.tensor(sum), out: c.tensor(c.tensorOf(out))})
	if !lse.IsZero() {
		first := []int{H * Tq * 8, Tq * 8, 8}
		c.lseFromStats(c.tensorOf(lse), mx.sub(0, []int{B, H, Tq}, first), sum.sub(0, []int{B, H, Tq}, first))
	}
}

func (c *call) attentionGradDense(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams, d backend.AttentionDims) {
	B, Tq, H := d.Batch, d.Queries, d.Heads
	plan := densePlan(p, Tq, d.Keys)
	mx, sum := c.temp(B, H, Tq, 8), c.temp(B, H, Tq, 8)
	c.statsFromLSE(mx, c.tensorOf(lse).reshape(B, H, Tq, 1), sum)
	c.flash("FlashAttentionScoreGrad", faCall{q: c.tensor(c.tensorOf(q)), k: c.tensor(c.tensorOf(k)), v: c.tensor(c.tensorOf(v)),
		dy: c.tensor(c.tensorOf(dout)), mask: c.faMask(plan), max: c.tensor(mx), sum: c.tensor(sum),
		out: c.tensor(c.tensorOf(out)), scale: float64(p.Scale), heads: int64(H), plan: plan, layout: cBSND,
		dq: c.tensor(c.tensorOf(dq)), dk: c.tensor(c.tensorOf(dk)), dv: c.tensor(c.tensorOf(dv))})
}

// varlenMode maps the mask of p onto a variable-length call, where every
// sequence has its queries at the end of its keys.
func varlenMode(p backend.AttentionParams) faPlan {
	switch {
	case !p.Causal:
		return faPlan{mode: sparseDefault, pre: maxTokens, next: maxTokens}
	case p.Window > 0:
		return faPlan{mode: sparseBand, pre: int64(p.Window - 1), next: 0, mask: true}
	}
	return faPlan{mode: sparseRightDown, pre: maxTokens, next: 0, mask: true}
}

// rows returns rows [r0, r0+n) of x viewed as [rows, width...] (x
// contiguous, [batch, sequence, heads, headDim]).
func rows(x view, r0, n int) view {
	s := x.shape
	width := s[2] * s[3]
	return x.sub(r0*width, []int{n, s[2], s[3]}, []int{width, s[3], 1})
}

// statRows maps the log-sum-exp of call c onto the rows of its
// statistics. The variable-length operators declare softmaxMax and
// softmaxSum [T, N, 8] but lay them out as one [N, s_d, 8] block per
// sequence d, the blocks in actualSeqQLen order (see the package notes):
// token t of sequence d, which starts at cumulative query Q_d and holds
// s_d queries, has head h's statistic in row Q_d·N + h·s_d + (t − Q_d) of
// the [T·N, 8] data. Element (s·N + h)·Tq + i of the call's lse (packed
// row seq0+s, head h, query i; token t = s·Tq + i of the call) is row
// rows[(s·N + h)·Tq + i]. Every token of a call is in exactly one of its
// sequences, so rows is a permutation of 0 … T·N − 1.
func statRows(c varlenCall, heads, queries int) []int64 {
	rows := make([]int64, c.qRows*heads)
	d := 0
	for t := range c.qRows {
		for int64(t) >= c.cumQ[d] {
			d++
		}
		q0 := c.last(c.cumQ[:d])
		sd := c.cumQ[d] - q0
		s, i := t/queries, t%queries
		for h := range heads {
			rows[(s*heads+h)*queries+i] = q0*int64(heads) + int64(h)*sd + int64(t) - q0
		}
	}
	return rows
}

// inverse returns the inverse of the permutation p.
func inverse(p []int64) []int64 {
	inv := make([]int64, len(p))
	for i, r := range p {
		inv[r] = int64(i)
	}
	return inv
}

func (c *call) attentionVarLen(out, lse, q, k, v backend.Tensor, p backend.AttentionParams, d backend.AttentionDims, calls []varlenCall) {
	plan := varlenMode(p)
	Q, K, V, O := c.tensorOf(q), c.tensorOf(k), c.tensorOf(v), c.tensorOf(out)
	var L view
	if !lse.IsZero() {
		L = c.tensorOf(lse)
	}
	H, Tq := d.Heads, d.Queries
	for _, vc := range calls {
		mx, sum := c.temp(vc.qRows, H, 8), c.temp(vc.qRows, H, 8)
		c.flash("FlashAttentionVarLenScore", faCall{q: c.tensor(rows(Q, vc.qRow, vc.qRows)), k: c.tensor(rows(K, vc.kRow, vc.kRows)),
			v: c.tensor(rows(V, vc.kRow, vc.kRows)), mask: c.faMask(plan), seqQ: c.intArray(vc.cumQ...), seqKv: c.intArray(vc.cumK...),
			scale: float64(p.Scale), heads: int64(H), plan: plan, layout: cTND,
			max: c.tensor(mx), sum: c.tensor(sum), out: c.tensor(rows(O, vc.qRow, vc.qRows))})
		if lse.IsZero() {
			continue
		}
		// lse in the statistics' row order (the first of each row's 8
		// copies), then gathered into the interface's order.
		n := vc.qRows * H
		first := []int{8, 1}
		st := c.temp(n, 1)
		c.lseFromStats(st, mx.sub(0, []int{n, 1}, first), sum.sub(0, []int{n, 1}, first))
		c.launch("Embedding", c.tensor(st), c.tensor(c.uploadI64(statRows(vc, H, Tq), n)),
			c.tensor(L.sub(vc.seq0*H*Tq, []int{n, 1}, []int{1, 1})))
	}
}

func (c *call) attentionGradVarLen(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams, d backend.AttentionDims,
	calls []varlenCall, gaps bool) {
	plan := varlenMode(p)
	Q, K, V, O, DO := c.tensorOf(q), c.tensorOf(k), c.tensorOf(v), c.tensorOf(out), c.tensorOf(dout)
	DQ, DK, DV, L := c.tensorOf(dq), c.tensorOf(dk), c.tensorOf(dv), c.tensorOf(lse)
	if gaps {
		// Keys in no call: no query sees them.
		c.launch("InplaceFillScalar", c.tensor(DK), c.scalar(0))
		c.launch("InplaceFillScalar", c.tensor(DV), c.scalar(0))
	}
	H, Tq := d.Heads, d.Queries
	for _, vc := range calls {
		n := vc.qRows * H
		mx, sum := c.temp(vc.qRows, H, 8), c.temp(vc.qRows, H, 8)
		// The call's lse in the statistics' row order (statRows' inverse).
		st := c.temp(n, 1)
		c.launch("Embedding", c.tensor(L.sub(vc.seq0*H*Tq, []int{n, 1}, []int{1, 1})),
			c.tensor(c.uploadI64(inverse(statRows(vc, H, Tq)), n)), c.tensor(st))
		c.statsFromLSE(mx.reshape(n, 8), st, sum)
		c.flash("FlashAttentionUnpaddingScoreGrad", faCall{q: c.tensor(rows(Q, vc.qRow, vc.qRows)),
			k: c.tensor(rows(K, vc.kRow, vc.kRows)), v: c.tensor(rows(V, vc.kRow, vc.kRows)),
			dy: c.tensor(rows(DO, vc.qRow, vc.qRows)), mask: c.faMask(plan), seqQ: c.intArray(vc.cumQ...), seqKv: c.intArray(vc.cumK...),
			max: c.tensor(mx), sum: c.tensor(sum), out: c.tensor(rows(O, vc.qRow, vc.qRows)),
			scale: float64(p.Scale), heads: int64(H), plan: plan, layout: cTND,
			dq: c.tensor(rows(DQ, vc.qRow, vc.qRows)), dk: c.tensor(rows(DK, vc.kRow, vc.kRows)), dv: c.tensor(rows(DV, vc.kRow, vc.kRows))})
	}
}

// headsFirst copies x [batch, seq, heads, headDim] into a contiguous
// temporary [batch, heads, seq, headDim].
func (c *call) headsFirst(x backend.Tensor) view {
	s := x.Shape()
	B, T, N, D := s[0], s[1], s[2], s[3]
	t := c.temp(B, N, T, D)
	c.launch("InplaceCopy", c.tensor(t), c.tensor(c.tensorOf(x).sub(0, []int{B, N, T, D}, []int{T * N * D, D, N * D, 1})))
	return t
}

// headsBack copies t [batch, heads, seq, headDim] into x [batch, seq,
// heads, headDim].
func (c *call) headsBack(x backend.Tensor, t view) {
	s := x.Shape()
	B, T, N, D := s[0], s[1], s[2], s[3]
	c.launch("InplaceCopy", c.tensor(c.tensorOf(x).sub(0, []int{B, N, T, D}, []int{T * N * D, D, N * D, 1})), c.tensor(t.reshape(B, N, T, D)))
}

// transposed returns the last two axes of the contiguous [n, r, c] view x
// swapped, as a strided view.
func transposed(x view) view {
	n, r, col := x.shape[0], x.shape[1], x.shape[2]
	return x.sub(0, []int{n, col, r}, []int{r * col, 1, col})
}

// composedMask returns the additive mask of p (0 where a query sees a key,
// −Inf elsewhere): [queries, keys] from causalMask (cached) without
// segments, [batch, 1, queries, keys] with them (a temporary of the call:
// segments change with every batch); ok is false when nothing is masked.
func (c *call) composedMask(p backend.AttentionParams, d backend.AttentionDims) (m view, ok bool) {
	if p.Segments == nil {
		if !p.Causal {
			return view{}, false
		}
		return c.causalMask(d.Queries, d.Keys, p.QueryOffset, p.Window), true
	}
	B, Tq, Tk := d.Batch, d.Queries, d.Keys
	host := make([]float32, B*Tq*Tk)
	inf := float32(math.Inf(-1))
	for b := range B {
		seg := p.Segments[b*Tk : (b+1)*Tk]
		for i := range Tq {
			pos := i + p.QueryOffset
			row := host[(b*Tq+i)*Tk : (b*Tq+i+1)*Tk]
			for j := range Tk {
				sees := seg[j] == seg[pos]
				if p.Causal {
					sees = sees && j <= pos && (p.Window == 0 || pos-j < p.Window)
				}
				if !sees {
					row[j] = inf
				}
			}
		}
	}
	return c.uploadF32(host, B, 1, Tq, Tk), true
}

// composedScores returns the scores of the composition, [batch·kvHeads,
// group·queries, keys]: scale·q·kᵀ, capped (Softcap·tanh(·/Softcap),
// whose tanh it also returns), with the mask added. Q and K are the
// heads-first copies of q and k.
func (c *call) composedScores(Q, K view, p backend.AttentionParams, d backend.AttentionDims) (s, th view) {
	B, KV, G, Tq, Tk, D := d.Batch, d.KVHeads, d.Group(), d.Queries, d.Keys, d.HeadDim
	cube := uintptr(uint8(c.b.opts.MatMul.cubeMathType()))
	s = c.temp(B*KV, G*Tq, Tk)
	c.launch("BatchMatMul", c.tensor(Q.reshape(B*KV, G*Tq, D)), c.tensor(transposed(K.reshape(B*KV, Tk, D))), c.tensor(s), cube)
	if p.Softcap > 0 {
		th = c.temp(B*KV, G*Tq, Tk)
		c.launch("Muls", c.tensor(s), c.scalar(p.Scale/p.Softcap), c.tensor(th))
		c.launch("Tanh", c.tensor(th), c.tensor(th))
		c.launch("Muls", c.tensor(th), c.scalar(p.Softcap), c.tensor(s))
	} else {
		c.launch("InplaceMuls", c.tensor(s), c.scalar(p.Scale))
	}
	if m, ok := c.composedMask(p, d); ok {
		c.launch("InplaceAdd", c.tensor(s.reshape(B, d.Heads, Tq, Tk)), c.tensor(m), c.scalar(1))
	}
	return s, th
}

// attentionComposed is Attention from general operators (see the package
// notes above): the scores, their row maximum m, P = exp(s − m)/Σ, out =
// P·v and lse = m + log Σ.
func (c *call) attentionComposed(out, lse, q, k, v backend.Tensor, p backend.AttentionParams, d backend.AttentionDims) {
	B, KV, G, Tq, Tk, D := d.Batch, d.KVHeads, d.Group(), d.Queries, d.Keys, d.HeadDim
	n := B * d.Heads * Tq
	cube := uintptr(uint8(c.b.opts.MatMul.cubeMathType()))
	Q, K, V := c.headsFirst(q), c.headsFirst(k), c.headsFirst(v)
	s, _ := c.composedScores(Q, K, p, d)
	S := c.tensor(s.reshape(n, Tk))
	m, sum := c.temp(n, 1), c.temp(n, 1)
	c.launch("Amax", S, c.intArray(1), flag(true), c.tensor(m))
	pv := c.temp(n, Tk)
	e := c.tensor(pv)
	c.launch("Sub", S, c.tensor(m), c.scalar(1), e)
	c.launch("Exp", e, e)
	c.launch("ReduceSum", e, c.intArray(1), flag(true), aclFloat, c.tensor(sum))
	c.launch("Div", e, c.tensor(sum), e)
	o := c.temp(B*KV, G*Tq, D)
	c.launch("BatchMatMul", c.tensor(pv.reshape(B*KV, G*Tq, Tk)), c.tensor(V.reshape(B*KV, Tk, D)), c.tensor(o), cube)
	c.headsBack(out, o)
	if !lse.IsZero() {
		c.launch("Log", c.tensor(sum), c.tensor(sum))
		c.launch("Add", c.tensor(m), c.tensor(sum), c.scalar(1), c.tensor(c.tensorOf(lse).reshape(n, 1)))
	}
}

// attentionGradComposed is AttentionGrad from general operators: P =
// exp(s − lse), dS = P ⊙ (dout·vᵀ − rowsum(dout ⊙ out)), through the cap's
// derivative 1 − tanh² and the scale, then dq = dS·k, dk = dSᵀ·q (summed
// over each group by the product) and dv = Pᵀ·dout.
func (c *call) attentionGradComposed(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams, d backend.AttentionDims) {
	B, KV, G, Tq, Tk, D := d.Batch, d.KVHeads, d.Group(), d.Queries, d.Keys, d.HeadDim
	n := B * d.Heads * Tq
	cube := uintptr(uint8(c.b.opts.MatMul.cubeMathType()))
	Q, K, V := c.headsFirst(q), c.headsFirst(k), c.headsFirst(v)
	DO, O := c.headsFirst(dout), c.headsFirst(out)
	s, th := c.composedScores(Q, K, p, d)
	P := c.temp(n, Tk)
	c.launch("Sub", c.tensor(s.reshape(n, Tk)), c.tensor(c.tensorOf(lse).reshape(n, 1)), c.scalar(1), c.tensor(P))
	c.launch("Exp", c.tensor(P), c.tensor(P))
	prod, delta := c.temp(n, D), c.temp(n, 1)
	c.launch("Mul", c.tensor(DO.reshape(n, D)), c.tensor(O.reshape(n, D)), c.tensor(prod))
	c.launch("ReduceSum", c.tensor(prod), c.intArray(1), flag(true), aclFloat, c.tensor(delta))
	ds := c.temp(B*KV, G*Tq, Tk)
	c.launch("BatchMatMul", c.tensor(DO.reshape(B*KV, G*Tq, D)), c.tensor(transposed(V.reshape(B*KV, Tk, D))), c.tensor(ds), cube)
	DS := c.tensor(ds.reshape(n, Tk))
	c.launch("Sub", DS, c.tensor(delta), c.scalar(1), DS)
	c.launch("Mul", DS, c.tensor(P), DS)
	if p.Softcap > 0 {
		c.launch("TanhBackward", DS, c.tensor(th.reshape(n, Tk)), DS)
	}
	c.launch("InplaceMuls", DS, c.scalar(p.Scale))
	g := c.temp(B*KV, G*Tq, D)
	c.launch("BatchMatMul", c.tensor(ds), c.tensor(K.reshape(B*KV, Tk, D)), c.tensor(g), cube)
	c.headsBack(dq, g)
	gk := c.temp(B*KV, Tk, D)
	c.launch("BatchMatMul", c.tensor(transposed(ds)), c.tensor(Q.reshape(B*KV, G*Tq, D)), c.tensor(gk), cube)
	c.headsBack(dk, gk)
	gv := c.temp(B*KV, Tk, D)
	c.launch("BatchMatMul", c.tensor(transposed(P.reshape(B*KV, G*Tq, Tk))), c.tensor(DO.reshape(B*KV, G*Tq, D)), c.tensor(gv), cube)
	c.headsBack(dv, gv)
}
