// Command etcd runs the workload of raftline's ./bench against
// go.etcd.io/raft/v3 v3.7.0 driven by the standard Ready loop (etcd.go)
// and prints the same JSON line. ../etcd36 is the same driver against
// v3.6.0. See docs/benchmarks.md.
//
//	go run . -transport tcp -durable -clients 16
package main

import "github.com/raftline/raft/bench/anchors/driver"

func main() {
	driver.Main(map[string]driver.Constructor{"etcd": newEtcd})
}
