package simtest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// kvModel is the sequential specification of the workload for porcupine,
// partitioned by key: each partition's state is one key's value.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(Input).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return keyState{} },
	Step: func(state, input, output any) (bool, any) {
		st := state.(keyState)
		in := input.(Input)
		store := &kvStore{data: map[string]string{}}
		if st.exists {
			store.data[in.Key] = st.value
		}
		got := store.apply(in)
		v, ok := store.data[in.Key]
		next := keyState{value: v, exists: ok}
		if output == nil { // unknown outcome: it may have happened
			return true, next
		}
		return got == output.(Output), next
	},
	DescribeOperation: func(input, output any) string {
		in := input.(Input)
		if output == nil {
			return fmt.Sprintf("%s(%q, %q) → ?", in.Kind, in.Key, in.Value)
		}
		return fmt.Sprintf("%s(%q, %q) → %+v", in.Kind, in.Key, in.Value, output.(Output))
	},
}

type keyState struct {
	value  string
	exists bool
}

// checkLinearizable checks a run's client history. Ops of unknown outcome
// may take effect at any point after their call (their return is "never"),
// which is how porcupine expresses "may or may not have happened". On
// failure it writes porcupine's visualization and names the file.
func checkLinearizable(t testing.TB, r Result) {
	t.Helper()
	res, info := linearizable(r, 30*time.Second)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("raftline-sim-seed%d-n%d.html", r.Seed, r.Nodes))
		if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
			t.Errorf("writing visualization: %v", err)
		}
		t.Errorf("seed %d (%d nodes): client history is not linearizable; visualization: %s\nreplay: %s",
			r.Seed, r.Nodes, path, replayCommand(r))
	default:
		t.Logf("seed %d: linearizability check timed out on %d ops", r.Seed, len(r.History))
	}
}

// linearizable runs porcupine on a run's client history.
func linearizable(r Result, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	ops := make([]porcupine.Operation, 0, len(r.History))
	var end int64
	for _, op := range r.History {
		end = max(end, op.Return)
	}
	for _, op := range r.History {
		p := porcupine.Operation{ClientId: op.Client, Input: op.Input, Call: op.Call, Output: op.Output, Return: op.Return}
		if op.Unknown {
			p.Output, p.Return = nil, end+int64(time.Hour)
		}
		ops = append(ops, p)
	}
	return porcupine.CheckOperationsVerbose(kvModel, ops, timeout)
}

func TestLinearizabilityCheckerRejectsStaleRead(t *testing.T) {
	// put(k, 1) finished before get(k) started, yet get saw no value.
	h := Result{Seed: 0, Nodes: 3, History: []Op{
		{Client: 0, Input: Input{Kind: OpPut, Key: "k", Value: "1"}, Call: 0, Return: 10},
		{Client: 1, Input: Input{Kind: OpGet, Key: "k"}, Output: Output{}, Call: 20, Return: 30},
	}}
	ops := []porcupine.Operation{}
	for _, op := range h.History {
		ops = append(ops, porcupine.Operation{ClientId: op.Client, Input: op.Input, Call: op.Call, Output: op.Output, Return: op.Return})
	}
	if porcupine.CheckOperations(kvModel, ops) {
		t.Fatal("a read missing a completed write was judged linearizable")
	}
	// The same read concurrent with the write is fine.
	ops[1].Call = 5
	if !porcupine.CheckOperations(kvModel, ops) {
		t.Fatal("a read concurrent with a write was judged not linearizable")
	}
}

func TestLinearizabilityCheckerAcceptsUnknownWriteEitherWay(t *testing.T) {
	for _, seen := range []bool{false, true} {
		get := Output{}
		if seen {
			get = Output{Value: "1", Exists: true}
		}
		ops := []porcupine.Operation{
			{ClientId: 0, Input: Input{Kind: OpPut, Key: "k", Value: "1"}, Call: 0, Output: nil, Return: 1 << 40},
			{ClientId: 1, Input: Input{Kind: OpGet, Key: "k"}, Output: get, Call: 20, Return: 30},
		}
		if !porcupine.CheckOperations(kvModel, ops) {
			t.Fatalf("unknown-outcome write, later read saw it=%v: judged not linearizable", seen)
		}
	}
}
