package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Suffrage says whether a server's vote counts.
type Suffrage uint8

const (
	// Voter servers vote in elections and count towards commit quorums.
	Voter Suffrage = iota
	// Learner servers receive the log but neither vote nor count towards
	// quorums; a new server catches up as a learner before it votes.
	Learner
)

// String returns "voter" or "learner".
func (s Suffrage) String() string {
	if s == Learner {
		return "learner"
	}
	return "voter"
}

// Server is one member of a cluster configuration.
type Server struct {
	ID       NodeID
	Address  string // transport address; may be empty for in-memory clusters
	Suffrage Suffrage
}

// Configuration is a cluster's membership. It lives in the log as EntryConfig
// entries, so it is replicated and recovered like any other entry.
type Configuration struct {
	Servers []Server
}

// Voters returns the IDs of the voting members in ascending order.
func (c Configuration) Voters() []NodeID {
	var ids []NodeID
	for _, s := range c.Servers {
		if s.Suffrage == Voter {
			ids = append(ids, s.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// Server returns the member with the given id.
func (c Configuration) Server(id NodeID) (Server, bool) {
	for _, s := range c.Servers {
		if s.ID == id {
			return s, true
		}
	}
	return Server{}, false
}

// Validate checks that IDs are non-zero and unique, that no two servers
// share an address, and that at least one voter exists.
func (c Configuration) Validate() error {
	seen := make(map[NodeID]bool, len(c.Servers))
	addrs := make(map[string]NodeID, len(c.Servers))
	voters := 0
	for _, s := range c.Servers {
		if s.ID == None {
			return errors.New("raft: configuration has a server with ID 0")
		}
		if seen[s.ID] {
			return fmt.Errorf("raft: configuration lists server %d twice", s.ID)
		}
		seen[s.ID] = true
		if other, dup := addrs[s.Address]; dup && s.Address != "" {
			return fmt.Errorf("raft: servers %d and %d share the address %q", other, s.ID, s.Address)
		}
		addrs[s.Address] = s.ID
		if s.Suffrage == Voter {
			voters++
		} else if s.Suffrage != Learner {
			return fmt.Errorf("raft: server %d has unknown suffrage %d", s.ID, s.Suffrage)
		}
	}
	if voters == 0 {
		return errors.New("raft: configuration has no voters")
	}
	return nil
}

// configVersion is the first byte of an encoded configuration, so the format
// can evolve without guessing.
const configVersion = 1

// maxConfigServers bounds decoding so a corrupt entry cannot make the node
// allocate without limit.
const maxConfigServers = 1 << 12

// EncodeConfiguration returns the EntryConfig payload for c.
func EncodeConfiguration(c Configuration) []byte {
	b := []byte{configVersion}
	b = binary.AppendUvarint(b, uint64(len(c.Servers)))
	for _, s := range c.Servers {
		b = binary.AppendUvarint(b, uint64(s.ID))
		b = append(b, byte(s.Suffrage))
		b = binary.AppendUvarint(b, uint64(len(s.Address)))
		b = append(b, s.Address...)
	}
	return b
}

// errBadConfig is wrapped by every configuration decoding failure.
var errBadConfig = errors.New("raft: malformed configuration entry")

// DecodeConfiguration parses an EntryConfig payload. It never panics on
// malformed input.
func DecodeConfiguration(b []byte) (Configuration, error) {
	if len(b) == 0 || b[0] != configVersion {
		return Configuration{}, fmt.Errorf("%w: unknown version", errBadConfig)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxConfigServers {
		return Configuration{}, fmt.Errorf("%w: bad server count", errBadConfig)
	}
	b = b[k:]
	c := Configuration{Servers: make([]Server, 0, n)}
	for range n {
		id, k := binary.Uvarint(b)
		if k <= 0 || len(b) < k+1 {
			return Configuration{}, fmt.Errorf("%w: truncated server", errBadConfig)
		}
		suffrage := Suffrage(b[k])
		b = b[k+1:]
		alen, k := binary.Uvarint(b)
		if k <= 0 || alen > uint64(len(b)-k) {
			return Configuration{}, fmt.Errorf("%w: truncated address", errBadConfig)
		}
		addr := string(b[k : k+int(alen)])
		b = b[k+int(alen):]
		c.Servers = append(c.Servers, Server{ID: NodeID(id), Address: addr, Suffrage: suffrage})
	}
	if len(b) != 0 {
		return Configuration{}, fmt.Errorf("%w: trailing bytes", errBadConfig)
	}
	if err := c.Validate(); err != nil {
		return Configuration{}, fmt.Errorf("%w: %v", errBadConfig, err)
	}
	return c, nil
}

// ConfChangeType is the kind of a single-server membership change.
type ConfChangeType uint8

const (
	// ConfAddLearner adds a server that receives the log but does not vote.
	ConfAddLearner ConfChangeType = iota + 1
	// ConfAddVoter adds a voter, or promotes a learner to voter.
	// Node.AddVoter catches a new server up as a learner first.
	ConfAddVoter
	// ConfDemote makes a voter a learner.
	ConfDemote
	// ConfRemove removes a server, the leader included.
	ConfRemove
)

var confChangeNames = [...]string{ConfAddLearner: "add-learner", ConfAddVoter: "add-voter", ConfDemote: "demote", ConfRemove: "remove"}

// String returns the change's name.
func (t ConfChangeType) String() string {
	if t > 0 && int(t) < len(confChangeNames) {
		return confChangeNames[t]
	}
	return fmt.Sprintf("ConfChangeType(%d)", uint8(t))
}

// ConfChange is one single-server membership change (Raft thesis ch. 4).
type ConfChange struct {
	Type ConfChangeType
	ID   NodeID
	// Address is the new server's transport address (adds only; an add
	// may also change a member's address).
	Address string
	// PrevIndex, when non-zero, must be the index of the configuration in
	// force, or the change is refused with ErrStaleConfiguration: two
	// operators working from the same view cannot both change it.
	PrevIndex uint64
}

// String formats the change for logs.
func (cc ConfChange) String() string {
	return fmt.Sprintf("%s %d %q (after %d)", cc.Type, cc.ID, cc.Address, cc.PrevIndex)
}

// Apply returns the configuration cc makes of c, and whether it differs:
// adding a server that is already a member with the same address and role
// changes nothing. It refuses changes to unknown servers and removing or
// demoting the last voter.
func (c Configuration) Apply(cc ConfChange) (Configuration, bool, error) {
	if cc.ID == None {
		return c, false, errors.New("raft: a configuration change needs a server ID")
	}
	i := slices.IndexFunc(c.Servers, func(s Server) bool { return s.ID == cc.ID })
	next := Configuration{Servers: slices.Clone(c.Servers)}
	switch cc.Type {
	case ConfAddLearner, ConfAddVoter:
		want := Server{ID: cc.ID, Address: cc.Address, Suffrage: Voter}
		if cc.Type == ConfAddLearner {
			want.Suffrage = Learner
		}
		if i < 0 {
			next.Servers = append(next.Servers, want)
			break
		}
		if want.Address == "" {
			want.Address = c.Servers[i].Address // a promotion keeps the address
		}
		if cc.Type == ConfAddLearner && c.Servers[i].Suffrage == Voter {
			return c, false, fmt.Errorf("%w: server %d is a voter; demote it instead", ErrInvalidConfChange, cc.ID)
		}
		next.Servers[i] = want
	case ConfDemote, ConfRemove:
		if i < 0 {
			return c, false, fmt.Errorf("%w: %d", ErrUnknownServer, cc.ID)
		}
		if cc.Type == ConfRemove {
			next.Servers = slices.Delete(next.Servers, i, i+1)
		} else {
			next.Servers[i].Suffrage = Learner
		}
		if len(next.Voters()) == 0 {
			return c, false, fmt.Errorf("%w: server %d", ErrRemoveLastVoter, cc.ID)
		}
	default:
		return c, false, fmt.Errorf("%w: unknown type %d", ErrInvalidConfChange, cc.Type)
	}
	if slices.Equal(next.Servers, c.Servers) {
		return c, false, nil
	}
	if err := next.Validate(); err != nil {
		return c, false, fmt.Errorf("%w: %v", ErrInvalidConfChange, err)
	}
	return next, true, nil
}

// Has reports whether id is a member (voter or learner).
func (c Configuration) Has(id NodeID) bool {
	_, ok := c.Server(id)
	return ok
}

// configAt is a configuration and the index of the entry holding it.
type configAt struct {
	conf  Configuration
	index uint64
}

// latestConfigurations finds the configuration in force and the one before
// it (in force again should the latest's entry be overwritten): the last
// two configuration entries in storage, then the snapshot's.
//
// Only the entries after the snapshot are read: the snapshot's
// configuration is the last one up to its index, and a log kept behind a
// snapshot for slow followers (or a WAL that compacts whole segments) may
// be hundreds of thousands of entries long, which a restart would
// otherwise read one by one.
func latestConfigurations(s Storage, snap SnapshotMeta) (latest, prev configAt, err error) {
	first, err := s.FirstIndex()
	if err != nil {
		return latest, prev, err
	}
	first = max(first, snap.Index+1)
	last, err := s.LastIndex()
	if err != nil {
		return latest, prev, err
	}
	var found []configAt
	const chunk = 256
	for hi := last + 1; hi > first && len(found) < 2; {
		lo := max(first, hi-min(hi, chunk))
		ents, err := s.Entries(lo, hi, ^uint64(0))
		if err != nil {
			return latest, prev, fmt.Errorf("raft: scanning log for configuration: %w", err)
		}
		for i := len(ents) - 1; i >= 0 && len(found) < 2; i-- {
			if ents[i].Type != EntryConfig || ents[i].Index <= snap.ConfigIndex {
				continue
			}
			conf, err := DecodeConfiguration(ents[i].Data)
			if err != nil {
				return latest, prev, fmt.Errorf("raft: configuration entry %d: %w", ents[i].Index, err)
			}
			found = append(found, configAt{conf, ents[i].Index})
		}
		hi = lo
	}
	if len(snap.Config.Servers) > 0 || snap.ConfigIndex > 0 {
		found = append(found, configAt{snap.Config, snap.ConfigIndex})
	}
	found = append(found, configAt{}, configAt{})
	latest, prev = found[0], found[1]
	if prev.index == 0 && len(prev.conf.Servers) == 0 {
		prev = latest // nothing older: the latest is committed
	}
	return latest, prev, nil
}
