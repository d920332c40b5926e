module github.com/raftline/raft/bench/anchors

go 1.25
