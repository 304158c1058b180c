//go:build !amd64 || noasm

package gemm

func interleaveFast(d []float32, w int, src []float32, off, ld, rows, kc int) (r, kd int) {
	return 0, 0
}

func copyRowsFast(d []float32, w int, src []float32, off, ld, n int) bool { return false }

func interleaveFastBF16(d []float32, w int, src []uint16, off, ld, rows, kc int) (r, kd int) {
	return 0, 0
}

func widenRowsFast(d []float32, w int, src []uint16, off, ld, n int) bool { return false }
