package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// lockKinds are the two ways of holding an output folder: the system's
// (an advisory lock here, on Linux) and the lock file created only if
// absent, which other systems use and which is tested here too.
var lockKinds = []struct {
	name string
	lock func(*OutputLock) error
}{
	{"system", lockFile},
	{"exclusive-file", lockExclusive},
}

// TestLockOutputExcludes takes an output folder twice in one process: the
// second take must fail at once naming the folder, also when the folder
// is named otherwise; Unlock must release it, and remove the lock file and
// the folder it made for nothing.
func TestLockOutputExcludes(t *testing.T) {
	for _, k := range lockKinds {
		t.Run(k.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "runs", "x")
			l, err := lockOutput(out, k.lock)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(out, LockFile)); err != nil || !strings.HasPrefix(string(b), fmt.Sprintf("pid %d on ", os.Getpid())) {
				t.Errorf("lock file: %q, %v; want this process's pid", b, err)
			}
			names := []string{out, out + string(filepath.Separator) + "."}
			if link := filepath.Join(t.TempDir(), "link"); os.Symlink(out, link) == nil {
				names = append(names, link)
			}
			for _, name := range names {
				_, err := lockOutput(name, k.lock)
				var inUse *OutputInUseError
				if !errors.As(err, &inUse) || inUse.Dir != name || !strings.Contains(err.Error(), "the output folder "+name+" is in use by another run in this process") {
					t.Errorf("second lock of %s: %v; want an OutputInUseError naming it", name, err)
				}
			}
			// The lock file is no temporary of the trainer's.
			if removed := removeStaleTemporaries(out); len(removed) > 0 {
				t.Errorf("the stale sweep removed %v", removed)
			}
			if err := l.Unlock(); err != nil {
				t.Fatal(err)
			}
			if err := l.Unlock(); err != nil {
				t.Errorf("a second Unlock: %v", err)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the folder the lock made for nothing is still there (%v)", err)
			}
			// Released: it can be taken again, and a folder with files in it
			// stays.
			l, err = lockOutput(out, k.lock)
			if err != nil {
				t.Fatalf("locking again after Unlock: %v", err)
			}
			if err := os.WriteFile(filepath.Join(out, "notes"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := l.Unlock(); err != nil {
				t.Fatal(err)
			}
			if ents, err := os.ReadDir(out); err != nil || len(ents) != 1 || ents[0].Name() != "notes" {
				t.Errorf("after Unlock the folder holds %v (%v); want only notes", ents, err)
			}
		})
	}
}

// TestLockOutputRemovesParents takes an output folder several levels below
// an existing one, deep/a/b/c under a temporary folder, and releases it:
// Unlock removes what LockOutput created and is left empty, the parents
// too, and no folder that was there before or holds something. A failed
// lock removes what it created as well.
func TestLockOutputRemovesParents(t *testing.T) {
	for _, k := range lockKinds {
		t.Run(k.name, func(t *testing.T) {
			cases := []struct {
				name    string
				before  []string // folders made before the lock, under the root
				during  string   // a file written during the run, under the root
				remains []string // the folders left under the root after Unlock
			}{
				{name: "all made", remains: nil},
				{name: "parent existed", before: []string{"deep/a"}, remains: []string{"deep", "deep/a"}},
				{name: "file beside", during: "deep/a/notes", remains: []string{"deep", "deep/a"}},
				{name: "file inside", during: "deep/a/b/c/notes", remains: []string{"deep", "deep/a", "deep/a/b", "deep/a/b/c"}},
			}
			for _, c := range cases {
				root := t.TempDir()
				for _, d := range c.before {
					if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				l, err := lockOutput(filepath.Join(root, "deep", "a", "b", "c"), k.lock)
				if err != nil {
					t.Fatal(err)
				}
				if c.during != "" {
					if err := os.WriteFile(filepath.Join(root, c.during), nil, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if err := l.Unlock(); err != nil {
					t.Fatal(err)
				}
				var dirs []string
				filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
					if err == nil && d.IsDir() && p != root {
						rel, _ := filepath.Rel(root, p)
						dirs = append(dirs, filepath.ToSlash(rel))
					}
					return err
				})
				if !slices.Equal(dirs, c.remains) {
					t.Errorf("%s: after Unlock the folders %v remain; want %v", c.name, dirs, c.remains)
				}
			}
		})
	}
	// A lock that fails removes what lockOutput made for it.
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	refuse := func(*OutputLock) error { return errors.New("refused") }
	if _, err := lockOutput(filepath.Join(root, "deep", "a", "b"), refuse); err == nil {
		t.Fatal("the refusing lock was taken")
	}
	if ents, err := os.ReadDir(filepath.Join(root, "deep")); err != nil || len(ents) != 0 {
		t.Errorf("a failed lock left %v in deep/ (%v); want deep/ as it was, empty", ents, err)
	}
}

// TestLockOutputLeftBehind plants the lock file of a process that is gone,
// as a run killed before it could remove it leaves it: the system's lock
// takes it over (the lock died with its process), the exclusive file
// refuses, saying who held it and which file to remove; once removed, the
// folder can be taken.
func TestLockOutputLeftBehind(t *testing.T) {
	const holder = "pid 999999999 on elsewhere, since 2026-01-02 03:04:05"
	for _, k := range lockKinds {
		t.Run(k.name, func(t *testing.T) {
			out := t.TempDir()
			path := filepath.Join(out, LockFile)
			if err := os.WriteFile(path, []byte(holder+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := lockOutput(out, k.lock)
			if k.name == "exclusive-file" {
				var inUse *OutputInUseError
				if !errors.As(err, &inUse) || inUse.Holder != holder || !strings.Contains(err.Error(), "another sora process ("+holder+")") ||
					!strings.Contains(err.Error(), "remove "+path) {
					t.Fatalf("lock over a left lock file: %v; want a refusal naming its holder and saying to remove %s", err, path)
				}
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				l, err = lockOutput(out, k.lock)
			}
			if err != nil {
				t.Fatalf("lock: %v", err)
			}
			defer l.Unlock()
			if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), fmt.Sprintf("pid %d ", os.Getpid())) {
				t.Errorf("the lock file says %q, not this process", b)
			}
		})
	}
}

// TestRunLocksOutput checks that Run refuses, before it touches anything,
// an output folder that another run holds, fresh or resumed; that it runs
// under a lock it is given, leaving it held, and refuses one on another
// folder; and that its own lock is gone when it returns.
func TestRunLocksOutput(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(4, tinyConfig().VocabSize, 1)
	run := func(out string, resume bool, lock *OutputLock) error {
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, OutputLock: lock,
			Options: Options{Steps: 1, Batch: 2, Out: out, Resume: resume}}
		_, err := tr.Run(context.Background())
		return err
	}
	out := t.TempDir()
	l, err := LockOutput(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, resume := range []bool{false, true} {
		var inUse *OutputInUseError
		if err := run(out, resume, nil); !errors.As(err, &inUse) || inUse.Dir != out {
			t.Errorf("resume %v into a held folder: %v; want an OutputInUseError naming it", resume, err)
		}
		if ents, _ := os.ReadDir(out); len(ents) != 1 {
			t.Errorf("the refused run left %v in the folder", ents)
		}
	}
	if err := run(out, false, l); err != nil {
		t.Fatalf("run under the caller's lock: %v", err)
	}
	if _, err := LockOutput(out); err == nil {
		t.Error("Run released the caller's lock")
	}
	other := t.TempDir()
	if err := run(other, false, l); err == nil || !strings.Contains(err.Error(), "does not hold the output folder "+other+" (it is on "+out) {
		t.Errorf("run under a lock on another folder: %v; want a refusal", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := run(out, true, l); err == nil || !strings.Contains(err.Error(), "or released") {
		t.Errorf("run under a released lock: %v; want a refusal", err)
	}
	if err := run(out, true, nil); err != nil {
		t.Fatalf("resume under its own lock: %v", err)
	}
	ents, _ := os.ReadDir(out)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if slices.Contains(names, LockFile) {
		t.Errorf("the run left its lock file: %v", names)
	}
	l, err = LockOutput(out)
	if err != nil {
		t.Fatalf("the folder is still held after Run: %v", err)
	}
	l.Unlock()
}
