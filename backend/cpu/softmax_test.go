package cpu

import (
	"math"
	"testing"

	"github.com/sora-go/sora/backend"
)

// softmaxRef computes the masked, scaled softmax of one row in float64;
// seen[j] says whether key j is visible.
func softmaxRef(x []float64, scale float64, seen []bool) []float64 {
	y := make([]float64, len(x))
	var z float64
	for j := range x {
		if seen[j] {
			y[j] = math.Exp(scale * x[j])
			z += y[j]
		}
	}
	for j := range x {
		y[j] /= z
	}
	return y
}

var softmaxCases = []struct {
	name  string
	shape []int
	p     backend.SoftmaxParams
}{
	{"single", []int{1, 1}, backend.SoftmaxParams{}},
	{"rows", []int{5, 13}, backend.SoftmaxParams{}},
	{"scaled", []int{3, 7}, backend.SoftmaxParams{Scale: 0.125}},
	{"negative scale", []int{3, 7}, backend.SoftmaxParams{Scale: -2}},
	{"causal square", []int{6, 6}, backend.SoftmaxParams{Causal: true}},
	{"causal batch", []int{2, 3, 5, 5}, backend.SoftmaxParams{Causal: true, Scale: 0.5}},
	{"causal cached", []int{2, 3, 9}, backend.SoftmaxParams{Causal: true, QueryOffset: 6}},
	{"causal offset", []int{4, 3, 8}, backend.SoftmaxParams{Causal: true, QueryOffset: 2}},
	{"causal offset beyond keys", []int{3, 4}, backend.SoftmaxParams{Causal: true, QueryOffset: 10}},
	{"wide", []int{40, 257}, backend.SoftmaxParams{}},
	{"rows of whole vectors", []int{9, 64}, backend.SoftmaxParams{Scale: 0.5}},
	{"window 1", []int{2, 5, 5}, backend.SoftmaxParams{Causal: true, Window: 1}},
	{"window square", []int{2, 2, 9, 9}, backend.SoftmaxParams{Causal: true, Window: 4, Scale: 0.5}},
	{"window cached", []int{2, 3, 19}, backend.SoftmaxParams{Causal: true, QueryOffset: 16, Window: 5}},
	{"window decode", []int{4, 1, 37}, backend.SoftmaxParams{Causal: true, QueryOffset: 36, Window: 11}},
	{"window wide", []int{2, 40, 131}, backend.SoftmaxParams{Causal: true, QueryOffset: 91, Window: 67}},
	{"window beyond", []int{6, 6}, backend.SoftmaxParams{Causal: true, Window: 9}},
}

// seenRef is the mask of SoftmaxParams, spelled out: row r of a tensor
// whose second-to-last axis has q queries is query r mod q, at position
// r mod q + QueryOffset, and sees the keys at most that position and,
// with a window, fewer than Window positions before it.
func seenRef(shape []int, r, keys int, p backend.SoftmaxParams) []bool {
	seen := make([]bool, keys)
	q := r
	if len(shape) >= 3 {
		q = r % shape[len(shape)-2]
	}
	pos := q + p.QueryOffset
	for j := range seen {
		seen[j] = !p.Causal || j <= pos && (p.Window == 0 || pos-j < p.Window)
	}
	return seen
}

func TestSoftmax(t *testing.T) {
	for i, tt := range softmaxCases {
		t.Run(tt.name, func(t *testing.T) {
			eachConfig(t, func(t *testing.T, be *Backend) {
				rows, keys := backend.Shape(tt.shape).Rows()
				rng := newRNG(uint64(i))
				// A large common offset per row: unless the row maximum is
				// subtracted, exp overflows even in float64 (scale·offset
				// reaches ±800).
				offset := func(r int) float64 { return float64(400 * (r%3 - 1)) }
				data := uniform(rng, rows*keys, -3, 3)
				for r := range rows {
					for j := range keys {
						data[r*keys+j] += float32(offset(r))
					}
				}
				src := upload(t, be, data, tt.shape...)
				dst := poisoned(t, be, tt.shape...)
				be.Softmax(dst, src, tt.p)

				// The reference removes the offset exactly (softmax is
				// shift-invariant) and exponentiates naively.
				want := make([]float64, rows*keys)
				for r := range rows {
					x := f64(data[r*keys : (r+1)*keys])
					for j := range x {
						x[j] -= offset(r)
					}
					copy(want[r*keys:], softmaxRef(x, float64(tt.p.EffectiveScale()), seenRef(tt.shape, r, keys, tt.p)))
				}
				got := download(t, be, dst)
				assertClose(t, "y", got, want, 1e-6, 1e-30)
				for j, w := range want {
					if w == 0 && got[j] != 0 {
						t.Fatalf("masked element %d = %g, want exactly 0", j, got[j])
					}
				}

				// In place.
				be.Softmax(src, src, tt.p)
				assertClose(t, "y in place", download(t, be, src), want, 1e-6, 1e-30)
			})
		})
	}
}

func TestSoftmaxGrad(t *testing.T) {
	for i, tt := range softmaxCases {
		t.Run(tt.name, func(t *testing.T) {
			eachConfig(t, func(t *testing.T, be *Backend) {
				rows, keys := backend.Shape(tt.shape).Rows()
				rng := newRNG(uint64(i) + 100)
				xData := uniform(rng, rows*keys, -2, 2)
				dyData := uniform(rng, rows*keys, -1, 1)
				scale := float64(tt.p.EffectiveScale())
				x := upload(t, be, xData, tt.shape...)
				y := poisoned(t, be, tt.shape...)
				be.Softmax(y, x, tt.p)
				dy := upload(t, be, dyData, tt.shape...)
				dx := poisoned(t, be, tt.shape...)
				be.SoftmaxGrad(dx, y, dy, tt.p)
				be.SoftmaxGrad(dy, y, dy, tt.p) // dx aliases dy

				// dx = d(Σ dy⊙softmax(x))/dx by central differences, row by row.
				want := make([]float64, rows*keys)
				for r := range rows {
					seen := seenRef(tt.shape, r, keys, tt.p)
					g := f64(dyData[r*keys : (r+1)*keys])
					loss := func(x []float64) float64 {
						y := softmaxRef(x, scale, seen)
						var s float64
						for j := range y {
							s += g[j] * y[j]
						}
						return s
					}
					grad := numGrad(loss, f64(xData[r*keys:(r+1)*keys]))
					copy(want[r*keys:], grad)
				}
				got := download(t, be, dy)
				assertClose(t, "dx", got, want, 1e-5, 1e-6)
				// In place, where each row's kernel overwrites dy as it
				// goes (streaming its stores in the parallel
				// configurations), the same bits as out of place.
				for j, v := range download(t, be, dx) {
					if math.Float32bits(v) != math.Float32bits(got[j]) {
						t.Fatalf("dx[%d] = %g out of place, %g in place", j, v, got[j])
					}
				}
				for j := range want {
					if r, k := j/keys, j%keys; !seenRef(tt.shape, r, keys, tt.p)[k] && got[j] != 0 {
						t.Fatalf("masked gradient element %d = %g, want exactly 0", j, got[j])
					}
				}
			})
		})
	}
}

// TestSoftmaxGradNeedsOnlyY checks what makes the window in SoftmaxGrad
// redundant when y is Softmax's own output: masked y are exactly 0, so
// they get gradient 0 and add nothing to the row's Σ dy⊙y. The gradient
// with the window, with the plain causal mask and with no mask at all is
// then the same, exact zeros included. (The Ascend backend relies on it:
// its SoftmaxGrad applies no mask.)
func TestSoftmaxGradNeedsOnlyY(t *testing.T) {
	shape := []int{2, 5, 23}
	win := backend.SoftmaxParams{Causal: true, QueryOffset: 18, Window: 6, Scale: 0.5}
	causal, plain := win, backend.SoftmaxParams{Scale: win.Scale}
	causal.Window = 0
	eachConfig(t, func(t *testing.T, be *Backend) {
		rng := newRNG(7)
		n := backend.Shape(shape).NumElements()
		x := upload(t, be, uniform(rng, n, -3, 3), shape...)
		dy := upload(t, be, uniform(rng, n, -1, 1), shape...)
		y := poisoned(t, be, shape...)
		be.Softmax(y, x, win)
		var grads [3][]float32
		for i, p := range []backend.SoftmaxParams{win, causal, plain} {
			dx := poisoned(t, be, shape...)
			be.SoftmaxGrad(dx, y, dy, p)
			grads[i] = download(t, be, dx)
		}
		ys := download(t, be, y)
		for i, p := range []string{"causal", "unmasked"} {
			assertClose(t, "dx with the "+p+" mask", grads[i+1], f64(grads[0]), 1e-6, 1e-12)
		}
		for j, v := range ys {
			if v == 0 && (grads[0][j] != 0 || grads[1][j] != 0 || grads[2][j] != 0) {
				t.Fatalf("element %d: y = 0 but dx = %g, %g, %g", j, grads[0][j], grads[1][j], grads[2][j])
			}
		}
	})
}
