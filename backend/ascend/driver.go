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
	// MatMulKeepFloat32 computes in float32 (cubeMathType 0, KEEP_DTYPE).
	// It is the default.
	MatMulKeepFloat32 MatMulMode = cubeKeepDtype
	// MatMulFast lets the cube unit round float32 inputs down (cubeMathType
	// 1, ALLOW_FP32_DOWN_PRECISION): HFLOAT32 on Atlas A2 parts, FLOAT16 on
	// older ones. Its results meet [FastMatMulNMSE] rather than the float32
	// tolerance.
	MatMulFast MatMulMode = cubeAllowDownPrecision
)

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
// SORA_ASCEND_MATMUL ("float32", the default, or "fast").
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
	case "", "float32", "keep":
		o.MatMul = MatMulKeepFloat32
	case "fast":
		o.MatMul = MatMulFast
	default:
		return o, fmt.Errorf("ascend: SORA_ASCEND_MATMUL=%q: want \"float32\" or \"fast\"", s)
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
	return fmt.Sprintf("%s, %d device(s); %s", l.socName(), n, l.describe()), nil
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

// socName describes the chip, e.g. "Ascend910B".
func (l *lib) socName() string {
	if l.getSocName == 0 {
		return "Ascend"
	}
	if s := cString(ccall(l.getSocName)); s != "" {
		return s
	}
	return "Ascend"
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
