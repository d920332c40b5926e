// Command dragonboat4 runs the workload of raftline's ./bench against
// github.com/lni/dragonboat/v4 (head of master, untagged; -lib dragonboat4)
// and prints the same JSON line. Build it with CGO_ENABLED=0 (see
// dragonboat.go and docs/benchmarks.md).
package main

import "github.com/raftline/raft/bench/anchors/driver"

func main() {
	driver.Main(map[string]driver.Constructor{"dragonboat4": newDragonboat})
}
