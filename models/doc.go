// Package models is the root of SORA for Go's model code. It holds no code
// itself; each model family, file format and tokenizer lives in its own
// sub-package:
//
//   - models/llama: the LLaMA decoder — its [llama.Config], the host-side
//     weights container [llama.Weights] with its canonical (Hugging Face)
//     tensor names, and the conversion between the two rotary-embedding
//     row layouts (llama2.c's interleaved pairs, Hugging Face's half-split).
//     The backend-based model (training and generation forwards) is built on
//     these.
//   - models/llama2c: llama2.c checkpoints (the legacy format and the
//     version-1 "ak42" format), reader and atomic writer.
//   - models/hf: Hugging Face LLaMA checkpoints (config.json plus
//     model.safetensors, or shards listed in model.safetensors.index.json),
//     reader and atomic writer, used by "sora convert".
//   - models/tokenizer: llama2.c's tokenizer.bin (SentencePiece-style BPE
//     with scores and byte fallback): encode and decode.
//
// Every loader validates sizes and offsets against the file before
// allocating, and answers bad files with an error that names the file and
// what was expected, never a panic. Every writer writes a temporary file and
// renames it into place.
//
// models/internal/reference is a plain float32 host implementation of the
// llama2.c transformer forward, written from the math; tests use it to check
// loaders and tokenizer end to end against llama2.c's known output, and the
// backend-based model is checked against it.
package models
