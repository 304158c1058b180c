package cpu

import (
	"fmt"
	"sync"
	"testing"
)

func TestParallelChunksCoverRange(t *testing.T) {
	be := New(Options{Threads: 4})
	for _, n := range []int{0, 1, 2, 3, 7, 64, 1001} {
		for _, c := range []int{1, 2, 3, 4, 9} {
			var mu sync.Mutex
			seen := make([]int, n)
			calls := map[int]bool{}
			be.parallelChunks(n, c, func(chunk, lo, hi int) {
				mu.Lock()
				defer mu.Unlock()
				if calls[chunk] {
					t.Errorf("n=%d c=%d: chunk %d run twice", n, c, chunk)
				}
				calls[chunk] = true
				for i := lo; i < hi; i++ {
					seen[i]++
				}
			})
			for i, s := range seen {
				if s != 1 {
					t.Fatalf("n=%d c=%d: index %d visited %d times", n, c, i, s)
				}
			}
			if want := min(max(c, 1), n); n > 0 && len(calls) != want {
				t.Errorf("n=%d c=%d: %d chunks ran, want %d", n, c, len(calls), want)
			}
		}
	}
}

func TestChunks(t *testing.T) {
	be := New(Options{Threads: 4})
	tests := []struct {
		n, cost, want int
	}{
		{0, 100, 1},
		{1, 1 << 30, 1},                // one item cannot be split
		{100, 10, 1},                   // far below two grains: inline
		{2 * defaultGrain, 1, 2},       // exactly two grains
		{1 << 20, 64, 4},               // big: one chunk per thread
		{3, defaultGrain * 10, 3},      // never more chunks than items
		{defaultGrain, 3, 3},           // three grains of work
		{4 * defaultGrain, 1 << 10, 4}, // capped by threads
	}
	for _, tt := range tests {
		if got := be.chunks(tt.n, tt.cost); got != tt.want {
			t.Errorf("chunks(%d, %d) = %d, want %d", tt.n, tt.cost, got, tt.want)
		}
	}
}

// TestForPieces checks that forPieces runs every piece once, with ranges
// that cover [0, n) once, start on multiples of align and are the same
// whatever the thread cap (as is the number of pieces), and that no
// worker number reaches the thread cap.
func TestForPieces(t *testing.T) {
	type piece struct{ lo, hi int }
	for _, n := range []int{0, 1, 15, 16, 17, 300, 1001, 1 << 14} {
		for _, cost := range []int{1, 64, defaultGrain} {
			var want []piece
			for _, threads := range []int{1, 2, 3, 8} {
				be := New(Options{Threads: threads})
				c := be.pieces(n, cost, 1)
				align := pieceRows
				if n < 32 {
					align = 1
				}
				var mu sync.Mutex
				got := make([]piece, c)
				seen := make([]int, c)
				be.forPieces(n, cost, c, align, func(w, p, lo, hi int) {
					mu.Lock()
					defer mu.Unlock()
					if w < 0 || w >= threads {
						t.Errorf("n=%d: worker %d with %d threads", n, w, threads)
					}
					got[p] = piece{lo, hi}
					seen[p]++
				})
				at := 0
				for p, r := range got {
					if seen[p] != 1 || r.lo != at || r.hi < r.lo || (r.lo%align != 0 && r.lo != n) {
						t.Fatalf("n=%d cost=%d threads=%d: piece %d of %d ran %d times over %v, after %d", n, cost, threads, p, c, seen[p], r, at)
					}
					at = r.hi
				}
				if at != n {
					t.Errorf("n=%d cost=%d threads=%d: pieces end at %d", n, cost, threads, at)
				}
				if want == nil {
					want = got
				} else if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("n=%d cost=%d: pieces %v with %d threads, %v with 1", n, cost, got, threads, want)
				}
			}
		}
	}
}

func TestPieces(t *testing.T) {
	tests := []struct {
		n, cost, partial, want int
	}{
		{0, 100, 1, 1},
		{1, 1 << 30, 1, 1},
		{100, 10, 1, 1},                                      // far below two grains
		{2 * defaultGrain, 1, 1, 8},                          // two grains: a piece per quarter grain
		{4 * pieceRows, 2 * defaultGrain, 1, 4},              // at least pieceRows rows a piece
		{1 << 20, 64, 1, maxPieces},                          // capped
		{4096, 1024, 1024, 4096 / pieceWork},                 // SumColumns: pieceWork per partial element
		{4096, 1024 * 8, 2 * 1024, 4096 * 8 / 2 / pieceWork}, // a LayerNorm gradient's two sums
		{256, 64 * 6, 64, 256 * 6 / pieceWork},               // stories260K's RMSNorm gradient
		{2048, 768 * 6, 768, 2048 * 6 / pieceWork},
	}
	for _, threads := range []int{1, 4, 64} {
		be := New(Options{Threads: threads})
		for _, tt := range tests {
			if got := be.pieces(tt.n, tt.cost, tt.partial); got != tt.want {
				t.Errorf("%d threads: pieces(%d, %d, %d) = %d, want %d", threads, tt.n, tt.cost, tt.partial, got, tt.want)
			}
		}
	}
}
