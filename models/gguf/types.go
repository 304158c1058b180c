package gguf

import (
	"fmt"
	"math"
	"strings"

	"github.com/sora-go/sora/internal/float16"
)

// Type is a ggml tensor type, as a tensor info stores it.
type Type uint32

// The tensor types this package writes and reads (ggml's enum ggml_type).
const (
	F32  Type = 0
	F16  Type = 1
	Q8_0 Type = 8
	BF16 Type = 30
)

// QK8_0 is the number of values in one Q8_0 block; a Q8_0 tensor's
// innermost extent must be a multiple of it.
const QK8_0 = 32

// q8Block is the size in bytes of one Q8_0 block: a float16 scale and
// QK8_0 signed bytes.
const q8Block = 2 + QK8_0

// String returns the type's name as llama.cpp prints it ("f32", "f16",
// "bf16", "q8_0"), or "type(N)" for a type this package does not handle.
func (t Type) String() string {
	switch t {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	case Q8_0:
		return "q8_0"
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// ParseType returns the type named s, one of "f32", "f16", "bf16" and
// "q8_0" (in any case).
func ParseType(s string) (Type, error) {
	switch strings.ToLower(s) {
	case "f32":
		return F32, nil
	case "f16":
		return F16, nil
	case "bf16":
		return BF16, nil
	case "q8_0":
		return Q8_0, nil
	}
	return 0, fmt.Errorf("gguf: tensor type %q; expected f32, f16, bf16 or q8_0", s)
}

// known reports whether this package reads and writes t.
func (t Type) known() bool { return t == F32 || t == F16 || t == BF16 || t == Q8_0 }

// blockSize returns how many values one storage unit of t holds (32 for
// Q8_0, 1 otherwise) and that unit's size in bytes.
func (t Type) blockSize() (values, bytes int64) {
	switch t {
	case F32:
		return 1, 4
	case F16, BF16:
		return 1, 2
	case Q8_0:
		return QK8_0, q8Block
	}
	return 0, 0
}

// RowBytes returns the size in bytes of n consecutive values along the
// innermost dimension stored as t, or an error for an unknown type or, for
// Q8_0, an n that is not a multiple of QK8_0.
func (t Type) RowBytes(n int64) (int64, error) {
	if !t.known() {
		return 0, fmt.Errorf("gguf: tensor type %s is not supported (only f32, f16, bf16 and q8_0)", t)
	}
	vals, size := t.blockSize()
	if n%vals != 0 {
		return 0, fmt.Errorf("gguf: %s stores blocks of %d values along the innermost dimension, which has %d", t, vals, n)
	}
	return n / vals * size, nil
}

// FileType returns the general.file_type that llama.cpp records for a
// model whose large tensors are of type t (its enum llama_ftype:
// ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32).
func (t Type) FileType() uint32 {
	switch t {
	case F16:
		return 1
	case Q8_0:
		return 7
	case BF16:
		return 32
	}
	return 0
}

// QuantizeQ8_0 quantizes x, whose length must be a multiple of QK8_0, into
// dst (len(x)/QK8_0 blocks of 34 bytes: the scale as a little-endian
// float16, then 32 signed bytes), as ggml's quantize_row_q8_0_ref does, in
// float32 arithmetic: per block, amax is the largest |x|, the scale
// d = amax/127, and each q = round(x·(1/d)) (0 where d is 0), rounding
// halves away from zero; the stored scale is d rounded to float16 (the q
// are computed with the unrounded d). It returns an error for a length
// that is not a multiple of QK8_0 or a dst of the wrong size.
func QuantizeQ8_0(dst []byte, x []float32) error {
	if len(x)%QK8_0 != 0 {
		return fmt.Errorf("gguf: quantizing %d values to q8_0, which takes blocks of %d", len(x), QK8_0)
	}
	if len(dst) != len(x)/QK8_0*q8Block {
		return fmt.Errorf("gguf: quantizing %d values to q8_0 needs %d bytes, got %d", len(x), len(x)/QK8_0*q8Block, len(dst))
	}
	for b := 0; b < len(x)/QK8_0; b++ {
		blk := x[b*QK8_0 : (b+1)*QK8_0]
		out := dst[b*q8Block : (b+1)*q8Block]
		var amax float32
		for _, v := range blk {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		h := float16.HalfBits(d)
		out[0], out[1] = byte(h), byte(h>>8)
		for j, v := range blk {
			// float32(v*id) keeps the product in float32, as ggml's C does.
			q := math.Round(float64(float32(v * id)))
			out[2+j] = byte(int8(q))
		}
	}
	return nil
}

// DequantizeQ8_0 writes the values of the Q8_0 blocks src into dst
// (QK8_0 values per 34-byte block): q·d with d the block's float16 scale.
func DequantizeQ8_0(dst []float32, src []byte) error {
	if len(src)%q8Block != 0 || len(dst) != len(src)/q8Block*QK8_0 {
		return fmt.Errorf("gguf: dequantizing %d bytes of q8_0 into %d values; expected blocks of %d bytes for %d values each", len(src), len(dst), q8Block, QK8_0)
	}
	for b := 0; b < len(src)/q8Block; b++ {
		in := src[b*q8Block : (b+1)*q8Block]
		d := float16.HalfToFloat32(uint16(in[0]) | uint16(in[1])<<8)
		for j := range QK8_0 {
			dst[b*QK8_0+j] = float32(int8(in[2+j])) * d
		}
	}
	return nil
}
