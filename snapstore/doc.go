// Package snapstore is a durable, file-based raft.SnapshotStore.
//
// # Layout
//
// A store owns one directory (not shared with a WAL or anything else; a
// LOCK file keeps a second Store out). Each snapshot is two files named
// after its last index, its term and a sequence number the store hands out
// (16 hex digits each):
//
//	<index>-<term>-<seq>.snap   the snapshot's bytes, exactly as written
//	<index>-<term>-<seq>.meta   its metadata: index, term, configuration,
//	                            configuration index, size and CRC-32C of
//	                            the bytes, and a CRC-32C of its own
//	create-<seq>.tmp            a snapshot being written
//	<index>-<term>-<seq>.meta.tmp  metadata being written
//
// The metadata file is the commit point: a snapshot exists when its .meta
// decodes and its .snap has the size the .meta gives. The sequence number
// makes every write's files new, so a snapshot replacing one at the same
// index and term never overwrites it in place; the older one is removed
// once the new one is durable.
//
// # Writing
//
// Create opens create-<seq>.tmp; the sink buffers writes and computes the
// size and checksum as bytes pass. Commit then
//
//  1. checks them against the meta (refusing a mismatch),
//  2. fsyncs and closes the data file,
//  3. renames it to <base>.snap and fsyncs the directory,
//  4. writes <base>.meta.tmp, fsyncs it, renames it to <base>.meta and
//     fsyncs the directory, and returns,
//  5. removes the snapshots beyond Options.Retain, oldest first: all their
//     .meta files, a directory fsync, then their .snap files.
//
// A crash (of the process or the machine) leaves:
//
//   - before step 3's rename is durable: a create-*.tmp file, which Open
//     removes; nothing is listed.
//   - between steps 3 and 4: a .snap without a .meta (or with a .meta.tmp),
//     which Open removes; nothing is listed.
//   - after step 4: the complete snapshot, listed. Both renames are durable
//     because the directory was fsynced after each, in order, so a listed
//     snapshot's data is always there under its name.
//   - during step 5: snapshots whose .meta is gone but .snap remains, which
//     Open removes; or all of them still listed, which Open's retention
//     removes again. A kept snapshot is never touched.
//
// # Reading
//
// List checks every snapshot's metadata and its data file's size (a stat),
// but does not read the data: checksumming gigabytes on every List would
// be too slow, and the library verifies the checksum as it reads anyway,
// falling back to the previous snapshot when the newest proves corrupt. So
// a truncated or missing data file or damaged metadata is skipped (and
// logged), while a flipped bit inside the data is only found by reading.
// Open returns the data file itself as a raft.SnapshotReader, read at
// whatever offsets the caller asks. Remove (raft.SnapshotRemover) drops a
// snapshot the caller found corrupt, in the order of step 5.
package snapstore
