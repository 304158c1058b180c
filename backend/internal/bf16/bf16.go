// Package bf16 converts between float32 and bfloat16, the storage type of
// the backends' frozen weights (backend.BFloat16): the CPU backend's
// buffers and the host side of the CUDA backend's uploads and downloads,
// which must round alike. A bfloat16 is held
// as a uint16: the top half of a float32's bits, sign, exponent and seven
// fraction bits. Widening to float32 is exact (the low half is zero);
// narrowing rounds to nearest, ties to even, keeps NaNs NaN (quieted, sign
// kept) and infinities infinite, and sends values past the largest
// bfloat16 (about 3.39e38), halfway included, to infinity, as PyTorch's
// conversion does.
//
// The slice conversions come as a [Funcs]: [Go] is the portable one, and
// [Best] the fastest this CPU runs (AVX2 assembly on amd64). Both compute
// exactly [Round] and [Widen] element by element; callers split big
// slices over goroutines themselves.
package bf16

import "github.com/sora-go/sora/internal/float16"

// Round returns the bfloat16 nearest to f, ties to even; see the package
// documentation for NaN and overflow. It is [float16.BF16Bits], the one
// conversion the project's file formats (safetensors, GGUF) use too, so
// that weights stored on a backend round as those files do.
func Round(f float32) uint16 { return float16.BF16Bits(f) }

// Widen returns the float32 whose value h holds, exactly
// ([float16.BF16ToFloat32]).
func Widen(h uint16) float32 { return float16.BF16ToFloat32(h) }

// Funcs is one implementation of the slice conversions. In each, dst
// sets the length and src must be at least as long.
type Funcs struct {
	// Name is "go" or "avx2".
	Name string
	// FromFloat32 sets dst[i] = Round(src[i]).
	FromFloat32 func(dst []uint16, src []float32)
	// ToFloat32 sets dst[i] = Widen(src[i]).
	ToFloat32 func(dst []float32, src []uint16)
	// AddTo sets dst[i] += Widen(src[i]).
	AddTo func(dst []float32, src []uint16)
}

// Go is the portable implementation.
var Go = &Funcs{Name: "go", FromFloat32: fromFloat32Go, ToFloat32: toFloat32Go, AddTo: addToGo}

// Best returns the fastest implementation this CPU runs.
func Best() *Funcs {
	if simd != nil {
		return simd
	}
	return Go
}

// All returns every implementation this CPU runs, Go first.
func All() []*Funcs {
	if simd != nil {
		return []*Funcs{Go, simd}
	}
	return []*Funcs{Go}
}

func fromFloat32Go(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, f := range src {
		dst[i] = Round(f)
	}
}

func toFloat32Go(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = Widen(h)
	}
}

func addToGo(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] += Widen(h)
	}
}
