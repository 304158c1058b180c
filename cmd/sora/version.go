package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

var versionDoc = usageDoc{
	synopsis: "version",
	description: "Prints the module version of sora, the version-control revision it was built from (when the " +
		"build recorded one: building in a git checkout does, unless -buildvcs=false is set, e.g. in GOFLAGS), " +
		"the Go version and the target platform.",
	examples: []string{"sora version"},
}

func init() {
	register(command{
		name:    "version",
		summary: "print the version, revision and Go version sora was built with",
		run:     runVersion,
	})
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version")
	if code, ok := parseFlags(fs, versionDoc, args, stdout, stderr); !ok {
		return code
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		// Only binaries built without module support lack build info.
		fmt.Fprintf(stdout, "sora (no build information) %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	}
	fmt.Fprintln(stdout, versionLine(bi))
	return exitOK
}

// versionLine formats build information as
// "sora VERSION (revision REV[, modified], TIME) GOVERSION GOOS/GOARCH".
func versionLine(bi *debug.BuildInfo) string {
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var rev, when, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	vcs := "revision unknown"
	if rev != "" {
		vcs = "revision " + rev + modified
		if when != "" {
			vcs += ", " + when
		}
	}
	goVersion := bi.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	return fmt.Sprintf("sora %s (%s) %s %s/%s", version, vcs, goVersion, runtime.GOOS, runtime.GOARCH)
}
