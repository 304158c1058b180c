package cuda

import (
	"fmt"
	"math"
	"testing"

	"github.com/sora-go/sora/backend"
)

// TestReduceMaxNaNEmulated checks on the emulated device that ReduceRows
// Max propagates a NaN wherever it sits in a row, as the CPU backend does
// (its TestReduceMaxNaN): in a thread's first or a later element of a
// chunk, in any warp of a row's group, in a later chunk of a long row,
// and with +Inf or larger values elsewhere in the row. reduce_rows meets
// the NaN in three places (maxNaNf within a chunk, maxNaN across a
// thread's chunks, warpMax and groupMax across threads); a plain
// comparison in any of them (b > a, or fmax) drops it. The conformance
// suite has no NaN among ReduceRows' inputs, so without this test those
// could be broken unseen.
func TestReduceMaxNaNEmulated(t *testing.T) {
	b := openFake(t, Options{})
	nan := float32(math.NaN())
	// Row lengths: one warp with one element per thread; one warp, a
	// thread's later elements; a group of 256 threads (8 warps) in one
	// chunk; and rows of several chunks (16·256 = 4096 elements each).
	for _, cols := range []int{5, 100, 2000, 9000} {
		for _, at := range []int{0, 1, 31, 32, cols/2 + 1, cols - 1} {
			if at >= cols {
				continue
			}
			for _, other := range []float32{-1, float32(math.Inf(1)), 1e30} {
				t.Run(fmt.Sprintf("cols=%d/nan@%d/max=%g", cols, at, other), func(t *testing.T) {
					// Two rows: NaN in the first, none in the second (its
					// maximum still found).
					data := make([]float32, 2*cols)
					for i := range data {
						data[i] = float32(i%7) - 3
					}
					data[at] = nan
					data[(at+cols/3)%cols] = other
					if (at+cols/3)%cols == at {
						data[(at+1)%cols] = other
					}
					data[cols+at] = 42
					src := upload(t, b, data, 2, cols)
					dst := mustAlloc(t, b, 2)
					b.ReduceRows(backend.Max, dst, src)
					got := downloadAll(t, b, dst)
					if !math.IsNaN(float64(got[0])) {
						t.Errorf("row with a NaN at %d: max %g, want NaN", at, got[0])
					}
					if got[1] != 42 {
						t.Errorf("row without a NaN: max %g, want 42", got[1])
					}
					b.Free(src)
					b.Free(dst)
				})
			}
		}
	}
}
