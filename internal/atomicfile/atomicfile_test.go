package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(path, func(w *bufio.Writer) error { w.WriteString("partial"); return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("failed write changed the file to %q", b)
	}
	if err := Write(path, func(w *bufio.Writer) error { _, err := w.WriteString("new"); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("file = %q, want new", b)
	}
	if e, _ := os.ReadDir(dir); len(e) != 1 {
		t.Fatalf("%d entries in the folder, want 1 (temporary files left?)", len(e))
	}
}

// TestWriteFile checks the bytes and that the result is an ordinary
// readable file, not the private temporary file it started as.
func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteFile(path, []byte("data")); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Errorf("file = %q, want data", b)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	if err := WriteFile(filepath.Join(path, "below-a-file"), nil); err == nil || !strings.Contains(err.Error(), "below-a-file") {
		t.Errorf("WriteFile under a regular file: %v, want an error naming the path", err)
	}
}

func TestWriteDir(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	boom := errors.New("boom")
	err := WriteDir(dir, func(d string) error {
		os.WriteFile(filepath.Join(d, "a"), []byte("x"), 0o644)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if e, _ := os.ReadDir(parent); len(e) != 0 {
		t.Fatalf("failed WriteDir left %v behind", e)
	}
	fill := func(d string) error {
		return Write(filepath.Join(d, "a"), func(w *bufio.Writer) error { _, err := w.WriteString("x"); return err })
	}
	if err := WriteDir(dir, fill); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a")); string(b) != "x" {
		t.Fatalf("a = %q", b)
	}
	// Into an existing folder.
	if err := WriteDir(dir, fill); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(filepath.Join(dir, "a"), fill); err == nil {
		t.Fatal("WriteDir over a regular file succeeded")
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.json")
	if err := WriteJSON(path, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"a\": 1\n}\n"; string(got) != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
	if err := WriteJSON(path, func() {}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("encoding error %v does not name %s", err, path)
	}
}

// readTree returns the files under dir by slash path, with their contents.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	return files
}

// names lists the entries of dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	e, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, x := range e {
		s = append(s, x.Name())
	}
	return s
}

// writeTree creates files (slash path → contents) under dir.
func writeTree(dir string, files map[string]string) error {
	for p, c := range files {
		p = filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// failRename makes the n-th call of rename (from 1) fail, for the rest of
// the test.
func failRename(t *testing.T, n int) {
	calls := 0
	rename = func(from, to string) error {
		calls++
		if calls == n {
			return errors.New("injected rename failure")
		}
		return os.Rename(from, to)
	}
	t.Cleanup(func() { rename = os.Rename })
}

func TestReplaceDir(t *testing.T) {
	oldTree := map[string]string{"a": "old", "only-old": "1", "sub/b": "old b"}
	newTree := map[string]string{"a": "new", "sub/c": "new c"}
	fillNew := func(d string) error { return writeTree(d, newTree) }
	for _, exists := range []bool{false, true} {
		t.Run(fmt.Sprintf("exists=%v", exists), func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "out")
			if exists {
				if err := writeTree(dir, oldTree); err != nil {
					t.Fatal(err)
				}
			}
			if err := ReplaceDir(dir, fillNew); err != nil {
				t.Fatal(err)
			}
			// The old folder's files are gone, not merged with the new.
			if got := readTree(t, dir); !maps.Equal(got, newTree) {
				t.Errorf("folder holds %v, want %v", got, newTree)
			}
			if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("stat %s: %v, %v; want mode 0755", dir, st, err)
			}
			if got := names(t, parent); !slices.Equal(got, []string{"out"}) {
				t.Errorf("parent holds %v, want only out (temporary or old folders left?)", got)
			}
		})
	}
}

// TestReplaceDirFailure fails ReplaceDir at each step after the
// temporary folder exists: the old folder must be intact afterwards and
// nothing else left beside it.
func TestReplaceDirFailure(t *testing.T) {
	oldTree := map[string]string{"a": "old", "sub/b": "old b"}
	boom := errors.New("boom")
	tests := []struct {
		name       string
		failRename int // which rename call fails; 0: none
		fill       func(d string) error
		want       string // in the error
	}{
		{"fill fails midway", 0, func(d string) error {
			if err := writeTree(d, map[string]string{"a": "partial"}); err != nil {
				return err
			}
			return boom
		}, "boom"},
		{"moving the old folder aside fails", 1, nil, "moving the old folder aside"},
		{"moving the new folder into place fails", 2, nil, "injected rename failure"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "out")
			if err := writeTree(dir, oldTree); err != nil {
				t.Fatal(err)
			}
			fill := tc.fill
			if fill == nil {
				fill = func(d string) error { return writeTree(d, map[string]string{"a": "new"}) }
			}
			if tc.failRename > 0 {
				failRename(t, tc.failRename)
			}
			err := ReplaceDir(dir, fill)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if tc.fill != nil && !errors.Is(err, boom) {
				t.Errorf("fill's error is not returned as it is: %v", err)
			}
			if tc.fill == nil && !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name %s", err, dir)
			}
			if got := readTree(t, dir); !maps.Equal(got, oldTree) {
				t.Errorf("old folder now holds %v, want %v", got, oldTree)
			}
			if got := names(t, parent); !slices.Equal(got, []string{"out"}) {
				t.Errorf("parent holds %v, want only out", got)
			}
		})
	}
}

// TestReplaceDirNotPutBack fails both the rename of the new folder into
// place and the one putting the old folder back: the error must say where
// the old folder is, and it must be whole there.
func TestReplaceDirNotPutBack(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	oldTree := map[string]string{"a": "old"}
	if err := writeTree(dir, oldTree); err != nil {
		t.Fatal(err)
	}
	calls := 0
	rename = func(from, to string) error {
		calls++
		if calls >= 2 {
			return errors.New("injected rename failure")
		}
		return os.Rename(from, to)
	}
	t.Cleanup(func() { rename = os.Rename })
	err := ReplaceDir(dir, func(d string) error { return writeTree(d, map[string]string{"a": "new"}) })
	if err == nil {
		t.Fatal("ReplaceDir succeeded with every rename after the first failing")
	}
	left := names(t, parent)
	if len(left) != 1 || !strings.HasPrefix(left[0], ".out.old-") {
		t.Fatalf("parent holds %v, want only the old folder under its hidden name", left)
	}
	old := filepath.Join(parent, left[0])
	if !strings.Contains(err.Error(), old) {
		t.Errorf("error %q does not say the old folder is at %s", err, old)
	}
	if got := readTree(t, old); !maps.Equal(got, oldTree) {
		t.Errorf("old folder holds %v, want %v", got, oldTree)
	}
}

func TestReplaceDirBadTarget(t *testing.T) {
	parent := t.TempDir()
	file := filepath.Join(parent, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	called := false
	fill := func(d string) error { called = true; return nil }
	// A missing parent is made (TestMissingParent); a parent that is a
	// regular file cannot be.
	for _, dir := range []string{file, filepath.Join(file, "out")} {
		err := ReplaceDir(dir, fill)
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("ReplaceDir(%s): %v, want an error naming it", dir, err)
		}
	}
	if called {
		t.Error("fill was called although the target was unusable")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Errorf("the regular file now holds %q", b)
	}
	if got := names(t, parent); !slices.Equal(got, []string{"file"}) {
		t.Errorf("parent holds %v, want only file", got)
	}
}

// TestMissingParent checks that every writer creates the missing folders
// above its target, leaves only the target in the new folder (no
// temporary names) and writes the expected contents.
func TestMissingParent(t *testing.T) {
	fillDir := func(d string) error { return os.WriteFile(filepath.Join(d, "f"), []byte("dir"), 0o644) }
	for _, tc := range []struct {
		name  string
		write func(path string) error
		file  string // what to read below path: "" for path itself
		want  string
	}{
		{"Write", func(p string) error {
			return Write(p, func(w *bufio.Writer) error { _, err := w.WriteString("write"); return err })
		}, "", "write"},
		{"WriteFile", func(p string) error { return WriteFile(p, []byte("file")) }, "", "file"},
		{"WriteJSON", func(p string) error { return WriteJSON(p, 7) }, "", "7\n"},
		{"WriteDir", func(p string) error { return WriteDir(p, fillDir) }, "f", "dir"},
		{"ReplaceDir", func(p string) error { return ReplaceDir(p, fillDir) }, "f", "dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(root, "a", "b", "out")
			if err := tc.write(path); err != nil {
				t.Fatalf("%s into a missing folder: %v", tc.name, err)
			}
			got, err := os.ReadFile(filepath.Join(path, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("%s wrote %q, want %q", tc.name, got, tc.want)
			}
			if e := names(t, filepath.Join(root, "a", "b")); !slices.Equal(e, []string{"out"}) {
				t.Errorf("new parent holds %v, want only out", e)
			}
		})
	}
}

func TestTemporaryNames(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target string // "" when name is not a temporary
		old    bool
	}{
		{".run.json.tmp-4242", "run.json", false},
		{".adapter.old-17", "adapter", true},
		{".step-000004.tmp-123", "step-000004", false},
		{".a.tmp-1.old-2", "a.tmp-1", true}, // split at the last mark
		{".a.old-1.tmp-2", "a.old-1", false},
		{".a.tmp-0", "a", false},
		{".tmp-5", "", false},  // no target
		{"..tmp-5", "", false}, // an empty one
		{".a.tmp-", "", false}, // no suffix
		{".a.tmp-12x", "", false},
		{".a.tmp-x12", "", false},
		{"a.tmp-1", "", false}, // not hidden
		{".a.new-1", "", false},
		{".a.TMP-1", "", false},
		{".sora.lock", "", false},
		{"", "", false},
		{".", "", false},
	} {
		target, old, ok := Temporary(tc.name)
		if ok != (tc.target != "") || target != tc.target || old != tc.old {
			t.Errorf("Temporary(%q) = %q, %v, %v; want %q, %v, %v", tc.name, target, old, ok, tc.target, tc.old, tc.target != "")
		}
	}
}

// TestTemporaryKnowsTheWriters checks Temporary against the names the
// writers really make: the temporary file or folder seen from inside the
// write, and the old folder that a ReplaceDir failing between its renames
// leaves.
func TestTemporaryKnowsTheWriters(t *testing.T) {
	// only returns the one entry of dir other than those in skip.
	only := func(t *testing.T, dir string, skip ...string) string {
		t.Helper()
		var left []string
		for _, n := range names(t, dir) {
			if !slices.Contains(skip, n) {
				left = append(left, n)
			}
		}
		if len(left) != 1 {
			t.Fatalf("%s holds %v besides %v, want one temporary", dir, left, skip)
		}
		return left[0]
	}
	check := func(t *testing.T, name, target string, old bool) {
		t.Helper()
		if got, gotOld, ok := Temporary(name); !ok || got != target || gotOld != old {
			t.Errorf("Temporary(%q) = %q, %v, %v; want %q, %v, true", name, got, gotOld, ok, target, old)
		}
	}
	dir := t.TempDir()
	err := Write(filepath.Join(dir, "metrics.jsonl"), func(*bufio.Writer) error {
		check(t, only(t, dir), "metrics.jsonl", false)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, write := range map[string]func(string, func(string) error) error{"WriteDir": WriteDir, "ReplaceDir": ReplaceDir} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			err := write(filepath.Join(dir, "step-000002"), func(tmp string) error {
				check(t, filepath.Base(tmp), "step-000002", false)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	// Between ReplaceDir's two renames: the new folder under its
	// temporary name and the old one moved aside, as a kill there leaves
	// them.
	dir = t.TempDir()
	if err := writeTree(filepath.Join(dir, "adapter"), map[string]string{"a": "old"}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	rename = func(from, to string) error {
		if calls++; calls == 2 {
			got := names(t, dir)
			if len(got) != 2 {
				t.Fatalf("between the renames the folder holds %v, want the new and the old folder", got)
			}
			check(t, got[0], "adapter", true) // ".adapter.old-" sorts first
			check(t, got[1], "adapter", false)
		}
		return os.Rename(from, to)
	}
	t.Cleanup(func() { rename = os.Rename })
	if err := ReplaceDir(filepath.Join(dir, "adapter"), func(d string) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
