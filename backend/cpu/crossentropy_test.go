package cpu

import (
	"math"
	"testing"

	"github.com/sora-go/sora/backend"
)

// crossEntropyRef is −Σ_j q_j·log softmax(x)_j for q = (1−ε)·onehot(t) +
// ε/V, written with an explicit log-softmax per element.
func crossEntropyRef(x []float64, target int, eps float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, v)
	}
	var z float64
	for _, v := range x {
		z += math.Exp(v - m)
	}
	var loss float64
	for j, v := range x {
		logp := v - m - math.Log(z)
		q := eps / float64(len(x))
		if j == target {
			q += 1 - eps
		}
		loss -= q * logp
	}
	return loss
}

func TestCrossEntropy(t *testing.T) {
	tests := []struct {
		name    string
		rows, v int
		targets []int32
		p       backend.CrossEntropyParams
		shift   float32 // added to every logit
	}{
		{"one", 1, 1, []int32{0}, backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 1}, 0},
		{"plain", 4, 7, []int32{0, 6, 3, 3}, backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 0.25}, 0},
		{"ignored rows", 5, 3, []int32{2, -100, 0, -100, 1}, backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 1.0 / 3}, 0},
		{"ignore index inside vocab", 3, 4, []int32{1, 0, 2}, backend.CrossEntropyParams{IgnoreIndex: 0, Scale: 1}, 0},
		{"smoothing", 6, 11, []int32{10, 0, 5, 5, 1, 2}, backend.CrossEntropyParams{IgnoreIndex: -1, Smoothing: 0.1, Scale: 1}, 0},
		{"full smoothing", 2, 5, []int32{1, 4}, backend.CrossEntropyParams{IgnoreIndex: -100, Smoothing: 1, Scale: 2}, 0},
		{"huge logits", 3, 9, []int32{8, 0, 4}, backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 1}, 1000},
		{"vocab 300", 20, 300, nil, backend.CrossEntropyParams{IgnoreIndex: -100, Smoothing: 0.05, Scale: 1.0 / 20}, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachConfig(t, func(t *testing.T, be *Backend) {
				rng := newRNG(uint64(i))
				targets := tt.targets
				if targets == nil {
					for r := range tt.rows {
						targets = append(targets, int32((r*37)%tt.v))
					}
				}
				data := uniform(rng, tt.rows*tt.v, -4, 4)
				for j := range data {
					data[j] += tt.shift
				}
				logits := upload(t, be, data, tt.rows, tt.v)
				loss := poisoned(t, be, tt.rows)
				be.CrossEntropy(loss, logits, targets, tt.p)
				dl := poisoned(t, be, tt.rows, tt.v)
				be.CrossEntropyGrad(dl, logits, targets, tt.p)

				wantLoss := make([]float64, tt.rows)
				wantGrad := make([]float64, tt.rows*tt.v)
				for r, tg := range targets {
					if tg == tt.p.IgnoreIndex {
						continue
					}
					x := f64(data[r*tt.v : (r+1)*tt.v])
					for j := range x {
						x[j] -= float64(tt.shift) // exact; the loss is shift-invariant
					}
					eps := float64(tt.p.Smoothing)
					wantLoss[r] = crossEntropyRef(x, int(tg), eps)
					g := numGrad(func(x []float64) float64 { return crossEntropyRef(x, int(tg), eps) }, x)
					for j := range g {
						wantGrad[r*tt.v+j] = float64(tt.p.Scale) * g[j]
					}
				}
				assertClose(t, "loss", download(t, be, loss), wantLoss, 1e-6, 1e-7)
				assertClose(t, "dlogits", download(t, be, dl), wantGrad, 1e-5, 1e-7)
			})
		})
	}
}
