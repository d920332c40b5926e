package raftprom

import "github.com/prometheus/client_golang/prometheus"

// descs names and explains every metric the Collector exports; the help
// texts are what an operator sees in Prometheus, so they say what a value
// means rather than where it comes from.
type descs struct {
	term, hasLeader, role                              *prometheus.Desc
	commitIndex, appliedIndex, lastIndex               *prometheus.Desc
	firstIndex, snapshotIndex, applyBacklog            *prometheus.Desc
	leaderContact, snapshotSize, failed                *prometheus.Desc
	leaderChanges, electionsStarted, electionsWon      *prometheus.Desc
	proposals, sendErrors, recvRejected, eventsDropped *prometheus.Desc
	snapshotsTaken, snapshotsReceived, snapshotsSent   *prometheus.Desc
	compactions, readRounds, readsFailed, leaseReads   *prometheus.Desc
	ownerBusy                                          *prometheus.Desc
	messagesSent, messagesDropped, messagesRefused     *prometheus.Desc
	commitLatency, applyLatency, saveLatency           *prometheus.Desc
	snapshotDuration, installDuration                  *prometheus.Desc
	peerContact, peerLag, peerRTT                      *prometheus.Desc
}

func newDescs(ns string, constLabels prometheus.Labels) descs {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(ns+"_"+name, help, labels, constLabels)
	}
	return descs{
		term:          desc("term", "The node's current Raft term; it rises by one per election."),
		hasLeader:     desc("has_leader", "1 while the node knows a leader, 0 during an election or while cut off."),
		role:          desc("role", "1 for the role the node has now (follower, pre-candidate, candidate or leader), 0 for the others.", "role"),
		commitIndex:   desc("commit_index", "Index of the newest log entry this node knows to be committed."),
		appliedIndex:  desc("applied_index", "Index of the newest log entry applied to this node's state machine."),
		lastIndex:     desc("last_index", "Index of the last entry in this node's log, committed or not."),
		firstIndex:    desc("first_index", "Index of the first entry still in the log; older ones were compacted behind a snapshot."),
		snapshotIndex: desc("snapshot_index", "Last log index held by the node's newest snapshot (0: none)."),
		applyBacklog:  desc("apply_backlog_entries", "Committed entries not yet applied to the state machine (commit index minus applied index)."),
		leaderContact: desc("leader_last_contact_seconds", "On a follower, seconds since it last heard from its leader; 0 on a leader or with no leader."),
		snapshotSize:  desc("snapshot_size_bytes", "Size of the newest snapshot this node took or received."),
		failed:        desc("failed", "1 once the node stopped because its storage failed; it must be restarted."),

		leaderChanges:     desc("leader_changes_total", "Times this node learned of a new leader (losing track of one does not count)."),
		electionsStarted:  desc("elections_started_total", "Campaigns this node started, pre-vote rounds included."),
		electionsWon:      desc("elections_won_total", "Campaigns that made this node leader."),
		proposals:         desc("proposals_total", "Proposals by outcome: committed (applied here), failed (accepted, then leadership lost or storage failed) or dropped (refused before being appended: not the leader, a transfer in progress, too large).", "outcome"),
		sendErrors:        desc("send_errors_total", "Messages the transport failed to send."),
		recvRejected:      desc("received_rejected_total", "Received messages refused: addressed to another node or group, or malformed."),
		eventsDropped:     desc("events_dropped_total", "Events a full subscriber channel missed."),
		snapshotsTaken:    desc("snapshots_taken_total", "Snapshots of this node's state machine made durable."),
		snapshotsReceived: desc("snapshots_received_total", "Snapshots received from a leader and verified."),
		snapshotsSent:     desc("snapshots_sent_total", "Snapshot transfers this node started as leader, to followers too far behind for appends."),
		compactions:       desc("compactions_total", "Times the log was compacted behind a snapshot."),
		readRounds:        desc("read_index_rounds_total", "Heartbeat rounds that confirmed linearizable reads."),
		readsFailed:       desc("reads_failed_total", "Reads that ended without an answer because leadership was lost."),
		leaseReads:        desc("lease_reads_total", "Reads served on the leader's lease, without a heartbeat round."),
		ownerBusy:         desc("owner_busy_seconds_total", "Time the goroutine owning the Raft state spent working; its rate is its saturation (near 1: the node cannot go faster)."),
		messagesSent:      desc("messages_sent_total", "Messages handed to the transport, by type.", "type"),
		messagesDropped:   desc("messages_dropped_total", "Messages dropped because a peer's send lane was full, by type.", "type"),
		messagesRefused:   desc("messages_refused_total", "Received messages refused as malformed or impossible, by type.", "type"),

		commitLatency:    desc("commit_duration_seconds", "A proposal's time from the leader taking it to its commit."),
		applyLatency:     desc("apply_duration_seconds", "A committed batch's time from commit to applied."),
		saveLatency:      desc("storage_save_duration_seconds", "One Storage.Save: appending entries and syncing them to disk."),
		snapshotDuration: desc("snapshot_duration_seconds", "Taking a snapshot: writing the state machine's view out until durable."),
		installDuration:  desc("snapshot_install_duration_seconds", "Receiving a snapshot from a leader: first chunk to durable."),

		peerContact: desc("peer_last_contact_seconds", "On the leader, seconds since each peer last answered.", "peer"),
		peerLag:     desc("peer_match_lag_entries", "On the leader, entries each peer lacks: the leader's last index minus the peer's match index.", "peer"),
		peerRTT:     desc("peer_heartbeat_round_trip_seconds", "On the leader, the heartbeat round trip to each peer.", "peer"),
	}
}

// all lists every descriptor, for Describe.
func (d *descs) all() []*prometheus.Desc {
	return []*prometheus.Desc{
		d.term, d.hasLeader, d.role, d.commitIndex, d.appliedIndex, d.lastIndex,
		d.firstIndex, d.snapshotIndex, d.applyBacklog, d.leaderContact, d.snapshotSize, d.failed,
		d.leaderChanges, d.electionsStarted, d.electionsWon, d.proposals, d.sendErrors,
		d.recvRejected, d.eventsDropped, d.snapshotsTaken, d.snapshotsReceived, d.snapshotsSent,
		d.compactions, d.readRounds, d.readsFailed, d.leaseReads, d.ownerBusy,
		d.messagesSent, d.messagesDropped, d.messagesRefused,
		d.commitLatency, d.applyLatency, d.saveLatency, d.snapshotDuration, d.installDuration,
		d.peerContact, d.peerLag, d.peerRTT,
	}
}
