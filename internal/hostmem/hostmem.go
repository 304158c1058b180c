// Package hostmem reads how much memory the host has and has free, as
// Linux's /proc/meminfo reports it, for the limits and budgets that keep a
// run from being killed for lack of memory without a word.
package hostmem

import (
	"math"
	"os"
	"strconv"
	"strings"
)

// Info is the part of /proc/meminfo this project uses, in bytes.
type Info struct {
	// Total is MemTotal: the RAM the kernel manages.
	Total int64
	// Available is MemAvailable: the kernel's estimate of what a new
	// workload can take without swapping, free memory and the page cache
	// it can reclaim included.
	Available int64
	// SwapFree is the swap space left (0 without swap).
	SwapFree int64
}

// Read returns the host's Info and whether it could be read: false where
// there is no /proc/meminfo (an operating system other than Linux) or it
// lacks MemAvailable (kernels before 3.14).
func Read() (Info, bool) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return Info{}, false
	}
	return Parse(data)
}

// Parse reads the MemTotal, MemAvailable and SwapFree lines ("Name: N
// kB") of a /proc/meminfo's text. It reports false where MemTotal or
// MemAvailable is missing, or any of the three is malformed, negative or
// beyond an int64 of bytes; a missing SwapFree is 0.
func Parse(data []byte) (Info, bool) {
	var info Info
	fields := []struct {
		name string
		dst  *int64
		seen bool
	}{{"MemTotal:", &info.Total, false}, {"MemAvailable:", &info.Available, false}, {"SwapFree:", &info.SwapFree, false}}
	for line := range strings.Lines(string(data)) {
		for i := range fields {
			f := &fields[i]
			rest, ok := strings.CutPrefix(line, f.name)
			if !ok {
				continue
			}
			n, ok := kilobytes(rest)
			if !ok || f.seen {
				return Info{}, false
			}
			*f.dst, f.seen = n, true
		}
	}
	if !fields[0].seen || !fields[1].seen {
		return Info{}, false
	}
	return info, true
}

// kilobytes reads " N kB" as N·1024 bytes.
func kilobytes(s string) (int64, bool) {
	f := strings.Fields(s)
	if len(f) != 2 || f[1] != "kB" {
		return 0, false
	}
	kb, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || kb < 0 || kb > math.MaxInt64/1024 {
		return 0, false
	}
	return kb * 1024, true
}
