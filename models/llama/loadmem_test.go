package llama_test

import (
	"os"
	"runtime"
	"testing"

	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/internal/testdata"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
)

// TestLoadMemory checks issue 6's bound on loading: the host memory
// allocated while reading a checkpoint and uploading it to the backend stays
// under twice the checkpoint's size plus the model's. Everything the load
// allocates is counted (TotalAlloc), which bounds the peak from above; the
// CPU backend's buffers are host memory too, so they are included.
func TestLoadMemory(t *testing.T) {
	path, _ := testdata.Stories260K(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b := testbackend.Open(t, "cpu")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w, _, err := llama2c.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.New(b, w)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	defer m.Free()

	allocated := int64(after.TotalAlloc - before.TotalAlloc)
	modelBytes := int64(0)
	for _, p := range m.Params() {
		modelBytes += int64(p.Len()) * 4
	}
	limit := 2*st.Size() + modelBytes
	t.Logf("checkpoint %d bytes, model %d bytes, allocated while loading %d bytes (limit %d)", st.Size(), modelBytes, allocated, limit)
	if allocated > limit {
		t.Errorf("loading allocated %d bytes, more than twice the checkpoint plus the model (%d)", allocated, limit)
	}
}
