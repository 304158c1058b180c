package hostmem

import (
	"strconv"
	"strings"
	"testing"
)

func TestFormatSize(t *testing.T) {
	cases := []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {3 << 20, "3.0 MiB"},
		{1<<20 - 10, "1.0 MiB"}, {1<<30 - 1<<15, "1.0 GiB"}, // 1023.97 MiB rounds to a whole GiB
		{17955132 << 10, "17.1 GiB"}, {150 << 30, "150.0 GiB"}, {139_800_000_000, "130.2 GiB"},
		{5 << 40, "5.0 TiB"}, {2048 << 40, "2048.0 TiB"}, {3 << 50, "3072.0 TiB"},
	}
	for _, c := range cases {
		if got := FormatSize(c.n); got != c.want {
			t.Errorf("FormatSize(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  string // part of the error, "" for none
	}{
		{"0", 0, ""},
		{"1073741824", 1 << 30, ""},
		{"512B", 512, ""},
		{"3KiB", 3 << 10, ""},
		{"512MiB", 512 << 20, ""},
		{"16GiB", 16 << 30, ""},
		{"2TiB", 2 << 40, ""},
		{"8388607TiB", 8388607 << 40, ""},
		{"8388608TiB", 0, "more bytes than an int64"},
		{"16GB", 0, "not a byte count"},
		{"16 GiB", 0, "not a byte count"},
		{"1.5GiB", 0, "not a byte count"},
		{"-1", 0, "not a byte count"},
		{"+1", 0, "not a byte count"},
		{"GiB", 0, "not a byte count"},
		{"", 0, "not a byte count"},
		{"lots", 0, "not a byte count"},
		{"99999999999999999999", 0, "not a byte count"},
	}
	for _, c := range cases {
		got, err := ParseSize(c.in)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseSize(%q) = %d, %v; want an error saying %q", c.in, got, err, c.err)
		}
	}
}

// FuzzParseSize: any text gives a non-negative count or an error, and a
// count written back in plain bytes parses to itself.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"16GiB", "0", "512B", "8388608TiB", "1.5GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		if back, err := ParseSize(strconv.FormatInt(n, 10) + "B"); err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d, but %dB parses to %d, %v", s, n, n, back, err)
		}
	})
}
