package graph

import (
	"errors"
	"fmt"

	"github.com/sora-go/sora/backend"
)

// Tape records the ops of one forward pass so that [Tape.Backward] can
// propagate gradients through them in reverse. It also owns the buffers of
// the values it makes, keeps a pool of released buffers for reuse, and holds
// the first error of the step.
//
// A Tape is reused from step to step: [Tape.Reset] releases everything the
// step made. It is not safe for concurrent use (nor is its backend).
type Tape struct {
	b      backend.Backend
	noGrad bool
	err    error

	nodes        []node
	values       []*Value         // made on this tape; invalidated by Reset
	slab         []Value          // where the next values go (see newValue)
	owned        []backend.Tensor // data buffers released by Reset
	backwardDone bool

	// pool holds released buffers by element count, one bucket per
	// count, found through poolIndex: a step allocates and releases each
	// of its buffers, so this is on the path of every op.
	pool        []poolBucket
	poolIndex   map[int]int
	epoch       int // number of Resets so far
	liveBytes   int64
	pooledBytes int64
	peakLive    int64 // most liveBytes since the last Reset
	peakHeld    int64 // most liveBytes + pooledBytes since the last Reset

	// segs is the stack of checkpointed segments whose function is
	// running (see checkpoint.go): their dropout seeds are logged or
	// replayed. recomputing counts those being recomputed.
	segs        []segCtx
	recomputing int

	// attn says how Attention computes (see attention.go).
	attn attentionMode
}

// node is one recorded op: back receives the gradient dy of out, owns it,
// and must either hand it on (give) or release it. A checkpointed segment
// is one node with seg set instead: it has several outputs, and its
// backward reads their gradients itself.
type node struct {
	out  *Value
	back func(dy backend.Tensor)
	seg  *segment
}

type pooled struct {
	t     backend.Tensor // a contiguous view of the whole buffer
	epoch int            // when it was released
}

type poolBucket struct {
	n    int // elements of each buffer
	list []pooled
}

// float32Bytes is the size of the only element type a tape allocates.
const float32Bytes = 4

// New returns an empty tape over b, recording gradients. It reads the
// environment variable SORA_ATTENTION ([AttentionEnv]): "unfused" makes
// [Tape.Attention] compose attention from MatMul and Softmax even where b
// has the fused kernel ([Tape.SetFusedAttention] overrides it).
func New(b backend.Backend) *Tape {
	return &Tape{b: b, poolIndex: map[int]int{}, attn: attentionModeFromEnv()}
}

// Backend returns the tape's backend.
func (g *Tape) Backend() backend.Backend { return g.b }

// SetNoGrad turns recording off (true) or back on (false) and returns the
// previous setting. With recording off, ops compute their results but record
// no backward and their results require no gradient: use it for evaluation
// and generation. A scoped form:
//
//	defer g.SetNoGrad(g.SetNoGrad(true))
func (g *Tape) SetNoGrad(off bool) (previous bool) {
	previous, g.noGrad = g.noGrad, off
	return previous
}

// NoGrad reports whether recording is off.
func (g *Tape) NoGrad() bool { return g.noGrad }

// Err returns the first error of the current step: an error the tape found
// (a shape mismatch, a value from another tape, a failed allocation) or,
// after waiting for pending work, one the backend recorded. The error stays
// until [Tape.Reset].
func (g *Tape) Err() error {
	if err := g.b.Sync(); err != nil && g.err == nil {
		g.err = err
	}
	return g.err
}

// Backward computes the gradient of loss, a one-element value, with respect
// to every value it depends on. Trainable parameters accumulate it into
// their gradient buffers (see [Value.ZeroGrad]); intermediate gradients are
// released as soon as they have been propagated. Backward runs at most once
// per step. It returns [Tape.Err].
func (g *Tape) Backward(loss *Value) error {
	if !g.check("Backward", loss) {
		return g.Err()
	}
	switch {
	case loss.Len() != 1:
		g.failf("Backward: the loss must have one element, has shape %v", loss.shape)
	case g.backwardDone:
		g.failf("Backward: already ran on this tape; call Reset before the next step")
	case !loss.needsGrad:
		g.failf("Backward: the loss does not depend on any trainable parameter (or was computed with recording off)")
	}
	if g.err != nil {
		return g.Err()
	}
	g.backwardDone = true
	if loss.param {
		// The loss is a trainable parameter itself: its gradient is 1,
		// added to what earlier steps left (as every parameter's is).
		dst, acc := g.gradDst(loss)
		if !acc {
			g.b.Fill(dst, 1)
			return g.Err()
		}
		one := g.alloc(loss.shape)
		if g.err == nil {
			g.b.Fill(one, 1)
			g.b.Axpy(dst, 1, one)
		}
		g.release(one)
		return g.Err()
	}
	loss.grad = g.alloc(loss.shape)
	if g.err == nil {
		g.b.Fill(loss.grad, 1)
		loss.seed = true
	}
	g.backprop(0)
	if g.err == nil {
		clear(g.nodes)
		g.nodes = g.nodes[:0]
	}
	return g.Err()
}

// backprop runs the backward of the recorded ops from the last to
// nodes[from], stopping at the first error. A checkpointed segment's node
// recomputes the segment, appending its ops after the current end and
// backpropagating through them before it returns (with from at the old
// end), so the loop reads g.nodes afresh at every index.
func (g *Tape) backprop(from int) {
	for i := len(g.nodes) - 1; i >= from && g.err == nil; i-- {
		n := g.nodes[i]
		if n.seg != nil {
			g.recompute(n.seg)
			continue
		}
		dy := n.out.grad
		if dy.IsZero() {
			continue
		}
		n.out.grad = backend.Tensor{}
		n.back(dy)
	}
}

// Reset ends a step: it releases every buffer the tape made (values and any
// gradients left), invalidates the tape's values, forgets recorded ops and
// clears the tape's error. Parameters are untouched. Check errors (Backward,
// Err) before Reset: the error of the step is dropped with it.
//
// Released buffers go to the tape's pool and are reused by later steps; a
// pooled buffer that a whole step did not reuse is freed, so the pool holds
// about one step's working set.
func (g *Tape) Reset() {
	for _, n := range g.nodes {
		if n.seg != nil {
			for i, o := range n.seg.outs {
				if n.seg.pass[i] {
					continue // a value of its own, released as such
				}
				g.release(o.grad)
				o.grad = backend.Tensor{}
			}
			continue
		}
		if !n.out.grad.IsZero() {
			g.release(n.out.grad)
		}
	}
	clear(g.nodes)
	g.nodes = g.nodes[:0]
	for _, t := range g.owned {
		g.release(t)
	}
	clear(g.owned)
	g.owned = g.owned[:0]
	for _, v := range g.values {
		v.data, v.grad = backend.Tensor{}, backend.Tensor{}
		v.dead = true
	}
	clear(g.values)
	g.values = g.values[:0]
	buckets := g.pool[:0]
	for _, bk := range g.pool {
		keep := bk.list[:0]
		for _, p := range bk.list {
			if p.epoch < g.epoch {
				g.pooledBytes -= int64(bk.n) * float32Bytes
				g.b.Free(p.t)
				continue
			}
			keep = append(keep, p)
		}
		clear(bk.list[len(keep):])
		if len(keep) == 0 {
			delete(g.poolIndex, bk.n)
			continue
		}
		bk.list = keep
		g.poolIndex[bk.n] = len(buckets)
		buckets = append(buckets, bk)
	}
	clear(g.pool[len(buckets):])
	g.pool = buckets
	g.epoch++
	g.err = nil
	g.backwardDone = false
	clear(g.segs)
	g.segs = g.segs[:0]
	g.recomputing = 0
	g.peakLive, g.peakHeld = g.liveBytes, g.liveBytes+g.pooledBytes
}

// Close resets the tape and frees its pool. The tape may be used again.
func (g *Tape) Close() {
	g.Reset()
	for _, bk := range g.pool {
		for _, p := range bk.list {
			g.b.Free(p.t)
		}
	}
	g.pool, g.poolIndex = nil, map[int]int{}
	g.pooledBytes = 0
	g.peakLive, g.peakHeld = g.liveBytes, g.liveBytes
}

// Stats reports the device memory a tape holds.
type Stats struct {
	// LiveBytes is held by values and gradients of the current step.
	LiveBytes int64
	// PooledBytes is held by released buffers kept for reuse.
	PooledBytes int64
	// PeakLiveBytes is the most LiveBytes since the last Reset: the
	// step's working set, activations and gradients together.
	PeakLiveBytes int64
	// PeakBytes is the most LiveBytes + PooledBytes since the last
	// Reset: what the tape had allocated on the device at its fullest.
	PeakBytes int64
	// Ops is the number of recorded ops awaiting Backward (a
	// checkpointed segment counts as one).
	Ops int
}

// Stats reports the tape's memory and recorded ops.
func (g *Tape) Stats() Stats {
	return Stats{LiveBytes: g.liveBytes, PooledBytes: g.pooledBytes,
		PeakLiveBytes: g.peakLive, PeakBytes: g.peakHeld, Ops: len(g.nodes)}
}

// ---- errors ----

func (g *Tape) fail(err error) {
	if g.err == nil && err != nil {
		g.err = err
	}
}

func (g *Tape) failf(format string, args ...any) {
	g.fail(fmt.Errorf("graph: "+format, args...))
}

// check validates the inputs of op and reports whether the op should run:
// false after an earlier error or when an input is unusable (then it records
// why). Inputs must be float32: a bfloat16 weight goes only to the ops
// that check with checkStored.
func (g *Tape) check(op string, vs ...*Value) bool { return g.checkInputs(op, false, vs) }

// checkStored is check for the ops that take bfloat16 storage as it is
// (the matrix products, Gather's table, ToFloat32, Detach, Custom).
func (g *Tape) checkStored(op string, vs ...*Value) bool { return g.checkInputs(op, true, vs) }

func (g *Tape) checkInputs(op string, bf16 bool, vs []*Value) bool {
	if g.err != nil {
		return false
	}
	for i, v := range vs {
		switch {
		case v == nil:
			g.failf("%s: input %d is nil", op, i)
		case v.dead && v.dropped:
			g.failf("%s: input %d %v is an intermediate of a checkpointed segment, released when the segment ended (only the segment's results outlive it)", op, i, v.shape)
		case v.dead:
			g.failf("%s: input %d %v was made before the tape was Reset", op, i, v.shape)
		case !v.param && v.tape != g:
			g.failf("%s: input %d %v belongs to another tape", op, i, v.shape)
		case v.b != g.b:
			g.failf("%s: parameter %q belongs to another backend", op, v.name)
		case v.data.IsZero():
			g.failf("%s: input %d %v has no data (a freed parameter?)", op, i, v.shape)
		case v.data.DType() == backend.BFloat16 && !bf16:
			g.failf("%s: input %d %s is stored in bfloat16, which only the matrix products (MatMul, Linear) and Gather's table take; widen it with ToFloat32 first", op, i, v)
		}
		if g.err != nil {
			return false
		}
	}
	return true
}

// ---- memory ----

func bytesOf(t backend.Tensor) int64 { return int64(t.Buffer().Len()) * int64(t.DType().Size()) }

// alloc returns a contiguous tensor of shape from the pool or the backend.
// On failure it records the error and returns the zero Tensor.
func (g *Tape) alloc(shape backend.Shape) backend.Tensor {
	if g.err != nil {
		return backend.Tensor{}
	}
	n := shape.NumElements()
	if i, ok := g.poolIndex[n]; ok && len(g.pool[i].list) > 0 {
		bk := &g.pool[i]
		last := len(bk.list) - 1
		t := bk.list[last].t
		bk.list[last] = pooled{}
		bk.list = bk.list[:last]
		g.pooledBytes -= int64(n) * float32Bytes
		g.liveBytes += int64(n) * float32Bytes
		g.peakLive = max(g.peakLive, g.liveBytes)
		return t.MustReshape(shape...)
	}
	t, err := g.b.Alloc(backend.Float32, shape...)
	if err != nil {
		g.fail(fmt.Errorf("graph: allocating %v: %w", shape, err))
		return backend.Tensor{}
	}
	g.liveBytes += bytesOf(t)
	g.peakLive = max(g.peakLive, g.liveBytes)
	g.peakHeld = max(g.peakHeld, g.liveBytes+g.pooledBytes)
	return t
}

// release returns a buffer obtained from alloc to the pool.
func (g *Tape) release(t backend.Tensor) {
	if t.IsZero() {
		return
	}
	// Buffers from alloc are whole, so t itself usually serves as the
	// pooled view (alloc reshapes whatever it finds); only a view of part
	// of a buffer needs a new one.
	whole := t
	if t.Offset() != 0 || !t.Contiguous() || t.Len() != t.Buffer().Len() {
		var err error
		whole, err = backend.NewTensor(t.Buffer(), 0, t.Buffer().Len())
		if err != nil { // cannot happen for a buffer alloc returned
			g.fail(errors.Join(errors.New("graph: release"), err))
			return
		}
	}
	n := whole.Len()
	i, ok := g.poolIndex[n]
	if !ok {
		i = len(g.pool)
		g.poolIndex[n] = i
		g.pool = append(g.pool, poolBucket{n: n})
	}
	g.pool[i].list = append(g.pool[i].list, pooled{t: whole, epoch: g.epoch})
	g.liveBytes -= int64(n) * float32Bytes
	g.pooledBytes += int64(n) * float32Bytes
}

// ---- values ----

// newValue registers a value made on this tape. Values come from slabs
// allocated valueSlab at a time rather than one by one: a step makes
// hundreds of small values (a generation step with a small model is mostly
// such overhead). A slab is never reused, because a value must stay dead
// after Reset for as long as anyone holds it.
func (g *Tape) newValue(data backend.Tensor, shape backend.Shape, needsGrad bool) *Value {
	if len(g.slab) == 0 {
		g.slab = make([]Value, valueSlab)
	}
	v := &g.slab[0]
	g.slab = g.slab[1:]
	// Shapes are read-only once given out, so the value shares its data's
	// shape (usually the one it was allocated with) instead of copying.
	if s := data.Shape(); data.IsZero() || !s.Equal(shape) {
		shape = append(backend.Shape(nil), shape...)
	} else {
		shape = s
	}
	*v = Value{data: data, shape: shape, b: g.b, tape: g, needsGrad: needsGrad && !g.noGrad}
	g.values = append(g.values, v)
	return v
}

// valueSlab is how many values newValue allocates at once.
const valueSlab = 64

// output allocates an owned result of shape that requires a gradient when
// any of ins does (and recording is on).
func (g *Tape) output(shape backend.Shape, ins ...*Value) *Value {
	t := g.alloc(shape)
	if !t.IsZero() {
		g.owned = append(g.owned, t)
	}
	return g.newValue(t, shape, anyNeedsGrad(ins))
}

// view makes a result that shares t (owned by an input or the caller).
func (g *Tape) view(t backend.Tensor, ins ...*Value) *Value {
	return g.newValue(t, t.Shape(), anyNeedsGrad(ins))
}

// placeholder is the result of an op that did not run because of an error:
// it has the op's shape (when known) but no data.
func (g *Tape) placeholder(shape backend.Shape) *Value {
	return g.newValue(backend.Tensor{}, shape, false)
}

func anyNeedsGrad(vs []*Value) bool {
	for _, v := range vs {
		if v != nil && v.needsGrad {
			return true
		}
	}
	return false
}

// recording reports whether out's backward is to be recorded. Ops test it
// before making the backward closure, which would otherwise be allocated
// (with whatever it keeps) at every op even with recording off.
func (g *Tape) recording(out *Value) bool { return out.needsGrad && g.err == nil }

// record adds out's backward to the tape when out requires a gradient.
func (g *Tape) record(out *Value, back func(dy backend.Tensor)) {
	if out.needsGrad && g.err == nil {
		g.nodes = append(g.nodes, node{out: out, back: back})
	}
}

// Input uploads host data as a new value of the given shape that requires
// no gradient (model inputs, targets, masks). The tape owns it.
func (g *Tape) Input(data []float32, shape ...int) *Value {
	s := backend.Shape(shape)
	if g.err != nil {
		return g.placeholder(s)
	}
	if s.NumElements() != len(data) {
		g.failf("Input: %d values for shape %v (%d elements)", len(data), s, s.NumElements())
		return g.placeholder(s)
	}
	v := g.output(s)
	if g.err == nil {
		g.b.Upload(v.data, data)
	}
	return v
}

// Full returns a new value of the given shape with every element c; it
// requires no gradient.
func (g *Tape) Full(c float32, shape ...int) *Value {
	s := backend.Shape(shape)
	v := g.output(s)
	if g.err == nil {
		g.b.Fill(v.data, c)
	}
	return v
}

// Const wraps t, a contiguous float32 tensor of the tape's backend, as a
// value that requires no gradient. The tape does not own t: the caller keeps
// it alive until Reset and frees it. Use it for tensors that live outside
// the graph, such as a KV cache.
func (g *Tape) Const(t backend.Tensor) *Value {
	if g.err != nil {
		return g.placeholder(t.Shape())
	}
	if t.IsZero() || t.DType() != backend.Float32 || !t.Contiguous() {
		g.failf("Const: want a contiguous float32 tensor, got %v", t)
		return g.placeholder(t.Shape())
	}
	return g.newValue(t, t.Shape(), false)
}

// CopyOf returns a new value holding a copy of t, a float32 tensor of the
// tape's backend that may be a strided view (a window of a KV cache laid
// out [batch, maxSeq, heads, headDim], a permutation); it requires no
// gradient and the tape owns the copy.
func (g *Tape) CopyOf(t backend.Tensor) *Value {
	if g.err != nil {
		return g.placeholder(t.Shape())
	}
	if t.IsZero() || t.DType() != backend.Float32 {
		g.failf("CopyOf: want a float32 tensor, got %v", t)
		return g.placeholder(t.Shape())
	}
	v := g.output(t.Shape())
	if g.err == nil {
		g.b.Copy(v.data, t, false)
	}
	return v
}

// Detach returns a value that shares x's data but stops gradients: nothing
// flows back into x through it (DoRA's detached weight norm). A bfloat16
// x gives a bfloat16 value, which the matrix products take.
func (g *Tape) Detach(x *Value) *Value {
	if !g.checkStored("Detach", x) {
		return g.placeholder(shapeOf(x))
	}
	return g.newValue(x.data, x.shape, false)
}

// ToFloat32 returns x in float32: x itself when it is float32, and for a
// weight stored in bfloat16 (see [UploadParamAs]) a float32 copy the tape
// owns, holding the stored values exactly, for the ops that compute only
// in float32. The copy is as large as x in float32, for as long as the
// step lasts. It requires no gradient: bfloat16 values are frozen.
func (g *Tape) ToFloat32(x *Value) *Value {
	if !g.checkStored("ToFloat32", x) {
		return g.placeholder(shapeOf(x))
	}
	if x.data.DType() == backend.Float32 {
		return x
	}
	v := g.output(x.shape)
	if g.err == nil {
		g.b.Copy(v.data, x.data, false)
	}
	return v
}

func shapeOf(v *Value) backend.Shape {
	if v == nil {
		return nil
	}
	return v.shape
}

// ---- gradient plumbing for backward functions ----

// gradDst returns the tensor to write v's gradient contribution into and
// whether to add to its contents (beta = 1) rather than overwrite them. It
// marks v's gradient as written: callers write right away.
func (g *Tape) gradDst(v *Value) (dst backend.Tensor, accumulate bool) {
	if v.param {
		acc := v.hasGrad
		v.hasGrad = true
		return v.grad, acc
	}
	if !v.grad.IsZero() {
		return v.grad, true
	}
	v.grad = g.alloc(v.shape)
	return v.grad, false
}

// gradZeroed returns v's gradient buffer for kernels that can only add into
// their output (ScatterAdd, the norm weight gradients), zero-filling it when
// it holds no gradient yet.
func (g *Tape) gradZeroed(v *Value) backend.Tensor {
	dst, acc := g.gradDst(v)
	if !acc && !dst.IsZero() {
		g.b.Fill(dst, 0)
	}
	return dst
}

// gradWrite returns a tensor of v's shape for kernels that overwrite their
// output with v's whole gradient contribution, and a function to call once
// the kernel has run. When v has no gradient yet the tensor is v's gradient
// itself; otherwise it is a scratch buffer that finish adds in and releases
// (and, when v needs no gradient at all, just releases).
func (g *Tape) gradWrite(v *Value) (dst backend.Tensor, finish func()) {
	if v.needsGrad {
		if d, acc := g.gradDst(v); !acc {
			return d, func() {}
		}
	}
	tmp := g.alloc(v.shape)
	return tmp, func() {
		if v.needsGrad {
			g.b.Axpy(v.grad, 1, tmp)
		}
		g.release(tmp)
	}
}

// give hands t, a buffer from alloc holding a gradient contribution of v's
// size, to v: it becomes v's gradient when v has none yet, is added in
// otherwise, and is released when v needs no gradient.
func (g *Tape) give(v *Value, t backend.Tensor) {
	switch {
	case !v.needsGrad:
		g.release(t)
	case !v.param && v.grad.IsZero():
		v.grad = t.MustReshape(v.shape...)
	default:
		g.addGrad(v, t, 1)
		g.release(t)
	}
}

// addGrad adds alpha·t (v's size, not consumed) to v's gradient.
func (g *Tape) addGrad(v *Value, t backend.Tensor, alpha float32) {
	if !v.needsGrad {
		return
	}
	dst, acc := g.gradDst(v)
	switch {
	case acc:
		g.b.Axpy(dst, alpha, t)
	case alpha == 1:
		g.b.Copy(dst, t.MustReshape(dst.Shape()...), false)
	default:
		g.b.Scale(dst, t.MustReshape(dst.Shape()...), alpha)
	}
}
