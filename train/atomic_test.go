package train

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteDirAtomic checks what train adds to atomicfile.ReplaceDir: the
// parent folders are created, fill's error comes back unchanged (it already
// says "train:"), and ReplaceDir's own errors get the package prefix.
func TestWriteDirAtomic(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "out")
	write := func(v string) func(string) error {
		return func(d string) error { return os.WriteFile(filepath.Join(d, "f"), []byte(v), 0o644) }
	}
	for _, v := range []string{"first", "second"} {
		if err := writeDirAtomic(dir, write(v)); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != v {
			t.Fatalf("after writing %q: %q, %v", v, b, err)
		}
	}

	fillErr := errors.New("train: fill failed")
	if err := writeDirAtomic(dir, func(string) error { return fillErr }); err != fillErr {
		t.Errorf("fill's error came back as %v, want it unchanged", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "second" {
		t.Errorf("a failed write changed the folder: f = %q", b)
	}

	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := writeDirAtomic(file, write("x"))
	if err == nil || !strings.HasPrefix(err.Error(), "train: ") || !strings.Contains(err.Error(), file) {
		t.Errorf("over a regular file: %v, want a train: error naming %s", err, file)
	}
}
