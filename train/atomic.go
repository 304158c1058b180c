package train

import (
	"fmt"

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

// writeDirAtomic creates or replaces dir, and its missing parent
// folders, with a folder that fill writes (atomicfile.ReplaceDir), so that
// dir is always either the old folder or the complete new one. fill's
// error is returned as it is.
func writeDirAtomic(dir string, fill func(tmp string) error) error {
	var fillErr error
	err := atomicfile.ReplaceDir(dir, func(tmp string) error {
		fillErr = fill(tmp)
		return fillErr
	})
	if err != nil && fillErr == nil {
		return fmt.Errorf("train: %w", err)
	}
	return err
}
