package ascend

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

func init() {
	backend.Register("ascend", driver{})
}

// MatMulMode selects the cube unit's arithmetic for float32 matrix products
// (the aclnn cubeMathType argument).
type MatMulMode int8

const (
	// MatMulAuto, the zero value, is MatMulKeepFloat32 where the chip has
	// a float32 cube mode and MatMulFast where it has none: the Atlas
	// training series (Ascend910A, Ascend910ProA, Ascend910ProB,
	// Ascend910PremiumA, Ascend910B) and inference series (Ascend310P*),
	// for which CANN documents cubeMathType KEEP_DTYPE with float32 inputs
	// as unsupported (aclnnMm reports an error). Open resolves it, and
	// Device says which mode it chose and why.
	MatMulAuto MatMulMode = iota
	// MatMulKeepFloat32 computes in float32 (cubeMathType 0, KEEP_DTYPE).
	// Open refuses it on the chips MatMulAuto lists.
	MatMulKeepFloat32
	// MatMulFast lets the cube unit round float32 inputs down (cubeMathType
	// 1, ALLOW_FP32_DOWN_PRECISION): HFLOAT32 on Atlas A2 and A3 parts,
	// FLOAT16 (10-bit mantissa, magnitudes up to 65504) on the Atlas
	// training and inference series. Its results meet [FastMatMulNMSE]
	// rather than the float32 tolerance.
	MatMulFast
)

// String names the mode as SORA_ASCEND_MATMUL spells it.
func (m MatMulMode) String() string {
	switch m {
	case MatMulAuto:
		return "auto"
	case MatMulKeepFloat32:
		return "float32"
	case MatMulFast:
		return "fast"
	}
	return fmt.Sprintf("MatMulMode(%d)", int8(m))
}

// cubeMathType is the aclnn argument of a resolved mode.
func (m MatMulMode) cubeMathType() int8 {
	if m == MatMulFast {
		return cubeAllowDownPrecision
	}
	return cubeKeepDtype
}

// float16Cube reports whether the chip soc (as aclrtGetSocName names it)
// is an Atlas training or inference series part, whose cube unit has no
// float32 mode and rounds float32 inputs to FLOAT16 in cubeMathType 1. The
// names are those torch_npu knows for these parts; an unknown name
// (including "") is taken for a chip with a float32 mode, whose aclnnMm
// then reports any error itself.
func float16Cube(soc string) bool {
	switch soc {
	case "Ascend910PremiumA", "Ascend910ProA", "Ascend910A", "Ascend910ProB", "Ascend910B":
		return true
	}
	return strings.HasPrefix(soc, "Ascend310P")
}

// resolveMatMul turns the requested mode into the one the chip soc runs,
// with a note for Device when the chip chose it.
func resolveMatMul(m MatMulMode, soc string) (MatMulMode, string, error) {
	switch m {
	case MatMulAuto:
		if float16Cube(soc) {
			return MatMulFast, "the default on " + soc + ", which has no float32 cube mode", nil
		}
		return MatMulKeepFloat32, "", nil
	case MatMulKeepFloat32:
		if float16Cube(soc) {
			return 0, "", fmt.Errorf("ascend: %s cannot compute float32 matrix products in float32: CANN's aclnn matrix "+
				"products do not support cubeMathType KEEP_DTYPE with float32 inputs on the Atlas training and inference "+
				"series; use SORA_ASCEND_MATMUL=fast (or auto), or Options.MatMul = MatMulFast (or MatMulAuto), which "+
				"round the inputs to FLOAT16", soc)
		}
		return m, "", nil
	case MatMulFast:
		return m, "", nil
	}
	return 0, "", fmt.Errorf("ascend: unknown matmul mode %d", m)
}

// FastMatMulNMSE is the normalised mean squared error (Σ(out−ref)²/Σref²)
// that MatMul results meet in MatMulFast mode on inputs of moderate range.
// Rounding inputs to an 11-bit mantissa (HFLOAT32) gives relative errors of
// about 2⁻¹² per product, an NMSE near 1e-7; FLOAT16 inputs (10 bits, and a
// narrower range) about 4e-7. The bound leaves an order of magnitude of
// room; the float32 mode is held to the conformance suite's matmul
// threshold instead.
const FastMatMulNMSE = 1e-5

// Options configure Open.
type Options struct {
	// Device is the device id (aclrtSetDevice); 0 by default.
	Device int
	// MatMul selects the matrix-product arithmetic.
	MatMul MatMulMode
}

// optionsFromEnv reads SORA_ASCEND_DEVICE (a device id) and
// SORA_ASCEND_MATMUL ("auto", the default, "float32" or "fast").
func optionsFromEnv(getenv func(string) string) (Options, error) {
	var o Options
	if s := getenv("SORA_ASCEND_DEVICE"); s != "" {
		d, err := strconv.Atoi(s)
		if err != nil || d < 0 {
			return o, fmt.Errorf("ascend: SORA_ASCEND_DEVICE=%q: want a device id (0, 1, ...)", s)
		}
		o.Device = d
	}
	switch s := strings.ToLower(getenv("SORA_ASCEND_MATMUL")); s {
	case "", "auto":
		o.MatMul = MatMulAuto
	case "float32", "keep":
		o.MatMul = MatMulKeepFloat32
	case "fast":
		o.MatMul = MatMulFast
	default:
		return o, fmt.Errorf("ascend: SORA_ASCEND_MATMUL=%q: want \"auto\", \"float32\" or \"fast\"", s)
	}
	return o, nil
}

type driver struct{}

func unavailable(reason string, tried []string) error {
	return &backend.UnavailableError{Backend: "ascend", Reason: reason, Tried: tried}
}

// Probe loads the libraries and counts devices without claiming one.
func (driver) Probe() (string, error) {
	l, err := loadLibrary()
	if err != nil {
		return "", err
	}
	lockThread()
	defer unlockThread()
	if err := l.ensureInit(); err != nil {
		return "", unavailable(err.Error(), nil)
	}
	var n uint32
	if err := l.status("aclrtGetDeviceCount", ccall(l.getDeviceCount, uintptr(unsafe.Pointer(&n)))); err != nil {
		return "", unavailable(err.Error(), nil)
	}
	if n == 0 {
		return "", unavailable("aclrtGetDeviceCount reports no Ascend device", nil)
	}
	return fmt.Sprintf("%s, %d device(s); %s", chip(l.socName()), n, l.describe()), nil
}

// Open opens device SORA_ASCEND_DEVICE (default 0) with the matrix-product
// mode of SORA_ASCEND_MATMUL.
func (driver) Open() (backend.Backend, error) {
	o, err := optionsFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	return Open(o)
}

// socName returns the chip as aclrtGetSocName names it, e.g.
// "Ascend910B3", or "" when it gives none (a failure, which leaves a
// message that is read and dropped here).
func (l *lib) socName() string {
	p := ccall(l.getSocName)
	if p == 0 {
		l.recentMessage()
		return ""
	}
	return cString(p)
}

// chip describes soc for Device and Probe.
func chip(soc string) string {
	if soc == "" {
		return "Ascend (aclrtGetSocName gave no name)"
	}
	return soc
}

// describe says where the libraries came from and which operators are
// missing.
func (l *lib) describe() string {
	s := fmt.Sprintf("CANN libraries %s, %s, operators from %s", l.loc.runtime, l.loc.nnopbase, l.loc.layout)
	if len(l.missingOps) > 0 {
		s += "; missing operators: " + strings.Join(l.missingOps, ", ")
	}
	return s
}
