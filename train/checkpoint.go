package train

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
	"github.com/sora-go/sora/safetensors"
)

// Names inside the output folder.
const (
	// CheckpointsDir holds one folder per checkpoint, step-NNNNNN, and the
	// file "latest" naming the newest.
	CheckpointsDir = "checkpoints"
	// AdapterDir holds the final adapter in Hugging Face PEFT layout.
	AdapterDir = "adapter"

	latestFile    = "latest"
	stateFile     = "trainer_state.json"
	tensorsFile   = "trainable.safetensors"
	optimizerFile = "optimizer.safetensors"
	adapterSub    = "adapter"
)

// trainerState is a checkpoint's trainer_state.json: where the run stood
// and what it must agree with to be resumed.
type trainerState struct {
	Step        int    `json:"step"`
	TotalSteps  int    `json:"total_steps"`
	Seed        uint64 `json:"seed"`
	Batch       int    `json:"batch"`
	TrainSize   int    `json:"train_size"`
	TrainDigest string `json:"train_digest"`
	Task        string `json:"task"`
	BaseModel   string `json:"base_model,omitempty"`
	// Settings are the hyper-parameters a resume must keep (see
	// Trainer.settings); absent in checkpoints made before they were kept.
	Settings map[string]string `json:"settings,omitempty"`
	// LRs are the peak learning rates steps 1 to Step trained with (see
	// Result.LRs); absent in checkpoints made before they were kept.
	LRs []LRSpan `json:"lr_history,omitempty"`
	// StepsHistory are the numbers of steps the learning-rate schedule
	// of steps 1 to Step was computed for (see Result.StepsHistory);
	// absent in checkpoints made before a resume could change them.
	StepsHistory []StepsSpan `json:"steps_history,omitempty"`
	// Devices are the backends and devices that steps 1 to Step trained
	// on (see Result.Devices); absent in checkpoints made before they
	// were kept.
	Devices []DeviceSpan `json:"device_history,omitempty"`
	// Selection is, for a run that keeps its best evaluation or stops
	// early, its best evaluation so far, its patience count and whether
	// it has stopped.
	Selection *selection `json:"selection,omitempty"`
	// ZeroShot is the evaluation before training that the caller gave
	// the run (Trainer.ZeroShot), so that a resume need not take it
	// again ([CheckpointInfo.ZeroShot]); absent without one and in
	// checkpoints made before they kept it.
	ZeroShot *zeroShotRecord `json:"zero_shot,omitempty"`
	Loss     float64         `json:"loss"`
	Time     string          `json:"time"`
}

// zeroShotRecord is a checkpoint's record of the evaluation before
// training and of the sequences it was taken on.
type zeroShotRecord struct {
	Eval *EvalResult `json:"eval"`
	// EvalData is evalDataID of the evaluation sequences.
	EvalData string `json:"eval_data"`
}

// evalDataID names evaluation sequences by their number and digest, as
// the settings and the zero-shot record compare them.
func evalDataID(eval []data.Sequence) string {
	return fmt.Sprintf("%d sequences, digest %s", len(eval), digest(eval))
}

// digest fingerprints the training sequences, so that a run is not resumed
// on other data (whose order would silently differ).
func digest(seqs []data.Sequence) string {
	h := fnv.New64a()
	var buf [4]byte
	for _, s := range seqs {
		for _, t := range s.Tokens {
			binary.LittleEndian.PutUint32(buf[:], uint32(t))
			h.Write(buf[:])
		}
		binary.LittleEndian.PutUint32(buf[:], uint32(s.PromptLen))
		h.Write(buf[:])
		binary.LittleEndian.PutUint32(buf[:], uint32(s.Label)^0x80000000)
		h.Write(buf[:])
		// A loss mask counts only where there is one, so that the runs
		// before masks existed keep their digest and can be resumed.
		if s.Trained != nil {
			h.Write([]byte("mask"))
			for _, on := range s.Trained {
				b := byte(0)
				if on {
					b = 1
				}
				h.Write([]byte{b})
			}
		}
	}
	return strconv.FormatUint(h.Sum64(), 16)
}

// saveCheckpoint writes checkpoint step of the run into
// out/checkpoints/step-NNNNNN (under a temporary name first), points
// "latest" at it and prunes old ones. It returns the folder.
func (t *Trainer) saveCheckpoint(st trainerState, opt optim.Optimizer, params []*graph.Value) (string, error) {
	root := filepath.Join(t.Options.Out, CheckpointsDir)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("train: %w", err)
	}
	name := fmt.Sprintf("step-%06d", st.Step)
	final := filepath.Join(root, name)
	err := writeDirAtomic(final, func(dir string) error {
		if err := saveParams(filepath.Join(dir, tensorsFile), params); err != nil {
			return err
		}
		state, err := opt.State()
		if err != nil {
			return err
		}
		if err := saveOptimizer(filepath.Join(dir, optimizerFile), state); err != nil {
			return err
		}
		if t.SaveAdapter != nil {
			if err := os.Mkdir(filepath.Join(dir, adapterSub), 0o755); err != nil {
				return fmt.Errorf("train: %w", err)
			}
			if err := t.SaveAdapter(filepath.Join(dir, adapterSub)); err != nil {
				return fmt.Errorf("train: writing the adapter: %w", err)
			}
		}
		return writeState(dir, st)
	})
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(filepath.Join(root, latestFile), []byte(name+"\n")); err != nil {
		return "", err
	}
	pruneCheckpoints(root, name, t.Options.KeepCheckpoints)
	return final, nil
}

// writeState writes st as checkpoint dir's trainer state, stamped with
// the time: in saveCheckpoint, and again when the final evaluation, taken
// after the final checkpoint, changes the run's selection.
func writeState(dir string, st trainerState) error {
	st.LRs = lrsUpTo(st.LRs, st.Step)
	st.StepsHistory = spansUpTo(st.StepsHistory, st.Step)
	st.Devices = spansUpTo(st.Devices, st.Step)
	st.Time = time.Now().UTC().Format(time.RFC3339)
	return writeJSONAtomic(filepath.Join(dir, stateFile), st)
}

// pruneCheckpoints removes all but the newest keep step-N folders (never
// the latest), newest by step number: step-1000000 is newer than
// step-999999, though it sorts before it as a string. Folders whose name
// is not step- and a number are not ours and stay.
func pruneCheckpoints(root, latest string, keep int) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	type ckpt struct {
		name string
		step int
	}
	var steps []ckpt
	for _, e := range entries {
		if n, ok := checkpointStep(e.Name()); ok && e.IsDir() {
			steps = append(steps, ckpt{e.Name(), n})
		}
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].step < steps[j].step })
	for i := 0; i < len(steps)-keep; i++ {
		if steps[i].name != latest {
			os.RemoveAll(filepath.Join(root, steps[i].name))
		}
	}
}

// checkpointStep returns N of a checkpoint folder's name step-N.
func checkpointStep(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, "step-")
	if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	return n, err == nil
}

// CheckOutput checks that out suits the run: with resume it must hold a
// checkpoint to continue from, which it returns; without, it must hold
// none (another run's). The trainer checks this itself; a caller with
// slow work to do first (loading a model) can ask at once.
func CheckOutput(out string, resume bool) (latest string, err error) {
	latest, err = LatestCheckpoint(out)
	switch {
	case resume && err != nil:
		return "", err
	case !resume && err == nil:
		return "", fmt.Errorf("train: %s already holds checkpoints of a run; resume it (--resume), choose another output folder, or remove %s to start afresh there", out, filepath.Join(out, CheckpointsDir))
	case !resume:
		return "", nil
	}
	return latest, nil
}

// LatestCheckpoint returns the newest checkpoint folder of the output
// folder out, or an error saying why there is none.
func LatestCheckpoint(out string) (string, error) {
	root := filepath.Join(out, CheckpointsDir)
	b, err := os.ReadFile(filepath.Join(root, latestFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("train: %s holds no checkpoint to resume from (no %s)", out, filepath.Join(CheckpointsDir, latestFile))
	}
	if err != nil {
		return "", fmt.Errorf("train: %w", err)
	}
	name := strings.TrimSpace(string(b))
	if !strings.HasPrefix(name, "step-") || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("train: %s names %q, not a checkpoint folder", filepath.Join(root, latestFile), name)
	}
	dir := filepath.Join(root, name)
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err != nil {
		return "", fmt.Errorf("train: checkpoint %s is incomplete: %w", dir, err)
	}
	return dir, nil
}

// CheckpointInfo is what a run's newest checkpoint records of it, for a
// caller that plans a resume before its model and data load (sora
// finetune takes the default warm-up of a run whose --steps a resume
// changes from the steps it was made for, and need not evaluate it
// before training again).
type CheckpointInfo struct {
	// Dir is the checkpoint folder.
	Dir string
	// Step is the number of steps trained, and TotalSteps the number the
	// run is to train, which its learning-rate schedule is computed for.
	Step, TotalSteps int
	// MadeFor is the number of steps the run was made for, before a
	// resume changed it (TotalSteps where none did).
	MadeFor int
	// ScheduleSteps is the number of steps the learning-rate schedule of
	// its last step was computed for: TotalSteps, but where a resume
	// ended the run at the step it had reached (a run made for 200 steps
	// ended at step 55 has TotalSteps 55 and ScheduleSteps 200: resumed
	// with 200, its schedule goes on as it was).
	ScheduleSteps int
	// Warmup is the run's number of warm-up steps, -1 where the
	// checkpoint does not record it (one made before checkpoints kept
	// their settings).
	Warmup int
	// StoppedEarly, when not nil, says that early stopping ended the run.
	StoppedEarly *EarlyStop

	task     string // the run's Task, as trainerState records it
	zeroShot *zeroShotRecord
}

// ReadCheckpoint reads what the newest checkpoint in the output folder
// out records of its run; it fails as CheckOutput(out, true) does where
// there is none.
func ReadCheckpoint(out string) (*CheckpointInfo, error) {
	dir, err := LatestCheckpoint(out)
	if err != nil {
		return nil, err
	}
	st, err := readState(dir)
	if err != nil {
		return nil, err
	}
	c := &CheckpointInfo{Dir: dir, Step: st.Step, TotalSteps: st.TotalSteps, MadeFor: st.TotalSteps, Warmup: -1, task: st.Task, zeroShot: st.ZeroShot}
	if h := priorTotals(st); len(h) > 0 {
		c.MadeFor = h[0].Steps
	}
	c.ScheduleSteps = scheduleSteps(st)
	if w, err := strconv.Atoi(st.Settings["warmup"]); err == nil {
		c.Warmup = w
	}
	if st.Selection != nil {
		c.StoppedEarly = st.Selection.Stop
	}
	return c, nil
}

// ZeroShot returns the evaluation before training that the run recorded
// (Trainer.ZeroShot) where it was taken on the evaluation sequences eval,
// so that a resume can report it without evaluating the model again (it
// describes the model the run started from, which a resume continues).
// Otherwise it returns nil and why not: the checkpoint records none (it
// was made without evaluation data, or before checkpoints kept it), one
// of other evaluation data, or one that is not an evaluation of eval by
// the run's task (damaged: an MCC where a classifier's has one and a
// language model's none, as many sequences as eval, targets, an accuracy
// from 0 to 1), which the caller then takes again.
func (c *CheckpointInfo) ZeroShot(eval []data.Sequence) (*EvalResult, string) {
	z := c.zeroShot
	switch {
	case z == nil || z.Eval == nil:
		return nil, fmt.Sprintf("checkpoint %s records no zero-shot evaluation (it was made without evaluation data, or before checkpoints kept it)", c.Dir)
	case z.EvalData != evalDataID(eval):
		return nil, fmt.Sprintf("the zero-shot evaluation that checkpoint %s records was taken on other evaluation data (%s; now %s)", c.Dir, z.EvalData, evalDataID(eval))
	}
	e := z.Eval
	damaged := func(what string) (*EvalResult, string) {
		return nil, fmt.Sprintf("the zero-shot evaluation that checkpoint %s records is damaged: %s", c.Dir, what)
	}
	classify := c.task == Classify.String()
	switch {
	case classify && e.MCC == nil:
		return damaged("it has no mcc, which a classifier's evaluation has")
	case !classify && e.MCC != nil:
		return damaged("it has an mcc, which only a classifier's evaluation has")
	case e.MCC != nil && !(*e.MCC >= -1 && *e.MCC <= 1):
		return damaged(fmt.Sprintf("its mcc %v is outside -1 to 1", *e.MCC))
	case e.Sequences != len(eval):
		return damaged(fmt.Sprintf("it covers %d sequences, the evaluation data %d", e.Sequences, len(eval)))
	case e.Targets <= 0:
		return damaged(fmt.Sprintf("it averages its loss over %d targets", e.Targets))
	case !(e.Accuracy >= 0 && e.Accuracy <= 1):
		return damaged(fmt.Sprintf("its accuracy %v is outside 0 to 1", e.Accuracy))
	}
	ev := *e
	if ev.MCC != nil {
		mcc := *ev.MCC
		ev.MCC = &mcc
	}
	return &ev, ""
}

func readState(dir string) (trainerState, error) {
	var st trainerState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, fmt.Errorf("train: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("train: %s: %v", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// saveParams writes the exact values of params, by name.
func saveParams(path string, params []*graph.Value) error {
	var ts []safetensors.Tensor
	seen := map[string]bool{}
	for _, p := range params {
		if seen[p.Name()] {
			return fmt.Errorf("train: two trainable parameters are named %q; a checkpoint cannot tell them apart", p.Name())
		}
		seen[p.Name()] = true
		h, err := p.Download()
		if err != nil {
			return fmt.Errorf("train: downloading %s: %w", p.Name(), err)
		}
		ts = append(ts, safetensors.Tensor{Name: p.Name(), Shape: p.Shape(), Data: h})
	}
	return safetensors.Write(path, ts, map[string]string{"format": "sora-trainable"})
}

// loadParams uploads the values saved by saveParams into params, checking
// that every parameter is there with its shape.
func loadParams(path string, params []*graph.Value) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer f.Close()
	if n := len(f.Tensors()); n != len(params) {
		return fmt.Errorf("train: %s holds %d tensors but the run trains %d parameters (was it made with another method, rank or target?)", path, n, len(params))
	}
	for _, p := range params {
		info, ok := f.Info(p.Name())
		if !ok {
			return fmt.Errorf("train: %s lacks parameter %q (was it made with another method or target?)", path, p.Name())
		}
		if !slices.Equal(info.Shape, []int(p.Shape())) {
			return fmt.Errorf("train: %s: parameter %q has shape %v, the run's has %v", path, p.Name(), info.Shape, []int(p.Shape()))
		}
		h, err := f.Float32(p.Name())
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		p.Backend().Upload(p.Tensor(), h)
	}
	if len(params) > 0 {
		if err := params[0].Backend().Sync(); err != nil {
			return fmt.Errorf("train: restoring parameters: %w", err)
		}
	}
	return nil
}

// optimizer state in safetensors: tensor "NAME/SLOT" per parameter with
// state, and metadata holding the kind, the step counts and the order.
type optMeta struct {
	Kind       string   `json:"kind"`
	Steps      int      `json:"steps"`
	Names      []string `json:"names"`
	ParamSteps []int    `json:"param_steps"`
	Slots      []string `json:"slots"`
}

func saveOptimizer(path string, s *optim.State) error {
	m := optMeta{Kind: s.Kind, Steps: s.Steps}
	var ts []safetensors.Tensor
	slotSet := map[string]bool{}
	for _, ps := range s.Params {
		m.Names = append(m.Names, ps.Name)
		m.ParamSteps = append(m.ParamSteps, ps.Steps)
		keys := make([]string, 0, len(ps.Slots))
		for k := range ps.Slots {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			slotSet[k] = true
			ts = append(ts, safetensors.Tensor{Name: ps.Name + "/" + k, Shape: []int{len(ps.Slots[k])}, Data: ps.Slots[k]})
		}
	}
	for k := range slotSet {
		m.Slots = append(m.Slots, k)
	}
	sort.Strings(m.Slots)
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return safetensors.Write(path, ts, map[string]string{"format": "sora-optimizer", "state": string(mb)})
}

func loadOptimizer(path string) (*optim.State, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer f.Close()
	var m optMeta
	state, ok := f.Metadata()["state"]
	if !ok {
		return nil, fmt.Errorf("train: %s has no \"state\" metadata; want an optimizer state written by sora finetune", path)
	}
	if err := json.Unmarshal([]byte(state), &m); err != nil {
		return nil, fmt.Errorf("train: %s: optimizer metadata \"state\": %v", path, err)
	}
	if len(m.Names) != len(m.ParamSteps) {
		return nil, fmt.Errorf("train: %s: %d names for %d step counts", path, len(m.Names), len(m.ParamSteps))
	}
	s := &optim.State{Kind: m.Kind, Steps: m.Steps}
	for i, name := range m.Names {
		ps := optim.ParamState{Name: name, Steps: m.ParamSteps[i]}
		if ps.Steps > 0 {
			ps.Slots = map[string][]float32{}
			for _, k := range m.Slots {
				h, err := f.Float32(name + "/" + k)
				if err != nil {
					return nil, fmt.Errorf("train: %s: %w", path, err)
				}
				ps.Slots[k] = h
			}
		}
		s.Params = append(s.Params, ps)
	}
	return s, nil
}
