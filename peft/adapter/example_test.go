package adapter_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/peft/adapter"
	"github.com/sora-go/sora/safetensors"
)

// proj is a one-layer model.
type proj struct {
	slot  graph.Layer
	dense *graph.Dense
}

func newProj(b backend.Backend) *proj {
	w := make([]float32, 6*4)
	for i := range w {
		w[i] = float32(i%5) - 2
	}
	p, err := graph.UploadParam(b, "model.proj.weight", w, graph.Trainable, 6, 4)
	if err != nil {
		panic(err)
	}
	m := &proj{dense: &graph.Dense{W: p}}
	m.slot = m.dense
	return m
}

func (m *proj) Params() []*graph.Value { return []*graph.Value{m.dense.W} }

func (m *proj) Layers() []graph.LayerRef {
	return []graph.LayerRef{{Name: "model.proj", Slot: &m.slot}}
}

// Save a SORA adapter in Hugging Face PEFT's layout and load it into a
// fresh copy of the model.
func ExampleSave() {
	b, err := backend.Open("cpu")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	dir, err := os.MkdirTemp("", "adapter")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	m, err := peft.Inject(newProj(b), peft.Config{Method: peft.SORA, R: 2, Alpha: 4, RotationRank: 2, TargetModules: []string{"proj"}})
	if err != nil {
		panic(err)
	}
	if err := adapter.Save(dir, m, adapter.Meta{BaseModel: "my-model", TaskType: "CAUSAL_LM"}); err != nil {
		panic(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, adapter.WeightsFile))
	if err != nil {
		panic(err)
	}
	for _, t := range f.Tensors() {
		fmt.Println(t.Name, t.Shape)
	}
	f.Close()

	loaded, meta, err := adapter.Load(dir, newProj(b))
	if err != nil {
		panic(err)
	}
	fmt.Println(loaded.Config().Method, meta.BaseModel)
	// Output:
	// base_model.model.model.proj.lora_A.weight [2 4]
	// base_model.model.model.proj.lora_B.weight [6 2]
	// base_model.model.model.proj.lora_Diag.weight [6 1]
	// base_model.model.model.proj.lora_C.weight [6 2]
	// base_model.model.model.proj.lora_D.weight [6 2]
	// sora my-model
}
