package graph

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// Dropout zeroes each element of x with probability p and scales the rest
// by 1/(1−p). It draws one seed from rng and applies [Tape.DropoutSeed]
// with it, so a seeded rng gives the same mask on every backend and for
// any number of threads. With p = 0 or a nil rng (evaluation) it returns
// x itself and draws nothing. Inside the recomputation of a checkpointed
// segment it draws nothing either: it replays the seed of the segment's
// forward (see [Tape.Checkpoint]).
func (g *Tape) Dropout(x *Value, p float64, rng *rand.Rand) *Value {
	if rng == nil && p > 0 && p < 1 {
		p = 0 // evaluation; a p outside [0, 1) is still reported
	}
	return g.dropout("Dropout", x, p, 0, rng)
}

// DropoutSeed is [Tape.Dropout] with the mask given by its seed: it
// multiplies x by the mask [DropoutMask] fills for p and seed. A caller
// that derives seeds itself (one per layer and step, say) uses it to make
// masks reproducible without a generator. With p = 0 it returns x itself;
// p outside [0, 1) records an error on the tape. Inside the recomputation
// of a checkpointed segment the k-th mask of the segment uses the seed of
// the k-th mask of its forward, whatever seed is passed (see
// [Tape.Checkpoint]).
func (g *Tape) DropoutSeed(x *Value, p float64, seed uint64) *Value {
	return g.dropout("DropoutSeed", x, p, seed, nil)
}

// dropout applies a mask of probability p whose seed is seed, or a draw of
// rng when rng is not nil, unless a checkpointed segment replays it.
func (g *Tape) dropout(op string, x *Value, p float64, seed uint64, rng *rand.Rand) *Value {
	if !g.check(op, x) {
		return g.placeholder(shapeOf(x))
	}
	if p < 0 || p >= 1 {
		g.failf("%s: probability %g outside [0, 1)", op, p)
		return g.placeholder(x.shape)
	}
	if p == 0 {
		return x
	}
	seed, ok := g.maskSeed(seed, rng)
	if !ok {
		return g.placeholder(x.shape)
	}
	mask := make([]float32, x.Len())
	DropoutMask(mask, p, seed)
	return g.Mul(x, g.Input(mask, x.shape...))
}

// DropoutMask fills mask with the multipliers of a dropout of probability
// p in [0, 1): each element is 0 with probability p and 1/(1−p) otherwise.
// Element i is decided by a 32-bit draw that is a fixed function of seed
// and i alone (a counter-based generator: the SplitMix64 finaliser of
// seed + ⌊i/2⌋·γ, one half of it per element), kept when the draw is at
// least p·2³². So the mask does not depend on how the work is split, and
// the same function can be computed on a device; the mask is filled in
// parallel for large inputs. It panics if p is outside [0, 1).
func DropoutMask(mask []float32, p float64, seed uint64) {
	if !(p >= 0 && p < 1) {
		panic(fmt.Sprintf("graph: DropoutMask probability %g outside [0, 1)", p))
	}
	threshold := uint64(math.Ldexp(p, 32)) // p < 1, so at most 2³² − 1
	keep := float32(1 / (1 - p))
	// Chunks hold an even number of elements, so that no 64-bit draw is
	// split between two of them.
	const chunk = 1 << 16
	if len(mask) <= chunk || runtime.GOMAXPROCS(0) == 1 {
		fillDropoutMask(mask, 0, threshold, keep, seed)
		return
	}
	workers := min(runtime.GOMAXPROCS(0), (len(mask)+chunk-1)/chunk)
	per := (len(mask)/workers + 1) &^ 1
	var wg sync.WaitGroup
	for start := 0; start < len(mask); start += per {
		end := min(start+per, len(mask))
		wg.Go(func() { fillDropoutMask(mask[start:end], start, threshold, keep, seed) })
	}
	wg.Wait()
}

// MixGamma is the SplitMix64 increment: 2⁶⁴ divided by the golden ratio,
// rounded to odd. Consecutive multiples of it are spread evenly over the
// 64-bit range, which is what the mixer below expects of its inputs.
const MixGamma = 0x9e3779b97f4a7c15

// MixSeed combines a seed with a counter n (a step, a layer's hash) into a
// new seed, with the SplitMix64 output function: nearby counters give
// unrelated seeds, for a seed of [Tape.DropoutSeed] say. It is a fixed
// function of its arguments, so seeds derived with it are reproducible.
func MixSeed(seed, n uint64) uint64 {
	return splitMix64(seed ^ splitMix64(n+MixGamma))
}

// fillDropoutMask fills mask, whose first element is element first (even)
// of the whole mask, as DropoutMask describes.
func fillDropoutMask(mask []float32, first int, threshold uint64, keep float32, seed uint64) {
	ctr := seed + uint64(first/2)*MixGamma
	i := 0
	for ; i+1 < len(mask); i += 2 {
		z := splitMix64(ctr)
		ctr += MixGamma
		mask[i] = keepIf(z&0xffffffff >= threshold, keep)
		mask[i+1] = keepIf(z>>32 >= threshold, keep)
	}
	if i < len(mask) {
		mask[i] = keepIf(splitMix64(ctr)&0xffffffff >= threshold, keep)
	}
}

// splitMix64 is the SplitMix64 output function: a bijective mix of z whose
// bits pass statistical tests even for consecutive inputs.
func splitMix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func keepIf(ok bool, keep float32) float32 {
	if ok {
		return keep
	}
	return 0
}
