package cpu

import (
	"errors"
	"fmt"
	"math"
	"math/cmplx"
	"strings"
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

// ropeFreqsRef rotates x [n heads, d] whose head h sits at position
// pos(h) by sign·pos·freqs[i] per pair, written as the rotation of the
// complex number (a + ib) by e^{iφ}: a form independent of the kernel's.
func ropeFreqsRef(x []float64, d int, pos func(h int) int, freqs []float64, sign float64, layout backend.RoPELayout) []float64 {
	y := make([]float64, len(x))
	half := d / 2
	for h := 0; h < len(x)/d; h++ {
		for i := range half {
			ia, ib := h*d+2*i, h*d+2*i+1
			if layout == backend.HalfSplit {
				ia, ib = h*d+i, h*d+i+half
			}
			r := complex(x[ia], x[ib]) * cmplx.Exp(complex(0, sign*float64(pos(h))*freqs[i]))
			y[ia], y[ib] = real(r), imag(r)
		}
	}
	return y
}

// TestRoPEFreqs checks explicit per-pair frequencies: against the complex
// rotation for frequencies of every sign and size (zero leaves its pair
// alone), at positions past a hundred thousand; the inverse restores the
// input; and frequencies equal to θ^(−2i/d), computed as the Theta path
// computes them, give bit for bit the Theta path's output.
func TestRoPEFreqs(t *testing.T) {
	shape := []int{2, 5, 3, 12}
	seq, heads, hd := shape[1], shape[2], shape[3]
	n := backend.Shape(shape).NumElements()
	data := uniform(newRNG(9), n, -1, 1)
	freqs := []float64{1, 0.5, -0.25, 0, 1e-4, 3.75}
	for _, layout := range []backend.RoPELayout{backend.Interleaved, backend.HalfSplit} {
		for _, offset := range []int{0, 131000} {
			t.Run(fmt.Sprintf("%v/offset=%d", layout, offset), func(t *testing.T) {
				eachConfig(t, func(t *testing.T, be *Backend) {
					src := upload(t, be, data, shape...)
					dst := poisoned(t, be, shape...)
					p := backend.RoPEParams{Layout: layout, Offset: offset, Freqs: freqs}
					be.RoPE(dst, src, p)
					pos := func(h int) int { return offset + (h/heads)%seq }
					got := download(t, be, dst)
					assertClose(t, "dst", got, ropeFreqsRef(f64(data), hd, pos, freqs, 1, layout), 1e-6, 1e-6)
					for k := 3; k < n; k += hd { // pair 3 has frequency 0
						a, b := 2*3, 2*3+1
						if layout == backend.HalfSplit {
							a, b = 3, 3+hd/2
						}
						if got[k-3+a] != data[k-3+a] || got[k-3+b] != data[k-3+b] {
							t.Fatalf("a pair of frequency 0 changed")
						}
					}
					p.Inverse = true
					be.RoPE(dst, dst, p)
					assertClose(t, "round trip", download(t, be, dst), f64(data), 1e-6, 1e-6)

					def := make([]float64, hd/2)
					for i := range def {
						def[i] = math.Pow(10000, -float64(2*i)/float64(hd))
					}
					byTheta, byFreqs := poisoned(t, be, shape...), poisoned(t, be, shape...)
					be.RoPE(byTheta, src, backend.RoPEParams{Layout: layout, Offset: offset, Theta: 10000})
					be.RoPE(byFreqs, src, backend.RoPEParams{Layout: layout, Offset: offset, Theta: 777, Freqs: def})
					a, b := download(t, be, byTheta), download(t, be, byFreqs)
					for i := range a {
						if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
							t.Fatalf("element %d: %v with Theta, %v with its frequencies", i, a[i], b[i])
						}
					}
				})
			})
		}
	}
}

// TestRoPEFreqsErrors checks that frequencies of the wrong count or not
// finite are refused with an error saying which, and leave dst alone.
func TestRoPEFreqsErrors(t *testing.T) {
	tests := []struct {
		name string
		p    backend.RoPEParams
		want string
	}{
		{"too few", backend.RoPEParams{Layout: backend.HalfSplit, Freqs: []float64{1, 2, 3}}, "3 frequencies for head dimension 8; want 4"},
		{"empty, not nil", backend.RoPEParams{Layout: backend.HalfSplit, Freqs: []float64{}}, "0 frequencies for head dimension 8; want 4"},
		{"NaN", backend.RoPEParams{Layout: backend.Interleaved, Freqs: []float64{1, math.NaN(), 3, 4}}, "frequency 1 is NaN"},
		{"infinite", backend.RoPEParams{Layout: backend.Interleaved, Freqs: []float64{1, 2, 3, math.Inf(-1)}}, "frequency 3 is -Inf"},
		{"no theta, no freqs", backend.RoPEParams{Layout: backend.Interleaved}, "theta 0 must be positive"},
		{"NaN theta", backend.RoPEParams{Layout: backend.Interleaved, Theta: float32(math.NaN())}, "theta NaN must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := New(Options{})
			src := upload(t, be, make([]float32, 16), 1, 2, 1, 8)
			dst4 := upload(t, be, []float32{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}, 1, 2, 1, 8)
			be.RoPE(dst4, src, tt.p)
			err := be.Sync()
			var oe *backend.OpError
			if !errors.As(err, &oe) || oe.Op != string(backend.OpRoPE) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Sync = %v; want a rope error saying %q", err, tt.want)
			}
			if got := download(t, be, dst4); got[0] != 7 {
				t.Errorf("dst changed to %v by a refused call", got[0])
			}
		})
	}
}
