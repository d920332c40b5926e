package wal

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"
)

// Compaction deletes segments off the writer's path. Deleting them inline
// (a start marker, a directory fsync, then an unlink of each segment, tens
// of megabytes each) held writeMu, so the next Save waited for it: with
// 4 KiB commands at 256 clients the slowest proposals took 150-230 ms
// where 60-90 ms was the rest of the tail. Nothing needs the deletion to
// be done when Compact returns: a segment left behind by a crash is a
// remnant Open removes, and until the marker is durable the older
// segments replay harmlessly (their entries are committed).
//
// One goroutine deletes, in the order compactions happened, so each start
// marker is durable before the segments it retires go and before the
// previous marker is removed, as inline deletion did.

// removal is one compaction's segments to delete and the sequence number
// of the oldest segment it keeps; a removal with done set is a barrier
// that closes done once everything queued before it is deleted.
type removal struct {
	start uint64
	segs  []*segment
	done  chan struct{}
}

// remover runs the removals.
type remover struct {
	mu    sync.Mutex
	queue []removal
	err   error // the first failure; the WAL fails on its next call
	wake  chan struct{}
	stop  chan struct{}
	ended chan struct{}
}

// startRemover starts w's remover goroutine.
func (w *WAL) startRemover() {
	w.rm = &remover{wake: make(chan struct{}, 1), stop: make(chan struct{}), ended: make(chan struct{})}
	go w.runRemover()
}

// deleteSegments queues removed, the segments before the new oldest live
// one, for deletion. Callers hold writeMu.
func (w *WAL) deleteSegments(removed []*segment) {
	if len(removed) > 0 {
		w.rm.enqueue(removal{start: w.segs[0].seq, segs: removed})
	}
}

func (r *remover) enqueue(job removal) {
	r.mu.Lock()
	r.queue = append(r.queue, job)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// failure returns the first deletion that failed, if any.
func (r *remover) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// close finishes the queued removals and stops the goroutine.
func (r *remover) close() {
	close(r.stop)
	<-r.ended
}

func (w *WAL) runRemover() {
	r := w.rm
	defer close(r.ended)
	for {
		r.mu.Lock()
		jobs := r.queue
		r.queue = nil
		failed := r.err != nil
		r.mu.Unlock()
		for _, job := range jobs {
			if job.done != nil {
				close(job.done)
				continue
			}
			if failed {
				continue // after a failure nothing more is deleted: Open sorts it out
			}
			if err := w.removeSegments(job); err != nil {
				w.log.Error("wal: deleting compacted segments failed; the log fails on its next write", "err", err)
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				failed = true
			}
		}
		if len(jobs) > 0 {
			continue
		}
		select {
		case <-r.wake:
		case <-r.stop:
			r.mu.Lock()
			empty := len(r.queue) == 0
			r.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

// removeSegments makes job.start's marker durable, deletes job's segments,
// then the previous marker. Only the remover goroutine calls it.
func (w *WAL) removeSegments(job removal) error {
	name := filepath.Join(w.dir, markerName(job.start))
	f, err := w.fs.Create(name)
	if err == nil {
		err = f.Close()
	}
	if err == nil {
		err = w.fs.SyncDir(w.dir)
	}
	if err != nil {
		return fmt.Errorf("wal: creating start marker %s: %w", name, err)
	}
	var errs []error
	for _, s := range job.segs {
		shrink(s.f)
		s.f.Close()
		if err := w.fs.Remove(s.name); err != nil {
			errs = append(errs, fmt.Errorf("wal: removing %s: %w", s.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if w.marker != 0 && w.marker != job.start {
		old := filepath.Join(w.dir, markerName(w.marker))
		if err := w.fs.Remove(old); err != nil {
			return fmt.Errorf("wal: removing %s: %w", old, err)
		}
	}
	w.marker = job.start
	return nil
}

// A large file is cut down in steps before it is unlinked, with a pause
// between them: on a file system mounted with online discard the blocks a
// commit frees are discarded inside it, and every fsync of every log on
// the disk waits for that commit. Unlinking 64 MiB segments whole (in the
// background already) left the 99th percentile of a durable 3-node cluster
// with 4 KiB commands at 37-61 ms; renaming them instead of unlinking, as
// an experiment, gave 20-26 ms, and these steps 21-35 ms.
const (
	shrinkStep  = 4 << 20
	shrinkPause = 5 * time.Millisecond
)

// shrink truncates f to nothing, shrinkStep at a time. It is best effort:
// the unlink that follows frees whatever is left.
func shrink(f file) {
	size, err := f.Size()
	for err == nil && size > shrinkStep {
		size -= shrinkStep
		if err = f.Truncate(size); err == nil {
			time.Sleep(shrinkPause)
		}
	}
}
