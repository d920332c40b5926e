module github.com/raftline/raft/bench/anchors/etcd

go 1.26

require (
	github.com/raftline/raft/bench/anchors v0.0.0
	go.etcd.io/raft/v3 v3.7.0
	google.golang.org/protobuf v1.36.12
)

replace github.com/raftline/raft/bench/anchors => ../
