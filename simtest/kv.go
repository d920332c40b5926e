package simtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
)

// OpKind is a client operation of the key-value workload.
type OpKind uint8

// The workload's operations.
const (
	OpGet OpKind = iota
	OpPut
	OpAppend
	OpCAS
)

var opNames = [...]string{"get", "put", "append", "cas"}

func (k OpKind) String() string { return opNames[k] }

// Input is what a client asked for.
type Input struct {
	Kind  OpKind
	Key   string
	Value string // put, append; cas: the new value
	Old   string // cas: the expected value
	// OldAbsent: cas expects the key to be absent.
	OldAbsent bool
	// Lease: a get served on the leader's lease when it holds one.
	Lease bool
}

// Output is what the cluster answered.
type Output struct {
	Value  string
	Exists bool
	OK     bool // cas: whether it swapped
}

// Op is one client operation in the history. Times are virtual
// nanoseconds. An Unknown op's outcome was never learned (timeout, crash):
// it may or may not have taken effect.
type Op struct {
	Client  int
	Input   Input
	Output  Output
	Call    int64
	Return  int64
	Unknown bool
}

func (o Op) String() string {
	in := o.Input
	s := fmt.Sprintf("c%d %s(%q", o.Client, in.Kind, in.Key)
	switch in.Kind {
	case OpPut, OpAppend:
		s += fmt.Sprintf(", %q", in.Value)
	case OpCAS:
		old := fmt.Sprintf("%q", in.Old)
		if in.OldAbsent {
			old = "absent"
		}
		s += fmt.Sprintf(", %s→%q", old, in.Value)
	}
	if o.Unknown {
		return s + ") → ?"
	}
	return s + fmt.Sprintf(") → %+v [%d, %d]", o.Output, o.Call, o.Return)
}

// encodeInput is the command replicated in the log.
func encodeInput(in Input) []byte {
	b := []byte{byte(in.Kind)}
	if in.OldAbsent {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	for _, s := range []string{in.Key, in.Value, in.Old} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var errBadCommand = errors.New("simtest: malformed command")

func decodeInput(b []byte) (Input, error) {
	if len(b) < 2 || b[0] > byte(OpCAS) {
		return Input{}, errBadCommand
	}
	in := Input{Kind: OpKind(b[0]), OldAbsent: b[1] == 1}
	b = b[2:]
	var fields [3]string
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return Input{}, errBadCommand
		}
		fields[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	in.Key, in.Value, in.Old = fields[0], fields[1], fields[2]
	return in, nil
}

// randomInput draws one operation of the workload over keys k0..k(keys-1).
func randomInput(rng *rand.Rand, keys int) Input {
	key := fmt.Sprintf("k%d", rng.IntN(keys))
	val := fmt.Sprint(rng.IntN(1000))
	switch rng.IntN(4) {
	case 0:
		return Input{Kind: OpGet, Key: key}
	case 1:
		return Input{Kind: OpPut, Key: key, Value: val}
	case 2:
		return Input{Kind: OpAppend, Key: key, Value: val + ","}
	default:
		in := Input{Kind: OpCAS, Key: key, Value: val}
		if rng.IntN(3) == 0 {
			in.OldAbsent = true
		} else {
			in.Old = fmt.Sprint(rng.IntN(1000))
		}
		return in
	}
}

// kvStore is the replicated state machine each simulated node applies.
type kvStore struct {
	data map[string]string
}

func newKVStore() *kvStore { return &kvStore{data: map[string]string{}} }

// apply executes a write (or a logged read) and returns its output.
func (s *kvStore) apply(in Input) Output {
	cur, exists := s.data[in.Key]
	switch in.Kind {
	case OpPut:
		s.data[in.Key] = in.Value
		return Output{}
	case OpAppend:
		s.data[in.Key] = cur + in.Value
		return Output{Value: cur + in.Value, Exists: true}
	case OpCAS:
		if (in.OldAbsent && !exists) || (!in.OldAbsent && exists && cur == in.Old) {
			s.data[in.Key] = in.Value
			return Output{OK: true, Value: in.Value, Exists: true}
		}
		return Output{Value: cur, Exists: exists}
	}
	return Output{Value: cur, Exists: exists}
}
