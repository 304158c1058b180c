package ascend

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/devpool"
)

// Backend is an Ascend device with one ACL stream. Ops are enqueued on the
// stream and return at once; Sync (and Download) wait for them. See package
// backend for the error convention.
type Backend struct {
	backend.Recorder

	lib    *lib
	opts   Options
	soc    string // the chip, as aclrtGetSocName names it ("" when it did not say)
	dev    int32
	ctx    uintptr // aclrtContext
	stream uintptr // aclrtStream
	desc   string
	// deviceTotal is the device's memory in bytes, asked once in Open
	// (see deviceMemory); 0 where ACL did not say.
	deviceTotal int64

	live   map[*buffer]struct{}
	pool   *devpool.Pool
	host   hostPool
	tables map[tableKey]*buffer // cached device constants (RoPE tables, masks)
	closed bool
}

var errClosed = errors.New("ascend: backend is closed")

// lockThread pins the goroutine to its OS thread: ACL's current context
// and its most recent error message are per thread, so every call that
// uses them must come from one thread.
func lockThread()   { runtime.LockOSThread() }
func unlockThread() { runtime.UnlockOSThread() }

// Open opens an Ascend device: it loads the libraries (see the package
// documentation for where it looks), initialises ACL once per process,
// sets the device and creates a context and a stream for the backend.
func Open(o Options) (*Backend, error) {
	l, err := loadLibrary()
	if err != nil {
		return nil, err
	}
	if o.Device < 0 || o.Device > math.MaxInt32 {
		return nil, fmt.Errorf("ascend: device id %d out of range", o.Device)
	}
	// An unknown mode is refused before the device is touched; the chip
	// decides the rest below.
	if _, _, err := resolveMatMul(o.MatMul, ""); err != nil {
		return nil, err
	}
	lockThread()
	defer unlockThread()
	if err := l.ensureInit(); err != nil {
		return nil, fmt.Errorf("ascend: %w", err)
	}
	// The chip decides which matrix-product modes exist.
	soc := l.socName()
	mode, why, err := resolveMatMul(o.MatMul, soc)
	if err != nil {
		return nil, err
	}
	o.MatMul = mode
	b := &Backend{lib: l, opts: o, soc: soc, dev: int32(o.Device), live: map[*buffer]struct{}{}, tables: map[tableKey]*buffer{}}
	b.pool = b.newDevicePool()
	b.host = b.newHostPool()
	dev := uintptr(o.Device)
	if err := l.status("aclrtSetDevice", ccall(l.setDevice, dev)); err != nil {
		return nil, fmt.Errorf("ascend: open device %d: %w", o.Device, err)
	}
	if err := l.status("aclrtCreateContext", ccall(l.createContext, uintptr(unsafe.Pointer(&b.ctx)), dev)); err != nil {
		ccall(l.resetDevice, dev)
		return nil, fmt.Errorf("ascend: open device %d: %w", o.Device, err)
	}
	if err := l.status("aclrtCreateStream", ccall(l.createStream, uintptr(unsafe.Pointer(&b.stream)))); err != nil {
		ccall(l.destroyContext, b.ctx)
		ccall(l.resetDevice, dev)
		return nil, fmt.Errorf("ascend: open device %d: %w", o.Device, err)
	}
	// The device's size is informative only: a failure to get it leaves
	// deviceTotal 0 and Open goes on as before.
	b.deviceTotal = l.deviceMemory()
	desc := fmt.Sprintf("%s (cubeMathType %d)", o.MatMul, o.MatMul.cubeMathType())
	if o.MatMul == MatMulFast {
		inputs := "HFLOAT32"
		if float16Cube(soc) {
			inputs = "FLOAT16"
		}
		desc = fmt.Sprintf("fast (cubeMathType %d: %s inputs)", o.MatMul.cubeMathType(), inputs)
	}
	if why != "" {
		desc += ", " + why
	}
	b.desc = fmt.Sprintf("%s device %d, matmul %s; %s", chip(soc), o.Device, desc, l.describe())
	return b, nil
}

// enter makes the backend's context current on this (locked) thread.
// Every entry point calls it and must call leave afterwards.
func (b *Backend) enter() error {
	lockThread()
	if b.closed {
		return errClosed
	}
	return b.lib.status("aclrtSetCurrentContext", ccall(b.lib.setCurrentContext, b.ctx))
}

func (b *Backend) leave() { unlockThread() }

// Name returns "ascend".
func (b *Backend) Name() string { return "ascend" }

// Device describes the chip, the device id, the matmul mode (and, where
// the chip chose it, why) and where the libraries came from.
func (b *Backend) Device() string { return b.desc }

// MatMulMode returns the matrix-product mode the backend runs: the one it
// was opened with, or for MatMulAuto the one chosen for the chip.
func (b *Backend) MatMulMode() MatMulMode { return b.opts.MatMul }

// opNeeds lists the aclnn operators each op of the interface is built
// from; an op is supported when all of them were found.
var opNeeds = map[backend.Op][]string{
	backend.OpCopy:             {"InplaceCopy", "InplaceAdd", "Flip"},
	backend.OpFill:             {"InplaceFillScalar"},
	backend.OpMatMul:           {"Mm", "BatchMatMul", "Matmul", "Muls", "InplaceMuls", "InplaceAdd", "InplaceFillScalar"},
	backend.OpBinary:           {"Add", "Sub", "Mul", "Div"},
	backend.OpScale:            {"Muls"},
	backend.OpAxpy:             {"InplaceAdd"},
	backend.OpUnary:            {"Exp", "Log", "Sqrt", "Rsqrt", "Tanh", "Silu", "GeluV2", "Relu", "Neg", "Mul", "Sigmoid"},
	backend.OpUnaryGrad:        {"Exp", "Mul", "Div", "Sqrt", "Rsqrt", "Muls", "InplaceMuls", "TanhBackward", "Tanh", "SiluBackward", "GeluBackwardV2", "ThresholdBackward", "Neg", "Sigmoid", "SigmoidBackward"},
	backend.OpReduceRows:       {"ReduceSum", "Amax", "Mul"},
	backend.OpSumColumns:       {"ReduceSum", "InplaceFillScalar"},
	backend.OpSoftmax:          {"Softmax", "Muls", "Add", "InplaceAdd", "InplaceCopy"},
	backend.OpSoftmaxGrad:      {"SoftmaxBackward", "Muls"},
	backend.OpRMSNorm:          {"RmsNorm", "InplaceCopy"},
	backend.OpRMSNormGrad:      {"RmsNorm", "RmsNormGrad", "InplaceAdd", "InplaceCopy"},
	backend.OpLayerNorm:        {"LayerNorm", "InplaceCopy"},
	backend.OpLayerNormGrad:    {"LayerNorm", "LayerNormBackward", "InplaceAdd", "InplaceCopy"},
	backend.OpRoPE:             {"Mul", "Sub", "Add", "InplaceCopy"},
	backend.OpGather:           {"Embedding"},
	backend.OpScatterAdd:       {"IndexAdd"},
	backend.OpCrossEntropy:     {"LogSoftmax", "Gather", "ReduceSum", "Muls", "InplaceAdd", "InplaceFillScalar", "InplaceMaskedFillScalar"},
	backend.OpCrossEntropyGrad: {"Softmax", "InplaceAdds", "ScatterAdd", "InplaceMuls", "InplaceFillScalar", "InplaceMaskedFillScalar"},
	backend.OpAdamW:            {"InplaceMuls", "InplaceAdd", "Mul", "Sqrt", "InplaceAdds", "Div"},
	// The fused attention (attention.go): CANN's operators, the
	// conversions of their statistics, and the composition that calls
	// with a soft-cap take.
	backend.OpAttention: {"FlashAttentionScore", "FlashAttentionVarLenScore", "Log", "Add", "InplaceCopy", "Embedding",
		"BatchMatMul", "Muls", "InplaceMuls", "Tanh", "InplaceAdd", "Amax", "Sub", "Exp", "ReduceSum", "Div"},
	backend.OpAttentionGrad: {"FlashAttentionScoreGrad", "FlashAttentionUnpaddingScoreGrad", "InplaceCopy", "InplaceFillScalar", "Embedding",
		"BatchMatMul", "Muls", "InplaceMuls", "Tanh", "InplaceAdd", "Sub", "Exp", "Mul", "ReduceSum", "TanhBackward"},
}

// Supports reports whether every aclnn operator op is built from was found
// in the operator libraries; for the fused attention also whether the chip
// has CANN's attention operators (see flashAttentionChip).
func (b *Backend) Supports(op backend.Op) bool {
	needs, ok := opNeeds[op]
	if !ok {
		return false
	}
	if (op == backend.OpAttention || op == backend.OpAttentionGrad) && !flashAttentionChip(b.soc) {
		return false
	}
	for _, n := range needs {
		if _, ok := b.lib.ops[n]; !ok {
			return false
		}
	}
	return true
}

// Sync waits for the stream and returns (and clears) the first recorded
// error.
func (b *Backend) Sync() error {
	err := b.enter()
	defer b.leave()
	if err != nil {
		b.Record(err)
		return b.Take()
	}
	b.syncStream()
	return b.Take()
}

// syncStream waits for the stream, records its failure, and recycles the
// host staging buffers that queued copies were reading.
//
// After a failed synchronisation the staging blocks stay pending: the
// failure may be the wait's own (a timeout, a bad handle) with copies
// still queued that will read them, and reusing a block then would hand
// a later upload's data to an earlier copy. They are recycled by the next
// successful synchronisation, or freed by Close; stage synchronises (and
// fails) before pending blocks exceed stagingLimit.
func (b *Backend) syncStream() bool {
	if err := b.lib.status("aclrtSynchronizeStream", ccall(b.lib.synchronizeStream, b.stream)); err != nil {
		b.Record(fmt.Errorf("ascend: queued work failed: %w", err))
		return false
	}
	b.host.recycle()
	return true
}

// Close waits for pending work, frees every buffer, the pool and the
// staging memory, and releases the stream, the context and the device. It
// returns the first error among a pending recorded one and the releases.
func (b *Backend) Close() error {
	if b.closed {
		return nil
	}
	err := b.enter()
	defer b.leave()
	if err != nil {
		return err
	}
	l := b.lib
	b.syncStream()
	first := b.Take()
	note := func(err error) {
		if first == nil && err != nil {
			first = err
		}
	}
	for buf := range b.live {
		b.put(buf.Ptr, buf.Class)
		buf.Freed = true
		delete(b.live, buf)
	}
	for k, t := range b.tables {
		b.put(t.Ptr, t.Class)
		delete(b.tables, k)
	}
	note(b.pool.Release())
	note(b.host.release())
	note(l.status("aclrtDestroyStream", ccall(l.destroyStream, b.stream)))
	note(l.status("aclrtDestroyContext", ccall(l.destroyContext, b.ctx)))
	note(l.status("aclrtResetDevice", ccall(l.resetDevice, uintptr(b.dev))))
	b.closed = true
	if first != nil {
		return fmt.Errorf("ascend: close: %w", first)
	}
	return nil
}
