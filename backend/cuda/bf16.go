package cuda

import (
	"math"

	"github.com/sora-go/sora/backend"
)

// bfloat16 (backend.BFloat16, the optional op backend.OpMatMulBF16):
// tensors of frozen weights stored two bytes an element on the device.
// Upload rounds on the host and copies the halves; Download copies them
// back and widens on the host; Copy widens on the device (widen_bf16); and
// MatMul widens a bfloat16 B into a float32 scratch block from the pool
// for the cuBLAS call, giving it back once the call is enqueued (stream
// order keeps it alive until the GEMM has read it, as for every other
// temporary). The scratch is 4 bytes per element of B for the duration of
// one MatMul; the pool keeps the block cached for the next product of
// that size class.

// bf16Buffer is the buffer of a bfloat16 tensor: a pool block of N
// two-byte elements. It wraps the float32 buffer type so the pool and the
// live set treat both alike; its own type makes DType report BFloat16,
// and ops that find one where they compute in float32 have already been
// refused by the shared checks.
type bf16Buffer struct{ buffer }

// DType returns backend.BFloat16.
func (x *bf16Buffer) DType() backend.DType { return backend.BFloat16 }

// roundBF16 returns the bfloat16 nearest to f, ties to even, as the CPU
// backend rounds (the two must agree bit for bit: the conformance suite
// compares them with the same references). NaNs stay NaN (quieted, sign
// kept) and values past the largest bfloat16, halfway included, become
// infinities.
func roundBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		// Truncating a NaN could clear every fraction bit kept and give
		// an infinity: set the quiet bit instead.
		return uint16(u>>16) | 0x0040
	}
	// 0x7fff carries into the kept half exactly above halfway; the kept
	// half's low bit adds the one more that rounds a tie to even. A carry
	// out of the fraction bumps the exponent, which is the right result
	// (and overflows the largest finite values to infinity).
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// widenBF16 returns the float32 h holds, exactly.
func widenBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
