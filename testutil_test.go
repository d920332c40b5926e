package raft

import (
	"log/slog"
	"math/rand/v2"
)

func newSeededSource(seed uint64) rand.Source { return rand.NewPCG(seed, seed*31+7) }

// discardLogger keeps tests quiet.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
