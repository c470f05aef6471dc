package store

import "sync"

// waiters routes applied results to the callers that proposed them on this
// node. A proposal carries (boot ID, sequence); the FSM delivers the result
// of an entry whose boot ID is this process's to the channel registered
// under its sequence. The result is the same whether the entry was proposed
// on this node or forwarded to the leader.
type waiters struct {
	// mu guards m. Lock order: leaf; never held while sending (channels are
	// buffered and receive at most one value).
	mu sync.Mutex
	m  map[uint64]chan *result
}

func newWaiters() *waiters { return &waiters{m: make(map[uint64]chan *result)} }

func (w *waiters) register(seq uint64) <-chan *result {
	ch := make(chan *result, 1)
	w.mu.Lock()
	w.m[seq] = ch
	w.mu.Unlock()
	return ch
}

func (w *waiters) has(seq uint64) bool {
	w.mu.Lock()
	_, ok := w.m[seq]
	w.mu.Unlock()
	return ok
}

// deliver hands r to the waiter of seq, if it still waits, and forgets it.
func (w *waiters) deliver(seq uint64, r *result) {
	w.mu.Lock()
	ch, ok := w.m[seq]
	delete(w.m, seq)
	w.mu.Unlock()
	if ok {
		ch <- r
	}
}

// cancel forgets the waiter of seq.
func (w *waiters) cancel(seq uint64) {
	w.mu.Lock()
	delete(w.m, seq)
	w.mu.Unlock()
}

// failAll hands r to every waiter and forgets them all.
func (w *waiters) failAll(r *result) {
	w.mu.Lock()
	m := w.m
	w.m = make(map[uint64]chan *result)
	w.mu.Unlock()
	for _, ch := range m {
		ch <- r
	}
}
