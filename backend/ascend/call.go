package ascend

import (
	"fmt"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// view is a tensor as aclCreateTensor describes it: a storage of elems
// elements at device address ptr, and a view of it with an element offset,
// extents and element strides.
type view struct {
	ptr     uintptr
	elems   int
	off     int
	shape   []int
	strides []int
	dtype   int32
}

// reshape returns a contiguous view of the same elements with another
// shape (v must be contiguous).
func (v view) reshape(shape ...int) view {
	v.shape = append([]int(nil), shape...)
	v.strides = backend.Shape(v.shape).ContiguousStrides()
	return v
}

// sub returns a strided view of v's storage at element offset off relative
// to v's.
func (v view) sub(off int, shape, strides []int) view {
	v.off += off
	v.shape = append([]int(nil), shape...)
	v.strides = append([]int(nil), strides...)
	return v
}

// call is the scope of one op of the interface: it creates the aclnn
// descriptions and temporaries the op needs, launches the aclnn operators,
// and afterwards destroys the descriptions and returns the temporaries to
// the pool. The first failure is kept in err and turns later steps into
// no-ops, so op code reads as a straight line.
type call struct {
	b       *Backend
	op      backend.Op
	all     []backend.Tensor
	err     error
	handles []handle
	temps   []tempBlock
}

type handle struct {
	ptr     uintptr
	destroy uintptr
	name    string
}

type tempBlock struct {
	ptr   uintptr
	class int64
}

// do runs f as op on the backend's thread and context and records its
// failure as an *backend.OpError naming op and the shapes of all.
func (b *Backend) do(op backend.Op, all []backend.Tensor, f func(c *call)) {
	if err := b.enter(); err != nil {
		b.leave()
		b.Record(&backend.OpError{Op: string(op), Shapes: shapes(all), Err: err})
		return
	}
	defer b.leave()
	c := &call{b: b, op: op, all: all}
	f(c)
	c.finish()
	if c.err != nil {
		b.Record(&backend.OpError{Op: string(op), Shapes: shapes(all), Err: c.err})
	}
}

func shapes(ts []backend.Tensor) []backend.Shape {
	s := make([]backend.Shape, len(ts))
	for i, t := range ts {
		s[i] = t.Shape()
	}
	return s
}

func (c *call) fail(err error) {
	if c.err == nil && err != nil {
		c.err = err
	}
}

// finish destroys the descriptions (in reverse order) and returns the
// temporaries to the pool. Queued operators have captured what they need,
// and later work on the stream runs after them, so both are safe at once.
func (c *call) finish() {
	l := c.b.lib
	for i := len(c.handles) - 1; i >= 0; i-- {
		h := c.handles[i]
		c.fail(l.status(h.name, ccall(h.destroy, h.ptr)))
	}
	c.handles = nil
	for _, t := range c.temps {
		c.b.put(t.ptr, t.class)
	}
	c.temps = nil
}

// block takes a device block of at least bytes bytes from the pool for
// the duration of the op.
func (c *call) block(bytes int64) (uintptr, error) {
	ptr, class, err := c.b.alloc(bytes)
	if err != nil {
		return 0, err
	}
	c.temps = append(c.temps, tempBlock{ptr, class})
	return ptr, nil
}

// tensorOf returns the view of an interface tensor, checking that this
// backend owns it.
func (c *call) tensorOf(t backend.Tensor) view {
	if c.err != nil {
		return view{}
	}
	buf, err := c.b.bufferOf(c.op, c.all, t)
	if err != nil {
		c.fail(err)
		return view{}
	}
	return view{ptr: buf.Ptr, elems: buf.N, off: t.Offset(), shape: append([]int(nil), t.Shape()...),
		strides: append([]int(nil), t.Strides()...), dtype: aclFloat}
}

// temp returns a contiguous float32 temporary of the given shape.
func (c *call) temp(shape ...int) view {
	if c.err != nil {
		return view{}
	}
	n := backend.Shape(shape).NumElements()
	ptr, err := c.block(int64(max(n, 1)) * 4)
	if err != nil {
		c.fail(err)
		return view{}
	}
	v := view{ptr: ptr, elems: max(n, 1), dtype: aclFloat}
	return v.reshape(shape...)
}

// uploadF32 copies host data into a temporary of the given shape.
func (c *call) uploadF32(data []float32, shape ...int) view {
	v := c.temp(shape...)
	if c.err != nil || len(data) == 0 {
		return v
	}
	c.fail(c.b.stage(v.ptr, int64(v.elems)*4, unsafe.Pointer(&data[0]), int64(len(data))*4))
	return v
}

// uploadI64 copies host indices into an int64 temporary of the given shape.
func (c *call) uploadI64(data []int64, shape ...int) view {
	return c.uploadHost(unsafe.Pointer(unsafe.SliceData(data)), len(data), 8, aclInt64, shape)
}

// uploadMask copies a host mask into an ACL_BOOL temporary of the given
// shape (one byte per element, 0 or 1).
func (c *call) uploadMask(data []bool, shape ...int) view {
	return c.uploadHost(unsafe.Pointer(unsafe.SliceData(data)), len(data), 1, aclBool, shape)
}

// uploadHost copies n host elements of size bytes each, at data, into a
// temporary of dtype dt and the given shape (one element at least, so
// that an empty upload still has an address).
func (c *call) uploadHost(data unsafe.Pointer, n, size int, dt int32, shape []int) view {
	if c.err != nil {
		return view{}
	}
	elems := max(n, 1)
	ptr, err := c.block(int64(elems * size))
	if err != nil {
		c.fail(err)
		return view{}
	}
	v := view{ptr: ptr, elems: elems, dtype: dt}.reshape(shape...)
	if n > 0 {
		c.fail(c.b.stage(ptr, int64(elems*size), data, int64(n*size)))
	}
	return v
}

// tensor creates the aclTensor for v.
func (c *call) tensor(v view) uintptr {
	if c.err != nil {
		return 0
	}
	l := c.b.lib
	nd := len(v.shape)
	dims := make([]int64, nd+1) // never empty, so &dims[0] is valid
	strides := make([]int64, nd+1)
	for i := 0; i < nd; i++ {
		dims[i] = int64(v.shape[i])
		strides[i] = int64(v.strides[i])
	}
	storage := []int64{int64(v.elems)}
	r := ccall(l.createTensor, uintptr(unsafe.Pointer(&dims[0])), uintptr(nd), uintptr(v.dtype),
		uintptr(unsafe.Pointer(&strides[0])), uintptr(v.off), aclFormatND,
		uintptr(unsafe.Pointer(&storage[0])), 1, v.ptr)
	return c.own(r, "aclCreateTensor", l.destroyTensor, "aclDestroyTensor")
}

// scalar creates a float32 aclScalar.
func (c *call) scalar(x float32) uintptr {
	if c.err != nil {
		return 0
	}
	l := c.b.lib
	r := ccall(l.createScalar, uintptr(unsafe.Pointer(&x)), aclFloat)
	return c.own(r, "aclCreateScalar", l.destroyScalar, "aclDestroyScalar")
}

// intArray creates an aclIntArray.
func (c *call) intArray(vals ...int64) uintptr {
	if c.err != nil {
		return 0
	}
	l := c.b.lib
	a := append(append([]int64(nil), vals...), 0)
	r := ccall(l.createIntArray, uintptr(unsafe.Pointer(&a[0])), uintptr(len(vals)))
	return c.own(r, "aclCreateIntArray", l.destroyIntArray, "aclDestroyIntArray")
}

// boolArray creates an aclBoolArray.
func (c *call) boolArray(vals ...bool) uintptr {
	if c.err != nil {
		return 0
	}
	l := c.b.lib
	a := append(append([]bool(nil), vals...), false)
	r := ccall(l.createBoolArray, uintptr(unsafe.Pointer(&a[0])), uintptr(len(vals)))
	return c.own(r, "aclCreateBoolArray", l.destroyBoolArray, "aclDestroyBoolArray")
}

// own keeps r, which the ACL function create returned, for destruction
// with destroy (named destroyName) when the op finishes. A null r means
// create failed: the call fails with ACL's message.
func (c *call) own(r uintptr, create string, destroy uintptr, destroyName string) uintptr {
	if r == 0 {
		c.fail(&ACLError{Call: create, Message: c.b.lib.recentMessage()})
		return 0
	}
	c.handles = append(c.handles, handle{r, destroy, destroyName})
	return r
}

// fn returns the operator's two phases, or fails when the operator
// libraries lack it.
func (c *call) fn(name string) (opFn, bool) {
	f, ok := c.b.lib.ops[name]
	if !ok {
		c.fail(fmt.Errorf("aclnn%s is not in the operator libraries (%s)", name, c.b.lib.loc.layout))
	}
	return f, ok
}

// launch runs operator name: phase one with args followed by the
// workspace-size and executor out-parameters, then phase two with a
// workspace from the pool, on the backend's stream.
func (c *call) launch(name string, args ...uintptr) {
	if c.err != nil {
		return
	}
	f, ok := c.fn(name)
	if !ok {
		return
	}
	var ws uint64
	var ex uintptr
	st := wsCall(f.getWS, uintptr(unsafe.Pointer(&ws)), uintptr(unsafe.Pointer(&ex)), args)
	if st != 0 {
		c.fail(c.b.lib.status("aclnn"+name+"GetWorkspaceSize", uintptr(uint32(st))))
		return
	}
	c.run(name, f, ws, ex)
}

// run is phase two: aclnnX(workspace, workspaceSize, executor, stream).
// The workspace returns to the pool right after the launch; the stream
// orders its reuse after this operator.
func (c *call) run(name string, f opFn, ws uint64, ex uintptr) {
	var wsPtr uintptr
	if ws > 0 {
		ptr, err := c.block(int64(ws))
		if err != nil {
			// The executor was never launched; CANN offers no way to free
			// a one-shot executor, so it is left to the library.
			c.fail(fmt.Errorf("workspace of %d bytes for aclnn%s: %w", ws, name, err))
			return
		}
		wsPtr = ptr
	}
	r := ccall(f.run, wsPtr, uintptr(ws), ex, c.b.stream)
	c.fail(c.b.lib.status("aclnn"+name, r))
}

// launchRmsNorm and launchLayerNorm are the two operators whose phase one
// takes a double.
func (c *call) launchRmsNorm(x, gamma uintptr, eps float64, y, rstd uintptr) {
	if c.err != nil {
		return
	}
	f, ok := c.fn("RmsNorm")
	if !ok {
		return
	}
	var ws uint64
	var ex uintptr
	if st := c.b.lib.rmsNormWS(x, gamma, eps, y, rstd, &ws, &ex); st != 0 {
		c.fail(c.b.lib.status("aclnnRmsNormGetWorkspaceSize", uintptr(uint32(st))))
		return
	}
	c.run("RmsNorm", f, ws, ex)
}

func (c *call) launchLayerNorm(input, normShape, weight, bias uintptr, eps float64, out, mean, rstd uintptr) {
	if c.err != nil {
		return
	}
	f, ok := c.fn("LayerNorm")
	if !ok {
		return
	}
	var ws uint64
	var ex uintptr
	if st := c.b.lib.layerNormWS(input, normShape, weight, bias, eps, out, mean, rstd, &ws, &ex); st != 0 {
		c.fail(c.b.lib.status("aclnnLayerNormGetWorkspaceSize", uintptr(uint32(st))))
		return
	}
	c.run("LayerNorm", f, ws, ex)
}
