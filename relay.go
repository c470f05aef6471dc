package store

import "sync"

// relay hands the values of in on to out, in order, from its own
// goroutine, calling each on every value before handing it on. It ends
// after handing on a value for which each reports last (then it calls
// after, if set) or when closed. The raft transport uses it twice: to
// clamp incoming AppendEntries (raftcommit.go) and to guard pipelines
// (raftpipe.go).
//
// Goroutines: run, from startRelay until close or a last value.
type relay[T any] struct {
	out  chan T        // unbuffered, like the raft channels it stands for
	stop chan struct{} // closed by close
	done chan struct{} // closed when run returns
	once sync.Once
}

func startRelay[T any](in <-chan T, each func(T) (last bool), after func()) *relay[T] {
	r := &relay[T]{out: make(chan T), stop: make(chan struct{}), done: make(chan struct{})}
	go r.run(in, each, after)
	return r
}

func (r *relay[T]) run(in <-chan T, each func(T) bool, after func()) {
	defer close(r.done)
	for {
		var v T
		select {
		case v = <-in:
		case <-r.stop:
			return
		}
		last := each(v)
		select {
		case r.out <- v:
		case <-r.stop:
			return
		}
		if last {
			if after != nil {
				after()
			}
			return
		}
	}
}

// close stops the relay and waits for its goroutine. It is idempotent.
func (r *relay[T]) close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}
