// Package backend defines the tensor-op interface that every model and PEFT
// layer in SORA for Go is written against, the tensor and buffer types that
// live on a backend's device, and the registry through which concrete
// backends (cpu, cuda, ascend) make themselves available.
//
// # Device memory
//
// A [Tensor] is a view of a [Buffer] that a backend allocated on its device:
// host code never reads device memory directly. Data crosses the host/device
// boundary only through [Backend.Upload] and [Backend.Download].
//
// # Asynchrony and errors
//
// Ops may run asynchronously, the way a CUDA or Ascend stream does: an op
// call enqueues work and returns. Ops therefore return no error. A backend
// validates each call (shapes, dtypes, buffer ownership) and records the
// first failure, invalid call or device error alike; once an error is
// recorded later ops are skipped, and [Backend.Sync] waits for all enqueued
// work and returns (and clears) that error. This is the convention of
// bufio.Writer and of CUDA streams, and it keeps model code a straight line.
// Errors carry the op name and the offending shapes.
//
// # Layout conventions
//
// Tensors are row-major. Unless an op's documentation says otherwise, every
// tensor argument must be contiguous (see [Tensor.Contiguous]); only
// [Backend.Copy] accepts strided views. "Rows" of a tensor are its last
// axis: a tensor of shape [a, b, c] has a·b rows of c elements.
//
// # Optional ops
//
// A backend implements every method of [Ops], but some ops are optional
// ([OptionalOps]): [Backend.Supports] says whether it has them, and one
// that lacks an op records an error when it is called ([Unsupported]).
// Callers ask first and fall back: models keep float32 weights where
// [OpMatMulBF16] is missing, and package graph composes attention from
// MatMul and Softmax where [OpAttention] and [OpAttentionGrad] are, the way
// ggml's supports_op lets a scheduler choose.
//
// # Registry
//
// A backend package registers a [Driver] under its name in an init function;
// programs pull it in with a blank import and call [Open] with the name.
// [List] reports every registered backend and whether it is usable here.
package backend
