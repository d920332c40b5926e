package raft

import "time"

// Clock is the node's source of time. The default uses package time, which
// testing/synctest already fakes inside a bubble; a custom Clock lets other
// deterministic schedulers drive a node.
type Clock interface {
	Now() time.Time
	// NewTicker returns a ticker firing every d.
	NewTicker(d time.Duration) Ticker
}

// Ticker is the part of *time.Ticker the node uses.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }

// pace signals out every interval until done closes, never blocking: a
// signal the receiver has no room for is dropped, since the timer actors'
// signals say "it is time", and one queued says it as well as many.
func pace(clock Clock, every time.Duration, out chan<- struct{}, done <-chan struct{}) {
	t := clock.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C():
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}
}
