package conformance_test

import (
	"bytes"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/conformance"
)

// The attention cases must be able to fail too. hostAttention adds
// Attention and AttentionGrad to a backend that lacks them, computed on
// the host in float32 as FlashAttention-style kernels compute them (each
// row's maximum subtracted; the backward recomputing every weight from
// lse and taking Σ dout⊙out from the forward's out), with one planted
// fault at a time. The faultless one must pass every attention case: it
// shows that the thresholds leave room for float32 arithmetic that is not
// the CPU backend's. When the backend it wraps already has the ops, it
// replaces them.

// attnFault is a mistake planted in hostAttention.
type attnFault int

const (
	noFault             attnFault = iota
	causalOffByOne                // the causal mask lets each query see one key ahead
	windowOffByOne                // the window keeps one key too many (pos − j ≤ Window)
	gqaModulo                     // query head h uses key/value head h % KV, not h / (H/KV)
	softcapDerivative             // the backward omits the cap's derivative 1 − tanh²
	capBeforeScale                // the cap is applied to q·k and the scale after it
	groupNotSummed                // dk and dv get the last query head of each group only
	lseLog2                       // lse is written in base 2
	noMaxSubtracted               // exp of the raw scores, with no row maximum subtracted
	segmentsIgnored               // Segments are ignored, forward and backward
	docStartEarly                 // a query sees the key before its document's first too
	docStartLate                  // a query misses its document's first key (unless it sits there)
	segmentsForwardOnly           // the forward applies Segments, the backward ignores them
	unsupported                   // Supports says no, and a call records backend.Unsupported
	lyingUnsupported              // Supports says no, but the calls compute all the same
)

// hostAttention is a backend with host-computed attention (see above). Its
// own errors are sticky like the backend's: Sync and Download return
// them first.
type hostAttention struct {
	backend.Backend
	fault attnFault
	err   error
}

func (h *hostAttention) record(err error) {
	if h.err == nil {
		h.err = err
	}
}

func (h *hostAttention) Supports(op backend.Op) bool {
	if op == backend.OpAttention || op == backend.OpAttentionGrad {
		return h.fault != unsupported && h.fault != lyingUnsupported
	}
	return h.Backend.Supports(op)
}

func (h *hostAttention) Sync() error {
	err := h.Backend.Sync()
	if h.err != nil {
		err, h.err = h.err, nil
	}
	return err
}

func (h *hostAttention) Download(dst []float32, src backend.Tensor) error {
	err := h.Backend.Download(dst, src)
	if h.err != nil {
		err, h.err = h.err, nil
	}
	return err
}

// get downloads t, keeping an error the wrapped backend had recorded.
func (h *hostAttention) get(t backend.Tensor) ([]float32, bool) {
	x := make([]float32, t.Len())
	if err := h.Backend.Download(x, t); err != nil {
		h.record(err)
		return nil, false
	}
	return x, true
}

// docBounds are the first key and one past the last of every key's
// document, from backend.SegmentBounds as a kernel would take them; nil
// without segments.
type docBounds struct{ starts, ends []int32 }

func boundsOf(p backend.AttentionParams, keys int) docBounds {
	if p.Segments == nil {
		return docBounds{}
	}
	db := docBounds{make([]int32, len(p.Segments)), make([]int32, len(p.Segments))}
	backend.SegmentBounds(p.Segments, keys, db.starts, db.ends)
	return db
}

// sees is the mask of query i of sequence b over key j (of keys), with
// the mask's faults; grad says whether the backward asks.
func (h *hostAttention) sees(b, i, j, keys int, p backend.AttentionParams, db docBounds, grad bool) bool {
	if db.starts != nil && h.fault != segmentsIgnored && !(grad && h.fault == segmentsForwardOnly) {
		pos := i + p.QueryOffset
		lo, hi := int(db.starts[b*keys+pos]), int(db.ends[b*keys+pos])
		switch h.fault {
		case docStartEarly:
			lo = max(lo-1, 0)
		case docStartLate:
			lo = min(lo+1, pos)
		}
		if j < lo || j >= hi {
			return false
		}
	}
	if !p.Causal {
		return true
	}
	pos := i + p.QueryOffset
	last := pos
	if h.fault == causalOffByOne {
		last++
	}
	if j > last {
		return false
	}
	switch {
	case p.Window == 0:
		return true
	case h.fault == windowOffByOne:
		return pos-j <= p.Window
	}
	return pos-j < p.Window
}

// scores returns the capped scores of query i of head h (batch b) over
// the visible keys, -Inf elsewhere, and tanh(r/Softcap) for the backward.
func (h *hostAttention) scores(q, k []float32, d backend.AttentionDims, b, hd, i int, p backend.AttentionParams, db docBounds, grad bool) (s, th []float32) {
	g := hd / d.Group()
	if h.fault == gqaModulo {
		g = hd % d.KVHeads
	}
	s, th = make([]float32, d.Keys), make([]float32, d.Keys)
	qi := q[((b*d.Queries+i)*d.Heads+hd)*d.HeadDim:][:d.HeadDim]
	for j := range s {
		if !h.sees(b, i, j, d.Keys, p, db, grad) {
			s[j] = float32(math.Inf(-1))
			continue
		}
		kj := k[((b*d.Keys+j)*d.KVHeads+g)*d.HeadDim:][:d.HeadDim]
		var dot float32
		for x := range qi {
			dot += qi[x] * kj[x]
		}
		r := p.Scale * dot
		if p.Softcap > 0 {
			if h.fault == capBeforeScale {
				r = p.Scale * p.Softcap * float32(math.Tanh(float64(dot/p.Softcap)))
			} else {
				th[j] = float32(math.Tanh(float64(r / p.Softcap)))
				r = p.Softcap * th[j]
			}
		}
		s[j] = r
	}
	return s, th
}

// kvHead returns the key/value head that serves query head hd: hd /
// Group, or with the gqaModulo fault hd % KVHeads.
func (h *hostAttention) kvHead(hd int, d backend.AttentionDims) int {
	if h.fault == gqaModulo {
		return hd % d.KVHeads
	}
	return hd / d.Group()
}

func (h *hostAttention) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	if h.err != nil {
		return
	}
	if h.fault == unsupported {
		h.record(backend.Unsupported(backend.OpAttention, "host", out, lse, q, k, v))
		return
	}
	d, err := backend.CheckAttention(out, lse, q, k, v, p)
	if err != nil {
		h.record(err)
		return
	}
	qv, ok1 := h.get(q)
	kv, ok2 := h.get(k)
	vv, ok3 := h.get(v)
	if !ok1 || !ok2 || !ok3 {
		return
	}
	ov := make([]float32, out.Len())
	lv := make([]float32, d.Batch*d.Heads*d.Queries)
	db := boundsOf(p, d.Keys)
	for b := 0; b < d.Batch; b++ {
		for hd := 0; hd < d.Heads; hd++ {
			g := h.kvHead(hd, d)
			for i := 0; i < d.Queries; i++ {
				s, _ := h.scores(qv, kv, d, b, hd, i, p, db, false)
				m := float32(math.Inf(-1))
				if h.fault == noMaxSubtracted {
					m = 0
				} else {
					for _, x := range s {
						m = max(m, x)
					}
				}
				var sum float32
				o := ov[((b*d.Queries+i)*d.Heads+hd)*d.HeadDim:][:d.HeadDim]
				for j, x := range s {
					e := float32(math.Exp(float64(x - m)))
					sum += e
					vj := vv[((b*d.Keys+j)*d.KVHeads+g)*d.HeadDim:][:d.HeadDim]
					for y := range o {
						o[y] += e * vj[y]
					}
				}
				for y := range o {
					o[y] /= sum
				}
				l := m + float32(math.Log(float64(sum)))
				if h.fault == lseLog2 {
					l /= math.Ln2
				}
				lv[(b*d.Heads+hd)*d.Queries+i] = l
			}
		}
	}
	h.Backend.Upload(out, ov)
	if !lse.IsZero() {
		h.Backend.Upload(lse, lv)
	}
}

func (h *hostAttention) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	if h.err != nil {
		return
	}
	if h.fault == unsupported {
		h.record(backend.Unsupported(backend.OpAttentionGrad, "host", dq, dk, dv, q, k, v, out, lse, dout))
		return
	}
	d, err := backend.CheckAttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
	if err != nil {
		h.record(err)
		return
	}
	var in [6][]float32
	for n, t := range []backend.Tensor{q, k, v, out, lse, dout} {
		var ok bool
		if in[n], ok = h.get(t); !ok {
			return
		}
	}
	qv, kv, vv, ov, lv, dov := in[0], in[1], in[2], in[3], in[4], in[5]
	dqv, dkv, dvv := make([]float32, len(qv)), make([]float32, len(kv)), make([]float32, len(vv))
	D := d.HeadDim
	db := boundsOf(p, d.Keys)
	for b := 0; b < d.Batch; b++ {
		for hd := 0; hd < d.Heads; hd++ {
			g := h.kvHead(hd, d)
			if h.fault == groupNotSummed {
				// Each head overwrites what the heads before it in its
				// group left, as if dk and dv were assigned per head.
				for j := 0; j < d.Keys; j++ {
					clear(dkv[((b*d.Keys+j)*d.KVHeads+g)*D:][:D])
					clear(dvv[((b*d.Keys+j)*d.KVHeads+g)*D:][:D])
				}
			}
			for i := 0; i < d.Queries; i++ {
				s, th := h.scores(qv, kv, d, b, hd, i, p, db, true)
				off := ((b*d.Queries+i)*d.Heads + hd) * D
				qi, oi, doi, dqi := qv[off:][:D], ov[off:][:D], dov[off:][:D], dqv[off:][:D]
				var dsum float32 // Σ dout⊙out, from the forward's out
				for y := range oi {
					dsum += doi[y] * oi[y]
				}
				l := lv[(b*d.Heads+hd)*d.Queries+i]
				if h.fault == lseLog2 {
					l *= math.Ln2 // consistent with its own forward
				}
				for j, x := range s {
					if math.IsInf(float64(x), -1) {
						continue
					}
					pj := float32(math.Exp(float64(x - l)))
					kvOff := ((b*d.Keys+j)*d.KVHeads + g) * D
					kj, vj := kv[kvOff:][:D], vv[kvOff:][:D]
					var dp float32
					for y := range vj {
						dp += doi[y] * vj[y]
					}
					ds := pj * (dp - dsum)
					if p.Softcap > 0 && h.fault != softcapDerivative {
						ds *= 1 - th[j]*th[j]
					}
					dkj, dvj := dkv[kvOff:][:D], dvv[kvOff:][:D]
					for y := 0; y < D; y++ {
						dqi[y] += p.Scale * ds * kj[y]
						dkj[y] += p.Scale * ds * qi[y]
						dvj[y] += pj * doi[y]
					}
				}
			}
		}
	}
	h.Backend.Upload(dq, dqv)
	h.Backend.Upload(dk, dkv)
	h.Backend.Upload(dv, dvv)
}

// Faults planted around a backend's own kernels (the CPU backend's): the
// calls are rearranged so that the real kernel computes the wrong thing.

// shiftedMask places every causal query one position later than asked.
type shiftedMask struct{ backend.Backend }

func (b shiftedMask) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	if p.Causal {
		p.QueryOffset++
	}
	b.Backend.Attention(out, lse, q, k, v, p)
}

func (b shiftedMask) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	if p.Causal {
		p.QueryOffset++
	}
	b.Backend.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
}

// uncappedGrad forgets the cap in the backward.
type uncappedGrad struct{ backend.Backend }

func (b uncappedGrad) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	p.Softcap = 0
	b.Backend.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
}

// temp allocates a scratch tensor; a failure ends the test binary's case
// with a panic, which RunCase reports.
func temp(b backend.Backend, shape ...int) backend.Tensor {
	t, err := b.Alloc(backend.Float32, shape...)
	if err != nil {
		panic(err)
	}
	return t
}

// moduloGroups serves query head h with key/value head h % KV: it hands
// the kernel the query heads reordered so that its h / (H/KV) lands on
// h % KV, and puts the results back in order.
type moduloGroups struct{ backend.Backend }

// regroup copies src, whose heads (axis 2 of [B, T, H, D], or axis 1 of
// lse's [B, H, T]) are ordered a·n + b, into dst ordered b·m + a (H =
// m·n).
func (w moduloGroups) regroup(dst, src backend.Tensor, m, n int, lse bool) {
	s := src.Shape()
	var from, to backend.Tensor
	var err error
	if lse {
		to = dst.MustReshape(s[0], n, m, s[2])
		from, err = src.MustReshape(s[0], m, n, s[2]).Permute(0, 2, 1, 3)
	} else {
		to = dst.MustReshape(s[0], s[1], n, m, s[3])
		from, err = src.MustReshape(s[0], s[1], m, n, s[3]).Permute(0, 1, 3, 2, 4)
	}
	if err != nil {
		panic(err)
	}
	w.Backend.Copy(to, from, false)
}

func (w moduloGroups) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	d, err := backend.CheckAttention(out, lse, q, k, v, p)
	if err != nil || d.KVHeads == 1 || d.Group() == 1 {
		w.Backend.Attention(out, lse, q, k, v, p)
		return
	}
	G, KV := d.Group(), d.KVHeads
	q2, out2, lse2 := temp(w, q.Shape()...), temp(w, q.Shape()...), temp(w, d.Batch, d.Heads, d.Queries)
	defer w.Free(q2)
	defer w.Free(out2)
	defer w.Free(lse2)
	w.regroup(q2, q, G, KV, false)
	w.Backend.Attention(out2, lse2, q2, k, v, p)
	w.regroup(out, out2, KV, G, false)
	if !lse.IsZero() {
		w.regroup(lse, lse2, KV, G, true)
	}
}

func (w moduloGroups) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	d, err := backend.CheckAttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
	if err != nil || d.KVHeads == 1 || d.Group() == 1 {
		w.Backend.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
		return
	}
	G, KV := d.Group(), d.KVHeads
	var ts [5]backend.Tensor
	for i, src := range []backend.Tensor{q, out, dout, dq} {
		ts[i] = temp(w, src.Shape()...)
		defer w.Free(ts[i])
		if i < 3 {
			w.regroup(ts[i], src, G, KV, false)
		}
	}
	ts[4] = temp(w, lse.Shape()...)
	defer w.Free(ts[4])
	w.regroup(ts[4], lse, G, KV, true)
	w.Backend.AttentionGrad(ts[3], dk, dv, ts[0], k, v, ts[1], ts[4], ts[2], p)
	w.regroup(dq, ts[3], KV, G, false)
}

// lastHeadOnly gives dk and dv of the last query head of each group only,
// as a kernel that assigns them per head would: after the real backward,
// it reruns it on those heads alone, overwriting dk and dv.
type lastHeadOnly struct{ backend.Backend }

func (w lastHeadOnly) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	w.Backend.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
	d, err := backend.CheckAttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
	if err != nil || d.Group() == 1 {
		return
	}
	G, H, D, T := d.Group(), d.Heads, d.HeadDim, d.Queries
	last := func(t backend.Tensor) backend.Tensor {
		sub, err := t.Strided((G-1)*D, backend.Shape{d.Batch, T, d.KVHeads, D}, []int{T * H * D, H * D, G * D, 1})
		if err != nil {
			panic(err)
		}
		c := temp(w, sub.Shape()...)
		w.Backend.Copy(c, sub, false)
		return c
	}
	lseSub, err := lse.Strided((G-1)*T, backend.Shape{d.Batch, d.KVHeads, T}, []int{H * T, G * T, 1})
	if err != nil {
		panic(err)
	}
	q1, out1, dout1, lse1 := last(q), last(out), last(dout), temp(w, d.Batch, d.KVHeads, T)
	dq1 := temp(w, q1.Shape()...)
	for _, t := range []backend.Tensor{q1, out1, dout1, lse1, dq1} {
		defer w.Free(t)
	}
	w.Backend.Copy(lse1, lseSub, false)
	w.Backend.AttentionGrad(dq1, dk, dv, q1, k, v, out1, lse1, dout1, p)
}

// accumulatingGrad adds dk to what dk held instead of overwriting it.
type accumulatingGrad struct{ backend.Backend }

func (w accumulatingGrad) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	if _, err := backend.CheckAttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p); err != nil {
		w.Backend.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
		return
	}
	dk2 := temp(w, dk.Shape()...)
	defer w.Free(dk2)
	w.Backend.AttentionGrad(dq, dk2, dv, q, k, v, out, lse, dout, p)
	w.Backend.Copy(dk, dk2, true)
}

// droppedSegments hands the CPU kernels no segments, in the forward or
// (inGrad) in the backward.
type droppedSegments struct {
	backend.Backend
	inGrad bool
}

func (w droppedSegments) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	if !w.inGrad {
		p.Segments = nil
	}
	w.Backend.Attention(out, lse, q, k, v, p)
}

func (w droppedSegments) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	if w.inGrad {
		p.Segments = nil
	}
	w.Backend.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
}

// laterBoundaries moves every document boundary one key later, as a
// kernel would whose document starts are off by one: the first key of
// each document but a sequence's first joins the document before.
type laterBoundaries struct{ backend.Backend }

func laterDocs(seg []int32, keys int) []int32 {
	if seg == nil || keys == 0 || len(seg)%keys != 0 {
		return seg // invalid: let the backend refuse it
	}
	out := slices.Clone(seg)
	for b0 := 0; b0 < len(seg); b0 += keys {
		for j := b0 + 1; j < b0+keys; j++ {
			if seg[j] != seg[j-1] {
				out[j] = seg[j-1]
			}
		}
	}
	return out
}

func (w laterBoundaries) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	if s := k.Shape(); len(s) == 4 {
		p.Segments = laterDocs(p.Segments, s[1])
	}
	w.Backend.Attention(out, lse, q, k, v, p)
}

func (w laterBoundaries) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	if s := k.Shape(); len(s) == 4 {
		p.Segments = laterDocs(p.Segments, s[1])
	}
	w.Backend.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
}

// attnName holds what the attention cases' names say of them.
type attnName struct {
	grad                              bool
	b, tq, tk, h, kv, offset, window  int
	causal, lse, softcap, largeScores bool
	// p holds the mask and the segments the name gives (not Scale or
	// Softcap).
	p backend.AttentionParams
}

var attnNameRE = regexp.MustCompile(`^attention(?P<grad>_grad)?/b=(?P<b>\d+),tq=(?P<tq>\d+),tk=(?P<tk>\d+),h=(?P<h>\d+),kv=(?P<kv>\d+),d=\d+/scale=[^/]+` +
	`(?P<softcap>/softcap=[^/]+)?(?P<causal>/causal,offset=(?P<offset>\d+)(,window=(?P<window>\d+))?)?(/offset=(?P<ncoffset>\d+))?` +
	`(/range=(?P<range>[^/]+))?(/docs=(?P<docs>[^/]+))?(?P<nolse>/no_lse)?`)

// parseAttnName parses the name of an attention or attention_grad case.
func parseAttnName(name string) (attnName, bool) {
	m := attnNameRE.FindStringSubmatch(name)
	if m == nil {
		return attnName{}, false
	}
	g := func(s string) string { return m[attnNameRE.SubexpIndex(s)] }
	atoi := func(s string) int { n, _ := strconv.Atoi(g(s)); return n }
	a := attnName{
		grad: g("grad") != "", b: atoi("b"), tq: atoi("tq"), tk: atoi("tk"), h: atoi("h"), kv: atoi("kv"),
		softcap: g("softcap") != "", causal: g("causal") != "", offset: atoi("offset") + atoi("ncoffset"), window: atoi("window"),
		lse: g("nolse") == "",
	}
	if r, err := strconv.ParseFloat(g("range"), 64); err == nil && r >= 7 {
		a.largeScores = true
	}
	a.p = backend.AttentionParams{Causal: a.causal, QueryOffset: a.offset, Window: a.window}
	if d := g("docs"); d != "" {
		// Sequences "," apart, documents number:length "+" apart.
		for _, seq := range strings.Split(d, ",") {
			n := 0
			for _, doc := range strings.Split(seq, "+") {
				num, length, _ := strings.Cut(doc, ":")
				id, err1 := strconv.ParseInt(num, 10, 32)
				l, err2 := strconv.Atoi(length)
				if err1 != nil || err2 != nil {
					return attnName{}, false
				}
				for range l {
					a.p.Segments = append(a.p.Segments, int32(id))
				}
				n += l
			}
			if n != a.tk {
				return attnName{}, false
			}
		}
		if len(a.p.Segments) != a.b*a.tk {
			return attnName{}, false
		}
	}
	return a, true
}

// maskChanges reports whether h (a faulty host, or a faultless one given
// the parameters p a wrapper hands the kernels) shows some query of a's
// case another set of keys than the faultless mask of a's own parameters;
// grad asks about the backward's mask.
func maskChanges(a attnName, h *hostAttention, p backend.AttentionParams, grad bool) bool {
	var right hostAttention
	dbRight, db := boundsOf(a.p, a.tk), boundsOf(p, a.tk)
	for b := 0; b < a.b; b++ {
		for i := 0; i < a.tq; i++ {
			for j := 0; j < a.tk; j++ {
				if right.sees(b, i, j, a.tk, a.p, dbRight, grad) != h.sees(b, i, j, a.tk, p, db, grad) {
					return true
				}
			}
		}
	}
	return false
}

func TestBrokenAttentionIsCaught(t *testing.T) {
	cpu := openBackend(t, "cpu")
	// Which cases each fault must fail, from their names.
	must := func(f func(a attnName) bool) func(string) bool {
		return func(name string) bool {
			a, ok := parseAttnName(name)
			return ok && f(a)
		}
	}
	host := func(f attnFault) backend.Backend { return &hostAttention{Backend: cpu, fault: f} }
	// With segments, a mask fault must be caught wherever it changes a
	// query's keys (scores in the hundreds excepted, where the keys it
	// adds or drops may weigh nothing against the dominant one).
	segmentMask := func(f attnFault, grad bool) func(a attnName) bool {
		return func(a attnName) bool {
			return (a.grad || !grad) && !a.largeScores && maskChanges(a, &hostAttention{fault: f}, a.p, grad)
		}
	}
	wrappedMask := func(change func(p backend.AttentionParams, keys int) backend.AttentionParams, grad bool) func(a attnName) bool {
		return func(a attnName) bool {
			return a.p.Segments != nil && (a.grad || !grad) && !a.largeScores &&
				maskChanges(a, &hostAttention{}, change(a.p, a.tk), grad)
		}
	}
	noSegments := func(p backend.AttentionParams, _ int) backend.AttentionParams { p.Segments = nil; return p }
	tests := []struct {
		name   string
		b      backend.Backend
		broken func(name string) bool
		op     backend.Op // the op the fault is in
		cpu    bool       // the fault is planted around the CPU backend's kernels
	}{
		// A key ahead exists for the first query unless it sees every
		// key. With scores of hundreds the extra key's weight may
		// underflow, so those cases need not notice.
		{"causal mask one key ahead", host(causalOffByOne), must(func(a attnName) bool {
			if a.p.Segments != nil {
				return segmentMask(causalOffByOne, false)(a)
			}
			return a.causal && a.offset < a.tk-1 && !a.largeScores
		}), backend.OpAttention, false},
		// The extra key pos − Window exists for the last query.
		{"window one key wide", host(windowOffByOne), must(func(a attnName) bool {
			if a.p.Segments != nil {
				return segmentMask(windowOffByOne, false)(a)
			}
			return a.window > 0 && a.tq-1+a.offset >= a.window && !a.largeScores
		}), backend.OpAttention, false},
		{"query head h uses kv head h % KV", host(gqaModulo), must(func(a attnName) bool { return a.kv > 1 && a.h > a.kv }), backend.OpAttention, false},
		{"softcap derivative missing", host(softcapDerivative), must(func(a attnName) bool { return a.grad && a.softcap }), backend.OpAttentionGrad, false},
		{"softcap before the scale", host(capBeforeScale), must(func(a attnName) bool { return a.softcap }), backend.OpAttention, false},
		{"dk and dv not summed over the group", host(groupNotSummed), must(func(a attnName) bool { return a.grad && a.h > a.kv }), backend.OpAttentionGrad, false},
		{"lse in base 2", host(lseLog2), must(func(a attnName) bool { return a.lse || a.grad }), backend.OpAttention, false},
		// A cap of 50 keeps exp of the capped scores finite.
		{"row maximum not subtracted", host(noMaxSubtracted), must(func(a attnName) bool { return a.largeScores && !a.softcap }), backend.OpAttention, false},
		{"segments ignored", host(segmentsIgnored), must(segmentMask(segmentsIgnored, false)), backend.OpAttention, false},
		{"document starts one key early", host(docStartEarly), must(segmentMask(docStartEarly, false)), backend.OpAttention, false},
		{"document starts one key late", host(docStartLate), must(segmentMask(docStartLate, false)), backend.OpAttention, false},
		{"segments in the forward only", host(segmentsForwardOnly), must(segmentMask(segmentsForwardOnly, true)), backend.OpAttentionGrad, false},

		// With a window the shifted window always differs (or leaves
		// the last query no key, which is refused).
		{"cpu: causal queries one position late", shiftedMask{cpu}, must(func(a attnName) bool {
			return a.causal && !a.largeScores && (a.offset < a.tk-1 || a.window > 0)
		}), backend.OpAttention, true},
		{"cpu: backward without the cap", uncappedGrad{cpu}, must(func(a attnName) bool { return a.grad && a.softcap }), backend.OpAttentionGrad, true},
		{"cpu: query head h uses kv head h % KV", moduloGroups{cpu}, must(func(a attnName) bool { return a.kv > 1 && a.h > a.kv }), backend.OpAttention, true},
		{"cpu: dk and dv of the last head of each group", lastHeadOnly{cpu}, must(func(a attnName) bool { return a.grad && a.h > a.kv }), backend.OpAttentionGrad, true},
		{"cpu: dk accumulated into", accumulatingGrad{cpu}, must(func(a attnName) bool { return a.grad }), backend.OpAttentionGrad, true},
		{"cpu: segments dropped in the forward", droppedSegments{cpu, false}, must(wrappedMask(noSegments, false)), backend.OpAttention, true},
		{"cpu: segments dropped in the backward", droppedSegments{cpu, true}, must(wrappedMask(noSegments, true)), backend.OpAttentionGrad, true},
		{"cpu: document boundaries one key late", laterBoundaries{cpu}, must(wrappedMask(func(p backend.AttentionParams, keys int) backend.AttentionParams {
			p.Segments = laterDocs(p.Segments, keys)
			return p
		}, false)), backend.OpAttention, true},
	}
	var attnCases []conformance.Case
	for _, c := range conformance.Cases() {
		if calls(c, backend.OpAttention) || calls(c, backend.OpAttentionGrad) {
			attnCases = append(attnCases, c)
		}
	}
	if len(attnCases) < 50 {
		t.Fatalf("%d cases call attention: the test is wrong", len(attnCases))
	}
	packed := 0
	for _, c := range attnCases {
		// Other packages' cases (graph/gradcheck's "grad/graph/…") call
		// attention too; only this package's are named by their shapes.
		if (c.Op == backend.OpAttention || c.Op == backend.OpAttentionGrad) && strings.HasPrefix(c.Name, "attention") {
			a, ok := parseAttnName(c.Name)
			if !ok {
				t.Errorf("case %s: its name does not parse: the test is wrong", c.Name)
			}
			if a.p.Segments != nil {
				packed++
			} else if strings.Contains(c.Name, "/docs=") {
				t.Errorf("case %s: its documents do not parse: the test is wrong", c.Name)
			}
		}
	}
	if packed < 30 {
		t.Errorf("%d attention cases with segments parsed: the test is wrong", packed)
	}
	t.Run("faultless", func(t *testing.T) {
		h := &hostAttention{Backend: cpu}
		for _, c := range attnCases {
			if o := conformance.RunCase(h, c, 0); o.Status != conformance.Passed {
				t.Errorf("%s", o)
			}
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cpu && !cpu.Supports(backend.OpAttention) {
				t.Skipf("the cpu backend lacks %s: no kernel to plant the fault around", backend.OpAttention)
			}
			want := 0
			for _, c := range attnCases {
				broken := tc.broken(c.Name)
				if broken {
					want++
				}
				o := conformance.RunCase(tc.b, c, 0)
				switch {
				case o.Status == conformance.Skipped:
					t.Errorf("%s", o)
				case broken && o.Status != conformance.Failed:
					t.Errorf("case %s passed with the fault", c.Name)
				case o.Status == conformance.Failed && !calls(c, tc.op):
					t.Errorf("case %s failed, but it does not call the broken op %s:\n%s", c.Name, tc.op, o)
				}
			}
			if want == 0 {
				t.Fatal("no case is expected to catch the fault: the test is wrong")
			}
			t.Logf("%d cases must fail", want)
		})
	}
}

// TestAttentionOptional checks that a backend without the attention ops
// skips their cases, and only those (as SkippedOptional says), and that
// it must refuse the calls: one that says it lacks them but computes all
// the same fails the refusal case.
func TestAttentionOptional(t *testing.T) {
	cpu := openBackend(t, "cpu")
	callsAttention := func(c conformance.Case) bool {
		return calls(c, backend.OpAttention) || calls(c, backend.OpAttentionGrad)
	}
	optSkipped := skippedOptional(cpu)
	for _, tc := range []struct {
		name   string
		b      backend.Backend
		failed []string
	}{
		{"without attention, truthfully", &hostAttention{Backend: cpu, fault: unsupported}, nil},
		{"without attention, yet computing it", &hostAttention{Backend: cpu, fault: lyingUnsupported}, []string{"sticky/attention_refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			sum, err := conformance.Run(tc.b, &out, conformance.Options{Filter: "attention"})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			want := 0
			for _, c := range conformance.Select("attention") {
				if callsAttention(c) || optSkipped[c.Name] {
					want++
				}
			}
			if want < 50 {
				t.Fatalf("%d cases call attention: the test is wrong", want)
			}
			if sum.Skipped != want || sum.Failed != len(tc.failed) {
				t.Errorf("summary %q, want %d skipped and %d failed:\n%s", sum, want, len(tc.failed), out.String())
			}
			for _, name := range tc.failed {
				if !strings.Contains(out.String(), "FAIL "+name+":") {
					t.Errorf("case %s did not fail:\n%s", name, out.String())
				}
			}
			if !strings.Contains(out.String(), "does not support op attention") {
				t.Errorf("the report does not say why the cases were skipped:\n%s", out.String())
			}
			for _, c := range conformance.Cases() {
				if got, want := conformance.SkippedOptional(tc.b, c), callsAttention(c) || optSkipped[c.Name]; got != want {
					t.Errorf("SkippedOptional(%s) = %v, want %v", c.Name, got, want)
				}
			}
		})
	}
}

// calls reports whether case c calls op.
func calls(c conformance.Case, op backend.Op) bool {
	if op == "" {
		return false
	}
	if c.Op == op {
		return true
	}
	for _, n := range c.Needs {
		if n == op {
			return true
		}
	}
	return false
}
