package backend

import "errors"

// ErrOutOfMemory means that an allocation failed for lack of memory: a
// device's memory ran out (CUDA's cuMemAlloc, or memory that a kernel
// launch, cuBLAS or NVRTC needed; Ascend's aclrtMalloc), or a buffer was
// larger than the host can hold (the CPU backend's Alloc of more than the
// platform can address).
//
// Every backend's errors for such failures match it, whatever their own
// type: test with errors.Is(err, backend.ErrOutOfMemory), not by type or
// message, which stay each backend's own (a *cuda.Error naming the
// library's status, an *ascend.ACLError, …) so that errors.As still finds
// them. Code between a backend and the caller keeps the chain by wrapping
// with %w. It tells a failure that a smaller batch or shorter sequences
// may avoid from one they cannot (a bad argument, a device fault).
var ErrOutOfMemory = errors.New("out of memory")
