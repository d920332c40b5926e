// Command etcd36 runs the workload of raftline's ./bench against
// go.etcd.io/raft/v3 v3.6.0 (-lib etcd36). It is its own module because
// ../cmd/anchors uses v3.7.0 of the same module path.
package main

import "github.com/raftline/raft/bench/anchors/driver"

func main() {
	driver.Main(map[string]driver.Constructor{"etcd36": newEtcd})
}
