package llama

// SetLoadSlabBytes sets the bytes of float32 NewFromSource reads a
// tensor through at a time, so that tests read small models in many
// slabs, and returns the previous value.
func SetLoadSlabBytes(n int) (previous int) {
	previous, loadSlabBytes = loadSlabBytes, n
	return previous
}
