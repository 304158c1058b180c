package bf16

import "testing"

// BenchmarkConvert reports the conversions' throughput over 1M values
// (4 MiB of float32), against copy of the same float32 slice.
func BenchmarkConvert(b *testing.B) {
	const n = 1 << 20
	f := make([]float32, n)
	for i := range f {
		f[i] = float32(i) * 1.37
	}
	h := make([]uint16, n)
	g := make([]float32, n)
	for _, fn := range All() {
		b.Run(fn.Name+"/FromFloat32", func(b *testing.B) {
			b.SetBytes(6 * n)
			for b.Loop() {
				fn.FromFloat32(h, f)
			}
		})
		b.Run(fn.Name+"/ToFloat32", func(b *testing.B) {
			b.SetBytes(6 * n)
			for b.Loop() {
				fn.ToFloat32(g, h)
			}
		})
		b.Run(fn.Name+"/AddTo", func(b *testing.B) {
			b.SetBytes(10 * n)
			for b.Loop() {
				fn.AddTo(g, h)
			}
		})
	}
	b.Run("copy_float32", func(b *testing.B) {
		b.SetBytes(8 * n)
		for b.Loop() {
			copy(g, f)
		}
	})
}
