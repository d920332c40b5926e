// Command hashicorp runs the workload of raftline's ./bench against
// github.com/hashicorp/raft (with github.com/hashicorp/raft-wal as the
// durable log) and prints the same JSON line. See docs/benchmarks.md.
//
//	go run . -transport tcp -durable -clients 16
package main

import "github.com/raftline/raft/bench/anchors/driver"

func main() {
	driver.Main(map[string]driver.Constructor{"hashicorp": newHashicorp})
}
