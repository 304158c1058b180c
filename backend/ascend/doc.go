// Package ascend is the Huawei Ascend backend: every op of the backend
// interface runs on an Ascend NPU through CANN's ACL runtime and its aclnn
// operators, loaded at run time with github.com/ebitengine/purego, so the
// package needs no cgo.
//
// # Libraries
//
// Three libraries are loaded: libascendcl.so (the runtime: devices,
// contexts, streams, memory, copies, error messages), libnnopbase.so (the
// aclTensor, aclScalar, aclIntArray and aclBoolArray descriptions) and the
// operators, either libopapi.so or, in newer CANN releases, the split
// libopapi_math.so, libopapi_nn.so and libopapi_transformer.so. Where one
// folder holds both layouts libopapi.so is used; the two are never loaded
// together. The folders searched, in order, are every entry of
// SORA_ASCEND_PATH (and its lib64), $ASCEND_HOME_PATH/lib64,
// $ASCEND_TOOLKIT_HOME/lib64, /usr/local/Ascend/ascend-toolkit/latest/lib64
// and every entry of LD_LIBRARY_PATH. When something is missing, Open and
// the driver's Probe return a *backend.UnavailableError that names what
// is missing and lists every folder with what was found there. The
// libraries are loaded once per process.
//
// CANN is released for Linux only. On Windows, Open and Probe report the
// backend unavailable for that reason without searching; on systems other
// than Linux, macOS and Windows likewise, and there the package does not
// use purego at all, so that it builds with CGO_ENABLED=0 everywhere.
//
// # Execution
//
// Each Backend owns an ACL context and one stream. An op validates its
// arguments with package backend's Check functions, describes its tensors
// with aclCreateTensor (view extents, element strides, element offset into
// the whole buffer, format ND), and launches aclnn operators through their
// two phases (aclnnXGetWorkspaceSize, then aclnnX with a workspace) on the
// stream. Nothing waits: Sync and Download call aclrtSynchronizeStream.
// Every status is checked; a failure becomes an *ACLError naming the call
// and carrying aclGetRecentErrMsg's message, recorded under the op that
// made it (the sticky-error convention of package backend); one for lack
// of memory (ACL_ERROR_RT_MEMORY_ALLOCATION, ACL_ERROR_BAD_ALLOC) matches
// backend.ErrOutOfMemory (errors.Is). Because ACL's
// current context and error message are per thread, every entry point
// locks its goroutine to its OS thread and makes the context current.
//
// Device memory comes from a caching pool: buffers, temporaries and
// workspaces return to it and are reused in stream order, and go back to
// the device (aclrtFree) on Close or when an allocation fails. Uploads are
// staged in page-locked host memory (aclrtMallocHost) and copied with
// aclrtMemcpyAsync, so Upload does not wait either. aclrtMemcpyAsync needs
// 64-byte aligned source and destination addresses, so the elements of a
// view before its first aligned address (at most 15) go through an aligned
// temporary and aclnnInplaceCopy, still in stream order. Download waits
// for the stream and reads with the synchronous aclrtMemcpy, which has no
// alignment rule. Open asks aclrtGetMemInfo once for the device's memory
// (ACL_HBM_MEM, or ACL_DDR_MEM where that reports nothing, as on 310-class
// inference parts), which MemoryUsage reports as DeviceTotal; where ACL
// does not say, DeviceTotal is 0 and the backend works as before.
//
// Ops with no single aclnn operator are composed from several: the causal
// softmax, sliding window included (an additive mask), rotary embeddings in both layouts (strided
// views of the pair halves), cross-entropy with an ignore index and label
// smoothing, and AdamW.
//
// # Fused attention
//
// The optional ops Attention and AttentionGrad run on CANN's
// aclnnFlashAttentionScore and aclnnFlashAttentionScoreGrad (layout BSND,
// the causal mask and sliding window as sparse modes 2, 3 and 4 with
// preTokens/nextTokens) and, for sequence packing (Segments), on
// aclnnFlashAttentionVarLenScore and aclnnFlashAttentionUnpaddingScoreGrad
// (layout TND, each document a sequence); the log-sum-exp is derived from
// the operators' softmaxMax and softmaxSum. Supports reports them only
// where the four operators are in the libraries and the chip is an Atlas
// A2 or A3 part, for which CANN documents them; elsewhere package graph
// composes attention, as it did before. Soft-capped calls (Gemma 2), which
// the operators cannot compute, are composed inside the op. attention.go
// describes the mapping, the CANN documentation it follows and every
// assumption made where that documentation is silent.
//
// # Matrix products and chips
//
// Open reads the chip's name (aclrtGetSocName). On Atlas A2 and A3 parts
// (Ascend910B1 and later) the cube unit computes matrix products in
// float32 (cubeMathType KEEP_DTYPE) unless SORA_ASCEND_MATMUL=fast (or
// Options.MatMul) allows it to round inputs to HFLOAT32, see
// [FastMatMulNMSE]. The Atlas training series (Ascend910A, Ascend910ProA,
// Ascend910ProB, Ascend910PremiumA, Ascend910B) and inference series
// (Ascend310P*) have no float32 cube mode: CANN documents KEEP_DTYPE with
// float32 inputs as unsupported there. On them the default
// (SORA_ASCEND_MATMUL unset or "auto", Options.MatMul = MatMulAuto) is the
// fast mode, which rounds the inputs to FLOAT16 (a 10-bit mantissa and
// magnitudes up to 65504, so larger inputs become infinite), and Device
// says so; asking for float32 there (SORA_ASCEND_MATMUL=float32,
// MatMulKeepFloat32) makes Open fail. A chip name the package does not
// know is taken for one with a float32 mode. SORA_ASCEND_DEVICE picks the
// device.
//
// # Assumptions not checked on hardware
//
// Where CANN's documentation is silent the backend assumes, and the test
// double implements, the behaviour torch_npu relies on: an element-wise
// operator's output may be exactly one of its inputs (out == self); every
// other operator gets outputs that overlap no input (the backend uses
// temporaries); aclnnInplaceCopy and aclnnInplaceAdd broadcast their
// second operand to selfRef, which may be a strided view; aclnnIndexAdd
// accepts out == self (index_add_); aclnnLayerNormBackward accepts NULL for
// the gradients its outputMask turns off; an operator's executor is used up
// by aclnnX even when aclnnX fails, while an executor whose aclnnX is never
// called (its workspace could not be allocated) stays with the library;
// aclGetRecentErrMsg is per thread and cleared when read.
//
// # Verification
//
// No Ascend hardware was available while this package was written. It is
// verified against an ACL test double: a small C implementation of the
// exact functions it calls, on host memory, with stream ordering,
// workspace checks, failure injection and a call log (package acltest and
// its testdata). The operator signatures and enum values follow CANN
// 8.1's public headers; the fused attention operators' follow CANN 8.0's
// aclnn reference (see attention.go), and their float32 precision on the
// device is unverified.
package ascend
