//go:build !darwin && !linux

package acltest

import (
	"errors"
	"runtime"
)

// unsupportedOS is why the double cannot be used here: it is built as
// shared libraries for dlopen, which Windows lacks (CANN, which the double
// imitates, has no Windows release either), and the Ascend backend loads
// nothing on other systems.
const unsupportedOS = "the ACL test double is a set of shared libraries for dlopen, which the Ascend backend does not load on " + runtime.GOOS

var errUnsupported = errors.New("acltest: " + unsupportedOS)

func dlOpenGlobal(string) (uintptr, error) { return 0, errUnsupported }

func dlSym(uintptr, string) (uintptr, error) { return 0, errUnsupported }

// registerLibFunc is never reached: dlOpenGlobal fails first.
func registerLibFunc(any, uintptr, string) { panic(errUnsupported) }
