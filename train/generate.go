package train

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
)

// Generate continues each prompt (token ids starting with BOS) greedily for
// up to maxNew tokens, stopping early at any token of stop (not returned),
// and returns the new tokens of each, in the prompts' order. A prompt may
// generate only as far as the model's positions reach: its own length
// plus its new tokens, less the last (which is sampled, not run), at most
// the model's seq_len.
//
// It decodes batch prompts at a time, longest first, each batch
// left-padded to its longest prompt with the padding hidden from the
// attention ([llama.Cache.SetPadding]): one step then reads the weights
// once for every row, where one prompt at a time reads them once per
// token of each. Each row continues its prompt as it would alone, to
// float32 rounding (the matrix products of a batch round differently
// from a single row's, which can flip a near tie between two tokens). A
// row whose padding would cost it new tokens within seq_len (a short
// prompt beside one near the limit) is finished alone afterwards. batch
// 1 generates one prompt at a time. A cancelled ctx stops it before the
// next decoding step, with ctx's error.
func Generate(ctx context.Context, m *llama.Model, prompts [][]int, maxNew, batch int, stop []int) ([][]int, error) {
	seqLen := m.Config().MaxSeqLen
	vocab := m.Config().VocabSize
	for i, p := range prompts {
		switch {
		case len(p) == 0:
			return nil, fmt.Errorf("train: prompt %d is empty (start it with BOS)", i)
		case len(p) >= seqLen:
			return nil, fmt.Errorf("train: prompt %d has %d tokens, leaving no room to generate within the model's %d positions", i, len(p), seqLen)
		}
		for j, t := range p {
			if t < 0 || t >= vocab {
				return nil, fmt.Errorf("train: prompt %d: token %d at index %d is outside the vocabulary of %d", i, t, j, vocab)
			}
		}
	}
	out := make([][]int, len(prompts))
	if len(prompts) == 0 || maxNew <= 0 {
		return out, nil
	}
	batch = max(batch, 1)
	order := make([]int, len(prompts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(prompts[b]), len(prompts[a])) })
	d := &decoder{m: m, g: graph.New(m.Backend()), stop: stop, maxNew: maxNew}
	defer d.close()
	var alone []int // rows the batch's padding cut short
	for lo := 0; lo < len(order); lo += batch {
		rows := order[lo:min(lo+batch, len(order))]
		cut, err := d.run(ctx, prompts, rows, out)
		if err != nil {
			return nil, err
		}
		alone = append(alone, cut...)
	}
	for _, i := range alone {
		if _, err := d.run(ctx, prompts, []int{i}, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// decoder runs greedy decoding for Generate, keeping its cache (resized
// when a batch needs another shape) and tape between batches.
type decoder struct {
	m      *llama.Model
	g      *graph.Tape
	kc     *llama.Cache
	stop   []int
	maxNew int
	logits []float32
}

func (d *decoder) close() {
	if d.kc != nil {
		d.kc.Free()
	}
	d.g.Close()
}

// cache returns an empty cache of rows rows and at least positions
// positions, reusing the last one when it fits.
func (d *decoder) cache(rows, positions int) (*llama.Cache, error) {
	if d.kc != nil && d.kc.Batch() == rows && d.kc.MaxSeq() >= positions {
		d.kc.Reset()
		return d.kc, nil
	}
	if d.kc != nil {
		d.kc.Free()
		d.kc = nil
	}
	kc, err := d.m.NewCache(rows, positions)
	if err != nil {
		return nil, err
	}
	d.kc = kc
	return kc, nil
}

// run decodes prompts[rows] together, writing each row's new tokens into
// out, and returns the rows that stopped short of what they would
// generate alone because the batch's longest prompt used up the
// positions.
func (d *decoder) run(ctx context.Context, prompts [][]int, rows []int, out [][]int) (cut []int, err error) {
	m, g := d.m, d.g
	seqLen, V := m.Config().MaxSeqLen, m.Config().VocabSize
	T := 0
	for _, i := range rows {
		T = max(T, len(prompts[i]))
	}
	// Every new token but the last runs through the model.
	kc, err := d.cache(len(rows), min(T+d.maxNew-1, seqLen))
	if err != nil {
		return nil, err
	}
	pad := make([]int, len(rows))
	ids := make([]int32, 0, len(rows)*T)
	for r, i := range rows {
		p := prompts[i]
		pad[r] = T - len(p)
		for range pad[r] {
			ids = append(ids, int32(p[0])) // any valid id: hidden
		}
		for _, t := range p {
			ids = append(ids, int32(t))
		}
	}
	if err := kc.SetPadding(pad); err != nil {
		return nil, err
	}
	done := make([]bool, len(rows))
	live := len(rows)
	d.logits = slices.Grow(d.logits[:0], len(rows)*V)[:len(rows)*V]
	greedy := &llama.Sampler{}
	for n := T; ; n = 1 { // the prefill, then one position per row
		// Checked every step: a batch of long generations can run for
		// minutes, and an interrupt should not wait for all of it.
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("train: generation for prompts %v stopped: %w", rows, err)
		}
		logits, err := m.Decode(g, kc, ids, n, false)
		if err == nil {
			err = g.Err()
		}
		if err == nil {
			err = m.Backend().Download(d.logits, logits.Tensor())
		}
		g.Reset()
		if err != nil {
			return nil, fmt.Errorf("train: generating for prompts %v: %w", rows, err)
		}
		ids = ids[:len(rows)]
		for r, i := range rows {
			next := greedy.Sample(d.logits[r*V : (r+1)*V])
			ids[r] = int32(next) // a finished row's token is decoded, unused
			if done[r] {
				continue
			}
			if slices.Contains(d.stop, next) {
				done[r], live = true, live-1
				continue
			}
			out[i] = append(out[i], next)
			if len(out[i]) == d.maxNew {
				done[r], live = true, live-1
			}
		}
		if live == 0 || kc.Len() >= kc.MaxSeq() {
			break
		}
	}
	for r, i := range rows {
		// Alone, prompt i reaches seq_len with seq_len − len + 1 new tokens.
		if !done[r] && len(out[i]) < seqLen-len(prompts[i])+1 && len(rows) > 1 {
			out[i] = out[i][:0]
			cut = append(cut, i)
		}
	}
	return cut, nil
}
