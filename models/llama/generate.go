package llama

import (
	"fmt"
	"slices"

	"github.com/sora-go/sora/graph"
)

// Generator generates text token by token with a model: it owns a
// one-sequence [Cache], a tape and the host buffer the logits are
// downloaded into, and reuses them from call to call.
type Generator struct {
	m      *Model
	g      *graph.Tape
	cache  *Cache
	logits []float32
	tok    [1]int32
}

// NewGenerator returns a generator for sequences of up to maxSeq positions
// (0 means the model's seq_len). Close it to release its device memory.
func (m *Model) NewGenerator(maxSeq int) (*Generator, error) {
	kc, err := m.NewCache(1, maxSeq)
	if err != nil {
		return nil, err
	}
	return &Generator{m: m, g: graph.New(m.b), cache: kc, logits: make([]float32, m.cfg.VocabSize)}, nil
}

// Close releases the generator's cache and tape.
func (gen *Generator) Close() {
	gen.g.Close()
	gen.cache.Free()
}

// Positions returns the number of positions the last Generate ran through
// the model: the prompt's and those of the sampled tokens, the work a
// speed in tokens per second counts.
func (gen *Generator) Positions() int { return gen.cache.Len() }

// GenerateOptions configures [Generator.Generate].
type GenerateOptions struct {
	// Steps is the number of positions to run, the prompt included, as
	// llama2.c's -n counts them; 0, or more than the generator holds,
	// means as many as it holds.
	Steps int
	// Sampler picks each new token; nil means greedy.
	Sampler *Sampler
	// Stop lists tokens that end the generation when sampled; they are
	// neither emitted nor returned. llama2.c stops at BOS (id 1).
	Stop []int
	// TokenByToken feeds the prompt one position at a time instead of in
	// one batched pass (the prefill). Both give the same tokens; the
	// option exists to check that.
	TokenByToken bool
}

// Generate continues prompt (token ids, usually starting with BOS) and
// returns the sequence as llama2.c's run loop walks it: the prompt's first
// token followed by every later token, prompt tokens first and then the
// sampled ones, until Steps positions have run or a Stop token is sampled.
// emit, if not nil, receives each token after the first as soon as it is
// known (for streaming output); an error from emit ends the generation and
// is returned.
func (gen *Generator) Generate(prompt []int, opts GenerateOptions, emit func(token int) error) ([]int, error) {
	P := len(prompt)
	if P == 0 {
		return nil, fmt.Errorf("llama: Generate: empty prompt (start it with BOS)")
	}
	vocab := gen.m.cfg.VocabSize
	for i, t := range prompt {
		if t < 0 || t >= vocab {
			return nil, fmt.Errorf("llama: Generate: prompt token %d at index %d is outside the vocabulary of %d", t, i, vocab)
		}
	}
	steps := opts.Steps
	if steps <= 0 || steps > gen.cache.maxSeq {
		steps = gen.cache.maxSeq
	}
	sampler := opts.Sampler
	if sampler == nil {
		sampler = &Sampler{}
	}
	if emit == nil {
		emit = func(int) error { return nil }
	}
	gen.cache.Reset()
	seq := make([]int, 1, steps+1)
	seq[0] = prompt[0]
	// Prompt tokens after the first are fed, not sampled: emit them as
	// llama2.c prints them. With fewer steps than prompt tokens nothing is
	// sampled at all.
	for _, t := range prompt[1:min(P, steps+1)] {
		seq = append(seq, t)
		if err := emit(t); err != nil {
			return seq, err
		}
	}
	if steps < P {
		return seq, nil
	}
	var next int
	var err error
	if opts.TokenByToken {
		for _, t := range prompt {
			if next, err = gen.step([]int32{int32(t)}, sampler); err != nil {
				return seq, err
			}
		}
	} else {
		ids := make([]int32, P)
		for i, t := range prompt {
			ids[i] = int32(t)
		}
		if next, err = gen.step(ids, sampler); err != nil {
			return seq, err
		}
	}
	for pos := P; ; pos++ {
		if slices.Contains(opts.Stop, next) {
			break
		}
		seq = append(seq, next)
		if err := emit(next); err != nil {
			return seq, err
		}
		if pos >= steps {
			break
		}
		gen.tok[0] = int32(next)
		if next, err = gen.step(gen.tok[:], sampler); err != nil {
			return seq, err
		}
	}
	return seq, nil
}

// step decodes ids (one or more positions) and samples the token that
// follows the last.
func (gen *Generator) step(ids []int32, s *Sampler) (int, error) {
	g := gen.g
	defer g.Reset()
	logits, err := gen.m.Decode(g, gen.cache, ids, len(ids), false)
	if err != nil {
		return 0, err
	}
	if err := g.Err(); err != nil {
		return 0, err
	}
	if err := gen.m.b.Download(gen.logits, logits.Tensor()); err != nil {
		return 0, err
	}
	return s.Sample(gen.logits), nil
}
