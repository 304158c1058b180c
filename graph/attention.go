package graph

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/sora-go/sora/backend"
)

// AttentionEnv is the environment variable that [New] reads to choose how
// [Tape.Attention] computes: unset, "" or "fused" for the backend's fused
// kernel where it has one, "unfused" for the composition from MatMul and
// Softmax on every backend (a safety valve, and the baseline of an A/B
// comparison). Any other value makes Attention fail with an error naming
// the variable.
const AttentionEnv = "SORA_ATTENTION"

// attentionMode is how a tape computes Attention.
type attentionMode struct {
	unfused bool   // compose even where the backend has the fused ops
	fromEnv bool   // unfused because AttentionEnv says so, not SetFusedAttention
	bad     string // an unknown value of AttentionEnv, reported by Attention
}

// attentionModeFromEnv reads AttentionEnv.
func attentionModeFromEnv() attentionMode {
	switch v := os.Getenv(AttentionEnv); v {
	case "", "fused":
		return attentionMode{}
	case "unfused":
		return attentionMode{unfused: true, fromEnv: true}
	default:
		return attentionMode{bad: v}
	}
}

// SetFusedAttention allows (true, the default) or forbids (false)
// [Tape.Attention] the backend's fused kernel, and returns the previous
// setting; it overrides [AttentionEnv]. Forbidden, Attention composes
// attention from MatMul and Softmax as on a backend without the kernel,
// storing the scores: for comparing the two, and as a way around a
// faulty kernel. Change it between steps, not between a checkpointed
// segment's forward and Backward (the recomputation would take the other
// path, whose rounding differs).
func (g *Tape) SetFusedAttention(on bool) (previous bool) {
	previous = !g.attn.unfused && g.attn.bad == ""
	g.attn = attentionMode{unfused: !on}
	return previous
}

// FusedAttention reports whether [Tape.Attention] runs the backend's fused
// kernel: the backend supports both [backend.OpAttention] and
// [backend.OpAttentionGrad], and neither [Tape.SetFusedAttention] nor
// [AttentionEnv] forbids it.
func (g *Tape) FusedAttention() bool {
	return !g.attn.unfused && g.attn.bad == "" &&
		g.b.Supports(backend.OpAttention) && g.b.Supports(backend.OpAttentionGrad)
}

// CheckFusedAttention returns nil where [Tape.Attention] runs the
// backend's fused kernel ([Tape.FusedAttention] is true), and otherwise an
// error that says why not: the backend lacks the ops, [AttentionEnv] holds
// "unfused" or a value it does not know, or [Tape.SetFusedAttention](false)
// turned the kernel off. For callers that need the fused kernel, as
// sequence packing does, and must tell the user why they cannot run.
func (g *Tape) CheckFusedAttention() error {
	switch {
	case !g.b.Supports(backend.OpAttention) || !g.b.Supports(backend.OpAttentionGrad):
		return fmt.Errorf("the %s backend has none (it lacks %s or %s)", g.b.Name(), backend.OpAttention, backend.OpAttentionGrad)
	case g.attn.bad != "":
		return g.attn.badEnv()
	case g.attn.fromEnv:
		return fmt.Errorf("%s=unfused turns it off", AttentionEnv)
	case g.attn.unfused:
		return errors.New("SetFusedAttention(false) turned it off")
	}
	return nil
}

// CheckAttentionEnv returns an error naming [AttentionEnv] when it holds a
// value other than "fused" or "unfused" (or is empty), nil otherwise: for
// programs to refuse a mistyped setting at start, rather than at the
// first Attention (or, where a caller only asks [Tape.FusedAttention],
// never).
func CheckAttentionEnv() error {
	if m := attentionModeFromEnv(); m.bad != "" {
		return m.badEnv()
	}
	return nil
}

// badEnv is the error of an unknown value of AttentionEnv.
func (m attentionMode) badEnv() error {
	return fmt.Errorf("environment variable %s=%q; want \"fused\", \"unfused\" or unset", AttentionEnv, m.bad)
}

// Attention returns scaled dot-product attention of the queries q
// [batch, queries, heads, headDim] over the keys k and values v [batch,
// keys, kvHeads, headDim], as [batch, queries, heads, headDim]: what
// [backend.Ops.Attention] computes. Query head h attends with key/value
// head h / (heads/kvHeads) (grouped-query attention: heads must be a
// multiple of kvHeads); p.Scale multiplies q·k, p.Softcap (when positive)
// caps the result to Softcap·tanh(·/Softcap), and p's mask fields mean
// what [backend.SoftmaxParams]' do, with queries and keys the sequence
// lengths of q and k. Invalid shapes or parameters are a tape error.
//
// Where the backend supports the fused ops (see [Tape.FusedAttention]),
// this is one kernel forward and one backward, and the tape keeps q, k, v,
// the result and one log-sum-exp per query and head: memory linear in the
// sequence length. Elsewhere (or with [Tape.SetFusedAttention](false), or
// SORA_ATTENTION=unfused, see [AttentionEnv]) it is composed from
// Permute, MatMulNT, Tanh (with a cap), Softmax and MatMul, and keeps the
// [batch·heads, queries, keys] scores and probabilities until Backward.
// The two agree to float32 rounding.
//
// p.Segments (sequence packing: several documents per sequence, each
// attending only to its own keys) is taken by the fused path alone: the
// composed one has no mask for it, so there it is a tape error naming the
// cause, never a silently unmasked attention. The segments are copied for
// Backward, as [Tape.Gather]'s ids are: the caller may reuse its slice
// once Attention returns. (A checkpointed segment's recomputation calls
// Attention again with whatever its function passes then.)
func (g *Tape) Attention(q, k, v *Value, p backend.AttentionParams) *Value {
	if !g.check("Attention", q, k, v) {
		return g.placeholder(shapeOf(q))
	}
	if g.attn.bad != "" {
		g.failf("Attention: %v", g.attn.badEnv())
		return g.placeholder(q.shape)
	}
	d, err := backend.CheckAttention(q.data, backend.Tensor{}, q.data, k.data, v.data, p)
	if err != nil {
		var oe *backend.OpError
		if errors.As(err, &oe) {
			err = oe.Err // the shapes are named below, as the graph names them
		}
		g.failf("Attention: q %v, k %v, v %v: %v", q.shape, k.shape, v.shape, err)
		return g.placeholder(q.shape)
	}
	if g.FusedAttention() {
		return g.attentionFused(q, k, v, p, d)
	}
	if p.Segments != nil {
		g.failf("Attention: q %v, k %v, v %v: segments (sequence packing) need the backend's fused attention, and %v", q.shape, k.shape, v.shape, g.CheckFusedAttention())
		return g.placeholder(q.shape)
	}
	return g.attentionComposed(q, k, v, p, d)
}

// attentionFused is Attention with the backend's kernels. The forward
// writes the log-sum-exp of every score row, which the backward takes;
// it is a buffer the tape owns (so a checkpointed segment releases it with
// its other intermediates), made only when a backward is recorded.
func (g *Tape) attentionFused(q, k, v *Value, p backend.AttentionParams, d backend.AttentionDims) *Value {
	out := g.output(q.shape, q, k, v)
	if g.err != nil {
		return out
	}
	if !g.recording(out) {
		g.b.Attention(out.data, backend.Tensor{}, q.data, k.data, v.data, p)
		return out
	}
	lse := g.alloc(backend.Shape{d.Batch, d.Heads, d.Queries})
	if g.err != nil {
		return out
	}
	g.owned = append(g.owned, lse)
	p.Segments = slices.Clone(p.Segments) // Backward reads them; the caller may reuse its slice
	g.b.Attention(out.data, lse, q.data, k.data, v.data, p)
	g.record(out, func(dy backend.Tensor) {
		// The kernel writes all three gradients; one for an input that
		// needs none goes to a scratch buffer that gradWrite releases.
		dq, doneQ := g.gradWrite(q)
		dk, doneK := g.gradWrite(k)
		dv, doneV := g.gradWrite(v)
		if g.err == nil {
			g.b.AttentionGrad(dq, dk, dv, q.data, k.data, v.data, out.data, lse, dy, p)
		}
		doneQ()
		doneK()
		doneV()
		g.release(dy)
	})
	return out
}

// attentionComposed is Attention from general ops, for backends without
// the fused kernels. The query heads that share key/value head j are
// heads j·group … j·group + group − 1, so with the queries laid out
// [batch, kvHeads, group·queries, headDim] one batched product per
// key/value head covers its whole group, with no copies of the keys and
// values. A cap folds the scale into the tanh, tanh(s·Scale/Softcap), and
// leaves the softmax the scale Softcap, which makes Softcap·tanh(·).
func (g *Tape) attentionComposed(q, k, v *Value, p backend.AttentionParams, d backend.AttentionDims) *Value {
	B, Tq, Tk, H, KV, D := d.Batch, d.Queries, d.Keys, d.Heads, d.KVHeads, d.HeadDim
	group := d.Group()
	qp := g.Reshape(g.Permute(q, 0, 2, 1, 3), B, KV, group*Tq, D)
	kp := g.Permute(k, 0, 2, 1, 3) // [B, KV, Tk, D]
	vp := g.Permute(v, 0, 2, 1, 3)
	s := g.Reshape(g.MatMulNT(qp, kp), B*H, Tq, Tk)
	sp := p.Mask()
	if p.Softcap > 0 {
		s = g.Tanh(g.Scale(s, p.Scale/p.Softcap))
		sp.Scale = p.Softcap
	}
	pr := g.Softmax(s, sp)
	o := g.MatMul(g.Reshape(pr, B, KV, group*Tq, Tk), vp) // [B, KV, group·Tq, D] = [B, H, Tq, D]
	return g.Permute(g.Reshape(o, B, H, Tq, D), 0, 2, 1, 3)
}
