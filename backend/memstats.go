package backend

// MemoryUsage is a backend's memory at one moment, with its high-water
// marks: what a user choosing batch sizes wants to know about a run, in
// the terms PyTorch users know from torch.cuda.max_memory_allocated and
// max_memory_reserved.
type MemoryUsage struct {
	// InUse is the bytes held by live tensors (Alloc not yet followed by
	// Free), and the scratch blocks of an op while it runs where the
	// backend takes them from its allocator; a device backend counts
	// whole blocks of its pool, each rounded up to its size class.
	// PeakInUse is the most InUse has been since the backend opened or
	// since the last ResetPeakMemory.
	InUse, PeakInUse int64
	// Reserved is the bytes the backend holds from the device: InUse and
	// what it keeps to reuse, the freed blocks a device backend keeps
	// cached (what Memory.BytesInUse reports) or the scratch the CPU
	// backend keeps between ops (its working rows, attention's buffers,
	// the matrix multiply's packing workspaces). PeakReserved is its
	// high-water mark, as PeakInUse is InUse's.
	Reserved, PeakReserved int64
	// DeviceTotal is the device's memory in bytes, where the backend can
	// tell it cheaply; 0 where it cannot.
	DeviceTotal int64
}

// MemoryTracker is implemented by backends that keep the high-water marks
// of their memory. It is optional: callers test for it with a type
// assertion, and say nothing about the peak where a backend (or a wrapper
// around one) does not implement it.
//
// The marks count what the backend allocates for tensors through its own
// allocator, and in Reserved what it keeps to reuse, and nothing else:
// not the Go heap (a model's host copy while it loads, a tokenizer), nor
// memory that a device library allocates on its own (a CUDA context,
// kernel modules, a BLAS workspace), which tools such as nvidia-smi also
// show. Like the rest of a Backend it is not safe for concurrent use
// unless the backend says otherwise.
type MemoryTracker interface {
	// MemoryUsage returns the current figures and the peaks since the
	// backend opened or since the last ResetPeakMemory.
	MemoryUsage() MemoryUsage
	// ResetPeakMemory sets PeakInUse to InUse and PeakReserved to
	// Reserved, so that the peaks from then on are of what follows (a
	// phase of a run, one benchmarked step); memory held at the reset
	// counts in them.
	ResetPeakMemory()
}
