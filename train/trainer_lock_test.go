//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || windows

package train

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainerShowsLockNote checks that a Trainer that takes its own lock on
// a file system without advisory locks shows the lock's note, as sora
// finetune prints it for the lock it takes itself.
func TestTrainerShowsLockNote(t *testing.T) {
	defer func(f func(*os.File) error) { tryLock = f }(tryLock)
	tryLock = func(*os.File) error { return lockRefusals[0] }
	b := openCPU(t)
	m, _ := tinyModel(t, b, "", 4)
	var prog messages
	out := filepath.Join(t.TempDir(), "run")
	tr := &Trainer{Model: m, Train: randomSeqs(4, 20, 1), Progress: &prog,
		Options: Options{Steps: 1, Batch: 1, LR: 1e-3, Seed: 1, Out: out}}
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, msg := range prog.got {
		if strings.Contains(msg, LockFile) && strings.Contains(msg, lockRefusals[0].Error()) {
			return
		}
	}
	t.Errorf("messages %q; want the lock's note naming %s and %v", prog.got, LockFile, lockRefusals[0])
}
