package cpu

import (
	"testing"

	"github.com/sora-go/sora/backend"
)

// stridedRef performs a strided copy on host slices by walking every
// multi-index, the plainest possible definition of Copy.
func stridedRef(dst []float64, doff int, ds []int, src []float32, soff int, ss []int, shape []int, acc bool) {
	n := backend.Shape(shape).NumElements()
	idx := make([]int, len(shape))
	for e := 0; e < n; e++ {
		rem := e
		for i := len(shape) - 1; i >= 0; i-- {
			idx[i] = rem % shape[i]
			rem /= shape[i]
		}
		d, s := doff, soff
		for i := range shape {
			d += idx[i] * ds[i]
			s += idx[i] * ss[i]
		}
		if acc {
			dst[d] += float64(src[s])
		} else {
			dst[d] = float64(src[s])
		}
	}
}

func TestCopy(t *testing.T) {
	type view struct {
		off     int
		shape   []int
		strides []int
	}
	tests := []struct {
		name       string
		dstLen     int
		srcLen     int
		dst, src   view
		accumulate bool
	}{
		{"contiguous", 24, 24, view{0, []int{2, 3, 4}, []int{12, 4, 1}}, view{0, []int{2, 3, 4}, []int{12, 4, 1}}, false},
		{"contiguous accumulate", 24, 24, view{0, []int{24}, []int{1}}, view{0, []int{24}, []int{1}}, true},
		{"scalar", 3, 5, view{2, nil, nil}, view{4, nil, nil}, false},
		{"transpose", 35, 35, view{0, []int{7, 5}, []int{5, 1}}, view{0, []int{7, 5}, []int{1, 7}}, false},
		{"permute rank 4", 120, 120, view{0, []int{5, 2, 4, 3}, []int{24, 12, 3, 1}}, view{0, []int{5, 2, 4, 3}, []int{1, 60, 5, 20}}, true},
		// src [2,3,1,2,3,2] permuted by (5,3,0,4,1,2) into a contiguous dst.
		{"permute rank 6", 72, 72,
			view{0, []int{2, 2, 2, 3, 3, 1}, []int{36, 18, 9, 3, 1, 1}},
			view{0, []int{2, 2, 2, 3, 3, 1}, []int{1, 6, 36, 2, 12, 6}}, false},
		{"row broadcast", 12, 4, view{0, []int{3, 4}, []int{4, 1}}, view{0, []int{3, 4}, []int{0, 1}}, false},
		{"column broadcast accumulate", 12, 3, view{0, []int{3, 4}, []int{4, 1}}, view{0, []int{3, 4}, []int{1, 0}}, true},
		{"scalar broadcast", 10, 1, view{0, []int{2, 5}, []int{5, 1}}, view{0, []int{2, 5}, []int{0, 0}}, false},
		{"column slice", 40, 40, view{3, []int{4, 3}, []int{10, 2}}, view{1, []int{4, 3}, []int{10, 1}}, false},
		// a KV-cache window: rows 2..4 of heads 0..1 of a [2, 8, 3] cache.
		{"cache window", 48, 18, view{6, []int{2, 3, 3}, []int{24, 3, 1}}, view{0, []int{2, 3, 3}, []int{9, 3, 1}}, false},
		{"negative strides", 12, 12, view{0, []int{3, 4}, []int{4, 1}}, view{11, []int{3, 4}, []int{-4, -1}}, false},
		{"empty", 4, 4, view{0, []int{0, 4}, []int{4, 1}}, view{0, []int{0, 4}, []int{4, 1}}, false},
		{"unit axes", 6, 6, view{0, []int{1, 2, 1, 3}, []int{6, 3, 99, 1}}, view{0, []int{1, 2, 1, 3}, []int{0, 1, 7, 2}}, true},
		{"big transpose", 300 * 257, 300 * 257, view{0, []int{300, 257}, []int{257, 1}}, view{0, []int{300, 257}, []int{1, 300}}, true},
		{"big contiguous", 5000 * 7, 5000 * 7, view{0, []int{5000 * 7}, []int{1}}, view{0, []int{5000 * 7}, []int{1}}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachConfig(t, func(t *testing.T, be *Backend) {
				rng := newRNG(uint64(i))
				srcData := uniform(rng, tt.srcLen, -1, 1)
				dstData := uniform(rng, tt.dstLen, -1, 1)
				sbuf := upload(t, be, srcData, tt.srcLen)
				dbuf := upload(t, be, dstData, tt.dstLen)
				src, err := sbuf.Strided(tt.src.off, tt.src.shape, tt.src.strides)
				if err != nil {
					t.Fatal(err)
				}
				dst, err := dbuf.Strided(tt.dst.off, tt.dst.shape, tt.dst.strides)
				if err != nil {
					t.Fatal(err)
				}
				want := f64(dstData)
				stridedRef(want, tt.dst.off, tt.dst.strides, srcData, tt.src.off, tt.src.strides, tt.dst.shape, tt.accumulate)
				be.Copy(dst, src, tt.accumulate)
				// Exact: a copy moves bits, and an accumulation is one
				// float32 addition per element, which the reference
				// rounds identically.
				got := download(t, be, dbuf)
				if tt.accumulate {
					for j := range want {
						want[j] = float64(float32(want[j]))
					}
				}
				assertClose(t, "dst", got, want, 0, 0)
			})
		})
	}
}
