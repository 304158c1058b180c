package hostmem

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// FormatSize writes n bytes with a binary unit and one decimal, as "512
// B", "1.5 KiB", "17.9 GiB", the unit chosen so that the number stays
// below 1024 once rounded.
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	v, u := float64(n)/unit, 0
	// 1023.97 MiB is 1.0 GiB, not 1024.0 MiB.
	for math.Round(v*10) >= 10*unit && u < len(units)-1 {
		v /= unit
		u++
	}
	return fmt.Sprintf("%.1f %s", v, units[u])
}

// sizeUnits are ParseSize's suffixes, longest first so that "B" is tried
// after the others end in it.
var sizeUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

// ParseSize reads a byte count written as GOMEMLIMIT writes one: a
// non-negative integer with an optional unit B, KiB, MiB, GiB or TiB
// ("512MiB", "16GiB", "1073741824"). It rejects anything else, decimal
// units (MB, GB) included, and counts beyond an int64.
func ParseSize(s string) (int64, error) {
	num, shift := s, uint(0)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = rest, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || num == "" || num[0] == '+' || num[0] == '-' {
		return 0, fmt.Errorf("%q is not a byte count: want a whole number with an optional unit B, KiB, MiB, GiB or TiB, such as 16GiB", s)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q is more bytes than an int64 holds", s)
	}
	return n << shift, nil
}
