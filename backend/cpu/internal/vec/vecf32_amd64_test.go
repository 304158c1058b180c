package vec

import (
	"testing"

	"gorgonia.org/vecf32"
)

// This benchmark lives in an amd64-only file because vecf32's dependency
// github.com/chewxy/math32 does not build for other architectures.

// BenchmarkVecf32 measures gorgonia.org/vecf32, the library the issue
// suggests, next to this package's kernels on the same data: its
// operations work in place (a op= b), so dst = a + b costs it a copy
// first. Built without its "avx" or "sse" tags it runs pure Go; with
// -tags avx it uses its assembly.
func BenchmarkVecf32(b *testing.B) {
	x, y, z := make([]float32, benchN), make([]float32, benchN), make([]float32, benchN)
	for i := range x {
		x[i], y[i] = float32(i%1000)/125-4, 1.5
	}
	b.Run("add/vecf32", func(b *testing.B) {
		benchGBPS(b, 12*benchN, func() {
			parallel(benchN, func(lo, hi int) {
				copy(z[lo:hi], x[lo:hi])
				vecf32.Add(z[lo:hi], y[lo:hi])
			})
		})
	})
	b.Run("add_inplace/vecf32", func(b *testing.B) {
		benchGBPS(b, 12*benchN, func() { parallel(benchN, func(lo, hi int) { vecf32.Add(z[lo:hi], y[lo:hi]) }) })
	})
	b.Run("sqrt_inplace/vecf32", func(b *testing.B) {
		benchGBPS(b, 8*benchN, func() { parallel(benchN, func(lo, hi int) { vecf32.Sqrt(z[lo:hi]) }) })
	})
	for _, k := range All() {
		k := k.Streaming()
		b.Run("add/"+k.Name, func(b *testing.B) {
			benchGBPS(b, 12*benchN, func() { parallel(benchN, func(lo, hi int) { k.Add(z[lo:hi], x[lo:hi], y[lo:hi]) }) })
		})
		b.Run("add_inplace/"+k.Name, func(b *testing.B) {
			benchGBPS(b, 12*benchN, func() { parallel(benchN, func(lo, hi int) { k.Add(z[lo:hi], z[lo:hi], y[lo:hi]) }) })
		})
		b.Run("sqrt_inplace/"+k.Name, func(b *testing.B) {
			benchGBPS(b, 8*benchN, func() { parallel(benchN, func(lo, hi int) { k.Sqrt(z[lo:hi], z[lo:hi]) }) })
		})
	}
}
