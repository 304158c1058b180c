package cpu

import (
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
