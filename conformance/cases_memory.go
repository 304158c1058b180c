package conformance

import (
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/sora-go/sora/backend"
)

// dims formats a shape for case names: [3, 5, 7] is "3x5x7".
func dims(shape ...int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, "x")
}

// fmtF formats a parameter for case names without spaces.
func fmtF(v float64) string { return fmt.Sprintf("%g", v) }

func init() {
	// Upload then Download of a view in the middle of a larger buffer: the
	// values must come back bit for bit and nothing around them may change.
	for _, s := range [][]int{{1}, {7}, {13, 127}, {3, 5, 7}, {4096}} {
		s := s
		Register(Case{
			Name: "memory/roundtrip/" + dims(s...),
			Run: func(e *Env) {
				n := backend.Shape(s).NumElements()
				x := e.Uniform(n, -1, 1)
				o := e.Output(s...)
				e.B.Upload(o.T, x)
				e.CheckTol("transfer", o, F64(x))
				// Download of the view itself, not the whole buffer.
				got := make([]float32, n)
				if err := e.B.Download(got, o.T); err != nil {
					e.Fatalf("Download of the view: %v", err)
				}
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(x[i]) {
						e.Fatalf("Download of the view: element %d is %g, uploaded %g", i, got[i], x[i])
					}
				}
			},
		})
	}

	// Alloc gives a contiguous float32 tensor of the requested shape, and
	// BytesInUse counts it while it lives.
	Register(Case{
		Name: "memory/alloc/3x5x4096",
		Run: func(e *Env) {
			shape := backend.Shape{3, 5, 4096}
			t, err := e.B.Alloc(backend.Float32, shape...)
			if err != nil {
				e.Fatalf("Alloc%v: %v", shape, err)
			}
			defer e.B.Free(t)
			if !t.Shape().Equal(shape) || t.DType() != backend.Float32 || !t.Contiguous() || t.Len() != shape.NumElements() {
				e.Errorf("Alloc%v returned %v, want a contiguous float32 tensor of that shape", shape, t)
			}
			if t.Buffer() == nil || t.Buffer().Len() < t.Offset()+t.Len() {
				e.Errorf("Alloc%v: the view %v does not fit its buffer", shape, t)
			}
			if used, need := e.B.BytesInUse(), int64(shape.NumElements()*4); used < need {
				e.Errorf("BytesInUse = %d with a live tensor of %d bytes", used, need)
			}
		},
	})

	// Alloc refuses shapes that cannot be allocated with an error, not a
	// panic or a wrapped-around size: shapes can come from model files.
	Register(Case{
		Name: "memory/alloc_refused",
		Run: func(e *Env) {
			// Sizes are relative to math.MaxInt, so that the shapes overflow
			// on 32-bit platforms as they do on 64-bit ones.
			const big = 1 << (bits.UintSize/2 - 2) // 2^30 on 64-bit, 2^14 on 32-bit
			for _, shape := range []backend.Shape{{3, -1}, {big << 10, big << 10}, {big * 2, big * 2, 4}} {
				t, err := e.B.Alloc(backend.Float32, shape...)
				if err == nil {
					e.B.Free(t)
					e.Errorf("Alloc%v succeeded, want an error", shape)
				}
			}
		},
	})

	// Fill, over NaN poison.
	for _, f := range []struct {
		shape []int
		v     float32
	}{{[]int{1}, 0}, {[]int{127}, -2.5}, {[]int{7, 13}, 0}, {[]int{3, 5, 7}, 1e30}, {[]int{4096}, 3.25}} {
		f := f
		Register(Case{
			Name: fmt.Sprintf("fill/%s/v=%g", dims(f.shape...), f.v),
			Op:   backend.OpFill,
			Run: func(e *Env) {
				o := e.Output(f.shape...)
				e.B.Fill(o.T, f.v)
				ref := make([]float64, o.T.Len())
				for i := range ref {
					ref[i] = float64(f.v)
				}
				e.Check(o, ref)
			},
		})
	}

	registerCopyCases()
}

// view is a strided layout for Copy cases: shape and strides (nil means
// contiguous).
type view struct {
	shape   backend.Shape
	strides []int
}

// permuted returns the view of a contiguous tensor of shape base with its
// axes reordered by perm, as Tensor.Permute makes it.
func permuted(base []int, perm ...int) view {
	st := backend.Shape(base).ContiguousStrides()
	v := view{shape: make(backend.Shape, len(perm)), strides: make([]int, len(perm))}
	for i, p := range perm {
		v.shape[i] = base[p]
		v.strides[i] = st[p]
	}
	return v
}

func contiguous(shape ...int) view { return view{shape: shape} }

func registerCopyCases() {
	type copyCase struct {
		name     string
		dst, src view
	}
	cases := []copyCase{
		{"contiguous/1", contiguous(1), contiguous(1)},
		{"contiguous/13x7", contiguous(13, 7), contiguous(13, 7)},
		{"contiguous/4096", contiguous(4096), contiguous(4096)},
		// Transposes and permutations of the source.
		{"transpose/7x13", contiguous(7, 13), permuted([]int{13, 7}, 1, 0)},
		{"transpose/127x3", contiguous(127, 3), permuted([]int{3, 127}, 1, 0)},
		{"permute021/3x5x7", contiguous(3, 7, 5), permuted([]int{3, 5, 7}, 0, 2, 1)},
		{"permute201/3x5x7", contiguous(7, 3, 5), permuted([]int{3, 5, 7}, 2, 0, 1)},
		{"permute102/3x5x7", contiguous(5, 3, 7), permuted([]int{3, 5, 7}, 1, 0, 2)},
		// Attention head split: [batch, seq, heads, hd] → [batch, heads, seq, hd].
		{"permute0213/2x5x3x4", contiguous(2, 3, 5, 4), permuted([]int{2, 5, 3, 4}, 0, 2, 1, 3)},
		// Broadcasts of the source (stride 0).
		{"broadcast_row/7x13", contiguous(7, 13), view{backend.Shape{7, 13}, []int{0, 1}}},
		{"broadcast_column/7x13", contiguous(7, 13), view{backend.Shape{7, 13}, []int{1, 0}}},
		{"broadcast_scalar/3x5x7", contiguous(3, 5, 7), view{backend.Shape{3, 5, 7}, []int{0, 0, 0}}},
		{"broadcast_middle/3x4x5", contiguous(3, 4, 5), view{backend.Shape{3, 4, 5}, []int{5, 0, 1}}},
		// A column window of a wider source, and a strided destination
		// (writing into a window of a KV cache).
		{"src_window/7x5_of_7x13", contiguous(7, 5), view{backend.Shape{7, 5}, []int{13, 1}}},
		{"dst_window/7x5_into_7x13", view{backend.Shape{7, 5}, []int{13, 1}}, contiguous(7, 5)},
		{"dst_window/2x3x4_into_2x9x4", view{backend.Shape{2, 3, 4}, []int{36, 4, 1}}, contiguous(2, 3, 4)},
		// Permuted destination: merge heads back, [b, h, s, d] into [b, s, h, d].
		{"dst_permute0213/2x3x5x4", permuted([]int{2, 5, 3, 4}, 0, 2, 1, 3), contiguous(2, 3, 5, 4)},
		// Both strided.
		{"permute210/64x65x33", contiguous(33, 65, 64), permuted([]int{64, 65, 33}, 2, 1, 0)},
		{"both_strided/13x7", permuted([]int{7, 13}, 1, 0), view{backend.Shape{13, 7}, []int{1, 17}}},
	}
	for _, acc := range []bool{false, true} {
		for _, c := range cases {
			c, acc := c, acc
			name := "copy/" + c.name
			if acc {
				// Accumulating through every kind of view is covered by a
				// subset; plain contiguous accumulate is the common case.
				switch c.name {
				case "contiguous/13x7", "contiguous/1", "transpose/7x13", "permute0213/2x5x3x4",
					"broadcast_row/7x13", "broadcast_column/7x13", "dst_window/7x5_into_7x13",
					"dst_permute0213/2x3x5x4", "both_strided/13x7", "permute210/64x65x33":
				default:
					continue
				}
				name = "copy/accumulate/" + c.name
			}
			Register(Case{
				Name: name,
				Op:   backend.OpCopy,
				Run: func(e *Env) {
					src, vals := e.InputStrided(c.src.shape, c.src.strides, -1, 1)
					n := c.dst.shape.NumElements()
					init := make([]float32, n)
					for i := range init {
						init[i] = float32(math.NaN())
					}
					if acc {
						init = e.Uniform(n, -1, 1)
					}
					o := e.OutputStrided(init, c.dst.shape, c.dst.strides)
					e.B.Copy(o.T, src, acc)
					ref := F64(vals)
					key := "copy"
					if acc {
						key = "copy_accumulate"
						for i := range ref {
							ref[i] += float64(init[i])
						}
					}
					e.CheckTol(key, o, ref)
				},
			})
		}
	}
}
