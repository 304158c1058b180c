package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"

	"github.com/sora-go/sora/internal/atomicfile"
)

// cpuProfileFlag defines --cpuprofile on fs.
func cpuProfileFlag(fs *flag.FlagSet) *string {
	return fs.String("cpuprofile", "", "write a CPU profile of the run to `FILE`, for go tool pprof")
}

// startCPUProfile starts the CPU profile that --cpuprofile path asks for
// (none when path is empty) and returns finish, to be deferred with the
// command's exit status: it stops the profile and writes it to path, and
// where that fails it says so on stderr and turns a successful status
// into exitFailure. The profile is kept in memory and written through a
// temporary file and a rename, so that an interrupted run leaves no
// half-written file. A profile that cannot start (its folder missing or
// not writable, path a folder, another profile running) returns a nil
// finish and the status to exit with, before anything runs.
func startCPUProfile(cmd, path string, stderr io.Writer) (finish func(status *int), code int) {
	if path == "" {
		return func(*int) {}, exitOK
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		fmt.Fprintf(stderr, "sora %s: --cpuprofile %s: folder %s does not exist\n", cmd, path, filepath.Dir(path))
		return nil, exitUsage
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		fmt.Fprintf(stderr, "sora %s: --cpuprofile %s is a folder; want a file name\n", cmd, path)
		return nil, exitUsage
	}
	// The folder must take the temporary file that the profile is written
	// through, which is better found out before the run than after it.
	probe, err := os.CreateTemp(filepath.Dir(path), ".cpuprofile-*")
	if err != nil {
		fmt.Fprintf(stderr, "sora %s: --cpuprofile %s: %v\n", cmd, path, err)
		return nil, exitFailure
	}
	probe.Close()
	os.Remove(probe.Name())
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		fmt.Fprintf(stderr, "sora %s: --cpuprofile: %v\n", cmd, err)
		return nil, exitFailure
	}
	return func(status *int) {
		pprof.StopCPUProfile()
		if err := atomicfile.WriteFile(path, buf.Bytes()); err != nil {
			fmt.Fprintf(stderr, "sora %s: --cpuprofile: %v\n", cmd, err)
			if *status == exitOK {
				*status = exitFailure
			}
		}
	}, exitOK
}
