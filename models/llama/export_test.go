package llama

// SetPerHeadAttention makes caches created afterwards attend per
// key/value head, so that tests cover both attention paths of Cache.
func SetPerHeadAttention(m *Model, on bool) { m.perHeadAttention = on }

// GELUTanhOp is the GeGLU activation's op, for its gradient check.
var GELUTanhOp = geluTanh

// SetHeadChunkBytes sets the logits bytes of one chunk of LossAt's
// checkpointed head, so that tests chunk small vocabularies, and returns
// the previous value.
func SetHeadChunkBytes(n int) (previous int) {
	previous, headChunkBytes = headChunkBytes, n
	return previous
}
