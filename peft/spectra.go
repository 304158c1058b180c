package peft

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sora-go/sora/internal/hostmem"
	"github.com/sora-go/sora/peft/spectral"
)

// LayerSpectrum is the spectral analysis of one layer's update.
type LayerSpectrum struct {
	Name       string
	Rows, Cols int
	spectral.Stats
}

// SpectraOptions bounds the work of [Model.SpectraWith]. The zero value
// means the defaults.
type SpectraOptions struct {
	// Workers is how many layers are analysed at once (default
	// GOMAXPROCS): gonum's SVD runs on one goroutine, so a model's layers
	// are spread over the cores instead.
	Workers int
	// MemoryBytes bounds the estimated host memory held by the layers in
	// flight (default: half the memory the system reports available, or
	// DefaultSpectraMemory where it reports none). A full-rank update is
	// analysed densely, and one [out, in] layer then holds several float64
	// copies of that size (W0, ΔW, the products forming it; about 48 bytes
	// per element in all): 470 MB a copy for a 4096×14336 projection. A
	// layer over the bound on its own is still analysed, alone. The bound
	// is on what the analyses hold, not on the process's size: freed
	// matrices stay in the heap until the garbage collector returns them.
	MemoryBytes int64
}

// DefaultSpectraMemory is [SpectraOptions.MemoryBytes]' default on a
// system that does not report its available memory, 4 GiB.
const DefaultSpectraMemory = 4 << 30

// defaultSpectraMemory returns half of Linux's MemAvailable, or
// DefaultSpectraMemory where the host does not say (hostmem.Read).
func defaultSpectraMemory() int64 {
	if info, ok := hostmem.Read(); ok && info.Available > 0 {
		return info.Available / 2
	}
	return DefaultSpectraMemory
}

// Spectra analyses the update ΔW = W' − W0 of every layer, in the layers'
// order: singular values, singular value entropy, stable rank (see
// [Layer.Spectrum] and package spectral), with the default
// [SpectraOptions].
func (m *Model) Spectra() ([]LayerSpectrum, error) {
	return m.SpectraWith(SpectraOptions{})
}

// SpectraWith is [Model.Spectra] with the concurrency and memory bounds of
// o. The parameters are downloaded on the calling goroutine, one layer
// after another, since a backend is not safe for concurrent use; the
// host-side analyses run on up to o.Workers goroutines while the next
// layers download. The results are in the layers' order and are what
// [Layer.Spectrum] gives layer by layer; on failure the error is that of
// the first failing layer in that order.
func (m *Model) SpectraWith(o SpectraOptions) ([]LayerSpectrum, error) {
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	budget := o.MemoryBytes
	if budget <= 0 {
		budget = defaultSpectraMemory()
	}
	out := make([]LayerSpectrum, len(m.layers))
	if workers = min(workers, len(m.layers)); workers <= 1 {
		for i, l := range m.layers {
			s, err := l.Spectrum()
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}

	type job struct {
		i    int
		in   spectrumInput
		cost int64
	}
	errs := make([]error, len(m.layers))
	jobs := make(chan job)
	mem := newBudget(budget)
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				out[j.i], errs[j.i] = j.in.analyze()
				if errs[j.i] != nil {
					failed.Store(true)
				}
				j.in = spectrumInput{} // let the collector have it before the next release
				mem.release(j.cost)
			}
		})
	}
	// Every layer before a failed one has been handed out when the
	// producer stops, so the first error in layer order is the first
	// failing layer's, whichever worker finished first.
	for i, l := range m.layers {
		if failed.Load() {
			break
		}
		cost := l.spectrumBytes()
		mem.acquire(cost)
		in, err := l.spectrumInput()
		if err != nil {
			errs[i] = err
			mem.release(cost)
			break
		}
		jobs <- job{i: i, in: in, cost: cost}
	}
	close(jobs)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Spectrum analyses the layer's update ΔW = W' − W0. For a method whose
// update has low rank by construction (LoRA, LoRA+, Pre-Ortho, Post-Ortho)
// the singular values come from the update's factors
// ([spectral.AnalyzeFactored]), in O((out + in)·k²) and without
// downloading W0 for LoRA; for the others ΔW is formed in float64 (see
// [Layer.Update64]) and given a full SVD. Both give the min(out, in)
// singular values of the same ΔW, zeros included, to float64 rounding.
func (l *Layer) Spectrum() (LayerSpectrum, error) {
	in, err := l.spectrumInput()
	if err != nil {
		return LayerSpectrum{}, err
	}
	return in.analyze()
}

// spectrumInput is what a layer's spectrum is computed from, on the host:
// the analysis needs no backend and may run on any goroutine.
type spectrumInput struct {
	l        *Layer
	p        hostParams
	factored bool
}

// spectrumInput downloads what the layer's spectrum needs.
func (l *Layer) spectrumInput() (spectrumInput, error) {
	factored := factoredUpdate(l.spec)
	// LoRA's factors are A and B alone; a rotation's terms involve W0.
	p, err := l.hostParams(!factored || l.spec.Pre == Rotation || l.spec.Post == Rotation)
	if err != nil {
		return spectrumInput{}, err
	}
	return spectrumInput{l: l, p: p, factored: factored}, nil
}

// analyze computes the spectrum from the downloaded parameters.
func (in spectrumInput) analyze() (s LayerSpectrum, err error) {
	l := in.l
	defer func() {
		// gonum panics on what it takes for a programming error; here it
		// would be one of this package's, and a report beats a crash at
		// the end of a training run.
		if r := recover(); r != nil {
			s, err = LayerSpectrum{}, fmt.Errorf("peft: spectrum of %q: %v", l.name, r)
		}
	}()
	var st spectral.Stats
	if in.factored {
		k, left, right := l.updateFactors(in.p)
		st, err = spectral.AnalyzeFactored(l.out, l.in, k, left, right)
	} else {
		u := l.update64(in.p)
		st, err = spectral.AnalyzeInPlace(u.Rows, u.Cols, u.Delta)
	}
	if err != nil {
		return LayerSpectrum{}, fmt.Errorf("peft: spectrum of %q: %w", l.name, err)
	}
	return LayerSpectrum{Name: l.name, Rows: l.out, Cols: l.in, Stats: st}, nil
}

// spectrumBytes estimates the host memory the layer's spectrum takes at
// its peak: for a dense analysis about six float64 [out, in] matrices (W0,
// Full's W, ΔW, the terms update64 forms it from, the SVD's reduction of
// it); for a factored one the factors and their QRs, and W0 where a
// rotation's terms need it.
func (l *Layer) spectrumBytes() int64 {
	mn := int64(l.out) * int64(l.in)
	if !factoredUpdate(l.spec) {
		return 48 * mn
	}
	k := int64(l.cfg.R + 2*l.cfg.RotationRank)
	b := 3 * 8 * (int64(l.out) + int64(l.in)) * k
	if l.spec.Pre == Rotation || l.spec.Post == Rotation {
		b += 12 * mn // W0 as downloaded (float32) and in float64
	}
	return b
}

// budget is a counting semaphore over bytes: acquire waits until the
// request fits beside what is held, or until nothing is held (a request
// over the whole budget then runs alone).
type budget struct {
	mu   sync.Mutex
	cond *sync.Cond
	cap  int64
	used int64
}

func newBudget(capacity int64) *budget {
	b := &budget{cap: capacity}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) acquire(n int64) {
	b.mu.Lock()
	for b.used > 0 && b.used+n > b.cap {
		b.cond.Wait()
	}
	b.used += n
	b.mu.Unlock()
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}
