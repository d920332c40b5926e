//go:build unix && !linux

package main

import "syscall"

// dieWithParent would make a process die with the test binary; only Linux
// can, and elsewhere the test's cleanups stop its processes.
func dieWithParent(*syscall.SysProcAttr) {}

func dieWithParentSelf() error { return nil }
