package cuda

import (
	"fmt"

	"github.com/sora-go/sora/backend"
)

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
// temporary). The scratch is 4 bytes per element of B, up to
// bf16ScratchElems elements, for the duration of one MatMul; a larger B
// (an embedding used as a tied head) is widened and multiplied a slab of
// rows at a time (gemmBF16). The pool keeps the block cached for the next
// product of that size class.

// bf16Buffer is the buffer of a bfloat16 tensor: a pool block of N
// two-byte elements. It wraps the float32 buffer type so the pool and the
// live set treat both alike; its own type makes DType report BFloat16,
// and ops that find one where they compute in float32 have already been
// refused by the shared checks.
type bf16Buffer struct{ buffer }

// DType returns backend.BFloat16.
func (x *bf16Buffer) DType() backend.DType { return backend.BFloat16 }

// bf16ScratchElems caps MatMul's float32 scratch for a bfloat16 B, in
// elements: 16 Mi, 64 MiB. A single B matrix larger than that is widened
// and multiplied a slab of whole rows at a time, so that storing a big
// weight in bfloat16 does not cost a float32 copy of it beside it (a
// tied head is the embedding: Gemma 3's is 262144×640, 671 MB in
// float32). A variable so that tests can make the slabs small.
var bf16ScratchElems int64 = 16 << 20

// gemmBF16 is MatMul's product for a bfloat16 B of nB elements at device
// address pb (A at pa and C at pc, float32). B is widened into a float32
// scratch block and multiplied by cuBLAS; where one B matrix (batched A
// and C may share it) has more than bf16ScratchElems elements, the
// scratch holds a slab of its rows at a time, each widened after the
// previous slab's GEMM (stream order):
//
//   - B transposed, stored [n, k]: rows n0..n1 of B give columns n0..n1
//     of C, each written once by its slab's GEMM (cuBLAS's m, our n,
//     shrinks; C starts n0 elements in, its leading dimension unchanged).
//     Each element of C sums its k products in one call, as unslabbed.
//   - B not transposed, stored [k, n]: rows k0..k1 of B are the terms
//     k0..k1 of the inner dimension (cuBLAS's k shrinks; A starts at its
//     column k0, or row k0 when transposed); the first slab's GEMM applies
//     beta, the later ones add (beta 1). C is then the sum of the slabs'
//     products, each rounded to float32: a few more roundings than one
//     GEMM over the whole of k makes.
//
// A batch of distinct B matrices is widened whole, as before.
func (b *Backend) gemmBF16(d backend.MatMulDims, p backend.MatMulParams, nB int64, pa, pb, pc uintptr) error {
	g := gemmMapping(d, p)
	rows, rowLen := int64(d.K), int64(d.N)
	if p.TransB {
		rows, rowLen = int64(d.N), int64(d.K)
	}
	slab := rows
	if d.Batch == 1 || d.StrideB == 0 {
		slab = max(1, bf16ScratchElems/rowLen)
	}
	if slab >= rows {
		scratch, err := b.tempAlloc(nB * 4)
		if err != nil {
			return fmt.Errorf("float32 scratch for the bfloat16 B (%d bytes): %w", nB*4, err)
		}
		// Stream order: the pool may hand the block out again once the
		// GEMM reading it is enqueued (see package devpool).
		defer b.tempFree(scratch)
		if err := b.widen(scratch.ptr, pb, nB, false); err != nil {
			return err
		}
		return b.gemm(g, p.Alpha, p.Beta, pa, scratch.ptr, pc)
	}
	scratch, err := b.tempAlloc(slab * rowLen * 4)
	if err != nil {
		return fmt.Errorf("float32 scratch for %d rows of the bfloat16 B (%d bytes): %w", slab, slab*rowLen*4, err)
	}
	defer b.tempFree(scratch)
	for r0 := int64(0); r0 < rows; r0 += slab {
		nr := min(slab, rows-r0)
		if err := b.widen(scratch.ptr, pb+uintptr(r0*rowLen*2), nr*rowLen, false); err != nil {
			return err
		}
		gs, a, c, beta := g, pa, pc, p.Beta
		if p.TransB {
			gs.m = int(nr)
			c = pc + uintptr(r0*4)
		} else {
			gs.k = int(nr)
			if p.TransA {
				a = pa + uintptr(r0*int64(d.M)*4)
			} else {
				a = pa + uintptr(r0*4)
			}
			if r0 > 0 {
				beta = 1
			}
		}
		if err := b.gemm(gs, p.Alpha, beta, a, scratch.ptr, c); err != nil {
			return err
		}
	}
	return nil
}
