// Package gradcheck checks the gradients that package graph computes on a
// backend. An op is checked against a float64 reference of its forward
// function: the reference derivative is taken by central differences of
// that reference in float64 on the host, which is exact to many more digits
// than the backend's float32 backward is. Whole small graphs (an MLP, an
// attention block, an RMSNorm + SwiGLU block, a SORA layer) are checked
// against central finite differences of the graph run on the backend
// itself.
//
// The scalar whose gradient is checked is Σ w ⊙ out for random weights w,
// so every output element contributes with its own upstream gradient.
// Errors are normwise, per input: ‖analytic − reference‖ / ‖reference‖; the
// default tolerances are loose enough for float32 rounding and tight enough
// that a wrong sign, a dropped term or a misplaced index fails by orders of
// magnitude.
//
// Every check also runs a second step without zeroing the gradients, as
// gradient accumulation over micro-batches does: each input's gradient
// must then be twice the first step's. The first step writes every
// gradient afresh; the second takes each backward's accumulating path
// (a product with beta 1, a copy that adds, a kernel that adds into its
// output), which a backward that overwrites instead of adding fails.
//
// [OpCases] and [GraphCases] are the cases the conformance suite runs on
// every backend; [Check] runs one case, including cases callers write for
// their own layers.
package gradcheck

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// Default tolerances.
const (
	// RefTol bounds the normwise relative gradient error against a float64
	// reference.
	RefTol = 1e-4
	// RefForwardTol bounds the NMSE Σ(out − ref)² / Σ ref² of the forward
	// against the float64 reference.
	RefForwardTol = 1e-9
	// FDTol bounds the normwise relative gradient error against finite
	// differences on the backend (float32 forward passes). On the CPU
	// backend the errors stay under 2e-4 over many seeds, while a wrong sign
	// or a dropped term gives errors of order 1e-1 to 1.
	FDTol = 1e-3
)

// Input describes one differentiable input of a case.
type Input struct {
	Name  string
	Shape []int
	// Lo and Hi bound its uniform random values; both 0 means [−1, 1].
	// Values are placed on a grid of odd multiples of 2⁻¹³, so they are
	// never exactly 0 and finite-difference steps are exact in float32.
	Lo, Hi float64
}

// Case is one gradient check.
type Case struct {
	Name string
	// Op is the backend op whose failure the case most likely points at
	// (its main forward or backward kernel), for reports.
	Op     backend.Op
	Inputs []Input
	// Forward builds the function under test on g from the inputs, given
	// as trainable parameters in the order of Inputs. Integer data (token
	// ids, targets) and constants are captured by the closure.
	Forward func(g *graph.Tape, in []*graph.Value) *graph.Value
	// Reference, when set, computes the same function in float64 on the
	// host from the inputs' values (row-major, as Inputs lists them). The
	// check then compares the forward and the gradient against it;
	// without it, the gradient is compared with finite differences of
	// Forward on the backend.
	Reference func(in [][]float64) []float64
	// Tol overrides the gradient tolerance (RefTol or FDTol).
	Tol float64
	// ForwardTol overrides RefForwardTol.
	ForwardTol float64
}

// Options configures Check.
type Options struct {
	// Seed selects the random inputs and weights (with the case name).
	Seed uint64
	// MaxCoords caps the coordinates per input perturbed by finite
	// differences on the backend (default 24, chosen at random). Reference
	// checks compare every coordinate.
	MaxCoords int
	// TolScale multiplies every tolerance (the NMSE tolerance by its
	// square), for backends whose arithmetic is knowingly less precise
	// than float32, such as TF32 matrix products. 0 means 1.
	TolScale float64
	// Step is the finite-difference step on the backend (default 2⁻⁶),
	// used in the fourth-order stencil
	// (−f(x+2h) + 8f(x+h) − 8f(x−h) + f(x−2h)) / 12h.
	Step float64
}

// InputResult is the outcome for one input.
type InputResult struct {
	Name string
	// Coords is the number of coordinates compared.
	Coords int
	// Err is ‖analytic − reference‖ / (‖reference‖ + 1e-6·√Coords), +Inf
	// when anything is NaN or infinite.
	Err float64
	// AccumErr is the same error of the gradient after a second step
	// that accumulates into the first's (no ZeroGrad in between) against
	// twice the first step's gradient, over every element; 0 when the
	// second step added exactly the same gradient.
	AccumErr float64
}

// Result is the outcome of one case.
type Result struct {
	Case string
	// Method is "float64 reference" or "finite differences".
	Method string
	// ForwardNMSE is the forward error against the reference (reference
	// checks only; −1 otherwise).
	ForwardNMSE float64
	ForwardTol  float64
	Inputs      []InputResult
	Tol         float64
}

// Passed reports whether every error is within its tolerance.
func (r Result) Passed() bool {
	if r.ForwardNMSE > r.ForwardTol || math.IsNaN(r.ForwardNMSE) {
		return false
	}
	for _, in := range r.Inputs {
		if !(in.Err <= r.Tol) || !(in.AccumErr <= r.Tol) {
			return false
		}
	}
	return true
}

// String summarises the result on one line: status, case, method and
// [Result.Detail].
func (r Result) String() string {
	status := "ok"
	if !r.Passed() {
		status = "FAIL"
	}
	return fmt.Sprintf("%s %s (%s): %s", status, r.Case, r.Method, r.Detail())
}

// Detail lists the forward error (reference checks) and each input's
// gradient error with the tolerances, e.g.
// "forward NMSE 1e-15 (tol 1e-09); dx 3e-08, dw 4e-08 (tol 0.0001)".
func (r Result) Detail() string {
	var b strings.Builder
	if r.ForwardNMSE >= 0 {
		fmt.Fprintf(&b, "forward NMSE %.2g (tol %.0g); ", r.ForwardNMSE, r.ForwardTol)
	}
	for i, in := range r.Inputs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "d%s %.2g", in.Name, in.Err)
	}
	fmt.Fprintf(&b, " (tol %.0g)", r.Tol)
	sep := "; accumulated over two steps: "
	for _, in := range r.Inputs {
		if in.AccumErr != 0 {
			fmt.Fprintf(&b, "%sd%s %.2g", sep, in.Name, in.AccumErr)
			sep = ", "
		}
	}
	return b.String()
}

// Check runs case c on b. The error reports a case that could not run (a
// backend or graph error); a gradient that disagrees is reported by the
// Result, not the error.
func Check(b backend.Backend, c Case, opts Options) (res Result, err error) {
	res = Result{Case: c.Name, ForwardNMSE: -1, ForwardTol: c.ForwardTol, Tol: c.Tol}
	if opts.MaxCoords <= 0 {
		opts.MaxCoords = 24
	}
	if opts.Step <= 0 {
		opts.Step = 1.0 / 64
	}
	if opts.TolScale <= 0 {
		opts.TolScale = 1
	}
	defer func() {
		res.Tol *= opts.TolScale
		res.ForwardTol *= opts.TolScale * opts.TolScale
	}()
	h := fnv.New64a()
	h.Write([]byte(c.Name))
	rng := rand.New(rand.NewPCG(opts.Seed, h.Sum64()))

	host := make([][]float32, len(c.Inputs))
	params := make([]*graph.Value, len(c.Inputs))
	defer func() {
		for _, p := range params {
			if p != nil {
				p.Free()
			}
		}
	}()
	for i, in := range c.Inputs {
		host[i] = sample(rng, in)
		p, err := graph.UploadParam(b, in.Name, host[i], graph.Trainable, in.Shape...)
		if err != nil {
			return res, fmt.Errorf("gradcheck %s: input %s: %w", c.Name, in.Name, err)
		}
		params[i] = p
	}

	g := graph.New(b)
	defer g.Close()

	// Analytic gradients of Σ w ⊙ out.
	out := c.Forward(g, params)
	outHost, err := out.Download()
	if err != nil {
		return res, fmt.Errorf("gradcheck %s: forward: %w", c.Name, err)
	}
	w := make([]float32, len(outHost))
	for i := range w {
		w[i] = float32(2*rng.Float64() - 1)
	}
	weighted := func(out *graph.Value) *graph.Value { return g.Sum(g.Mul(out, g.Input(w, out.Shape()...))) }
	if err := g.Backward(weighted(out)); err != nil {
		return res, fmt.Errorf("gradcheck %s: backward: %w", c.Name, err)
	}
	grads, err := downloadGrads(c, params)
	if err != nil {
		return res, err
	}
	g.Reset()

	// A second step, accumulating into the first's gradients.
	out = c.Forward(g, params)
	if err := g.Backward(weighted(out)); err != nil {
		return res, fmt.Errorf("gradcheck %s: second backward: %w", c.Name, err)
	}
	twice, err := downloadGrads(c, params)
	if err != nil {
		return res, err
	}
	g.Reset()
	accErr := make([]float64, len(params))
	for i := range params {
		want := to64(grads[i])
		for j := range want {
			want[j] *= 2
		}
		accErr[i] = relErr(to64(twice[i]), want)
	}

	if c.Reference != nil {
		res.Method = "float64 reference"
		if res.Tol == 0 {
			res.Tol = RefTol
		}
		if res.ForwardTol == 0 {
			res.ForwardTol = RefForwardTol
		}
		x := make([][]float64, len(host))
		for i := range host {
			x[i] = to64(host[i])
		}
		ref := c.Reference(x)
		if len(ref) != len(outHost) {
			return res, fmt.Errorf("gradcheck %s: reference has %d outputs, the graph %d", c.Name, len(ref), len(outHost))
		}
		res.ForwardNMSE = nmse(to64(outHost), ref)
		f := func() float64 { return dot(w, c.Reference(x)) }
		for i := range x {
			refGrad := make([]float64, len(x[i]))
			for j, v := range x[i] {
				step := 1e-6 * math.Max(1, math.Abs(v))
				x[i][j] = v + step
				fp := f()
				x[i][j] = v - step
				fm := f()
				x[i][j] = v
				refGrad[j] = (fp - fm) / (2 * step)
			}
			res.Inputs = append(res.Inputs, InputResult{Name: c.Inputs[i].Name, Coords: len(refGrad), Err: relErr(to64(grads[i]), refGrad), AccumErr: accErr[i]})
		}
		return res, nil
	}

	res.Method = "finite differences"
	if res.Tol == 0 {
		res.Tol = FDTol
	}
	prev := g.SetNoGrad(true)
	defer g.SetNoGrad(prev)
	f := func() (float64, error) {
		defer g.Reset()
		o, err := c.Forward(g, params).Download()
		if err != nil {
			return 0, err
		}
		return dot(w, to64(o)), nil
	}
	for i, p := range params {
		n := p.Len()
		coords := rng.Perm(n)
		if len(coords) > opts.MaxCoords {
			coords = coords[:opts.MaxCoords]
		}
		flat := p.Tensor().MustReshape(n)
		an := make([]float64, len(coords))
		fd := make([]float64, len(coords))
		for k, j := range coords {
			elem := flat.MustSlice(j, j+1)
			v := float64(host[i][j])
			var fs [4]float64
			for s, off := range [4]float64{-2, -1, 1, 2} {
				b.Upload(elem, []float32{float32(v + off*opts.Step)})
				if fs[s], err = f(); err != nil {
					return res, fmt.Errorf("gradcheck %s: perturbed forward: %w", c.Name, err)
				}
			}
			b.Upload(elem, host[i][j:j+1])
			fd[k] = (fs[0] - 8*fs[1] + 8*fs[2] - fs[3]) / (12 * opts.Step)
			an[k] = float64(grads[i][j])
		}
		res.Inputs = append(res.Inputs, InputResult{Name: c.Inputs[i].Name, Coords: len(coords), Err: relErr(an, fd), AccumErr: accErr[i]})
	}
	return res, b.Sync()
}

// downloadGrads returns the gradients of params, zeros for one that has
// none (the output does not depend on it).
func downloadGrads(c Case, params []*graph.Value) ([][]float32, error) {
	grads := make([][]float32, len(params))
	for i, p := range params {
		if p.Grad().IsZero() {
			grads[i] = make([]float32, p.Len())
			continue
		}
		var err error
		if grads[i], err = p.DownloadGrad(); err != nil {
			return nil, fmt.Errorf("gradcheck %s: gradient of %s: %w", c.Name, c.Inputs[i].Name, err)
		}
	}
	return grads, nil
}

// sample draws an input's values on the grid of odd multiples of 2⁻¹³.
func sample(rng *rand.Rand, in Input) []float32 {
	lo, hi := in.Lo, in.Hi
	if lo == 0 && hi == 0 {
		lo, hi = -1, 1
	}
	const q = 1.0 / 8192
	out := make([]float32, backend.Shape(in.Shape).NumElements())
	for i := range out {
		v := lo + (hi-lo)*rng.Float64()
		k := math.Floor(v/q/2)*2 + 1 // odd multiple of q
		v = k * q
		if v > hi {
			v -= 2 * q
		}
		out[i] = float32(v)
	}
	return out
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

func dot(w []float32, y []float64) float64 {
	s := 0.0
	for i, v := range y {
		s += float64(w[i]) * v
	}
	return s
}

func nmse(out, ref []float64) float64 {
	num, den := 0.0, 0.0
	for i := range out {
		d := out[i] - ref[i]
		num += d * d
		den += ref[i] * ref[i]
	}
	if math.IsNaN(num) || math.IsInf(num, 0) {
		return math.Inf(1)
	}
	if den == 0 {
		if num == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return num / den
}

func relErr(a, r []float64) float64 {
	num, den := 0.0, 0.0
	for i := range a {
		d := a[i] - r[i]
		num += d * d
		den += r[i] * r[i]
	}
	e := math.Sqrt(num) / (math.Sqrt(den) + 1e-6*math.Sqrt(float64(len(a))))
	if math.IsNaN(e) {
		return math.Inf(1)
	}
	return e
}
