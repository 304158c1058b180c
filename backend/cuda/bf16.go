package cuda

import "github.com/sora-go/sora/backend"

// bfloat16 (backend.BFloat16, the optional op backend.OpMatMulBF16):
// tensors of frozen weights stored two bytes an element on the device.
// Upload rounds on the host (package backend/internal/bf16, as the CPU
// backend rounds: the two agree bit for bit) and copies the halves; Download copies them
// back and widens on the host; Copy widens on the device (widen_bf16);
// Gather reads a bfloat16 table as it is stored, widening each element it
// copies (gather_bf16: an embedding needs no float32 copy); and
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
