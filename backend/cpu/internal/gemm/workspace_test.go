package gemm

import (
	"fmt"
	"runtime"
	"testing"
)

// TestWorkspaceBytesNew: a new Engine has grown nothing yet.
func TestWorkspaceBytesNew(t *testing.T) {
	for _, threads := range []int{1, 3} {
		if got := NewEngine(Config{Threads: threads}).WorkspaceBytes(); got != 0 {
			t.Errorf("%d threads: a new Engine's WorkspaceBytes = %d, want 0", threads, got)
		}
	}
}

// TestWorkspaceBytesExact checks WorkspaceBytes' growth on the paths
// whose one buffer has a size that follows from the shape alone, worked
// out here from the paths' descriptions rather than from the buffers:
// rowDots pads a B of fewer than rowDotN rows into rowDotN·k floats, and
// skinny copies op(B)ᵀ into n rounded up to 4 rows of k. A warm call of
// the same shape adds nothing.
func TestWorkspaceBytesExact(t *testing.T) {
	for _, kr := range kernelsUnderTest() {
		tests := []struct {
			name           string
			ok             bool // the kernel has the path
			transB         bool
			m, n, k        int
			wantFloatsGrow int
		}{
			{"rowdots padded B", kr.rowDot != nil, true, 2, rowDotN - 1, 300, rowDotN * 300},
			{"skinny", kr.dot != nil, false, max(kr.dotRows, 1) * 20, 6, 200, 8 * 200},
			{"skinny transposed", kr.dot != nil, true, max(kr.dotRows, 1) * 20, 13, 64, 16 * 64},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%s", kr.name, tt.name), func(t *testing.T) {
				if !tt.ok {
					t.Skip("the kernel has no such path")
				}
				e := NewEngine(Config{Threads: 1})
				e.k = kr
				ldb := tt.n
				if tt.transB {
					ldb = tt.k
				}
				a, b, c := make([]float32, tt.m*tt.k), make([]float32, tt.k*tt.n), make([]float32, tt.m*tt.n)
				before := e.WorkspaceBytes()
				e.Sgemm(false, tt.transB, tt.m, tt.n, tt.k, 1, a, tt.k, b, ldb, 0, c, tt.n)
				if got, want := e.WorkspaceBytes()-before, int64(4*tt.wantFloatsGrow); got != want {
					t.Errorf("%d×%d×%d: WorkspaceBytes grew by %d, want %d", tt.m, tt.n, tt.k, got, want)
				}
				warm := e.WorkspaceBytes()
				e.Sgemm(false, tt.transB, tt.m, tt.n, tt.k, 1, a, tt.k, b, ldb, 0, c, tt.n)
				if got := e.WorkspaceBytes(); got != warm {
					t.Errorf("a warm call changed WorkspaceBytes from %d to %d", warm, got)
				}
			})
		}
	}
}

// TestWorkspaceBytesMatchesHeap checks WorkspaceBytes against the Go
// heap, independently of which buffers a path grows: on one thread a
// first call allocates nothing but workspace, so the bytes the runtime
// counts as allocated by it are at least WorkspaceBytes' growth and at
// most that rounded up to the allocator's size classes (under an eighth
// more for small objects, under a page each for large ones). The shapes
// take every path: the tiled product packing both operands, B read in
// place with a packed edge panel, the transposed product (Cᵀ), skinny
// and rowDots, and on two threads the row-parallel scheme (a shared
// packed B and a workspace per thread) and the column-parallel one. A
// buffer left out of WorkspaceBytes shows as allocated bytes it does not
// count. The worker pool is warmed first, so that its own start-up is not
// in the count.
func TestWorkspaceBytesMatchesHeap(t *testing.T) {
	shapes := []struct {
		name           string
		threads        int
		transA, transB bool
		m, n, k        int
	}{
		{"tiled", 1, false, false, 150, 300, 300},
		{"tiled transposed", 1, true, true, 97, 250, 300},
		{"B in place", 1, false, false, 2, 1001, 400},
		{"narrow C", 1, false, false, 20000, 3, 40},
		{"skinny", 1, false, false, 400, 8, 600},
		{"rowdots", 1, false, true, 3, 5, 3000},
		{"rows parallel", 2, false, false, 600, 300, 300},
		// 896 columns cut into two slabs of the same width for every
		// kernel's nr (32, 16, 8, 7), so that a thread taking both
		// needs no bigger buffers for the second, which would replace
		// the first's and count in the heap only.
		{"columns parallel", 2, false, true, 20, 896, 300},
	}
	warm := NewEngine(Config{Threads: 2})
	warm.minFlops = 1
	x := make([]float32, 64*64)
	warm.Sgemm(false, false, 64, 64, 64, 1, x, 64, x, 64, 0, make([]float32, 64*64), 64)
	for _, kr := range kernelsUnderTest() {
		for _, s := range shapes {
			t.Run(fmt.Sprintf("%s/%s", kr.name, s.name), func(t *testing.T) {
				e := NewEngine(Config{Threads: s.threads})
				e.k = kr
				e.minFlops = 1
				lda, ldb := s.k, s.n
				if s.transA {
					lda = s.m
				}
				if s.transB {
					ldb = s.k
				}
				a, b, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.m*s.n)
				if s.threads > 1 && e.threadsFor(s.m, s.n, s.k) < s.threads {
					t.Fatalf("the product runs on %d threads, want %d", e.threadsFor(s.m, s.n, s.k), s.threads)
				}
				var m0, m1 runtime.MemStats
				before := e.WorkspaceBytes()
				runtime.ReadMemStats(&m0)
				e.Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n)
				runtime.ReadMemStats(&m1)
				grew := e.WorkspaceBytes() - before
				heap := int64(m1.TotalAlloc - m0.TotalAlloc)
				objects := int64(m1.Mallocs - m0.Mallocs)
				if grew <= 0 {
					t.Fatalf("WorkspaceBytes grew by %d on a first call; the shape is meant to need a buffer", grew)
				}
				if heap < grew || heap > grew+grew/8+8192*objects {
					t.Errorf("WorkspaceBytes grew by %d, the heap by %d bytes in %d objects", grew, heap, objects)
				}
			})
		}
	}
}
