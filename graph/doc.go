// Package graph is reverse-mode automatic differentiation over the
// backend op interface: a define-by-run tape that every model and PEFT
// layer of SORA for Go is trained with, on whichever backend the user
// picked.
//
// # Values, parameters and the tape
//
// A [Value] is a tensor in a computation. Parameters are Values made by
// [NewParam] or [UploadParam]: they outlive steps, are Trainable (they own a
// gradient buffer) or Frozen (they own none, and stop gradients), and their
// gradients accumulate across [Tape.Backward] calls until [Value.ZeroGrad],
// which is gradient accumulation over micro-batches.
//
// A [Tape] records ops as they run. Every op is a method of the tape that
// takes and returns Values, computes its result right away on the backend
// and, when the result depends on a trainable parameter, records how to
// propagate a gradient back. [Tape.Backward] runs those records in reverse
// from a one-element loss. [Tape.SetNoGrad] turns recording off for
// evaluation and generation. Ops never modify their inputs.
//
// One training step:
//
//	g := graph.New(b)     // once; reused by every step
//	defer g.Close()
//	for step := range steps {
//		for _, mb := range microBatches {
//			loss := model.Loss(g, mb)     // ops on g
//			if err := g.Backward(loss); err != nil {
//				return err
//			}
//			l, err := loss.Item()         // read results before Reset
//			g.Reset()                     // release the step's buffers
//		}
//		optim.ClipGradNorm(params, 1)     // package graph/optim
//		if err := opt.Step(); err != nil {
//			return err
//		}
//		opt.ZeroGrad()
//	}
//
// # Errors
//
// Ops return Values, not errors, so that model code is a straight line. The
// backend records the first failing op (its sticky-error convention, see
// package backend); the tape likewise records the first error it finds
// itself: mismatched shapes, a value from another tape or from before a
// Reset, a failed allocation. After an error, ops do nothing and return
// placeholder Values that have the expected shape but no data, so code that
// derives shapes from results keeps running until the step boundary. Errors
// surface at the step boundaries: [Tape.Backward], [Tape.Err],
// [Value.Download] and [Value.Item] return the first error of the step,
// including the backend's (they wait for pending work), and the optimizers
// of graph/optim return the backend's errors from Step. [Tape.Reset] clears
// the tape's error.
//
// # Memory
//
// The tape owns the buffers of the values its ops make and of their
// gradients. An intermediate gradient is released as soon as Backward has
// propagated it, and often handed on without a copy (the gradient of a
// reshape, an addition or an element-wise function becomes its input's);
// activations are kept until [Tape.Reset], since the backward of earlier
// ops needs them. Released buffers go to a per-tape pool keyed by size and
// are reused; buffers a whole step did not reuse are freed at Reset, so a
// training loop of fixed shapes reaches a steady state in which the
// backend's memory use does not change from step to step. [Tape.Stats]
// reports the tape's share, now and at its peak since the last Reset.
// Parameters' data and gradient buffers belong to the parameters
// ([Value.Free]).
//
// Activations dominate a training step's memory: a decoder layer keeps
// its feed-forward intermediates until Backward and, where attention is
// composed from MatMul and Softmax, its attention scores and
// probabilities, [batch·heads, seq, seq] each. [Tape.Attention] avoids
// the latter on backends with the fused attention kernel: it keeps one
// log-sum-exp per query and head instead, memory linear in the sequence
// length (SORA_ATTENTION=unfused, see [AttentionEnv], or
// [Tape.SetFusedAttention] turns it off). [Tape.Checkpoint]
// (gradient checkpointing) trades time for that memory: a checkpointed
// segment, one decoder layer say, keeps only its results, returning its
// intermediates' buffers to the pool as soon as it returns, where the
// next segment reuses them; Backward runs the segment again to get them
// back, one segment at a time. A stack of N checkpointed layers then
// holds N layer outputs and one layer's intermediates instead of N
// layers' intermediates, for one more forward per segment. Losses and
// gradients do not change (dropout masks included), and with recording
// off Checkpoint just runs its function.
//
// # Weights stored in bfloat16
//
// A frozen weight may be stored in bfloat16 at half the memory
// ([UploadParamAs] with [backend.BFloat16], on a backend that supports
// [backend.OpMatMulBF16]). The matrix products ([Tape.MatMul] and its
// transposed forms, [Tape.Linear]) take it as either operand and
// differentiate through it to the other; [Tape.Gather] reads a bfloat16
// table's rows, widened (an embedding); [Tape.ToFloat32] widens it, into
// a float32 copy of its size, for any other op; [Tape.Detach] and
// [Tape.Custom] pass it on as it is. Every other op refuses it with an
// error naming it, and it cannot be made trainable.
//
// # Broadcasting and shapes
//
// Element-wise binary ops take a second operand of the first's shape, or
// one that broadcasts: a single element (a scalar value, which gets the
// summed gradient: SORA's s_p), a row vector (a bias), or one element per
// row (the keepdim results of the row reductions). "Rows" are the last axis,
// as in package backend. Every value's data is contiguous: Reshape and
// axis-0 Slice are views, Permute, Transpose, other slices, Concat and
// RepeatInterleave copy.
//
// # Losses and gradient accumulation
//
// [Tape.CrossEntropy] averages over the rows whose target is not
// [IgnoreIndex] (answer-only causal-LM losses mark the prompt tokens so);
// label smoothing is off unless asked for. When a step is split into
// micro-batches, set CrossEntropyOptions.Divisor to the number of counted
// rows of the whole step: the gradients the micro-batches accumulate then
// equal those of the whole batch. [Tape.MSE] is the mean squared error.
//
// # Composed and custom ops
//
// Some ops have no backend kernel of their own and are composed from
// others: Reciprocal (a division of a tensor of ones), MinScalar and
// MaxScalar (through ReLU), the scalar shift AddScalar (a one-element
// broadcast), Norm, MSE, Linear. Their backward follows from the pieces.
// [Tape.Custom] records an op whose forward and backward the caller writes
// with backend calls, for fused kernels; package graph/gradcheck checks such
// ops, and every op here, against float64 references.
package graph
