package llama

import (
	"fmt"
	"slices"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// Batch is a batch of token sequences for the training forward, padded on
// the right to one length.
//
// Padding convention: the padded positions of a row come after its real
// tokens, and under the causal mask a position only attends to itself and
// earlier positions, so whatever ids fill the padding (any valid id; 0 is
// usual) never changes the hidden states or logits of the real positions.
// The padded positions' own outputs are meaningless: losses skip them (the
// targets there are [graph.IgnoreIndex]), and the classification head reads
// each row's last real position.
type Batch struct {
	// Tokens holds Size·Len ids, row-major: Tokens[b·Len + t].
	Tokens []int32
	// Size is the number of sequences and Len the padded length of each.
	Size, Len int
	// Lengths gives the number of real tokens of each sequence (1 to Len);
	// nil means every sequence fills all Len positions.
	Lengths []int
	// Segments, when not nil, packs several documents into each row
	// (sequence packing): Size·Len document numbers, Segments[b·Len + t]
	// for position t of row b, non-decreasing along each row. A position
	// attends only to the earlier positions of its own document, so each
	// document's hidden states and logits are what it would get alone in
	// a row, to float32 rounding: the positions run on across a row's
	// documents, and rotary attention depends only on the distance between
	// query and key. Padding after a row's real tokens is best given a
	// number of its own. Packing needs the backend's fused attention
	// ([graph.Tape.FusedAttention]); elsewhere the forward is a tape error.
	// Losses must not let a document's last position predict the next
	// document's first token (see [LMTargets]); [Model.Classify] refuses a
	// packed batch ([Model.ClassifyAt] reads any positions). The forward
	// keeps its own copy.
	Segments []int32
}

// Length returns the number of real tokens in row b.
func (bt Batch) Length(b int) int {
	if bt.Lengths == nil {
		return bt.Len
	}
	return bt.Lengths[b]
}

// validate checks the batch against the model: shapes, lengths and token
// ids, so that the forward never hands the backend an out-of-range id.
func (m *Model) validate(bt Batch) error {
	c := m.cfg
	switch {
	case bt.Size < 1 || bt.Len < 1:
		return fmt.Errorf("llama: batch of %d sequences of %d tokens; both must be at least 1", bt.Size, bt.Len)
	case bt.Len > c.MaxSeqLen:
		return fmt.Errorf("llama: batch sequences of %d tokens exceed the model's %d positions (seq_len); truncate them", bt.Len, c.MaxSeqLen)
	case len(bt.Tokens) != bt.Size*bt.Len:
		return fmt.Errorf("llama: batch has %d token ids, want %d sequences × %d = %d", len(bt.Tokens), bt.Size, bt.Len, bt.Size*bt.Len)
	case bt.Lengths != nil && len(bt.Lengths) != bt.Size:
		return fmt.Errorf("llama: batch has %d lengths for %d sequences", len(bt.Lengths), bt.Size)
	}
	for b, n := range bt.Lengths {
		if n < 1 || n > bt.Len {
			return fmt.Errorf("llama: batch sequence %d has length %d, want 1 to %d", b, n, bt.Len)
		}
	}
	if err := bt.checkSegments(); err != nil {
		return fmt.Errorf("llama: %w", err)
	}
	return checkTokens(bt.Tokens, c.VocabSize)
}

// checkSegments checks Segments' length and order (nil passes); its
// errors are for the caller to prefix.
func (bt Batch) checkSegments() error {
	if bt.Segments == nil {
		return nil
	}
	if len(bt.Segments) != bt.Size*bt.Len {
		return fmt.Errorf("batch has %d segment numbers, want one per position: %d sequences × %d = %d", len(bt.Segments), bt.Size, bt.Len, bt.Size*bt.Len)
	}
	for b := range bt.Size {
		row := bt.Segments[b*bt.Len : (b+1)*bt.Len]
		for t := 1; t < len(row); t++ {
			if row[t] < row[t-1] {
				return fmt.Errorf("batch segment numbers decrease in sequence %d at position %d (%d after %d); a row's documents must be contiguous, numbered in order", b, t, row[t], row[t-1])
			}
		}
	}
	return nil
}

func checkTokens(ids []int32, vocab int) error {
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("llama: token id %d at index %d is outside the vocabulary of %d", id, i, vocab)
		}
	}
	return nil
}

// attendFunc computes the attention of layer l from the rotated queries
// q [B, T, heads, headDim] and keys k and values v [B, T, kvHeads, headDim],
// returning [B·T, heads·headDim], the input of o_proj.
type attendFunc func(g *graph.Tape, l int, q, k, v *graph.Value) *graph.Value

// ropeParams returns the rotary parameters of layer l, in the model's
// layout, for a sequence whose first token is at position pos.
func (m *Model) ropeParams(l, pos int) backend.RoPEParams {
	layout := backend.Interleaved
	if m.cfg.RopeLayout == RopeHalfSplit {
		layout = backend.HalfSplit
	}
	ls := &m.layers[l]
	return backend.RoPEParams{Layout: layout, Theta: ls.theta, Offset: pos, Freqs: ls.freqs}
}

// softmaxParams returns the parameters of layer l's attention softmax
// over keys from position 0 for queries from position pos: the model's
// scale, the causal mask, and the layer's sliding window if it has one.
// One query needs no causal mask but a windowed one does.
func (m *Model) softmaxParams(l, pos, queries int) backend.SoftmaxParams {
	w := m.layers[l].window
	return backend.SoftmaxParams{Scale: m.attnScale, Causal: queries > 1 || w > 0, QueryOffset: pos, Window: w}
}

// capLogits returns the output head's logits z soft-capped to c·tanh(z/c)
// where the model has Config.FinalLogitSoftcap c, z as it is otherwise.
func (m *Model) capLogits(g *graph.Tape, z *graph.Value) *graph.Value {
	if m.finalCap == 0 {
		return z
	}
	return g.Scale(g.Tanh(g.Scale(z, 1/m.finalCap)), m.finalCap)
}

// norm returns the RMSNorm of the rows of x with weight w, which Gemma
// (Config.NormOffset) stores as the offset from one: the norm multiplies
// by 1 + w then, added in float32 as transformers adds it.
func (m *Model) norm(g *graph.Tape, x, w *graph.Value) *graph.Value {
	if m.cfg.NormOffset() {
		w = g.AddScalar(w, 1)
	}
	return g.RMSNorm(x, w, float32(m.cfg.NormEps))
}

// activation applies the feed-forward gate's activation.
func (m *Model) activation(g *graph.Tape, x *graph.Value) *graph.Value {
	if m.cfg.Activation == GELUTanh {
		return geluTanh(g, x)
	}
	return g.SiLU(x)
}

// decode runs the embedding and every decoder block over tokens [B·T] whose
// first position is pos and returns the residual stream before the final
// norm. Activations stay two-dimensional, [B·T, dim] (the attention's
// output [B·T, q_dim]), between the attention blocks, so that the linear layers take and return them without reshapes
// (each of which would be one more value on the tape).
func (m *Model) decode(g *graph.Tape, tokens []int32, B, T, pos int, attend attendFunc, checkpoint bool) *graph.Value {
	x := g.Gather(m.Embed, tokens)
	if m.embedScale != 1 {
		x = g.Scale(x, m.embedScale)
	}
	for l := range m.Blocks {
		if !checkpoint {
			x = m.block(g, l, x, B, T, pos, attend)
			continue
		}
		// One segment per layer: its activations are recomputed in
		// Backward instead of kept until the step's end.
		x = g.Checkpoint(func(g *graph.Tape, in []*graph.Value) []*graph.Value {
			return []*graph.Value{m.block(g, l, in[0], B, T, pos, attend)}
		}, x)[0]
	}
	return x
}

// block runs decoder layer l on the residual stream x [B·T, dim], whose
// first position is pos, and returns the stream after the layer.
func (m *Model) block(g *graph.Tape, l int, x *graph.Value, B, T, pos int, attend attendFunc) *graph.Value {
	c := m.cfg
	H, KV, hd := c.NumHeads, c.NumKVHeads, c.HeadDim()
	blk := m.Blocks[l]
	h := m.norm(g, x, blk.AttnNorm)
	q := g.Reshape(blk.Q.Forward(g, h), B, T, H, hd)
	k := g.Reshape(blk.K.Forward(g, h), B, T, KV, hd)
	if blk.QNorm != nil {
		// QK-norm: an RMSNorm over each head's vector, the rows of
		// width hd, before the rotation (Qwen3, Gemma 3).
		q = m.norm(g, q, blk.QNorm)
		k = m.norm(g, k, blk.KNorm)
	}
	rp := m.ropeParams(l, pos)
	q, k = g.RoPE(q, rp), g.RoPE(k, rp)
	v := g.Reshape(blk.V.Forward(g, h), B, T, KV, hd)
	a := blk.O.Forward(g, attend(g, l, q, k, v))
	if blk.PostAttnNorm != nil {
		a = m.norm(g, a, blk.PostAttnNorm)
	}
	x = g.Add(x, a)
	h = m.norm(g, x, blk.FFNNorm)
	f := blk.Down.Forward(g, g.Mul(m.activation(g, blk.Gate.Forward(g, h)), blk.Up.Forward(g, h)))
	if blk.PostFFNNorm != nil {
		f = m.norm(g, f, blk.PostFFNNorm)
	}
	return g.Add(x, f)
}

// SetGradientCheckpointing makes the training forward (Hidden and what
// calls it: Forward, LMLoss, LossAt, Classify) run each decoder layer as
// a checkpointed segment ([graph.Tape.Checkpoint]): a layer's activations
// are recomputed in Backward instead of kept from the forward to the
// backward pass, for one more forward of the layers per step. LossAt (and
// LMLoss) also run the output head and loss in checkpointed chunks of
// rows, 128 MiB of logits each, where there are more. Losses and
// gradients do not change (on the CPU backend, not by a bit), but for
// the rounding of the chunks' sum where the head is chunked (and the
// masks of an output-head adapter's dropout, drawn per chunk); cached
// decoding is unaffected. A no-grad forward (evaluation) runs each layer
// as a segment whatever this says: with nothing to recompute, a segment
// only releases the layer's intermediates when it ends.
func (m *Model) SetGradientCheckpointing(on bool) { m.checkpoint = on }

// GradientCheckpointing reports whether SetGradientCheckpointing turned
// checkpointing on.
func (m *Model) GradientCheckpointing() bool { return m.checkpoint }

// attendFull returns causal self-attention over a whole sequence, the
// training path, through layer l's sliding window where it has one, and
// within each document where segments (Batch.Segments) pack several into
// a row: one [graph.Tape.Attention], fused where the backend has the
// kernel (no [B·heads, T, T] scores kept for Backward), composed from
// MatMul and Softmax where it has not (which refuses segments).
func (m *Model) attendFull(segments []int32) attendFunc {
	return func(g *graph.Tape, l int, q, k, v *graph.Value) *graph.Value {
		B, T := q.Dim(0), q.Dim(1)
		p := m.attentionParams(l)
		p.Segments = segments
		o := g.Attention(q, k, v, p)
		return g.Reshape(o, B*T, m.cfg.QDim())
	}
}

// attentionParams returns layer l's attention over a whole sequence: the
// model's scale and soft-cap, and the causal mask, with the layer's
// sliding window where it has one. The mask is causal even for one
// position, as the training path always masks.
func (m *Model) attentionParams(l int) backend.AttentionParams {
	c := m.cfg
	return backend.AttentionParams{Scale: float32(c.AttentionScale()), Softcap: float32(c.AttnLogitSoftcap),
		Causal: true, Window: m.layers[l].window}
}

// Hidden returns the final hidden states [B, T, dim] of the batch: the
// residual stream after the last block and the final RMSNorm, the input of
// the output and score heads. Recording follows the tape (gradients flow
// to trainable parameters unless g.SetNoGrad). An invalid batch is an error
// here; op errors surface at the tape's step boundary (see package graph).
func (m *Model) Hidden(g *graph.Tape, bt Batch) (*graph.Value, error) {
	if err := m.validate(bt); err != nil {
		return nil, err
	}
	// Our own copy of the segments: the tape copies them for Backward, but
	// a checkpointed layer's recomputation in Backward calls attendFull's
	// function again, after the caller may have reused its slice.
	// (Cloning nil gives nil.) Without recording, every layer is a
	// segment too: there a segment only releases its intermediates when
	// it ends, so an evaluation holds one layer's activations at a time.
	x := m.decode(g, bt.Tokens, bt.Size, bt.Len, 0, m.attendFull(slices.Clone(bt.Segments)), m.checkpoint || g.NoGrad())
	x = m.norm(g, x, m.Norm)
	return g.Reshape(x, bt.Size, bt.Len, m.cfg.Dim), nil
}

// Forward returns the logits [B, T, vocab] of the batch: at each position
// the scores of the next token (soft-capped where the model has
// Config.FinalLogitSoftcap).
func (m *Model) Forward(g *graph.Tape, bt Batch) (*graph.Value, error) {
	h, err := m.Hidden(g, bt)
	if err != nil {
		return nil, err
	}
	return m.capLogits(g, m.Output.Forward(g, h)), nil
}

// LMTargets returns the targets of a causal language-model loss over the
// batch, one per position: the next token, tokens[b, t+1], where that
// token is real and belongs to the answer, and [graph.IgnoreIndex]
// elsewhere (the last real position, padding, and positions predicting a
// prompt token). promptLens[b] is the number of prompt tokens at the start
// of row b (BOS included), whose prediction is not trained: the answer-only
// loss of instruction tuning. nil promptLens trains every next token.
//
// In a packed batch (Batch.Segments) a position does not predict a token
// of the next document either: each document's last position is ignored.
// Prompts there are per document, which promptLens cannot say: it must be
// nil (package data's packed batches list each document's trained tokens).
func LMTargets(bt Batch, promptLens []int) ([]int32, error) {
	if len(bt.Tokens) != bt.Size*bt.Len || (bt.Lengths != nil && len(bt.Lengths) != bt.Size) {
		return nil, fmt.Errorf("llama: LMTargets: batch of %d ids, %d lengths for %d × %d", len(bt.Tokens), len(bt.Lengths), bt.Size, bt.Len)
	}
	if promptLens != nil && len(promptLens) != bt.Size {
		return nil, fmt.Errorf("llama: LMTargets: %d prompt lengths for %d sequences", len(promptLens), bt.Size)
	}
	if err := bt.checkSegments(); err != nil {
		return nil, fmt.Errorf("llama: LMTargets: %w", err)
	}
	if bt.Segments != nil && promptLens != nil {
		return nil, fmt.Errorf("llama: LMTargets: prompt lengths per row for a packed batch (with segments), whose rows hold several documents with a prompt each; give nil and ignore the prompts' targets yourself")
	}
	out := make([]int32, len(bt.Tokens))
	for b := 0; b < bt.Size; b++ {
		n := bt.Length(b)
		if n < 0 || n > bt.Len {
			return nil, fmt.Errorf("llama: LMTargets: sequence %d has length %d, want 0 to %d", b, n, bt.Len)
		}
		start := 0
		if promptLens != nil {
			start = promptLens[b]
			if start < 0 || start > n {
				return nil, fmt.Errorf("llama: LMTargets: sequence %d has a prompt of %d tokens but only %d tokens", b, start, n)
			}
		}
		row := bt.Tokens[b*bt.Len : (b+1)*bt.Len]
		for t := range bt.Len {
			out[b*bt.Len+t] = graph.IgnoreIndex
			next := t + 1
			if next < n && next >= start && (bt.Segments == nil || bt.Segments[b*bt.Len+next] == bt.Segments[b*bt.Len+t]) {
				out[b*bt.Len+t] = row[next]
			}
		}
	}
	return out, nil
}

// LMLoss returns the mean cross-entropy of the batch's logits against
// targets (from [LMTargets], one per position; [graph.IgnoreIndex] skipped),
// as a one-element value ready for Backward. opts may set a divisor for
// gradient accumulation or label smoothing. The output head runs only at
// the positions counted, as in [Model.LossAt].
func (m *Model) LMLoss(g *graph.Tape, bt Batch, targets []int32, opts graph.CrossEntropyOptions) (*graph.Value, error) {
	if len(targets) != bt.Size*bt.Len {
		return nil, fmt.Errorf("llama: LMLoss: %d targets for %d × %d positions", len(targets), bt.Size, bt.Len)
	}
	var rows, kept []int32
	for i, t := range targets {
		if t == graph.IgnoreIndex {
			continue
		}
		if t < 0 || int(t) >= m.cfg.VocabSize {
			return nil, fmt.Errorf("llama: LMLoss: target %d at position %d is outside the vocabulary of %d", t, i, m.cfg.VocabSize)
		}
		rows, kept = append(rows, int32(i)), append(kept, t)
	}
	if len(rows) == 0 {
		// Nothing to train: a loss of 0 whose gradients are 0, still one
		// that Backward takes. The head runs on one position, its target
		// ignored: the logits of the whole batch (and their gradient) are
		// what the chunked head of gradient checkpointing avoids making.
		h, err := m.Hidden(g, bt)
		if err != nil {
			return nil, err
		}
		h = g.Slice(g.Reshape(h, bt.Size*bt.Len, m.cfg.Dim), 0, 0, 1)
		return g.CrossEntropy(m.capLogits(g, m.Output.Forward(g, h)), []int32{graph.IgnoreIndex}, opts), nil
	}
	return m.LossAt(g, bt, rows, kept, opts)
}

// LogitsAt returns the logits [len(rows), vocab] of the batch at the given
// flat positions (b·Len + t), soft-capped where the model has
// Config.FinalLogitSoftcap: the output head applied only where a loss or a
// prediction needs it (the answer tokens), sparing its product over the
// rest.
func (m *Model) LogitsAt(g *graph.Tape, bt Batch, rows []int32) (*graph.Value, error) {
	h, err := m.hiddenAt(g, bt, rows)
	if err != nil {
		return nil, err
	}
	return m.capLogits(g, m.Output.Forward(g, h)), nil
}

// hiddenAt returns the final hidden states [len(rows), dim] of the batch
// at the given flat positions.
func (m *Model) hiddenAt(g *graph.Tape, bt Batch, rows []int32) (*graph.Value, error) {
	n := int32(bt.Size * bt.Len)
	for i, r := range rows {
		if r < 0 || r >= n {
			return nil, fmt.Errorf("llama: position %d (row %d) outside the batch's %d × %d", r, i, bt.Size, bt.Len)
		}
	}
	h, err := m.Hidden(g, bt)
	if err != nil {
		return nil, err
	}
	return g.Gather(g.Reshape(h, bt.Size*bt.Len, m.cfg.Dim), rows), nil
}

// headChunkBytes bounds the logits one chunk of LossAt's checkpointed
// head holds: for a vocabulary of 262,144 (Gemma's) 128 rows.
var headChunkBytes = 128 << 20

// LossAt returns the cross-entropy of the logits at the given flat
// positions of the batch (as [Model.LogitsAt]) against targets, one per
// position, none [graph.IgnoreIndex], summed and divided by len(rows) or
// opts.Divisor: a one-element value ready for Backward.
//
// With gradient checkpointing on ([Model.SetGradientCheckpointing]) the
// head and the loss run in chunks of rows, each a checkpointed segment, so
// that only one chunk's logits and their gradient exist at a time instead
// of all of them: with a large vocabulary they outgrow the activations of
// the layers (4096 positions of Gemma's 262,144 logits are 4 GiB, and as
// much again for their gradient). The chunks' losses are added, which
// rounds the sum differently from one pass.
func (m *Model) LossAt(g *graph.Tape, bt Batch, rows, targets []int32, opts graph.CrossEntropyOptions) (*graph.Value, error) {
	if len(targets) != len(rows) || len(rows) == 0 {
		return nil, fmt.Errorf("llama: LossAt: %d targets for %d positions; want as many, at least one", len(targets), len(rows))
	}
	for i, t := range targets {
		if t < 0 || int(t) >= m.cfg.VocabSize {
			return nil, fmt.Errorf("llama: LossAt: target %d at position %d is outside the vocabulary of %d", t, rows[i], m.cfg.VocabSize)
		}
	}
	h, err := m.hiddenAt(g, bt, rows)
	if err != nil {
		return nil, err
	}
	head := func(g *graph.Tape, h *graph.Value, targets []int32) *graph.Value {
		return g.CrossEntropy(m.capLogits(g, m.Output.Forward(g, h)), targets, opts)
	}
	chunk := max(1, headChunkBytes/(4*m.cfg.VocabSize))
	if !m.checkpoint || len(rows) <= chunk || g.NoGrad() {
		return head(g, h, targets), nil
	}
	if opts.Divisor <= 0 {
		opts.Divisor = float32(len(rows)) // every chunk divides by the whole count
	}
	// Backward's recomputation of the chunks reads the targets again:
	// our own copy, since the caller may reuse its slice once we return
	// (as it may after CrossEntropy, which copies them).
	targets = slices.Clone(targets)
	// Chunks of one size (but for the last, shorter by less than the
	// number of chunks), so that each reuses the buffers the tape pooled
	// from the one before.
	n := (len(rows) + chunk - 1) / chunk
	chunk = (len(rows) + n - 1) / n
	var loss *graph.Value
	for lo := 0; lo < len(rows); lo += chunk {
		hi := min(lo+chunk, len(rows))
		part := g.Checkpoint(func(g *graph.Tape, in []*graph.Value) []*graph.Value {
			return []*graph.Value{head(g, in[0], targets[lo:hi])}
		}, g.Slice(h, 0, lo, hi))[0]
		if loss == nil {
			loss = part
		} else {
			loss = g.Add(loss, part)
		}
	}
	return loss, nil
}
