// Package gguf reads and writes GGUF files, the single-file model format of
// ggml, llama.cpp, Ollama and LM Studio, and exports this project's LLaMA-family
// models (package llama) with their tokenizers (package tokenizer) as the
// GGUF files that llama.cpp's own converter would write for them, so that a
// model fine-tuned and merged here runs in those programs without Python.
//
// # The file format (version 3)
//
// All numbers are little-endian. A file starts with the magic "GGUF", the
// version (uint32, 3), the number of tensors and the number of metadata
// entries (uint64 each). Each metadata entry is a key (a string: uint64 byte
// length, then the bytes; ASCII, at most 65535 bytes), a value type (uint32)
// and the value: a fixed-size number, a bool (one byte, 0 or 1), a string, or
// an array (element type uint32, count uint64, then the elements; this
// package, like llama.cpp, does not nest arrays). Then, per tensor, its name
// (a string of at most 63 bytes), its number of dimensions (uint32, 1 to 4),
// the dimensions (uint64 each, innermost first: a PyTorch [out, in] weight
// has dimensions in, out), its ggml type (uint32) and the offset of its data
// (uint64) from the start of the data section. The data section starts at
// the next multiple of the alignment (the uint32 entry general.alignment,
// 32 where absent) after the tensor infos, and every tensor's data starts at
// a multiple of it too, zero bytes padding the gaps.
//
// Shapes in this package are written the other way round, outermost first,
// as Go slices and PyTorch give them ([TensorInfo.Shape]): a [vocab, dim]
// embedding is stored with GGUF dimensions dim, vocab.
//
// # Tensor types
//
// Four types are written and read: [F32], [F16] (IEEE half precision,
// rounded to nearest, ties to even), [BF16] (the upper half of a float32,
// rounded as ggml rounds it) and [Q8_0], ggml's 8-bit block quantization:
// each run of 32 values along the innermost dimension becomes a float16
// scale d and 32 signed bytes q with value q·d, d being the block's largest
// magnitude over 127, as ggml's reference quantizer quantize_row_q8_0_ref
// computes it (see [QuantizeQ8_0]).
//
// # Writing and reading
//
// [Write] writes metadata and tensors to a path through a temporary file
// and a rename, reading each tensor's float32 values from its [Tensor.Read]
// a slab of rows at a time, so that a model is never held whole in memory
// in the file's types. [Open] and [Read] read a file's header, metadata and
// tensor infos, checking every count, length and offset against the file's
// size and that no two tensors' data overlap (errors name the file, the
// field and its byte offset), and
// [File.ReadFloat32] reads a tensor's values as float32.
//
// # Exporting a model
//
// [Export] and [ExportSource] write a llama.Weights or a llama.Source with
// its tokenizer as the llama.cpp architecture that runs it: "llama" for
// LLaMA, Mistral and llama2.c checkpoints, "qwen2", "qwen3", "gemma2" and
// "gemma3". See [NewPlan] for what is written and what is refused, and
// [Plan.Notes] for what llama.cpp will run differently.
package gguf
