package hostmem

import (
	"runtime"
	"testing"
)

func TestParse(t *testing.T) {
	const full = "MemTotal:       24440688 kB\nMemFree:        13461620 kB\nMemAvailable:   17955132 kB\nSwapTotal: 2097148 kB\nSwapFree:        1048576 kB\n"
	cases := []struct {
		name string
		in   string
		want Info
		ok   bool
	}{
		{"full", full, Info{Total: 24440688 << 10, Available: 17955132 << 10, SwapFree: 1048576 << 10}, true},
		{"no swap line", "MemTotal: 8 kB\nMemAvailable: 0 kB\n", Info{Total: 8 << 10}, true},
		{"no trailing newline", "MemAvailable: 3 kB\nMemTotal: 4 kB", Info{Total: 4 << 10, Available: 3 << 10}, true},
		{"no MemAvailable", "MemTotal: 5 kB\nSwapFree: 1 kB\n", Info{}, false},
		{"no MemTotal", "MemAvailable: 5 kB\n", Info{}, false},
		{"empty", "", Info{}, false},
		{"other unit", "MemTotal: 5 MB\nMemAvailable: 1 kB\n", Info{}, false},
		{"negative", "MemTotal: 5 kB\nMemAvailable: -1 kB\n", Info{}, false},
		{"not a number", "MemTotal: 5 kB\nMemAvailable: lots kB\n", Info{}, false},
		{"too large", "MemTotal: 9223372036854775807 kB\nMemAvailable: 1 kB\n", Info{}, false},
		{"twice", "MemTotal: 5 kB\nMemAvailable: 1 kB\nMemAvailable: 2 kB\n", Info{}, false},
		{"malformed swap", "MemTotal: 5 kB\nMemAvailable: 1 kB\nSwapFree: 1\n", Info{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Parse([]byte(c.in))
			if ok != c.ok || got != c.want {
				t.Errorf("Parse = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

// TestRead: on Linux the host's own /proc/meminfo parses, with Available
// at most Total; elsewhere Read says it cannot tell.
func TestRead(t *testing.T) {
	info, ok := Read()
	if runtime.GOOS != "linux" {
		if ok {
			t.Errorf("Read on %s = %+v, true; want false", runtime.GOOS, info)
		}
		return
	}
	if !ok {
		t.Skip("/proc/meminfo unreadable or without MemAvailable here")
	}
	if info.Total <= 0 || info.Available < 0 || info.Available > info.Total || info.SwapFree < 0 {
		t.Errorf("Read = %+v: want 0 ≤ Available ≤ Total, Total > 0, SwapFree ≥ 0", info)
	}
}

// FuzzParse: any text parses without a panic, and what parses is never
// negative.
func FuzzParse(f *testing.F) {
	f.Add([]byte("MemTotal: 8 kB\nMemAvailable: 4 kB\nSwapFree: 2 kB\n"))
	f.Add([]byte("MemAvailable: 9223372036854775807 kB"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, ok := Parse(data)
		if ok && (info.Total < 0 || info.Available < 0 || info.SwapFree < 0) {
			t.Errorf("Parse(%q) = %+v", data, info)
		}
		if !ok && info != (Info{}) {
			t.Errorf("Parse(%q) = %+v, false; want the zero Info with false", data, info)
		}
	})
}
