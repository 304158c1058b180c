package atomicfile

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
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
