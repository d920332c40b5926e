package raft

import "math/rand/v2"

func newSeededSource(seed uint64) rand.Source { return rand.NewPCG(seed, seed*31+7) }
