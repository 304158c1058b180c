package train

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Temporaries that the run's atomic writes make (internal/atomicfile):
// ".NAME.tmp-DIGITS" while a file or folder is written, and
// ".NAME.old-DIGITS" for a folder being replaced. A process killed while
// saving leaves them behind; nothing else makes names of this form.
var (
	// In the output folder: the final adapter folder, and the files the
	// trainer writes there.
	staleOutDir  = regexp.MustCompile(`^\.` + regexp.QuoteMeta(AdapterDir) + `\.(tmp|old)-[0-9]+$`)
	staleOutFile = regexp.MustCompile(`^\.(` + strings.Join(quoteAll(MetricsFile, LossPlot, SpectrumPlot, SpectrumJSON), "|") + `)\.tmp-[0-9]+$`)
	// In checkpoints/: checkpoint folders and the "latest" file.
	staleCkptDir  = regexp.MustCompile(`^\.step-[0-9]+\.(tmp|old)-[0-9]+$`)
	staleCkptFile = regexp.MustCompile(`^\.` + regexp.QuoteMeta(latestFile) + `\.tmp-[0-9]+$`)
)

func quoteAll(names ...string) []string {
	for i, n := range names {
		names[i] = regexp.QuoteMeta(n)
	}
	return names
}

// removeStaleTemporaries removes from the output folder out the
// temporaries that a run killed while saving left behind: only names of
// the forms the trainer's own writes make (see above), folders where it
// writes folders and regular files where it writes files, so that
// anything else a user keeps there stays; a folder moved aside while it
// was replaced (.NAME.old-DIGITS) only once NAME exists again. It returns what it removed,
// relative to out. A run starts by calling it, so no other run may be
// writing into out at the time (two runs in one folder would overwrite
// each other's checkpoints anyway).
func removeStaleTemporaries(out string) []string {
	var removed []string
	sweep := func(sub string, dirs, files *regexp.Regexp) {
		ents, err := os.ReadDir(filepath.Join(out, sub))
		if err != nil {
			return
		}
		for _, e := range ents {
			name := e.Name()
			t := e.Type()
			if m := dirs.FindStringSubmatch(name); t.IsDir() && m != nil && m[1] == "old" {
				// A folder moved aside while being replaced is stale once
				// its replacement is in place; a kill between the two
				// renames leaves it the only copy, which stays.
				target := name[1:strings.LastIndex(name, ".old-")]
				if _, err := os.Stat(filepath.Join(out, sub, target)); err != nil {
					continue
				}
			}
			if (t.IsDir() && dirs.MatchString(name)) || (t.IsRegular() && files.MatchString(name)) {
				if os.RemoveAll(filepath.Join(out, sub, name)) == nil {
					removed = append(removed, filepath.Join(sub, name))
				}
			}
		}
	}
	sweep(".", staleOutDir, staleOutFile)
	sweep(CheckpointsDir, staleCkptDir, staleCkptFile)
	return removed
}
