// Package rowperm reorders the rows of a row-major matrix by a
// permutation. It is the one copy of the loop that models/llama (converting
// q and k projections between the interleaved and half-split RoPE layouts)
// and peft/adapter (saving and loading tensors in Hugging Face's row order)
// both need; neither package may import the other.
package rowperm

import "fmt"

// Permute returns a new matrix holding the rows of data, a row-major matrix
// of len(perm) rows, reordered by perm: row i of the result is row perm[i]
// of data, or, with inverse, row perm[i] of the result is row i of data (so
// Permute(Permute(d, p, false), p, true) is d). data is not changed.
//
// perm must be a permutation of 0..len(perm)-1; the callers validate their
// orders, so it is not checked here. Permute panics if len(data) is not a
// whole number of rows, a programming error.
func Permute(data []float32, perm []int, inverse bool) []float32 {
	out := make([]float32, len(data))
	if len(perm) == 0 {
		if len(data) != 0 {
			panic(fmt.Sprintf("rowperm: %d values cannot be 0 rows", len(data)))
		}
		return out
	}
	if len(data)%len(perm) != 0 {
		panic(fmt.Sprintf("rowperm: %d values are not a whole number of %d rows", len(data), len(perm)))
	}
	cols := len(data) / len(perm)
	for i, p := range perm {
		src, dst := p, i
		if inverse {
			src, dst = i, p
		}
		copy(out[dst*cols:(dst+1)*cols], data[src*cols:(src+1)*cols])
	}
	return out
}
