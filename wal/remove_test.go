package wal

// flush returns once every removal queued before it is done.
func (r *remover) flush() {
	done := make(chan struct{})
	r.enqueue(removal{done: done})
	select {
	case <-done:
	case <-r.ended:
	}
}
