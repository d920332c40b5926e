package main

import "syscall"

// dieWithParent makes a process TestTutorial starts die with it, even when
// the test binary is killed or times out and its cleanups never run.
func dieWithParent(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }

// dieWithParentSelf is dieWithParent for this process (the tutorial's
// ./kvd, whose parent is the tutorial's shell); it lasts across exec.
func dieWithParentSelf() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		return errno
	}
	return nil
}
