package cuda

import (
	"fmt"
	"unsafe"
)

// argKind is the C type of a kernel parameter, as kernels.cu declares it.
type argKind uint8

const (
	argPtr  argKind = iota + 1 // a device pointer (float*, int*, double*)
	argI64                     // long long
	argI32                     // int
	argF32                     // float
	argF64                     // double
	argCopy                    // struct CopyParams, by value
	argAttn                    // struct AttnParams, by value
)

// size is the parameter's size in bytes, as cuLaunchKernel copies it.
func (k argKind) size() int {
	switch k {
	case argI32, argF32:
		return 4
	case argCopy:
		return int(unsafe.Sizeof(copyParams{}))
	case argAttn:
		return int(unsafe.Sizeof(attnParams{}))
	}
	return 8
}

func (k argKind) String() string {
	switch k {
	case argPtr:
		return "pointer"
	case argI64:
		return "long long"
	case argI32:
		return "int"
	case argF32:
		return "float"
	case argF64:
		return "double"
	case argCopy:
		return "CopyParams"
	case argAttn:
		return "AttnParams"
	}
	return fmt.Sprintf("argKind(%d)", uint8(k))
}

// copyMaxRank is COPY_MAX_RANK of kernels.cu.
const copyMaxRank = 8

// copyParams mirrors struct CopyParams of kernels.cu (same field order,
// sizes and alignment: 8 + 4 + 4 + 3·8·8 = 208 bytes).
type copyParams struct {
	n          int64
	rank       int32
	accumulate int32
	shape      [copyMaxRank]int64
	dstStride  [copyMaxRank]int64
	srcStride  [copyMaxRank]int64
}

// kernelSpec names a kernel of kernels.cu and its parameter list.
type kernelSpec struct {
	name   string
	params []argKind
}

// The kernels of kernels.cu, with the parameters of their declarations.
// A test compares these lists with the compiled PTX where clang is
// available; every launch checks its arguments against them.
var (
	kCopyStrided   = &kernelSpec{"copy_strided", []argKind{argCopy, argPtr, argPtr}}
	kCopyStrided32 = &kernelSpec{"copy_strided32", []argKind{argCopy, argPtr, argPtr}}
	kBinary        = &kernelSpec{"binary", []argKind{argI32, argI32, argI64, argI64, argPtr, argPtr, argPtr}}
	kScale         = &kernelSpec{"scale", []argKind{argI64, argF32, argPtr, argPtr}}
	kAxpy          = &kernelSpec{"axpy", []argKind{argI64, argF32, argPtr, argPtr}}
	kWidenBF16     = &kernelSpec{"widen_bf16", []argKind{argI64, argI32, argPtr, argPtr}}
	kUnary         = &kernelSpec{"unary", []argKind{argI32, argI64, argPtr, argPtr}}
	kUnaryGrad     = &kernelSpec{"unary_grad", []argKind{argI32, argI64, argPtr, argPtr, argPtr}}
	kReduceRows    = &kernelSpec{"reduce_rows", []argKind{argI32, argI32, argI32, argPtr, argPtr}}
	kColsumPartial = &kernelSpec{"colsum_partial", []argKind{argI32, argI32, argI32, argPtr, argPtr}}
	kColsumFinal   = &kernelSpec{"colsum_final", []argKind{argI32, argI32, argI32, argPtr, argPtr}}
	kSoftmax       = &kernelSpec{"softmax", []argKind{argI32, argI32, argI32, argF32, argI32, argI32, argI32, argPtr, argPtr}}
	kSoftmaxGrad   = &kernelSpec{"softmax_grad", []argKind{argI32, argI32, argI32, argF32, argI32, argI32, argI32, argPtr, argPtr, argPtr}}
	kRMSNorm       = &kernelSpec{"rmsnorm", []argKind{argI32, argI32, argF32, argPtr, argPtr, argPtr}}
	kRMSNormGrad   = &kernelSpec{"rmsnorm_grad", []argKind{argI32, argI32, argF32, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr}}
	kRMSNormDW     = &kernelSpec{"rmsnorm_dw_partial", []argKind{argI32, argI32, argI32, argPtr, argPtr, argPtr, argPtr}}
	kLayerNorm     = &kernelSpec{"layernorm", []argKind{argI32, argI32, argF32, argPtr, argPtr, argPtr, argPtr}}
	kLayerNormGrad = &kernelSpec{"layernorm_grad", []argKind{argI32, argI32, argF32, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr}}
	kLayerNormPG   = &kernelSpec{"layernorm_params_partial", []argKind{argI32, argI32, argI32, argPtr, argPtr, argPtr, argPtr, argPtr}}
	kRoPE          = &kernelSpec{"rope", []argKind{argI32, argI32, argI64, argI32, argI32, argI32, argI32, argF32, argPtr, argPtr, argPtr}}
	kGather        = &kernelSpec{"gather", []argKind{argI64, argI32, argPtr, argPtr, argPtr}}
	kGatherBF16    = &kernelSpec{"gather_bf16", []argKind{argI64, argI32, argPtr, argPtr, argPtr}}
	kScatterAdd    = &kernelSpec{"scatter_add", []argKind{argI32, argI32, argPtr, argPtr, argPtr}}
	kCrossEntropy  = &kernelSpec{"cross_entropy", []argKind{argI32, argI32, argI32, argF32, argPtr, argPtr, argPtr}}
	kCrossEntGrad  = &kernelSpec{"cross_entropy_grad", []argKind{argI32, argI32, argI32, argF32, argF32, argPtr, argPtr, argPtr}}
	kAdamW         = &kernelSpec{"adamw", []argKind{argI64, argF64, argF64, argF64, argF64, argF64, argF64, argPtr, argPtr, argPtr, argPtr}}
	kAttnDelta     = &kernelSpec{"attn_delta", []argKind{argAttn, argPtr, argPtr, argPtr}}
)

// The fused-attention kernels, one per head-column chunk of attnChunks.
var (
	kAttnFwd = [len(attnChunks)]*kernelSpec{attnFwdSpec("attn_fwd_64"), attnFwdSpec("attn_fwd_128"), attnFwdSpec("attn_fwd_256")}
	kAttnDQ  = [len(attnChunks)]*kernelSpec{attnDQSpec("attn_dq_64"), attnDQSpec("attn_dq_128"), attnDQSpec("attn_dq_256")}
	kAttnDKV = [len(attnChunks)]*kernelSpec{attnDKVSpec("attn_dkdv_64"), attnDKVSpec("attn_dkdv_128"), attnDKVSpec("attn_dkdv_256")}
)

// attn_fwd_*(AttnParams, out, lse, q, k, v, seg).
func attnFwdSpec(name string) *kernelSpec {
	return &kernelSpec{name, []argKind{argAttn, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr}}
}

// attn_dq_*(AttnParams, dq, q, k, v, dout, lse, delta, seg).
func attnDQSpec(name string) *kernelSpec {
	return &kernelSpec{name, []argKind{argAttn, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr}}
}

// attn_dkdv_*(AttnParams, dk, dv, q, k, v, dout, lse, delta, seg).
func attnDKVSpec(name string) *kernelSpec {
	return &kernelSpec{name, []argKind{argAttn, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr}}
}

// kernelSpecs lists every kernel, in the order the module's functions are
// looked up.
var kernelSpecs = []*kernelSpec{
	kCopyStrided, kCopyStrided32, kBinary, kScale, kAxpy, kUnary, kUnaryGrad, kReduceRows,
	kColsumPartial, kColsumFinal, kSoftmax, kSoftmaxGrad, kRMSNorm, kRMSNormGrad, kRMSNormDW,
	kLayerNorm, kLayerNormGrad, kLayerNormPG, kRoPE, kGather, kScatterAdd, kCrossEntropy,
	kCrossEntGrad, kAdamW, kWidenBF16, kAttnDelta, kGatherBF16,
	kAttnFwd[0], kAttnFwd[1], kAttnFwd[2], kAttnDQ[0], kAttnDQ[1], kAttnDQ[2], kAttnDKV[0], kAttnDKV[1], kAttnDKV[2],
}

// Limits of the argument pack: more than any kernel needs.
const (
	maxKernelArgs = 16
	argArenaWords = 128 // 1 KiB of argument values
)

// argPack builds the kernelParams array of cuLaunchKernel: an array of
// pointers, one per parameter, each to that parameter's value. The values
// live in arena, 8-byte aligned. A Backend owns one argPack, allocated on
// its own and pinned (runtime.Pinner) for each cuLaunchKernel call, so
// passing ptrs — Go memory holding Go pointers into arena — to C is
// allowed, and no argument memory is allocated per launch. cuLaunchKernel
// copies the values before it returns, so the pack is reused by the next
// launch at once.
type argPack struct {
	arena [argArenaWords]uint64
	ptrs  [maxKernelArgs]unsafe.Pointer
	spec  *kernelSpec
	words int // arena words used
	n     int // parameters pushed
	err   error
}

// start begins the arguments of a launch of k.
func (p *argPack) start(k *kernelSpec) {
	p.spec, p.words, p.n, p.err = k, 0, 0, nil
	clear(p.ptrs[:])
}

// slot reserves the value of the next parameter, of kind k, and returns
// where to write it; nil (with p.err set) when it does not match the
// kernel's declaration or the pack is full.
func (p *argPack) slot(k argKind) unsafe.Pointer {
	if p.err != nil {
		return nil
	}
	switch {
	case p.spec == nil:
		p.err = fmt.Errorf("kernel arguments pushed before start")
	case p.n >= len(p.spec.params):
		p.err = fmt.Errorf("kernel %s: argument %d is one too many (it takes %d)", p.spec.name, p.n, len(p.spec.params))
	case p.spec.params[p.n] != k:
		p.err = fmt.Errorf("kernel %s: argument %d is a %v, want a %v", p.spec.name, p.n, k, p.spec.params[p.n])
	case p.n >= maxKernelArgs:
		p.err = fmt.Errorf("kernel %s: more than %d arguments", p.spec.name, maxKernelArgs)
	}
	words := (k.size() + 7) / 8
	if p.err == nil && p.words+words > argArenaWords {
		p.err = fmt.Errorf("kernel %s: arguments exceed %d bytes", p.spec.name, argArenaWords*8)
	}
	if p.err != nil {
		return nil
	}
	at := unsafe.Pointer(&p.arena[p.words])
	// Clear the whole slot, so a 4-byte value is followed by zeros.
	for i := 0; i < words; i++ {
		p.arena[p.words+i] = 0
	}
	p.ptrs[p.n] = at
	p.words += words
	p.n++
	return at
}

func (p *argPack) ptr(dev uintptr) {
	if s := p.slot(argPtr); s != nil {
		*(*uint64)(s) = uint64(dev)
	}
}

func (p *argPack) i64(v int64) {
	if s := p.slot(argI64); s != nil {
		*(*int64)(s) = v
	}
}

// i32 pushes an int; v must fit (callers have checked their extents).
func (p *argPack) i32(v int) {
	if s := p.slot(argI32); s != nil {
		*(*int32)(s) = int32(v)
	}
}

func (p *argPack) bool32(v bool) {
	if v {
		p.i32(1)
	} else {
		p.i32(0)
	}
}

func (p *argPack) f32(v float32) {
	if s := p.slot(argF32); s != nil {
		*(*float32)(s) = v
	}
}

func (p *argPack) f64(v float64) {
	if s := p.slot(argF64); s != nil {
		*(*float64)(s) = v
	}
}

func (p *argPack) copyParams(c *copyParams) {
	if s := p.slot(argCopy); s != nil {
		*(*copyParams)(s) = *c
	}
}

func (p *argPack) attnParams(a *attnParams) {
	if s := p.slot(argAttn); s != nil {
		*(*attnParams)(s) = *a
	}
}

// finish checks that every parameter was given and returns the address of
// the pointer array for cuLaunchKernel.
func (p *argPack) finish() (unsafe.Pointer, error) {
	if p.err != nil {
		return nil, p.err
	}
	if p.spec == nil {
		return nil, fmt.Errorf("kernel launch without arguments started")
	}
	if p.n != len(p.spec.params) {
		return nil, fmt.Errorf("kernel %s: %d arguments given, it takes %d", p.spec.name, p.n, len(p.spec.params))
	}
	return unsafe.Pointer(&p.ptrs[0]), nil
}

// dim3 is a grid or block extent.
type dim3 struct{ x, y, z int }

// Launch geometry. The limits are CUDA's for every compute capability the
// backend supports (3.5 and up): 1024 threads per block, 65535 blocks in
// grid y and z, 2³¹−1 in x.
const (
	elemBlock    = 256
	maxGridX     = 1<<31 - 1
	maxGridYZ    = 65535
	maxBlock     = 1024
	rowBlock     = 256 // threads per block of the row kernels
	rowCache     = 16  // ROW_CACHE of kernels.cu
	maxGroupRows = 64  // rows a norm gradient's group sums in float
	colTile      = 32  // COL_TILE of kernels.cu
	colLanes     = 8   // COL_LANES
	maxChunks    = 256 // row chunks of a column sum, and so partials per column
	minChunkLen  = 64
)

// elementwiseGrid returns the launch of a grid-stride kernel over n items:
// enough blocks of elemBlock threads to cover n, at most blocksPerSM per
// multiprocessor (more only queue up), at least one.
func elementwiseGrid(n int64, sms int) (grid, block dim3) {
	const blocksPerSM = 32
	blocks := (n + elemBlock - 1) / elemBlock
	blocks = min(blocks, int64(max(sms, 1)*blocksPerSM))
	return dim3{int(max(blocks, 1)), 1, 1}, dim3{elemBlock, 1, 1}
}

// rowGeometry returns the launch of a row kernel over rows rows of cols
// elements: a group of threads per row (blockDim.x, a power of two from 32
// to rowBlock, about one thread per 8 elements) and as many row groups per
// block as fill rowBlock threads (blockDim.y). Blocks never exceed
// rowBlock (256) threads, so a kernel launches whatever registers it
// needs (256 × 255 fit a multiprocessor's 64K).
func rowGeometry(rows, cols, sms int) (grid, block dim3) {
	tpr := 32
	for tpr < rowBlock && tpr*8 < cols {
		tpr *= 2
	}
	rpb := rowBlock / tpr
	blocks := (rows + rpb - 1) / rpb
	blocks = min(blocks, max(sms, 1)*32)
	return dim3{max(blocks, 1), 1, 1}, dim3{tpr, rpb, 1}
}

// chunking returns how the column sums split rows: chunks of rowsPerChunk
// rows (the last may be shorter), at most maxChunks of them, none when
// rows is 0.
func chunking(rows int) (chunks, rowsPerChunk int) {
	if rows <= 0 {
		return 0, minChunkLen
	}
	rowsPerChunk = max(minChunkLen, (rows+maxChunks-1)/maxChunks)
	return (rows + rowsPerChunk - 1) / rowsPerChunk, rowsPerChunk
}

// columnGrid returns the launch of a *_partial kernel.
func columnGrid(cols, chunks int) (grid, block dim3) {
	return dim3{(cols + colTile - 1) / colTile, chunks, 1}, dim3{colTile, colLanes, 1}
}

// valid checks a launch against the hardware limits.
func (g dim3) validGrid() bool {
	return g.x >= 1 && g.y >= 1 && g.z >= 1 && g.x <= maxGridX && g.y <= maxGridYZ && g.z <= maxGridYZ
}

func (b dim3) validBlock() bool {
	return b.x >= 1 && b.y >= 1 && b.z >= 1 && b.x*b.y*b.z <= maxBlock
}
