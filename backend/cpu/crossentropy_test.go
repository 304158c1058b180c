package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/backend"
)

// crossEntropyRef is −Σ_j q_j·log softmax(x)_j for q = (1−ε)·onehot(t) +
// ε/V, written with an explicit log-softmax per element.
func crossEntropyRef(x []float64, target int, eps float64) float64 {
	m, z := maxAndExpSum(x)
	var loss float64
	for j, v := range x {
		loss -= smoothedTarget(j, target, eps, len(x)) * (v - m - math.Log(z))
	}
	return loss
}

// crossEntropyGradRef is the float64 gradient of crossEntropyRef with
// respect to the logits x, softmax(x) − q, for the target distribution q.
func crossEntropyGradRef(x []float64, target int, eps float64) []float64 {
	m, z := maxAndExpSum(x)
	g := make([]float64, len(x))
	for j, v := range x {
		g[j] = math.Exp(v-m)/z - smoothedTarget(j, target, eps, len(x))
	}
	return g
}

// maxAndExpSum returns the maximum m of x and Σ exp(x − m).
func maxAndExpSum(x []float64) (m, z float64) {
	m = math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, v)
	}
	for _, v := range x {
		z += math.Exp(v - m)
	}
	return m, z
}

// smoothedTarget is q_j = (1−ε)·[j = target] + ε/vocab.
func smoothedTarget(j, target int, eps float64, vocab int) float64 {
	q := eps / float64(vocab)
	if j == target {
		q += 1 - eps
	}
	return q
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

// TestCrossEntropyGradTarget checks the target's gradient where it
// cancels: softmax_t − 1 for a confident, right prediction, down to 1e-8
// and less. Rows put the target 10 to 24 above logits in [−1, 1], at the
// maximum or tied with another, with and without smoothing; the reference
// is the analytic gradient in float64. The bound is absolute, a few
// float32 ulps of 1 (times the scale): the sum of exponentials adds its
// terms in float32 groups (of up to sixteen, see vec's ExpShift) before
// float64, so the 1 of the maximum and its small neighbours round
// together.
func TestCrossEntropyGradTarget(t *testing.T) {
	const rows, vocab = 8, 50
	rng := newRNG(77)
	data := uniform(rng, rows*vocab, -1, 1)
	targets := make([]int32, rows)
	for r := range rows {
		targets[r] = int32((r * 13) % vocab)
		data[r*vocab+int(targets[r])] = 10 + 2*float32(r)
	}
	// Row 3's target ties with another logit: softmax_t is about ½.
	data[3*vocab+(int(targets[3])+1)%vocab] = data[3*vocab+int(targets[3])]
	for _, eps := range []float32{0, 0.1} {
		p := backend.CrossEntropyParams{IgnoreIndex: -100, Smoothing: eps, Scale: 0.5}
		want := make([]float64, rows*vocab)
		for r := range rows {
			x := f64(data[r*vocab : (r+1)*vocab])
			for j, g := range crossEntropyGradRef(x, int(targets[r]), float64(eps)) {
				want[r*vocab+j] = 0.5 * g
			}
		}
		eachConfig(t, func(t *testing.T, be *Backend) {
			logits := upload(t, be, data, rows, vocab)
			dl := poisoned(t, be, rows, vocab)
			be.CrossEntropyGrad(dl, logits, targets, p)
			got := download(t, be, dl)
			gotT, wantT := make([]float32, rows), make([]float64, rows)
			for r, tg := range targets {
				gotT[r], wantT[r] = got[r*vocab+int(tg)], want[r*vocab+int(tg)]
			}
			assertClose(t, "target gradient", gotT, wantT, 1e-6, 0.5*4*0x1p-24)
			assertClose(t, "dlogits", got, want, 1e-5, 0.5*4*0x1p-24)
		})
	}
}

// TestCrossEntropyRowsApart checks the loss and gradient of rows whose
// logits lie hundreds apart, with ignored rows among them (first, last,
// two in a row): both are invariant to the shift their sum of
// exponentials uses, so only rows this far apart show that each row is
// shifted by its own maximum (both ops take a row's maximum in the pass
// over the previous row's exponentials); another row's would overflow or
// underflow the sum.
func TestCrossEntropyRowsApart(t *testing.T) {
	const vocab = 37
	targets := []int32{-100, 3, 36, -100, -100, 0, 7, 7, -100, 20, 1, 2, -100}
	offsets := []float32{0, 300, -300, 150, 0, -150, 300, 0, 90, -90, 200, -200, 5}
	data := logitsApart(newRNG(31), vocab, offsets)
	for _, eps := range []float32{0, 0.1} {
		p := backend.CrossEntropyParams{IgnoreIndex: -100, Smoothing: eps, Scale: 1}
		checkCrossEntropyRows(t, data, targets, vocab, p)
	}
}

// logitsApart draws len(offsets) rows of vocab logits in [−4, 4), each
// shifted by its offset.
func logitsApart(rng *rand.Rand, vocab int, offsets []float32) []float32 {
	data := uniform(rng, len(offsets)*vocab, -4, 4)
	for r, o := range offsets {
		for j := range vocab {
			data[r*vocab+j] += o
		}
	}
	return data
}

// checkCrossEntropyRows checks CrossEntropy and CrossEntropyGrad on the
// rows of data (vocab wide) in every configuration against the float64
// references.
func checkCrossEntropyRows(t *testing.T, data []float32, targets []int32, vocab int, p backend.CrossEntropyParams) {
	t.Helper()
	rows := len(targets)
	eps := float64(p.Smoothing)
	want, wantGrad := make([]float64, rows), make([]float64, rows*vocab)
	for r, tg := range targets {
		if tg == p.IgnoreIndex {
			continue
		}
		x := f64(data[r*vocab : (r+1)*vocab])
		want[r] = crossEntropyRef(x, int(tg), eps)
		copy(wantGrad[r*vocab:(r+1)*vocab], crossEntropyGradRef(x, int(tg), eps))
	}
	eachConfig(t, func(t *testing.T, be *Backend) {
		logits := upload(t, be, data, rows, vocab)
		loss := poisoned(t, be, rows)
		be.CrossEntropy(loss, logits, targets, p)
		assertClose(t, "loss", download(t, be, loss), want, 1e-5, 1e-6)
		dl := poisoned(t, be, rows, vocab)
		be.CrossEntropyGrad(dl, logits, targets, p)
		assertClose(t, "dlogits", download(t, be, dl), wantGrad, 1e-5, 1e-7)
	})
}

// TestCrossEntropyBlocks checks CrossEntropy where the runs of rows not
// ignored go to vec's ExpSumRows in more than one block (ceBlockBytes:
// blocks of 1, 2 and 5 rows for these vocabularies), each call passing
// the maxima of the next block's first two rows on: runs of 1 to 5 rows
// between ignored ones, rows hundreds apart (so that a row shifted by
// another's maximum overflows or underflows), the second of the run of
// five shifted by 1e5, whose sum takes the slow path (the AVX kernels
// stop there and go on after it), with and without smoothing, in every
// configuration. The losses must match float64 and, bit for bit, each
// row taken alone: its maximum (MaxScaled), ExpShiftSum about it and
// Log64, as CrossEntropy's doc composes them.
func TestCrossEntropyBlocks(t *testing.T) {
	targets := []int32{5, -100, 1, 2, -100, -100, 3, 4, 0, -100, 7, 8, 9, 6, -100, 1, 2, 3, 4, 5, -100, 11}
	offsets := []float32{0, 300, -300, 150, 0, -150, 300, 0, 90, -90, 200, -200, -30, -250, 40, 260, 1e5, -260, 180, -180, 10, 0}
	rows := len(targets)
	for _, vocab := range []int{33000, 11000, 6000} {
		if b := max(1, ceBlockBytes/(4*vocab)); b >= rows {
			t.Fatalf("vocab %d: blocks of %d rows, one block", vocab, b)
		}
		data := logitsApart(newRNG(uint64(vocab)), vocab, offsets)
		for _, eps := range []float32{0, 0.1} {
			p := backend.CrossEntropyParams{IgnoreIndex: -100, Smoothing: eps, Scale: 1}
			want := make([]float64, rows)
			for r, tg := range targets {
				if tg != p.IgnoreIndex {
					want[r] = crossEntropyRef(f64(data[r*vocab:(r+1)*vocab]), int(tg), float64(eps))
				}
			}
			eachConfig(t, func(t *testing.T, be *Backend) {
				logits := upload(t, be, data, rows, vocab)
				loss := poisoned(t, be, rows)
				be.CrossEntropy(loss, logits, targets, p)
				got := download(t, be, loss)
				assertClose(t, fmt.Sprintf("vocab %d loss", vocab), got, want, 1e-5, 1e-6)
				k := be.kern
				for r, tg := range targets {
					var bits float32
					if tg != p.IgnoreIndex {
						x := data[r*vocab : (r+1)*vocab]
						m := k.MaxScaled(x, 1)
						part := float64(m) - (1-float64(eps))*float64(x[tg])
						if eps != 0 {
							part -= float64(eps) * k.Sum(x) / float64(vocab)
						}
						lg := []float64{k.ExpShiftSum(x, m)}
						k.Log64(lg, lg)
						bits = float32(part + lg[0])
					}
					if math.Float32bits(got[r]) != math.Float32bits(bits) {
						t.Errorf("vocab %d row %d: loss %v, want %v (the row alone)", vocab, r, got[r], bits)
					}
				}
			})
		}
	}
}

// TestCrossEntropyHugeLogits checks rows of logits far from zero, up to
// near float32's largest, whose spreads the float32 values still hold:
// the loss and gradient must match float64 there as anywhere (the sums of
// exponentials switch to an exact path where their base-2 shift would
// lose accuracy).
func TestCrossEntropyHugeLogits(t *testing.T) {
	offsets := []float32{1e5, -1e6, 1e9, -3e9, 1e30, 3e38}
	const vocab = 6
	var data []float32
	var targets []int32
	for r, off := range offsets {
		ulp := math.Nextafter32(float32(math.Abs(float64(off))), float32(math.Inf(1))) - float32(math.Abs(float64(off)))
		step := max(ulp, 1)
		for j := range vocab {
			// The row's maximum first, then values 0.5 to 3 steps below.
			data = append(data, off-step*float32(j)/2)
		}
		targets = append(targets, int32(r%vocab))
	}
	checkCrossEntropyRows(t, data, targets, vocab, backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 1})
}
