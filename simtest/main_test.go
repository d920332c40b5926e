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

// shortRapidChecks is the property tests' case count in the normal run;
// -rapid.checks=N on the command line is the long mode.
const shortRapidChecks = "30"

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "rapid.checks" })
	if f := flag.Lookup("rapid.checks"); f != nil && !explicit {
		_ = f.Value.Set(shortRapidChecks)
	}
	goleak.VerifyTestMain(m)
}

// replayCommand is the one line that replays a run.
func replayCommand(r Result) string {
	return fmt.Sprintf("go test ./simtest/ -run 'TestSim$' -sim.seed=%d -sim.nodes=%d -sim.trace", r.Seed, r.Nodes)
}
