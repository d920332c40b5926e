package simtest

import (
	"flag"
	"fmt"
	"testing"

	"go.uber.org/goleak"
)

var (
	flagSeeds = flag.Int("sim.seeds", 0, "run this many seeds per cluster size (long mode); 0: the short fixed set")
	flagSeed  = flag.Uint64("sim.seed", 0, "replay only this seed")
	flagNodes = flag.Int("sim.nodes", 0, "cluster size for -sim.seed (default: 3 and 5)")
	flagTrace = flag.Bool("sim.trace", false, "with -sim.seed, print the event trace")
)

// beforeSim, when set (by the raftbugs build's bugs_test.go), prepares a
// TestSim run, e.g. planting the bug named by -sim.plant.
var beforeSim func(t *testing.T)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// replayCommand is the one line that replays a run.
func replayCommand(r Result) string {
	return fmt.Sprintf("go test ./simtest/ -run 'TestSim$' -sim.seed=%d -sim.nodes=%d -sim.trace", r.Seed, r.Nodes)
}
