package conformance

import (
	"fmt"
	"math"
	"math/rand"
	"strings"

	"github.com/sora-go/sora/backend"
)

// Env is what a case runs against: the backend, a random generator seeded
// for the case, and helpers that place tensors between guard regions and
// compare outputs with references. A case reports problems with Errorf
// (go on) or Fatalf (stop the case); Check and the tensor helpers report
// through them too.
type Env struct {
	// B is the backend under test.
	B backend.Backend
	// Rand is the case's random generator.
	Rand *rand.Rand

	c        Case
	failures []string
	notes    []string
	measures []Measure
	allocs   []backend.Tensor
	inputs   []*guarded
}

// abort is panicked by Fatalf to end a case; RunCase recovers it.
type abort struct{}

// Errorf records a failure and lets the case go on.
func (e *Env) Errorf(format string, args ...any) {
	e.failures = append(e.failures, fmt.Sprintf(format, args...))
}

// Fatalf records a failure and ends the case.
func (e *Env) Fatalf(format string, args ...any) {
	e.Errorf(format, args...)
	panic(abort{})
}

// Failed reports whether the case has recorded a failure.
func (e *Env) Failed() bool { return len(e.failures) > 0 }

// Logf records a note shown with a passing case in verbose output.
func (e *Env) Logf(format string, args ...any) {
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

// Uniform returns n values drawn uniformly from [lo, hi).
func (e *Env) Uniform(n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*e.Rand.Float64())
	}
	return x
}

// AwayFromZero returns n values whose magnitude is uniform in [lo, hi)
// with a random sign, e.g. divisors.
func (e *Env) AwayFromZero(n int, lo, hi float64) []float32 {
	x := e.Uniform(n, lo, hi)
	for i := range x {
		if e.Rand.Intn(2) == 0 {
			x[i] = -x[i]
		}
	}
	return x
}

// guarded is a tensor view placed inside a larger buffer whose other
// elements hold a known pattern.
type guarded struct {
	name   string
	view   backend.Tensor // what the op sees
	full   backend.Tensor // the whole buffer
	before []float32      // the buffer's contents as uploaded (rounded, for bfloat16)
	index  []int          // buffer position of each view element, row-major
}

// Out is an output tensor under guard: T is the view the op writes, in the
// middle of a buffer whose other elements hold a sentinel pattern. Init
// holds T's values before the op (NaN when poisoned).
type Out struct {
	guarded
	T    backend.Tensor
	Init []float32
}

// Name labels the output in failure messages ("out" by default).
func (o *Out) Name() string { return o.name }

// SetName sets the label used in failure messages and returns o.
func (o *Out) SetName(name string) *Out { o.name = name; return o }

// sentinel is the value of guard element i of an output buffer: finite,
// distinctive, and different from its neighbours so that a shifted write
// is noticed too.
func sentinel(i int) float32 { return float32(-7777.25 - float64(i%97)) }

// layout returns the buffer positions of a view with the given shape and
// strides at offset off, in row-major order, and one past the highest.
func layout(off int, shape backend.Shape, strides []int) (index []int, end int) {
	n := shape.NumElements()
	index = make([]int, n)
	end = off
	if n == 0 {
		return index, end
	}
	coord := make([]int, len(shape))
	for i := 0; i < n; i++ {
		p := off
		for d, c := range coord {
			p += c * strides[d]
		}
		index[i] = p
		if p+1 > end {
			end = p + 1
		}
		for d := len(coord) - 1; d >= 0; d-- {
			coord[d]++
			if coord[d] < shape[d] {
				break
			}
			coord[d] = 0
		}
	}
	return index, end
}

// place allocates a buffer with a guard of random length (16 to 31
// elements, so views start at varied alignments) before and after a view
// of the given shape and strides (nil: contiguous), uploads contents and
// returns the view.
func (e *Env) place(name string, shape backend.Shape, strides []int, fill func(full []float32, index []int)) guarded {
	return e.placeDType(backend.Float32, name, shape, strides, fill)
}

// placeDType is place for a buffer of dtype dt. For BFloat16 the backend
// rounds what it is given, and the guarded contents (before) are the
// values rounded by this package's reference, RoundBF16.
func (e *Env) placeDType(dt backend.DType, name string, shape backend.Shape, strides []int, fill func(full []float32, index []int)) guarded {
	if strides == nil {
		strides = shape.ContiguousStrides()
	}
	lead := 16 + e.Rand.Intn(16)
	tail := 16 + e.Rand.Intn(16)
	index, end := layout(lead, shape, strides)
	full, err := e.B.Alloc(dt, end+tail)
	if err != nil {
		e.Fatalf("Alloc(%d) for %s %v: %v", end+tail, name, shape, err)
	}
	e.allocs = append(e.allocs, full)
	var view backend.Tensor
	if isContiguous(shape, strides) {
		view, err = full.Slice(lead, lead+shape.NumElements())
		if err == nil {
			view, err = view.Reshape(shape...)
		}
	} else {
		view, err = full.Strided(lead, shape, strides)
	}
	if err != nil {
		e.Fatalf("view of %s %v: %v", name, shape, err)
	}
	data := make([]float32, full.Len())
	fill(data, index)
	e.B.Upload(full, data)
	if dt == backend.BFloat16 {
		for i, v := range data {
			data[i] = RoundBF16(v)
		}
	}
	return guarded{name: name, view: view, full: full, before: data, index: index}
}

func isContiguous(shape backend.Shape, strides []int) bool {
	want := shape.ContiguousStrides()
	for i, s := range strides {
		if shape[i] != 1 && s != want[i] {
			return false
		}
	}
	return true
}

// Input uploads data as a contiguous tensor of the given shape, between
// NaN guards (a kernel that reads past its input gets NaN). The input must
// be unchanged when the case ends.
func (e *Env) Input(data []float32, shape ...int) backend.Tensor {
	s := backend.Shape(shape)
	if s.NumElements() != len(data) {
		e.Fatalf("Input: %d values for shape %v", len(data), s)
	}
	g := e.place(fmt.Sprintf("input %d", len(e.inputs)), s, nil, guardedFill(data))
	e.inputs = append(e.inputs, &g)
	return g.view
}

// InputBF16 uploads data into a contiguous bfloat16 tensor of the given
// shape, between NaN guards, for backends that support
// [backend.OpMatMulBF16]. It returns the tensor and the values it holds:
// data rounded to bfloat16 by [RoundBF16], the values a reference must
// use. The input must be unchanged when the case ends.
func (e *Env) InputBF16(data []float32, shape ...int) (backend.Tensor, []float32) {
	s := backend.Shape(shape)
	if s.NumElements() != len(data) {
		e.Fatalf("InputBF16: %d values for shape %v", len(data), s)
	}
	g := e.placeDType(backend.BFloat16, fmt.Sprintf("bfloat16 input %d", len(e.inputs)), s, nil, guardedFill(data))
	e.inputs = append(e.inputs, &g)
	rounded := make([]float32, len(data))
	for i, p := range g.index {
		rounded[i] = g.before[p]
	}
	return g.view, rounded
}

// guardedFill returns the fill of a guarded buffer holding data at the
// indexed places and NaN everywhere else.
func guardedFill(data []float32) func(full []float32, index []int) {
	return func(full []float32, index []int) {
		nan := float32(math.NaN())
		for i := range full {
			full[i] = nan
		}
		for i, p := range index {
			full[p] = data[i]
		}
	}
}

// InputStrided returns a strided view (see [backend.Tensor.Strided]) of a
// guarded buffer whose viewed elements are uniform in [lo, hi) and whose
// other elements are NaN, together with the view's values in row-major
// order. Strides of 0 broadcast. The buffer must be unchanged when the
// case ends.
func (e *Env) InputStrided(shape backend.Shape, strides []int, lo, hi float64) (backend.Tensor, []float32) {
	var vals []float32
	g := e.place(fmt.Sprintf("input %d", len(e.inputs)), shape, strides, func(full []float32, index []int) {
		nan := float32(math.NaN())
		for i := range full {
			full[i] = nan
		}
		vals = make([]float32, len(index))
		for i, p := range index {
			if math.IsNaN(float64(full[p])) {
				full[p] = float32(lo + (hi-lo)*e.Rand.Float64())
			}
			vals[i] = full[p]
		}
	})
	e.inputs = append(e.inputs, &g)
	return g.view, vals
}

// Output returns a contiguous output of the given shape poisoned with NaN.
func (e *Env) Output(shape ...int) *Out {
	n := backend.Shape(shape).NumElements()
	init := make([]float32, n)
	for i := range init {
		init[i] = float32(math.NaN())
	}
	return e.OutputStrided(init, shape, nil)
}

// OutputInit returns a contiguous output of the given shape holding init:
// the starting values of an op that accumulates into its output, or the
// input of an in-place op.
func (e *Env) OutputInit(init []float32, shape ...int) *Out {
	return e.OutputStrided(init, shape, nil)
}

// inOut returns the operand and the output of an op that reads x and may
// run in place: with inPlace one output holding x that is also the
// operand, otherwise an input holding x and a fresh (poisoned) output.
func (e *Env) inOut(x []float32, inPlace bool, shape ...int) (operand backend.Tensor, o *Out) {
	if inPlace {
		o = e.OutputInit(x, shape...)
		return o.T, o
	}
	operand = e.Input(x, shape...)
	return operand, e.Output(shape...)
}

// OutputStrided returns an output view with the given strides (nil:
// contiguous) holding init (row-major, one value per view element; NaN to
// poison). Buffer elements outside the view, gaps between strided rows
// included, hold the sentinel pattern.
func (e *Env) OutputStrided(init []float32, shape backend.Shape, strides []int) *Out {
	if shape.NumElements() != len(init) {
		e.Fatalf("output: %d initial values for shape %v", len(init), shape)
	}
	g := e.place("out", shape, strides, func(full []float32, index []int) {
		for i := range full {
			full[i] = sentinel(i)
		}
		for i, p := range index {
			full[p] = init[i]
		}
	})
	return &Out{guarded: g, T: g.view, Init: append([]float32(nil), init...)}
}

// Values downloads o's current view values (row-major). A recorded error
// ends the case.
func (e *Env) Values(o *Out) []float32 {
	full := e.download(o.full, o.name)
	v := make([]float32, len(o.index))
	for i, p := range o.index {
		v[i] = full[p]
	}
	return v
}

// Rebase takes o's current contents as its new starting point, for cases
// that run an op several times on the same tensor (AdamW steps). The
// guards must be intact.
func (e *Env) Rebase(o *Out) {
	full := e.download(o.full, o.name)
	e.checkGuards(&o.guarded, full)
	o.before = full
	for i, p := range o.index {
		o.Init[i] = full[p]
	}
}

func (e *Env) download(t backend.Tensor, what string) []float32 {
	d := make([]float32, t.Len())
	if err := e.B.Download(d, t); err != nil {
		e.Fatalf("downloading %s: the backend reported %v", what, err)
	}
	return d
}

// checkGuards reports writes outside the view of g: any buffer element
// not in g.index whose bits changed.
func (e *Env) checkGuards(g *guarded, full []float32) bool {
	inView := make([]bool, len(full))
	lo, hi := len(full), -1
	for _, p := range g.index {
		inView[p] = true
		lo, hi = min(lo, p), max(hi, p)
	}
	var bad []string
	count := 0
	for p := range full {
		if inView[p] || math.Float32bits(full[p]) == math.Float32bits(g.before[p]) {
			continue
		}
		count++
		if len(bad) < 4 {
			var where string
			switch {
			case p < lo:
				where = fmt.Sprintf("%d before the first element", lo-p)
			case p > hi:
				where = fmt.Sprintf("%d after the last element", p-hi)
			default:
				where = fmt.Sprintf("in a gap of the strided view at buffer offset %d", p-lo)
			}
			bad = append(bad, fmt.Sprintf("%s (%g)", where, full[p]))
		}
	}
	if count > 0 {
		e.Errorf("%s: %d element(s) written outside the view: %s", g.name, count, strings.Join(bad, ", "))
		return false
	}
	return true
}

// Check compares o with ref (row-major, one value per element) using the
// threshold of the case's op.
func (e *Env) Check(o *Out, ref []float64) { e.CheckTol(string(e.c.Op), o, ref) }

// CheckTol compares o with ref using the threshold registered under key
// in the threshold table: the guards around o must be intact, every
// element finite and NMSE(o, ref) at most the threshold.
func (e *Env) CheckTol(key string, o *Out, ref []float64) {
	tol := Threshold(key)
	full := e.download(o.full, o.name)
	e.checkGuards(&o.guarded, full)
	if len(ref) != len(o.index) {
		e.Fatalf("%s: reference has %d values for %d elements (a bug in the case)", o.name, len(ref), len(o.index))
	}
	got := make([]float32, len(o.index))
	for i, p := range o.index {
		got[i] = full[p]
	}
	e.compare(o.name, key, tol, got, ref)
}

// CheckValues compares host values got with ref under the threshold key,
// for quantities derived from outputs (e.g. AdamW's update).
func (e *Env) CheckValues(what, key string, got []float64, ref []float64) {
	if len(got) != len(ref) {
		e.Fatalf("%s: %d values, reference %d (a bug in the case)", what, len(got), len(ref))
	}
	e.compareF64(what, key, Threshold(key), got, ref)
}

// checkTerms is CheckTol for outputs that are sums of terms which
// cancel: the squared error is divided by Σ mag², the squares of the
// terms' sizes (see refAttentionGradTerms), instead of Σ ref², so that a
// result that cancels to almost nothing is judged by the rounding of what
// was summed. Its measure is reported as "terms".
func (e *Env) checkTerms(key string, o *Out, ref, mag []float64) {
	tol := Threshold(key)
	full := e.download(o.full, o.name)
	e.checkGuards(&o.guarded, full)
	if len(ref) != len(o.index) || len(mag) != len(ref) {
		e.Fatalf("%s: reference has %d values and %d sizes for %d elements (a bug in the case)", o.name, len(ref), len(mag), len(o.index))
	}
	got := make([]float64, len(o.index))
	for i, p := range o.index {
		got[i] = float64(full[p])
	}
	e.compareNorm(o.name, key, "terms", tol, got, ref, mag)
}

func (e *Env) compare(what, key string, tol float64, got []float32, ref []float64) {
	g := make([]float64, len(got))
	for i, v := range got {
		g[i] = float64(v)
	}
	e.compareF64(what, key, tol, g, ref)
}

func (e *Env) compareF64(what, key string, tol float64, got, ref []float64) {
	e.compareNorm(what, key, "", tol, got, ref, nil)
}

// compareNorm compares got with ref: NMSE, or with norm, Σ(got−ref)² /
// Σ norm² reported under the metric name metric.
func (e *Env) compareNorm(what, key, metric string, tol float64, got, ref, norm []float64) {
	nonFinite, first := 0, -1
	for i, v := range got {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			if first < 0 {
				first = i
			}
			nonFinite++
		}
	}
	if nonFinite > 0 {
		e.Errorf("%s: %d of %d elements not finite, first at index %d (%g; NaN there means never written, or a NaN produced)",
			what, nonFinite, len(got), first, got[first])
		return
	}
	err, kind := nmse(got, ref)
	if norm != nil {
		var num, den float64
		for i := range got {
			num += (got[i] - ref[i]) * (got[i] - ref[i])
			den += norm[i] * norm[i]
		}
		err, kind = num, "sse"
		if den != 0 {
			err, kind = num/den, metric
		}
	}
	worst, wi := 0.0, 0
	for i := range got {
		if d := math.Abs(got[i] - ref[i]); d > worst {
			worst, wi = d, i
		}
	}
	if !(err <= tol) {
		e.Errorf("%s: %s %.3g > threshold %.3g (%s); largest error at index %d: got %.9g, want %.9g",
			what, kind, err, tol, key, wi, got[wi], ref[wi])
		return
	}
	e.measures = append(e.measures, Measure{What: what, Key: key, Metric: kind, Value: err, Threshold: tol})
}

// nmse returns Σ(got−ref)²/Σref², or the plain Σ(got−ref)² when the
// reference is all zeros, and which of the two it computed.
func nmse(got, ref []float64) (float64, string) {
	var num, den float64
	for i := range got {
		d := got[i] - ref[i]
		num += d * d
		den += ref[i] * ref[i]
	}
	if den == 0 {
		return num, "sse"
	}
	return num / den, "nmse"
}

// NMSE returns Σ(got−ref)²/Σref² (Σ(got−ref)² when ref is all zeros); it
// is +Inf when got holds a NaN or an infinity.
func NMSE(got []float32, ref []float64) float64 {
	g := make([]float64, len(got))
	for i, v := range got {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return math.Inf(1)
		}
		g[i] = float64(v)
	}
	v, _ := nmse(g, ref)
	return v
}

// verifyInputs reports inputs (and their guards) that changed.
func (e *Env) verifyInputs() {
	for _, g := range e.inputs {
		full := make([]float32, g.full.Len())
		if err := e.B.Download(full, g.full); err != nil {
			e.Errorf("downloading %s after the case: %v", g.name, err)
			return
		}
		changed := 0
		bf16 := g.full.DType() == backend.BFloat16
		for p := range full {
			if math.Float32bits(full[p]) == math.Float32bits(g.before[p]) {
				continue
			}
			// A bfloat16 NaN guard need only stay a NaN: the contract
			// does not fix its bits.
			if bf16 && math.IsNaN(float64(full[p])) && math.IsNaN(float64(g.before[p])) {
				continue
			}
			changed++
		}
		switch {
		case changed > 0 && bf16:
			e.Errorf("%s %v: %d element(s) of its buffer differ from the values uploaded, rounded to bfloat16 (ties to even); the upload rounded them otherwise, or the op wrote its input", g.name, g.view.Shape(), changed)
		case changed > 0:
			e.Errorf("%s %v: %d element(s) of its buffer changed; inputs must stay as they were", g.name, g.view.Shape(), changed)
		}
	}
}

func (e *Env) freeAll() {
	for _, t := range e.allocs {
		e.B.Free(t)
	}
	e.allocs = nil
}

// F64 converts float32 values to float64, for references.
func F64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}
