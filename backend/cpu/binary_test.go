package cpu

import (
	"testing"

	"github.com/sora-go/sora/backend"
)

func TestBinary(t *testing.T) {
	ref := map[backend.BinaryOp]func(a, b float64) float64{
		backend.Add: func(a, b float64) float64 { return a + b },
		backend.Sub: func(a, b float64) float64 { return a - b },
		backend.Mul: func(a, b float64) float64 { return a * b },
		backend.Div: func(a, b float64) float64 { return a / b },
	}
	tests := []struct {
		name   string
		aShape []int
		bShape []int
		bIndex func(i, cols int) int // element of b paired with a[i]
		alias  bool                  // dst is a
	}{
		{"same", []int{3, 7}, []int{3, 7}, func(i, _ int) int { return i }, false},
		{"same rank 3 aliased", []int{2, 3, 5}, []int{2, 3, 5}, func(i, _ int) int { return i }, true},
		{"row", []int{4, 13}, []int{13}, func(i, cols int) int { return i % cols }, false},
		{"row rank 3", []int{2, 3, 5}, []int{5}, func(i, cols int) int { return i % cols }, true},
		{"column", []int{6, 5}, []int{6, 1}, func(i, cols int) int { return i / cols }, false},
		{"column aliased", []int{127, 3}, []int{127, 1}, func(i, cols int) int { return i / cols }, true},
		{"vector", []int{9}, []int{9}, func(i, _ int) int { return i }, false},
		{"big", []int{300, 129}, []int{129}, func(i, cols int) int { return i % cols }, false},
	}
	for _, op := range backend.BinaryOps {
		for i, tt := range tests {
			t.Run(op.String()+"/"+tt.name, func(t *testing.T) {
				eachConfig(t, func(t *testing.T, be *Backend) {
					rng := newRNG(uint64(i))
					n := backend.Shape(tt.aShape).NumElements()
					aData := uniform(rng, n, -1, 1)
					bData := uniform(rng, backend.Shape(tt.bShape).NumElements(), 0.5, 2) // away from 0 for Div
					a := upload(t, be, aData, tt.aShape...)
					b := upload(t, be, bData, tt.bShape...)
					dst := a
					if !tt.alias {
						dst = poisoned(t, be, tt.aShape...)
					}
					be.Binary(op, dst, a, b)
					cols := tt.aShape[len(tt.aShape)-1]
					want := make([]float64, n)
					for j := range want {
						// float32 inputs, one correctly rounded float32 result
						want[j] = float64(float32(ref[op](float64(aData[j]), float64(bData[tt.bIndex(j, cols)]))))
					}
					assertClose(t, "dst", download(t, be, dst), want, 0, 0)
				})
			})
		}
	}
}

func TestScaleAxpy(t *testing.T) {
	eachConfig(t, func(t *testing.T, be *Backend) {
		for _, n := range []int{1, 7, 1000} {
			rng := newRNG(uint64(n))
			xData, yData := uniform(rng, n, -1, 1), uniform(rng, n, -1, 1)
			x, y := upload(t, be, xData, n), upload(t, be, yData, n)
			dst := poisoned(t, be, n)
			be.Scale(dst, x, -1.5)
			want := make([]float64, n)
			for i := range want {
				want[i] = -1.5 * float64(xData[i])
			}
			assertClose(t, "scale", download(t, be, dst), want, 1e-7, 0)

			be.Scale(x, x, 0.25) // aliased: exact, a power of two
			for i := range want {
				want[i] = 0.25 * float64(xData[i])
			}
			assertClose(t, "scale aliased", download(t, be, x), want, 0, 0)

			be.Axpy(y, 3, x) // y += 3·(x/4)
			for i := range want {
				want[i] = float64(yData[i]) + 0.75*float64(xData[i])
			}
			assertClose(t, "axpy", download(t, be, y), want, 1e-6, 1e-7)
		}
	})
}
