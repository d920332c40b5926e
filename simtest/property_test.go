package simtest

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// The property test: rapid draws the fault schedule (which faults, when, for
// how long, 3 or 5 nodes) and the seed for everything else, so a failure
// shrinks to a small schedule. rapid prints the one-line command that
// replays the failing case (-rapid.failfile=...); the failure message also
// gives the schedule itself.

const propertyHealAt = 6 * time.Second

func drawFault(nodes int) *rapid.Generator[Fault] {
	return rapid.Custom(func(t *rapid.T) Fault {
		f := Fault{
			Kind: FaultKind(rapid.IntRange(0, int(faultKinds)-1).Draw(t, "kind")),
			At:   time.Duration(rapid.IntRange(0, int(propertyHealAt/time.Millisecond)).Draw(t, "at_ms")) * time.Millisecond,
			For:  time.Duration(rapid.IntRange(10, 6000).Draw(t, "for_ms")) * time.Millisecond,
		}
		switch f.Kind {
		case FaultPartition:
			if rapid.Bool().Draw(t, "leader") {
				break // nil sides: isolate the leader
			}
			f.Sides = rapid.SliceOfN(rapid.IntRange(0, 1), nodes, nodes).Draw(t, "sides")
		case FaultOneWay:
			f.From = rapid.IntRange(1, nodes).Draw(t, "from")
			f.To = rapid.IntRange(1, nodes).Draw(t, "to")
		case FaultCrash:
			f.From = rapid.IntRange(0, nodes).Draw(t, "node") // 0: the leader
		case FaultChurn:
		case FaultCrashPoints:
			f.Rate = float64(rapid.IntRange(1, 30).Draw(t, "permille")) / 1000
		case FaultCrashAfterPromise:
			f.Rate = float64(rapid.IntRange(5, 50).Draw(t, "percent")) / 100
		case FaultIsolateAtMoment, FaultLagAtMoment:
			// As in GenerateFaults: several strikes in a row need high rates.
			f.Rate = float64(rapid.IntRange(30, 90).Draw(t, "percent")) / 100
		default:
			f.Rate = float64(rapid.IntRange(1, 60).Draw(t, "percent")) / 100
		}
		return clampFault(f, propertyHealAt)
	})
}

func TestSimPropertyRandomFaultSchedules(t *testing.T) {
	if beforeSim != nil {
		beforeSim(t) // -sim.plant, in raftbugs builds
	}
	rapid.Check(t, func(rt *rapid.T) {
		nodes := rapid.SampledFrom([]int{3, 5}).Draw(rt, "nodes")
		faults := rapid.SliceOfN(drawFault(nodes), 0, 8).Draw(rt, "faults")
		seed := rapid.Uint64().Draw(rt, "seed")
		r := Run(Options{Seed: seed, Nodes: nodes, Faults: faults, HealAt: propertyHealAt,
			Duration: propertyHealAt + livenessBound + 2*time.Second, TornWrites: true})
		if r.Err != nil {
			rt.Fatalf("%v at %v\nnodes %d seed %d faults %s", r.Err, r.ErrAt, nodes, seed, FormatFaults(r.Faults))
		}
	})
}

func ExampleFormatFaults() {
	fmt.Println(FormatFaults([]Fault{
		{Kind: FaultCrash, From: 0, At: time.Second, For: 500 * time.Millisecond},
		{Kind: FaultPartition, Sides: []int{0, 1, 1}, At: 2 * time.Second, For: time.Second},
	}))
	// Output: [crash-leader@1s+500ms partition[0 1 1]@2s+1s]
}
