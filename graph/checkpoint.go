package graph

import (
	"math/rand/v2"
	"reflect"

	"github.com/sora-go/sora/backend"
)

// Checkpoint runs f(g, in) as a checkpointed segment (gradient, or
// activation, checkpointing): of everything f makes, only its results
// outlive it. The buffers of its intermediates go back to the tape's pool
// as soon as f returns, to be reused by the next segment, instead of being
// kept until [Tape.Reset]; Backward, when it reaches the segment, runs f
// again from the same inputs with recording on, propagates the results'
// gradients through that recomputation into the inputs and the parameters
// f used, and releases the recomputation's buffers before it goes on. A
// stack of N checkpointed layers thus keeps N layer outputs and one
// layer's intermediates alive, instead of N layers' intermediates (see
// the package documentation, Memory), at the cost of a second forward of
// every segment during Backward: a third more arithmetic for a model
// whose every weight trains (backward about twice the forward), about half
// more where the weights are frozen and only adapters train (backward
// about one forward).
//
// The results are those of calling f directly, and so are the gradients
// that reach in, the parameters and any value of g made before the call
// that f reads; on a deterministic backend they are the same to the bit,
// since the recomputation runs the same ops on the same data and Backward
// accumulates every gradient in the same order. Checkpoint returns new
// Values that stand for the results f made (same shapes and data), and
// the results it did not make (its inputs, values of g made before the
// call, parameters) as they are.
//
// Dropout inside f draws the same masks in the recomputation: the seeds
// of the forward's masks are kept, in order, and the recomputation's k-th
// [Tape.Dropout] or [Tape.DropoutSeed] uses the k-th of them (Dropout then
// draws nothing from its generator, which therefore advances once per
// step, as without checkpointing). [Tape.Recomputing] lets f skip other
// side effects in the recomputation, such as advancing a counter.
//
// f must be a pure function of in, the parameters it uses and values of g
// made before the call: the recomputation happens during Backward, and
// must make the same ops on the same shapes (it is an error, reported by
// Backward, when its results' number or shapes differ or it draws another
// number of dropout masks). So f must not read state that changes between
// the call and Backward (a variable it captures that the caller
// reassigns, a tensor written in place), must not mutate state it reads
// (other than through [Tape.Recomputing]), and must not keep its
// intermediates: using one after f returns is an error. f must not call
// Backward or Reset. A [Tape.Custom] op inside f must own no device memory
// between its forward and backward other than tape values, as its backward
// may never run for the forward's copy.
//
// With recording off ([Tape.SetNoGrad]) there is no Backward to recompute
// for: Checkpoint runs f once and releases its intermediates as soon as it
// returns, keeping only its results (as new Values, or as they are when f
// did not make them), so that a no-grad forward through a chain of
// segments (the layers of a model being evaluated) holds one segment's
// intermediates at a time instead of every layer's until Reset. After an
// error f runs on placeholders and Backward reports the error. Segments may be nested (f may call Checkpoint); a segment's
// results may be used any number of times, and inputs that need no
// gradient (or are parameters, trainable or frozen) are fine. Gradients
// of parameters accumulate across Backward calls as without
// checkpointing.
func (g *Tape) Checkpoint(f func(g *Tape, in []*Value) []*Value, in ...*Value) []*Value {
	if f == nil {
		g.failf("Checkpoint: nil function")
		return nil
	}
	// Our own copy: the recomputation needs the inputs as they are now,
	// whatever the caller or f does to the slice.
	in = append([]*Value(nil), in...)
	if !g.check("Checkpoint", in...) {
		return f(g, in)
	}
	n0, o0, v0, epoch, done := len(g.nodes), len(g.owned), len(g.values), g.epoch, g.backwardDone
	s := &segment{f: f, in: in}
	depth := len(g.segs)
	if !g.noGrad {
		g.segs = append(g.segs, segCtx{seg: s})
	}
	outs := f(g, append([]*Value(nil), in...))
	g.segs = g.segs[:min(depth, len(g.segs))] // f may have Reset the tape
	if !g.segmentIntact("Checkpoint", epoch, done, n0, o0, v0) || g.err != nil {
		return outs
	}
	for i, r := range outs {
		if !g.checkResult(i, r) {
			return outs
		}
	}

	// The results' data outlives f; the values f made do not.
	type result struct {
		data      backend.Tensor
		shape     backend.Shape
		needsGrad bool
	}
	res := make([]result, len(outs))
	for i, r := range outs {
		res[i] = result{r.data, r.shape, r.needsGrad}
	}
	keep := g.owned[o0:o0]
	for _, t := range g.owned[o0:] {
		if backsAny(t, outs) {
			keep = append(keep, t)
		} else {
			g.release(t)
		}
	}
	clear(g.owned[o0+len(keep):])
	g.owned = g.owned[:o0+len(keep)]
	g.dropSince(n0, v0)

	// A result that f did not make (one of its inputs, a value made
	// before the call, a parameter: no value dropSince invalidated) is
	// returned as it is, not through a new value whose gradient the
	// recomputation would add to it: its uses after the segment then add
	// their gradients into it in the plain run's order, and the segment
	// has nothing to propagate for it.
	s.outs = make([]*Value, len(res))
	s.pass = make([]bool, len(res))
	record := false
	for i, r := range res {
		if !outs[i].dead {
			s.outs[i], s.pass[i] = outs[i], true
			continue
		}
		s.outs[i] = g.newValue(r.data, r.shape, r.needsGrad)
		record = record || r.needsGrad
	}
	if record && !g.noGrad {
		g.nodes = append(g.nodes, node{seg: s})
	}
	return append([]*Value(nil), s.outs...)
}

// Recomputing reports whether the tape is recomputing a checkpointed
// segment during Backward (see [Tape.Checkpoint]): the segment's function
// is running for the second time, and should skip side effects that its
// forward already had, such as advancing a counter.
func (g *Tape) Recomputing() bool { return g.recomputing > 0 }

// segment is a checkpointed segment: what its recomputation needs.
type segment struct {
	f     func(g *Tape, in []*Value) []*Value
	in    []*Value
	outs  []*Value // the values Checkpoint returned
	pass  []bool   // outs[i] is a value f did not make, returned as it is
	seeds []uint64 // the seeds of the forward's dropout masks, in order
	next  int      // during the recomputation: the next seed to use
}

// segCtx is a segment whose function is running: its forward, which logs
// the dropout seeds, or its recomputation (replay), which uses them.
type segCtx struct {
	seg    *segment
	replay bool
}

// maskSeed returns the seed of the next dropout mask: seed, or a draw of
// rng when rng is not nil; while a segment is recomputed, the seed its
// forward used at this point instead. The seed is logged by every segment
// whose forward is running (nested ones log what their enclosing segment
// replays). It reports false, having recorded an error, when a replay runs
// out of seeds.
func (g *Tape) maskSeed(seed uint64, rng *rand.Rand) (uint64, bool) {
	src := -1
	for i := len(g.segs) - 1; i >= 0; i-- {
		if g.segs[i].replay {
			src = i
			break
		}
	}
	switch {
	case src >= 0:
		s := g.segs[src].seg
		if s.next >= len(s.seeds) {
			g.failf("Checkpoint: the recomputation draws more dropout masks than the forward (%d): the segment's function is not a pure function of its inputs", len(s.seeds))
			return 0, false
		}
		seed = s.seeds[s.next]
		s.next++
	case rng != nil:
		seed = rng.Uint64()
	}
	for i := src + 1; i < len(g.segs); i++ {
		g.segs[i].seg.seeds = append(g.segs[i].seg.seeds, seed)
	}
	return seed, true
}

// recompute is the backward of segment s: it takes its results'
// gradients, runs its function again with recording on, backpropagates
// the gradients through the new ops into the segment's inputs and
// parameters, and releases everything the recomputation made.
func (g *Tape) recompute(s *segment) {
	dys := make([]backend.Tensor, len(s.outs))
	some := false
	for i, o := range s.outs {
		if s.pass[i] {
			continue // its gradient is its own, not the segment's
		}
		dys[i], o.grad = o.grad, backend.Tensor{}
		some = some || !dys[i].IsZero()
	}
	defer func() {
		for _, dy := range dys {
			g.release(dy)
		}
	}()
	if !some {
		return // nothing flows back through the segment
	}
	n0, o0, v0, epoch, done := len(g.nodes), len(g.owned), len(g.values), g.epoch, g.backwardDone
	noGrad := g.noGrad
	g.noGrad = false
	depth := len(g.segs)
	g.segs = append(g.segs, segCtx{seg: s, replay: true})
	s.next = 0
	g.recomputing++
	outs := s.f(g, append([]*Value(nil), s.in...))
	g.recomputing = max(g.recomputing-1, 0)
	g.segs = g.segs[:min(depth, len(g.segs))]
	g.noGrad = noGrad
	if !g.segmentIntact("Checkpoint recomputation", epoch, done, n0, o0, v0) {
		return
	}
	if g.err == nil && s.next != len(s.seeds) {
		g.failf("Checkpoint: the recomputation draws %d dropout masks, the forward drew %d: the segment's function is not a pure function of its inputs", s.next, len(s.seeds))
	}
	if g.err == nil && len(outs) != len(s.outs) {
		g.failf("Checkpoint: the recomputation returns %d results, the forward returned %d: the segment's function is not a pure function of its inputs", len(outs), len(s.outs))
	}
	for i := 0; g.err == nil && i < len(outs); i++ {
		r, o := outs[i], s.outs[i]
		if !g.checkResult(i, r) {
			break
		}
		switch {
		case !r.shape.Equal(o.shape) || r.needsGrad != o.needsGrad:
			g.failf("Checkpoint: the recomputation's result %d is %v, the forward's was %v: the segment's function is not a pure function of its inputs", i, r, o)
		case s.pass[i] && r != o:
			g.failf("Checkpoint: the recomputation's result %d is not the value %v that the forward returned without making it: the segment's function is not a pure function of its inputs", i, o)
		}
	}
	if g.err == nil {
		for i, r := range outs {
			if s.outs[i].seed && madeSince(g, r, v0) {
				r.seed = true // the loss itself: its gradient is exactly 1
			}
			if dys[i].IsZero() {
				continue
			}
			g.give(r, dys[i])
			dys[i] = backend.Tensor{}
		}
		g.backprop(n0)
	}
	// Whatever the recomputation made goes, gradients left by an error
	// included (those it handed to older values are theirs now).
	for _, v := range g.values[v0:] {
		g.release(v.grad)
		v.grad = backend.Tensor{}
	}
	for _, t := range g.owned[o0:] {
		g.release(t)
	}
	clear(g.owned[o0:])
	g.owned = g.owned[:o0]
	g.dropSince(n0, v0)
}

// dropSince forgets the ops recorded from nodes[n0] on and invalidates the
// values made from values[v0] on, whose buffers the caller has released.
func (g *Tape) dropSince(n0, v0 int) {
	clear(g.nodes[n0:])
	g.nodes = g.nodes[:n0]
	for _, v := range g.values[v0:] {
		v.data, v.grad = backend.Tensor{}, backend.Tensor{}
		v.dead, v.dropped = true, true
	}
	clear(g.values[v0:])
	g.values = g.values[:v0]
}

// segmentIntact reports whether a segment's function left the tape as a
// function may: it did not Reset it or run Backward on it. Otherwise it
// records an error (the state the segment would release is gone).
func (g *Tape) segmentIntact(what string, epoch int, done bool, n0, o0, v0 int) bool {
	switch {
	case g.epoch != epoch:
		g.failf("%s: the segment's function reset the tape", what)
	case g.backwardDone != done || len(g.nodes) < n0 || len(g.owned) < o0 || len(g.values) < v0:
		g.failf("%s: the segment's function ran Backward", what)
	default:
		return true
	}
	return false
}

// checkResult validates result i of a segment's function.
func (g *Tape) checkResult(i int, r *Value) bool {
	switch {
	case r == nil:
		g.failf("Checkpoint: the segment's result %d is nil", i)
	case r.dead:
		g.failf("Checkpoint: the segment's result %d %v is a value of an earlier step or segment", i, r.shape)
	case !r.param && r.tape != g:
		g.failf("Checkpoint: the segment's result %d %v belongs to another tape", i, r.shape)
	case r.data.IsZero():
		g.failf("Checkpoint: the segment's result %d %v has no data", i, r.shape)
	default:
		return true
	}
	return false
}

// madeSince reports whether v is one of g.values[v0:].
func madeSince(g *Tape, v *Value, v0 int) bool {
	for _, w := range g.values[v0:] {
		if w == v {
			return true
		}
	}
	return false
}

// backsAny reports whether t, a buffer the tape owns, holds the data of
// one of vs.
func backsAny(t backend.Tensor, vs []*Value) bool {
	for _, v := range vs {
		if !v.param && !v.data.IsZero() && sameBuffer(t.Buffer(), v.data.Buffer()) {
			return true
		}
	}
	return false
}

// sameBuffer reports whether a and b may be the same device buffer.
// Backends' buffers are pointers. For a buffer type that cannot be
// compared it answers true, and a value type (gradcheck's op recorder
// uses lengths) may compare equal to other buffers: either only keeps a
// buffer until Reset, never releases one that is still in use.
func sameBuffer(a, b backend.Buffer) bool {
	ta := reflect.TypeOf(a)
	switch {
	case ta == nil || ta != reflect.TypeOf(b):
		return false
	case !ta.Comparable():
		return true
	}
	return a == b
}
