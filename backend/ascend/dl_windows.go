//go:build windows

package ascend

import "errors"

// CANN has no Windows release, so there is nothing to load: loadLibrary
// reports unsupportedOS before it gets here, and these only keep the
// package building (purego has no dlopen on Windows).

var errNoCANN = errors.New(unsupportedOS("windows"))

func dlOpen(string) (uintptr, error) { return 0, errNoCANN }

func dlSym(uintptr, string) (uintptr, error) { return 0, errNoCANN }
