package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// writeFileAtomic creates or replaces path with data: it writes a
// temporary file beside it, syncs it and renames it into place, so path
// never holds a partial file.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file private; the result is an ordinary file.
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	return nil
}

// writeJSONAtomic writes v as indented JSON with writeFileAtomic.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("train: encoding %s: %w", path, err)
	}
	return writeFileAtomic(path, append(b, '\n'))
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
