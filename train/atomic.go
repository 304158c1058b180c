package train

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sora-go/sora/internal/atomicfile"
)

// writeFileAtomic creates or replaces path with data through a synced
// temporary file renamed into place (atomicfile.WriteFile), so path never
// holds a partial file.
func writeFileAtomic(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// writeJSONAtomic writes v as indented JSON through atomicfile.WriteJSON.
func writeJSONAtomic(path string, v any) error {
	if err := atomicfile.WriteJSON(path, v); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// writeDirAtomic fills a new temporary folder beside dir with fill and
// renames it to dir, replacing any folder of that name, so that dir is
// always either the old folder or the complete new one (for a moment
// between two renames it is absent, and the old one sits under a hidden
// name beside it).
func writeDirAtomic(dir string, fill func(tmp string) error) (err error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err = fill(tmp); err != nil {
		return err
	}
	if err = os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	var old string
	if _, statErr := os.Stat(dir); statErr == nil {
		old = filepath.Join(parent, "."+filepath.Base(dir)+".old-"+filepath.Base(tmp))
		if err = os.Rename(dir, old); err != nil {
			return fmt.Errorf("train: replacing %s: %w", dir, err)
		}
	}
	if err = os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return fmt.Errorf("train: writing %s: %w", dir, err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}
