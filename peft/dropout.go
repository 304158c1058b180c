package peft

import "github.com/sora-go/sora/graph"

// SetDropoutStep makes the dropout masks of the layer's next training
// forwards a function of the layer (its name and [Config.Seed]), step
// and micro alone: the k-th training forward after the call (k = 0, 1,
// …) drops with the mask of (layer, step, micro, k). A trainer calls it
// before each micro-batch with the number of optimizer steps done and the
// micro-batch's index, so that a step's masks do not depend on the
// forwards that ran before it, and a run resumed from a checkpoint drops
// exactly what an uninterrupted run drops. Without a call the masks are
// those of step 0, micro-batch 0, and differ from forward to forward.
// Forwards that record no gradients (evaluation) drop nothing and do not
// count.
func (l *Layer) SetDropoutStep(step, micro int) {
	l.dropStep, l.dropMicro, l.dropCalls = uint64(step), uint64(micro), 0
}

// SetDropoutStep calls [Layer.SetDropoutStep] on every layer.
func (m *Model) SetDropoutStep(step, micro int) {
	for _, l := range m.layers {
		l.SetDropoutStep(step, micro)
	}
}

// dropout applies the layer's next dropout mask to x (see
// [Layer.SetDropoutStep]).
func (l *Layer) dropout(g *graph.Tape, x *graph.Value) *graph.Value {
	seed := l.maskSeed(l.dropStep, l.dropMicro, l.dropCalls)
	if !g.Recomputing() {
		// A checkpointed segment's recomputation replays the seeds its
		// forward drew (graph.Tape.Checkpoint): it is not another forward.
		l.dropCalls++
	}
	return g.DropoutSeed(x, l.cfg.Dropout, seed)
}

// maskSeed is the seed of graph.DropoutMask for the call-th training
// forward after SetDropoutStep(step, micro).
func (l *Layer) maskSeed(step, micro, call uint64) uint64 {
	return graph.MixSeed(graph.MixSeed(graph.MixSeed(l.dropSeed, step), micro), call)
}
