package train

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/sora-go/sora/internal/atomicfile"
)

// staleSweeps lists where in the output folder the run's atomic writes
// (internal/atomicfile) may leave temporaries, and what it writes there:
// folders, by the name it gives them, and files. In the output folder:
// the final adapter folder, the best one (BestDir) and the trainer's
// files (run.json is the command's: see sora finetune); in checkpoints/:
// the checkpoint folders and the "latest" file.
var staleSweeps = []struct {
	sub       string
	dir, file func(name string) bool
}{
	{".", func(n string) bool { return n == AdapterDir || n == BestDir },
		func(n string) bool {
			return n == MetricsFile || n == LossPlot || n == SpectrumPlot || n == SpectrumJSON
		}},
	{CheckpointsDir, func(n string) bool {
		digits, ok := strings.CutPrefix(n, "step-")
		return ok && digits != "" && strings.Trim(digits, "0123456789") == ""
	}, func(n string) bool { return n == latestFile }},
}

// removeStaleTemporaries removes from the output folder out the
// temporaries that a run killed while saving left behind: only the
// temporaries (as atomicfile.Temporary knows them) of what the trainer
// itself writes (staleSweeps), folders where it writes folders and
// regular files where it writes files, so that anything else a user keeps
// there stays; a folder moved aside while it was replaced only once its
// replacement exists again. It returns what it removed, relative to out.
// A run calls it under its lock on out (LockOutput), so no other run is
// writing there.
func removeStaleTemporaries(out string) []string {
	var removed []string
	for _, sw := range staleSweeps {
		ents, err := os.ReadDir(filepath.Join(out, sw.sub))
		if err != nil {
			continue
		}
		for _, e := range ents {
			name := e.Name()
			target, old, ok := atomicfile.Temporary(name)
			t := e.Type()
			// A writer of files makes no old ones.
			if !ok || !(t.IsDir() && sw.dir(target) || t.IsRegular() && !old && sw.file(target)) {
				continue
			}
			if old {
				// A kill between ReplaceDir's two renames leaves the old
				// folder the only copy, which stays.
				if _, err := os.Stat(filepath.Join(out, sw.sub, target)); err != nil {
					continue
				}
			}
			if os.RemoveAll(filepath.Join(out, sw.sub, name)) == nil {
				removed = append(removed, filepath.Join(sw.sub, name))
			}
		}
	}
	return removed
}
