package llama

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Sampler picks the next token from a step's logits on the host, as
// llama2.c's sampler does: greedy (the arg-max, the first on ties) at
// temperature 0; otherwise a draw from softmax(logits / temperature),
// restricted with top-p (nucleus) sampling to the most likely tokens whose
// probabilities sum to more than TopP when 0 < TopP < 1.
//
// Draws come from a PCG generator of math/rand/v2 seeded with the seed
// given to NewSampler, so a seed reproduces a generation exactly on every
// backend whose logits agree. A Sampler reuses its buffers and allocates
// nothing per call once it has seen a vocabulary size.
type Sampler struct {
	temperature, topP float64
	rng               *rand.Rand
	probs             []float64
	idx               []int32
}

// NewSampler returns a sampler. temperature must be finite and at least 0
// (0 is greedy); topP must be in [0, 1] (0 or 1 turn nucleus sampling off).
func NewSampler(temperature, topP float64, seed uint64) (*Sampler, error) {
	if !(temperature >= 0) || math.IsInf(temperature, 0) {
		return nil, fmt.Errorf("llama: temperature %v; want a finite number ≥ 0 (0 is greedy)", temperature)
	}
	if !(topP >= 0 && topP <= 1) {
		return nil, fmt.Errorf("llama: top-p %v; want a number in [0, 1] (0 or 1 turn it off)", topP)
	}
	return &Sampler{
		temperature: temperature,
		topP:        topP,
		rng:         rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}, nil
}

// Greedy reports whether the sampler always picks the arg-max.
func (s *Sampler) Greedy() bool { return s.temperature == 0 }

// Argmax returns the index of the largest logit, the first on ties (NaNs
// are never picked unless every logit is NaN, then index 0).
func Argmax(logits []float32) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] || (logits[best] != logits[best] && v == v) {
			best = i
		}
	}
	return best
}

// Sample returns the next token id for logits over the vocabulary.
func (s *Sampler) Sample(logits []float32) int {
	if s.temperature == 0 || len(logits) <= 1 {
		return Argmax(logits)
	}
	n := len(logits)
	if cap(s.probs) < n {
		s.probs = make([]float64, n)
		s.idx = make([]int32, n)
	}
	p := s.probs[:n]
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = max(mx, float64(v))
	}
	var sum float64
	for i, v := range logits {
		e := math.Exp((float64(v) - mx) / s.temperature)
		p[i] = e
		sum += e
	}
	if !(sum > 0) || math.IsInf(sum, 0) { // NaN or overflowing logits
		return Argmax(logits)
	}
	for i := range p {
		p[i] /= sum
	}
	coin := s.rng.Float64()
	if s.topP <= 0 || s.topP >= 1 {
		return pick(p, nil, coin, 1)
	}
	// Tokens below (1−topP)/(n−1) can never be in the nucleus: were they,
	// the n−1 others would hold less than topP. Skipping them keeps the
	// sort short, as llama2.c does.
	cutoff := (1 - s.topP) / float64(n-1)
	idx := s.idx[:0]
	for i, v := range p {
		if v >= cutoff {
			idx = append(idx, int32(i))
		}
	}
	slices.SortFunc(idx, func(a, b int32) int {
		switch {
		case p[a] > p[b]:
			return -1
		case p[a] < p[b]:
			return 1
		}
		return int(a - b)
	})
	var cum float64
	last := len(idx) - 1
	for i, j := range idx {
		cum += p[j]
		if cum > s.topP {
			last = i
			break
		}
	}
	return pick(p, idx[:last+1], coin, cum)
}

// pick returns the token at which the cumulative probability over order
// (every token when order is nil) first exceeds coin·total.
func pick(p []float64, order []int32, coin, total float64) int {
	r := coin * total
	var cum float64
	if order == nil {
		for i, v := range p {
			cum += v
			if r < cum {
				return i
			}
		}
		return len(p) - 1
	}
	for _, j := range order {
		cum += p[j]
		if r < cum {
			return int(j)
		}
	}
	return int(order[len(order)-1])
}
