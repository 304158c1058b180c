package ascend

import (
	"os"
	"path/filepath"
	"strings"
)

// The library file names. libascendcl.so is the ACL runtime,
// libnnopbase.so makes the aclTensor/aclScalar/... descriptions, and the
// aclnn operators come either from one libopapi.so or, in newer CANN
// releases, from the split libraries below.
const (
	libRuntime  = "libascendcl.so"
	libNNOpBase = "libnnopbase.so"
	libOpAPI    = "libopapi.so"
)

// splitOpAPI are the split operator libraries, all of which must be present
// in one folder for that layout to be used.
var splitOpAPI = []string{"libopapi_math.so", "libopapi_nn.so", "libopapi_transformer.so"}

// location says where the libraries were found.
type location struct {
	runtime  string   // path of libascendcl.so
	nnopbase string   // path of libnnopbase.so
	opapi    []string // libopapi.so alone, or the three split libraries
	// layout names the operator library layout: "libopapi.so" or
	// "split (libopapi_math.so, libopapi_nn.so, libopapi_transformer.so)".
	layout string
}

// searchDir is one folder of the search with the reason it is searched.
type searchDir struct {
	path, origin string
}

func (d searchDir) label() string {
	if d.origin == "" {
		return d.path
	}
	return d.path + " ($" + d.origin + ")"
}

// defaultToolkit is where CANN's installer puts the toolkit.
const defaultToolkit = "/usr/local/Ascend/ascend-toolkit/latest/lib64"

// searchEnv is what the search depends on, so tests can point it at
// temporary folders.
type searchEnv struct {
	getenv func(string) string
	// isFile reports whether path names an existing regular file (or a
	// link to one); isDir likewise for a folder.
	isFile, isDir func(path string) bool
	// defaultDir replaces defaultToolkit; tests set it to a folder of their
	// own.
	defaultDir string
}

func systemSearchEnv() searchEnv {
	return searchEnv{
		getenv: os.Getenv,
		isFile: func(p string) bool {
			fi, err := os.Stat(p)
			return err == nil && fi.Mode().IsRegular()
		},
		isDir: func(p string) bool {
			fi, err := os.Stat(p)
			return err == nil && fi.IsDir()
		},
		defaultDir: defaultToolkit,
	}
}

// dirs returns the folders to search, in order: each entry of
// SORA_ASCEND_PATH and its lib64, $ASCEND_HOME_PATH/lib64,
// $ASCEND_TOOLKIT_HOME/lib64, the installer's default folder, then each
// entry of LD_LIBRARY_PATH. Duplicates are dropped.
func (e searchEnv) dirs() []searchDir {
	var out []searchDir
	seen := map[string]bool{}
	add := func(p, origin string) {
		if p == "" {
			return
		}
		p = filepath.Clean(p)
		if seen[p] {
			return
		}
		seen[p] = true
		out = append(out, searchDir{p, origin})
	}
	for _, p := range filepath.SplitList(e.getenv("SORA_ASCEND_PATH")) {
		if p == "" {
			continue
		}
		add(p, "SORA_ASCEND_PATH")
		add(filepath.Join(p, "lib64"), "SORA_ASCEND_PATH")
	}
	for _, v := range []string{"ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"} {
		if p := e.getenv(v); p != "" {
			add(filepath.Join(p, "lib64"), v)
		}
	}
	add(e.defaultDir, "")
	for _, p := range filepath.SplitList(e.getenv("LD_LIBRARY_PATH")) {
		add(p, "LD_LIBRARY_PATH")
	}
	return out
}

// locate finds the libraries. It returns what it tried (one entry per
// folder) and, when something is missing, an error naming exactly what.
// In the folder where the operators are found, libopapi.so wins over the
// split libraries: the two layouts are never loaded together.
func (e searchEnv) locate() (location, []string, error) {
	dirs := e.dirs()
	var loc location
	var tried []string
	for _, d := range dirs {
		var found, notes []string
		if p := filepath.Join(d.path, libRuntime); e.isFile(p) {
			found = append(found, libRuntime)
			if loc.runtime == "" {
				loc.runtime = p
			}
		}
		if p := filepath.Join(d.path, libNNOpBase); e.isFile(p) {
			found = append(found, libNNOpBase)
			if loc.nnopbase == "" {
				loc.nnopbase = p
			}
		}
		var split, missingSplit []string
		for _, n := range splitOpAPI {
			if p := filepath.Join(d.path, n); e.isFile(p) {
				split = append(split, p)
			} else {
				missingSplit = append(missingSplit, n)
			}
		}
		mono := filepath.Join(d.path, libOpAPI)
		switch {
		case e.isFile(mono):
			found = append(found, libOpAPI)
			if len(split) > 0 {
				notes = append(notes, "split operator libraries ignored in favour of "+libOpAPI)
			}
			if loc.opapi == nil {
				loc.opapi = []string{mono}
				loc.layout = libOpAPI
			}
		case len(missingSplit) == 0:
			found = append(found, "libopapi_{math,nn,transformer}.so")
			if loc.opapi == nil {
				loc.opapi = split
				loc.layout = "split (" + strings.Join(splitOpAPI, ", ") + ")"
			}
		case len(split) > 0:
			notes = append(notes, "incomplete split operator libraries, missing "+strings.Join(missingSplit, ", "))
		}
		entry := d.label() + ": "
		switch {
		case len(found) == 0 && !e.isDir(d.path):
			entry += "no such folder"
		case len(found) == 0:
			entry += "nothing"
		default:
			entry += strings.Join(found, ", ")
		}
		if len(notes) > 0 {
			entry += " (" + strings.Join(notes, "; ") + ")"
		}
		tried = append(tried, entry)
	}
	var missing []string
	if loc.runtime == "" {
		missing = append(missing, libRuntime)
	}
	if loc.nnopbase == "" {
		missing = append(missing, libNNOpBase)
	}
	if loc.opapi == nil {
		missing = append(missing, libOpAPI+" (or "+strings.Join(splitOpAPI, " + ")+")")
	}
	if len(missing) > 0 {
		reason := "not found: " + strings.Join(missing, ", ")
		if len(dirs) == 0 {
			reason += "; no folder to search (set SORA_ASCEND_PATH or ASCEND_HOME_PATH)"
		}
		return location{}, tried, &missingError{reason}
	}
	return loc, tried, nil
}

// missingError says which libraries were not found.
type missingError struct{ reason string }

func (e *missingError) Error() string { return e.reason }
