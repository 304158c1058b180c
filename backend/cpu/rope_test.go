package cpu

import (
	"math"
	"testing"

	"github.com/sora-go/sora/backend"
)

// ropeRef rotates one head at position pos by the angle sign·pos·θ^(−2i/d)
// per pair: interleaved as llama2.c writes it, half-split as Hugging Face
// writes it (x·cos(emb) + rotate_half(x)·sin(emb), emb = [freqs, freqs]).
func ropeRef(x []float64, pos int, theta, sign float64, layout backend.RoPELayout) []float64 {
	d := len(x)
	y := make([]float64, d)
	switch layout {
	case backend.Interleaved:
		for i := 0; i < d; i += 2 {
			freq := 1 / math.Pow(theta, float64(i)/float64(d))
			c, s := math.Cos(sign*float64(pos)*freq), math.Sin(sign*float64(pos)*freq)
			y[i] = x[i]*c - x[i+1]*s
			y[i+1] = x[i]*s + x[i+1]*c
		}
	case backend.HalfSplit:
		half := d / 2
		for j := range d {
			freq := 1 / math.Pow(theta, float64(2*(j%half))/float64(d))
			ang := sign * float64(pos) * freq
			var rot float64 // rotate_half(x)[j]
			if j < half {
				rot = -x[j+half]
			} else {
				rot = x[j-half]
			}
			y[j] = x[j]*math.Cos(ang) + rot*math.Sin(ang)
		}
	}
	return y
}

func TestRoPE(t *testing.T) {
	tests := []struct {
		shape  []int // batch, seq, heads, headDim
		offset int
		theta  float32
	}{
		{[]int{1, 1, 1, 2}, 0, 10000},
		{[]int{1, 5, 2, 8}, 0, 10000},
		{[]int{2, 3, 3, 6}, 7, 10000},
		{[]int{3, 4, 1, 16}, 100, 500000},
		{[]int{2, 33, 4, 32}, 1000, 10000},
	}
	for i, tt := range tests {
		for _, layout := range []backend.RoPELayout{backend.Interleaved, backend.HalfSplit} {
			for _, inverse := range []bool{false, true} {
				name := layout.String() + shapeName(tt.shape...)
				if inverse {
					name += "_inverse"
				}
				t.Run(name, func(t *testing.T) {
					eachConfig(t, func(t *testing.T, be *Backend) {
						seq, heads, hd := tt.shape[1], tt.shape[2], tt.shape[3]
						n := backend.Shape(tt.shape).NumElements()
						data := uniform(newRNG(uint64(i)), n, -1, 1)
						p := backend.RoPEParams{Layout: layout, Theta: tt.theta, Offset: tt.offset, Inverse: inverse}
						src := upload(t, be, data, tt.shape...)
						dst := poisoned(t, be, tt.shape...)
						be.RoPE(dst, src, p)
						sign := 1.0
						if inverse {
							sign = -1
						}
						want := make([]float64, n)
						for h := 0; h < n/hd; h++ {
							pos := tt.offset + (h/heads)%seq
							copy(want[h*hd:], ropeRef(f64(data[h*hd:(h+1)*hd]), pos, float64(tt.theta), sign, layout))
						}
						got := download(t, be, dst)
						assertClose(t, "dst", got, want, 1e-6, 1e-6)

						// The opposite rotation, in place, restores the input.
						p.Inverse = !p.Inverse
						be.RoPE(dst, dst, p)
						assertClose(t, "round trip", download(t, be, dst), f64(data), 1e-6, 1e-6)
					})
				})
			}
		}
	}
}
