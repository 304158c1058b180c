package train

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
)

// order yields the training data order: a stream of epochs, each a
// permutation drawn from a generator seeded with (seed, epoch). With
// lengths (Options.GroupByLength), each epoch's permutation is then cut
// into megabatches of group positions, each megabatch sorted longest
// first, and the longest sequence of the epoch swapped to its first
// position (with the first of the first megabatch), so that a batch too
// large for memory fails at the epoch's first step: consecutive batches
// hold sequences of similar length, and so little padding, while which
// sequences meet in a megabatch stays random. This is how Hugging Face's
// group_by_length samples (transformers' get_length_grouped_indices),
// megabatches of 50 batches or the number that makes four of them,
// whichever is fewer, but at least one.
type order struct {
	n       int
	seed    uint64
	epoch   int
	perm    []int
	lengths []int // nil: no grouping
	group   int
}

// groupBatches is the most batches a megabatch of GroupByLength holds.
const groupBatches = 50

// megabatch returns the positions in a megabatch of GroupByLength for n
// sequences in batches of batch: groupBatches batches, or the number that
// makes four megabatches of the n where fewer, but at least one batch.
func megabatch(n, batch int) int {
	return max(1, min(n/(4*batch), groupBatches)) * batch
}

func newOrder(n int, seed uint64) *order { return &order{n: n, seed: seed, epoch: -1} }

// groupedOrder is newOrder grouping by the lengths of seqs, in megabatches
// of batches of batch sequences (see megabatch).
func groupedOrder(seqs []data.Sequence, seed uint64, batch int) *order {
	o := newOrder(len(seqs), seed)
	o.lengths = make([]int, len(seqs))
	for i, s := range seqs {
		o.lengths[i] = len(s.Tokens)
	}
	o.group = megabatch(len(seqs), batch)
	return o
}

// at returns the sequence index at stream position p.
func (o *order) at(p int) int {
	e := p / o.n
	if e != o.epoch {
		rng := rand.New(rand.NewPCG(o.seed, uint64(e)))
		o.perm = rng.Perm(o.n)
		o.epoch = e
		if o.lengths != nil {
			longest := 0 // the first position of the megabatch that holds the longest
			for k := 0; k < o.n; k += o.group {
				slices.SortStableFunc(o.perm[k:min(k+o.group, o.n)], func(a, b int) int { return cmp.Compare(o.lengths[b], o.lengths[a]) })
				if o.lengths[o.perm[k]] > o.lengths[o.perm[longest]] {
					longest = k
				}
			}
			o.perm[0], o.perm[longest] = o.perm[longest], o.perm[0]
		}
	}
	return o.perm[p%o.n]
}

// batch returns the indices of optimizer step s with batch size b.
func (o *order) batch(s, b int) []int {
	idx := make([]int, b)
	for j := range idx {
		idx[j] = o.at(s*b + j)
	}
	return idx
}

// toLlama converts a padded data batch to the model's batch type.
func toLlama(b data.Batch) llama.Batch {
	return llama.Batch{Tokens: b.Tokens, Size: b.Size, Len: b.Len, Lengths: b.Lengths, Segments: b.Segments}
}

// makeBatch lays out the sequences seqs[idx[0]], seqs[idx[1]], … as a
// batch: one per row, or with packLen > 0 packed into rows of at most
// packLen tokens (Options.Packing).
func makeBatch(seqs []data.Sequence, idx []int, packLen int) (data.Batch, error) {
	if packLen == 0 {
		return data.MakeBatch(seqs, idx)
	}
	rows, err := data.Pack(seqs, idx, packLen)
	if err != nil {
		return data.Batch{}, err
	}
	return data.MakePackedBatch(seqs, rows)
}

// packLength returns the length of a packed row of a run with options o
// (0 without packing): o.PackLen, or the model's maximum sequence length.
func (t *Trainer) packLength(o Options) int {
	switch {
	case !o.Packing:
		return 0
	case o.PackLen > 0:
		return o.PackLen
	}
	return t.Model.Config().MaxSeqLen
}

// PackedPositions returns the positions (rows times their length, padding
// included) that the micro-batches of a run with options o (after
// WithDefaults, with Packing and a positive PackLen) on seqs run packed,
// over all its steps in the order the trainer draws them, and the
// positions the same micro-batches run without packing, one sequence to a
// row: the figures of metrics.jsonl's positions, summed, of the two runs.
// Where they are equal packing saves nothing: with micro-batches of one
// sequence, where no two sequences of seqs fit in PackLen tokens together
// (the reasons told apart by the caller), or where those that do never
// meet in a micro-batch, or share a row only as long as the rows they
// would take apart.
func PackedPositions(seqs []data.Sequence, o Options) (packed, unpacked int, err error) {
	if !o.Packing || o.PackLen < 1 {
		return 0, 0, fmt.Errorf("train: PackedPositions needs options with packing and a pack length (%d)", o.PackLen)
	}
	if len(seqs) == 0 {
		return 0, 0, nil
	}
	ord := newOrder(len(seqs), o.Seed)
	for step := range o.Steps {
		for _, mb := range microBatches(ord.batch(step, o.Batch), o.MicroBatch) {
			rows, err := data.Pack(seqs, mb, o.PackLen)
			if err != nil {
				return 0, 0, err
			}
			longest, widest := 0, 0
			for _, i := range mb {
				longest = max(longest, len(seqs[i].Tokens))
			}
			for _, row := range rows {
				n := 0
				for _, i := range row {
					n += len(seqs[i].Tokens)
				}
				widest = max(widest, n)
			}
			packed += len(rows) * widest
			unpacked += len(mb) * longest
		}
	}
	return packed, unpacked, nil
}

// CheckPacking returns nil where b can train packed batches
// (Options.Packing), and otherwise an error that says why not: packing
// needs the backend's fused attention, the only kind that keeps each
// packed sequence to itself, and b lacks it, or the environment variable
// graph.AttentionEnv turns it off (see [graph.Tape.CheckFusedAttention]).
func CheckPacking(b backend.Backend) error {
	g := graph.New(b)
	defer g.Close()
	if err := g.CheckFusedAttention(); err != nil {
		return fmt.Errorf("train: packing needs the backend's fused attention, which keeps each packed sequence to its own tokens, and %w; train without packing", err)
	}
	return nil
}

// stepLoss computes the loss of one micro-batch with the given divisor
// (the number of targets of the whole optimizer step) and returns it with
// the number of targets it holds.
func stepLoss(g *graph.Tape, m *llama.Model, task Task, b data.Batch, divisor int) (*graph.Value, int, error) {
	opts := graph.CrossEntropyOptions{Divisor: float32(divisor)}
	if task == Classify {
		// Each sequence's last token, one per row or, packed, several.
		rows, labels := b.ClassifyPositions()
		logits, err := m.ClassifyAt(g, toLlama(b), rows)
		if err != nil {
			return nil, 0, err
		}
		return g.CrossEntropy(logits, labels, opts), len(labels), nil
	}
	rows, targets := b.LossPositions()
	if len(rows) == 0 {
		return nil, 0, nil
	}
	loss, err := m.LossAt(g, toLlama(b), rows, targets, opts)
	if err != nil {
		return nil, 0, err
	}
	return loss, len(rows), nil
}

// microBatches splits idx into slices of at most size.
func microBatches(idx []int, size int) [][]int {
	var out [][]int
	for i := 0; i < len(idx); i += size {
		out = append(out, idx[i:min(i+size, len(idx))])
	}
	return out
}

// checkSequences rejects sequences the model cannot take.
func checkSequences(seqs []data.Sequence, m *llama.Model, task Task, classes int, what string) error {
	c := m.Config()
	for i, s := range seqs {
		if len(s.Tokens) == 0 {
			return fmt.Errorf("train: %s sequence %d is empty", what, i)
		}
		if len(s.Tokens) > c.MaxSeqLen {
			return fmt.Errorf("train: %s sequence %d has %d tokens; the model takes at most %d (lower the maximum length)", what, i, len(s.Tokens), c.MaxSeqLen)
		}
		for _, t := range s.Tokens {
			if t < 0 || int(t) >= c.VocabSize {
				return fmt.Errorf("train: %s sequence %d holds token %d outside the model's vocabulary of %d (is the tokenizer the model's?)", what, i, t, c.VocabSize)
			}
		}
		if task == Classify && (s.Label < 0 || s.Label >= classes) {
			return fmt.Errorf("train: %s sequence %d has label %d; want 0 to %d", what, i, s.Label, classes-1)
		}
	}
	return nil
}
