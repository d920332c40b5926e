//go:build race

package main

// raceEnabled tells tests that the race detector is on, so that binaries
// they build for subprocesses can have it too.
const raceEnabled = true
