// Package atomicfile writes files and folders so that readers never see a
// partial result: data goes to a temporary name in the destination's own
// directory (so the final rename stays on one file system) and is renamed
// into place only after it has been written and synced. Files end up
// readable by everyone (0644), folders 0755, like those of ordinary tools;
// the temporary names start private. Missing parent folders of the
// destination are created (0755), as os.MkdirAll would, so callers need
// not make them first; they are not removed again if the write fails.
package atomicfile

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The temporaries beside a destination NAME are ".NAME" followed by one of
// these marks and the decimal random suffix that os.CreateTemp and
// os.MkdirTemp put in place of the "*" in their pattern. Temporary parses
// the same names; nothing else should.
const (
	tmpMark = ".tmp-" // a file or folder being written
	oldMark = ".old-" // a folder that ReplaceDir moved aside
)

// Temporary reports whether name, a file or folder name without its
// folder, is one of the temporaries that this package's writers make
// beside a destination, and if so for which: target is the destination's
// name, and old says which kind. ".TARGET.tmp-DIGITS" (old false) is a
// file or folder being written, which Write, WriteFile, WriteJSON,
// WriteDir and ReplaceDir remove themselves on an error; ".TARGET.old-DIGITS"
// (old true) is the folder that ReplaceDir moved aside, removed once the
// new one is in place. A process killed while writing leaves them behind:
// a program that alone writes into a folder can find them by name, and
// should remove an old one only where TARGET exists again (else it is the
// only copy).
func Temporary(name string) (target string, old, ok bool) {
	if !strings.HasPrefix(name, ".") {
		return "", false, false
	}
	// The suffix is digits only, so the last mark is the one to split at.
	i := max(strings.LastIndex(name, tmpMark), strings.LastIndex(name, oldMark))
	if i < 1 { // none, or no room for a target after the dot
		return "", false, false
	}
	digits := name[i+len(tmpMark):] // both marks are as long
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", false, false
	}
	target = name[1:i]
	if target == "" {
		return "", false, false
	}
	return target, name[i:i+len(oldMark)] == oldMark, true
}

// Write creates or replaces the file at path with what write produces. write
// gets a buffered writer that Write flushes. Missing parent folders of path
// are created. On any error the temporary file is removed and path is left
// as it was.
func Write(path string, write func(w *bufio.Writer) error) (err error) {
	if err = makeParent(path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+tmpMark+"*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file private; the result is an ordinary file.
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(tmp, 1<<16)
	if err = write(bw); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// WriteFile creates or replaces the file at path with data, as Write does.
func WriteFile(path string, data []byte) error {
	return Write(path, func(w *bufio.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteJSON creates or replaces the file at path with v encoded as
// indented JSON and a final newline, as WriteFile does. An encoding error
// names path.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	return WriteFile(path, append(b, '\n'))
}

// WriteDir fills the folder dir by calling fill with the folder to write
// into. If dir does not exist, fill writes into a new temporary sibling
// folder that is renamed to dir at the end, so dir appears complete or not
// at all. If dir already exists, fill writes into it directly and should
// replace each file with Write, so every file is whole even though the set
// of files is updated one by one. Missing parent folders of dir are
// created.
func WriteDir(dir string, fill func(dir string) error) (err error) {
	st, err := os.Stat(dir)
	if err == nil {
		if !st.IsDir() {
			return fmt.Errorf("writing %s: exists and is not a folder", dir)
		}
		return fill(dir)
	}
	if !os.IsNotExist(err) {
		return fmt.Errorf("writing %s: %w", dir, err)
	}
	clean := filepath.Clean(dir)
	tmp, err := fillTemp(clean, fill, "writing")
	if err != nil {
		return err
	}
	if err = os.Rename(tmp, clean); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("writing %s: %w", dir, err)
	}
	return nil
}

// makeParent creates the missing parent folders of path, so that the
// temporary file or folder beside it can be made.
func makeParent(path string) error {
	return os.MkdirAll(filepath.Dir(filepath.Clean(path)), 0o755)
}

// fillTemp makes a new hidden sibling folder of dir (creating dir's
// missing parents first), has fill write into it and gives it the usual
// permissions, returning its path. On error the temporary folder is
// removed; fill's error is returned as it is, the others say what was
// being done to dir (verb).
func fillTemp(dir string, fill func(dir string) error, verb string) (tmp string, err error) {
	if err = makeParent(dir); err != nil {
		return "", fmt.Errorf("%s %s: %w", verb, dir, err)
	}
	tmp, err = os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+tmpMark+"*")
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", verb, dir, err)
	}
	if err = fill(tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	// MkdirTemp makes the folder 0700; give it the usual permissions.
	if err = os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("%s %s: %w", verb, dir, err)
	}
	return tmp, nil
}

// rename is os.Rename; tests replace it to fail ReplaceDir between its
// two renames.
var rename = os.Rename

// ReplaceDir creates or replaces the folder dir with a new one that fill
// writes: fill gets a new temporary sibling folder, which is renamed to dir
// only after fill returns nil, so files of an older dir never mix with new
// ones. The old folder is first renamed aside under a hidden name and
// removed once the new one is in place; if that last rename fails it is
// put back. dir is thus the old folder or the complete new one, except for
// the moment between the two renames when it is absent (a portable rename
// cannot swap two folders). On any error no temporary folder is left and
// an existing dir is left as it was (should putting it back fail too, the
// error says where it is). Missing parent folders of dir are created;
// fill's error is returned as it is, the others name dir.
func ReplaceDir(dir string, fill func(dir string) error) (err error) {
	clean := filepath.Clean(dir)
	if st, err := os.Lstat(clean); err == nil && !st.IsDir() {
		return fmt.Errorf("replacing %s: exists and is not a folder", dir)
	}
	parent, base := filepath.Dir(clean), filepath.Base(clean)
	tmp, err := fillTemp(clean, fill, "replacing")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	old := ""
	if _, statErr := os.Lstat(clean); statErr == nil {
		// Named after tmp, whose random suffix keeps it unique.
		old = filepath.Join(parent, "."+base+oldMark+filepath.Base(tmp)[len("."+base+tmpMark):])
		if err = rename(clean, old); err != nil {
			return fmt.Errorf("replacing %s: moving the old folder aside: %w", dir, err)
		}
	}
	if err = rename(tmp, clean); err != nil {
		if old != "" {
			if backErr := rename(old, clean); backErr != nil {
				return fmt.Errorf("replacing %s: %w (and the old folder could not be put back from %s: %v)", dir, err, old, backErr)
			}
		}
		return fmt.Errorf("replacing %s: %w", dir, err)
	}
	if old != "" {
		// The new folder is in place; a leftover hidden old one is untidy
		// but harmless, so a failure here is not the caller's error.
		os.RemoveAll(old)
	}
	return nil
}
