package train

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LockFile is the file inside an output folder through which a run holds
// the folder (see [LockOutput]). It is removed when the run ends.
const LockFile = ".sora.lock"

// OutputLock is a run's exclusive hold on its output folder, from
// [LockOutput]: while one process holds it, no other run can write
// checkpoints, metrics or an adapter there.
type OutputLock struct {
	dir, path string
	// created are the folders LockOutput created, dir and the parents it
	// lacked, deepest first: Unlock removes those left empty.
	created []string
	file    *os.File    // the locked file (advisory locks), or nil
	id      os.FileInfo // the lock file, as this process holds it
	holder  string      // the holder line written into it
	note    string      // see Note
}

// held are the output locks this process holds. A second LockOutput of a
// folder in the same process is refused through them, without opening
// the lock file: where the file system emulates flock with fcntl locks
// (Linux's NFS client), locks do not conflict within a process, and the
// process loses them when it closes any descriptor of the file, as a
// refused call would. The mutex is held over every taking and release.
var held struct {
	sync.Mutex
	locks []*OutputLock
}

// Dir returns the output folder the lock holds, as LockOutput was given
// it.
func (l *OutputLock) Dir() string { return l.dir }

// Note says, when not "", how the lock holds the folder where that differs
// from what LockOutput's documentation says for the system, for the caller
// to show: where the file system of the folder refuses advisory locks, the
// lock file alone holds it, and a run killed before it could remove the
// file keeps later runs out until it is removed.
func (l *OutputLock) Note() string { return l.note }

// OutputInUseError is LockOutput's error when another run holds the
// folder.
type OutputInUseError struct {
	Dir string
	// Holder describes the process that holds it, as it wrote it into the
	// lock file ("pid 1234 on host, since …"; "" when unknown).
	Holder string
	// Stale, when not "", says how to release a lock that a killed process
	// may have left: where the lock does not end with its process (see
	// LockOutput), the file that makes it.
	Stale string
}

func (e *OutputInUseError) Error() string {
	who := "another sora process"
	if strings.HasPrefix(e.Holder, "pid "+strconv.Itoa(os.Getpid())+" ") {
		who = "another run in this process"
	}
	if e.Holder != "" {
		who += " (" + e.Holder + ")"
	}
	msg := fmt.Sprintf("train: the output folder %s is in use by %s; two runs writing one folder would overwrite each other's checkpoints: wait for that run to end, or choose another output folder", e.Dir, who)
	if e.Stale != "" {
		msg += "; " + e.Stale
	}
	return msg
}

// LockOutput takes the output folder out for the calling run alone,
// creating it (and its missing parents) if need be, and fails at once with
// an [*OutputInUseError] naming out if another run holds it. A run holds
// its folder from before it first looks into it (for a checkpoint to
// resume) until it has written its last file, so that two runs started
// together into one folder, or a --resume while a run is writing there,
// cannot overwrite each other's checkpoints. [Trainer.Run] takes the lock
// itself unless it is given one (Trainer.OutputLock).
//
// On Linux, macOS, the BSDs and illumos the lock is an advisory lock
// (flock) on LockFile inside out, and on Windows a byte-range lock
// (LockFileEx) on it, which the system releases when the process ends
// however it ends, so a killed run leaves no lock behind (at most the
// file, which the next run takes over). Elsewhere (Plan 9, Solaris, AIX,
// WebAssembly) the lock is the file itself, created only if absent: a
// run killed before it could remove it leaves it, and the next run is
// refused with a message saying which process held it and that the file
// may be removed once no run is using the folder. So it is too where the
// file system of out refuses advisory locks (some network and cluster file
// systems): the lock then says so in [OutputLock.Note].
//
// Call [OutputLock.Unlock] when the run is done.
func LockOutput(out string) (*OutputLock, error) { return lockOutput(out, lockFile) }

// lockOutput is LockOutput with the locking of the file, lock, given (so
// that tests reach both kinds).
func lockOutput(out string, lock func(*OutputLock) error) (*OutputLock, error) {
	created, err := mkdirAllCreated(out)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	l := &OutputLock{dir: out, path: filepath.Join(out, LockFile), created: created, holder: holderLine()}
	held.Lock()
	defer held.Unlock()
	if fi, err := os.Stat(l.path); err == nil {
		for _, h := range held.locks {
			if os.SameFile(h.id, fi) {
				return nil, &OutputInUseError{Dir: out, Holder: h.holder}
			}
		}
	}
	if err := lock(l); err != nil {
		removeEmpty(l.created)
		return nil, err
	}
	if l.file != nil {
		l.id, _ = l.file.Stat()
	} else {
		l.id, _ = os.Stat(l.path)
	}
	held.locks = append(held.locks, l)
	return l, nil
}

// Unlock releases the output folder: it removes the lock file and, if
// LockOutput created the folder and the run left nothing in it, the
// folder, and then each parent folder LockOutput created that is left
// empty (a run into runs/a/b that made runs/ leaves no runs/ behind
// when it fails), stopping at the first that is not. It may be called
// more than once, from any goroutine.
func (l *OutputLock) Unlock() error {
	held.Lock()
	defer held.Unlock()
	if l == nil || l.path == "" {
		return nil
	}
	held.locks = slices.DeleteFunc(held.locks, func(h *OutputLock) bool { return h == l })
	var err error
	if l.file != nil {
		err = releaseFile(l)
		l.file = nil
	} else {
		err = os.Remove(l.path)
	}
	l.path = ""
	removeEmpty(l.created)
	l.created = nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("train: releasing %s: %w", l.dir, err)
	}
	return nil
}

// mkdirAllCreated creates the folder dir and its missing parents, as
// os.MkdirAll does, and returns the folders that were missing, deepest
// first: dir itself where it was missing, then its parents up to the
// first that existed.
func mkdirAllCreated(dir string) ([]string, error) {
	var missing []string
	for p := filepath.Clean(dir); ; {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			break
		}
		missing = append(missing, p)
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return missing, nil
}

// removeEmpty removes the folders dirs, deepest first, as long as each is
// empty: os.Remove takes a folder only then, so a folder that another run
// (or the user) has put something in since stays, and so do its parents.
func removeEmpty(dirs []string) {
	for _, d := range dirs {
		if os.Remove(d) != nil {
			return
		}
	}
}

// holds reports whether the lock holds the folder dir (the same folder,
// however named).
func (l *OutputLock) holds(dir string) bool {
	held.Lock()
	defer held.Unlock()
	if l == nil || l.path == "" {
		return false
	}
	a, err1 := os.Stat(l.dir)
	b, err2 := os.Stat(dir)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// holderLine is what a run writes into its lock file: who holds the
// folder, for the error of a run refused.
func holderLine() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "this host"
	}
	return fmt.Sprintf("pid %d on %s, since %s", os.Getpid(), host, time.Now().Format(time.DateTime))
}

// readHolder returns the holder line of the lock file at path ("" if it
// cannot be read or has none yet: the holder writes it just after taking
// the lock).
func readHolder(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	return holderIn(f)
}

// holderIn returns the holder line at the start of the lock file f,
// read through f, as readHolder does.
func holderIn(f io.ReaderAt) string {
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	line, _, _ := strings.Cut(string(b[:n]), "\n")
	if !strings.HasPrefix(line, "pid ") || len(line) > 200 {
		return ""
	}
	return line
}

// lockExclusive takes the lock by creating the lock file, which must not
// exist, and writing the holder into it. It is the lock where the system
// has no advisory locks the process's end releases (see LockOutput).
func lockExclusive(l *OutputLock) error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return &OutputInUseError{Dir: l.dir, Holder: readHolder(l.path),
			Stale: fmt.Sprintf("if no sora run is using it (a run that was killed leaves the lock behind on this system), remove %s", l.path)}
	}
	if err != nil {
		return fmt.Errorf("train: locking %s: %w", l.dir, err)
	}
	_, err = f.WriteString(l.holder + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(l.path)
		return fmt.Errorf("train: locking %s: %w", l.dir, err)
	}
	return nil
}
