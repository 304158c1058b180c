package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestPackMatchesDefinition checks both packing routines, with and
// without the assembly helpers, element by element against their
// definitions, on widths, row counts and lengths that leave remainders
// for every code path (8- and 4-row groups, k tails, zero padding).
func TestPackMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	const ld = 53
	src := make([]float32, 60*ld)
	for i := range src {
		src[i] = float32(rng.NormFloat64())
	}
	for _, w := range []int{1, 2, 4, 6, 7, 8, 12, 16, 32} {
		for _, rows := range []int{1, 3, 4, 5, 8, 11, 12, 13, 16, 31, 32} {
			for _, kc := range []int{1, 7, 8, 9, 16, 29} {
				for _, fast := range []bool{false, true} {
					name := fmt.Sprintf("w%d/rows%d/kc%d/fast=%v", w, rows, kc, fast)
					// packA, with each value once and four times (dup).
					for _, dup := range []int{1, 4} {
						for _, transA := range []bool{false, true} {
							mc := rows
							if transA && (mc+2 > ld || kc+3 > 60) {
								continue
							}
							dst := make([]float32, (mc+w-1)/w*w*kc*dup)
							for i := range dst {
								dst[i] = float32(math.NaN())
							}
							const i0, p0, alpha = 2, 3, -1.5
							packA(transA, src, ld, i0, p0, mc, kc, w, dup, alpha, dst, fast)
							for i := 0; i < (mc+w-1)/w*w; i++ {
								for p := 0; p < kc; p++ {
									// op(A)[i][p] is src[i*ld+p], or src[p*ld+i] when transposed.
									want := float32(0)
									switch {
									case i >= mc:
									case transA:
										want = alpha * src[(p0+p)*ld+i0+i]
									default:
										want = alpha * src[(i0+i)*ld+p0+p]
									}
									for q := 0; q < dup; q++ {
										if got := dst[(i/w*w*kc+p*w+i%w)*dup+q]; got != want {
											t.Fatalf("%s: packA (transA=%v, dup=%d) element (%d,%d) copy %d = %v, want %v", name, transA, dup, i, p, q, got, want)
										}
									}
								}
							}
						}
					}
					// packB, transposed: op(B)[p][j] = src[j*ld+p].
					const i0, p0 = 2, 3
					nc := rows
					dst := make([]float32, (nc+w-1)/w*w*kc)
					for i := range dst {
						dst[i] = float32(math.NaN())
					}
					packB(true, src, ld, p0, i0, kc, nc, w, dst, fast)
					for j := 0; j < (nc+w-1)/w*w; j++ {
						for p := 0; p < kc; p++ {
							got := dst[j/w*w*kc+p*w+j%w]
							want := float32(0)
							if j < nc {
								want = src[(i0+j)*ld+p0+p]
							}
							if got != want {
								t.Fatalf("%s: packB element (%d,%d) = %v, want %v", name, p, j, got, want)
							}
						}
					}
					// packB, not transposed: op(B)[p][j] = src[p*ld+j].
					if rows+i0 > ld || kc+p0 > 60 {
						continue
					}
					for i := range dst {
						dst[i] = float32(math.NaN())
					}
					packB(false, src, ld, p0, i0, kc, nc, w, dst, fast)
					for j := 0; j < (nc+w-1)/w*w; j++ {
						for p := 0; p < kc; p++ {
							got := dst[j/w*w*kc+p*w+j%w]
							want := float32(0)
							if j < nc {
								want = src[(p0+p)*ld+i0+j]
							}
							if got != want {
								t.Fatalf("%s: packB (no transpose) element (%d,%d) = %v, want %v", name, p, j, got, want)
							}
						}
					}
				}
			}
		}
	}
}
