package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/embedkv/store/mvcc"
	"github.com/hashicorp/raft"
)

// appliedState is what readers see: an immutable MVCC view and the last raft
// index it includes.
type appliedState struct {
	view  *mvcc.View
	index uint64
}

// fsm is the raft state machine. It is thin: decoding, routing results to
// waiting callers and publishing read views; the applier does the rest.
//
// Views are published lazily. Taking a view makes the next writes copy the
// tree paths they touch (copy-on-write), so a batch ends with a new view
// only when something will read it: a reader asked since the last one
// (want), watchers are open (eager), or a snapshot or backup captures the
// state. A reader that finds the published view behind the applied state
// takes a fresh one itself when no batch is running, or waits for the
// running batch, which then publishes (read). Reads therefore always see
// every batch applied before they started, and no write pays for views
// nobody reads.
//
// Apply never waits for readers beyond an O(1) view copy: they work on
// published immutable views, and results are handed to waiters through
// buffered channels.
type fsm struct {
	logger  *slog.Logger
	bootID  uint64
	waiters *waiters

	// captureMu is held by ApplyBatch and Restore for their whole run, and
	// by whoever takes a view (read, capture), so that views are taken
	// between batches and published in order, and capture sees the view
	// and the lease table at the same index. Lock order: captureMu, then
	// leaseTable.mu, then mu.
	captureMu sync.Mutex
	// app is touched only under captureMu: by the FSM goroutine
	// (ApplyBatch, Snapshot, Restore) and by view takers.
	app applier

	state   atomic.Pointer[appliedState] // the newest published view
	applied atomic.Uint64                // index applied to app; >= state.index
	want    atomic.Bool                  // a reader asked: publish at the end of the batch
	// rev and compactRev are app.kv's at the end of the last batch.
	rev, compactRev atomic.Int64

	// sinceSnapshot counts the bytes of the entries applied since the last
	// raft snapshot (see runSnapshotter).
	sinceSnapshot atomic.Int64

	// onPublish, if set before raft starts, receives every new view (the
	// watch hub). It must not block.
	onPublish func(*mvcc.View)
	// eager, if set before raft starts, makes every batch publish a view
	// while it returns true (the watch hub has watchers).
	eager func() bool
	// onConfig, if set before raft starts, receives every committed
	// configuration entry. It must not block nor call into raft.
	onConfig func(c raft.Configuration, index uint64)

	// mu guards changed, which unlockAndWake closes and replaces whenever
	// captureMu is released (after every batch, restore and view taken),
	// so that waitApplied and read can sleep until then. Lock order: mu is
	// a leaf.
	mu      sync.Mutex
	changed chan struct{}
}

var _ raft.BatchingFSM = (*fsm)(nil)

func newFSM(logger *slog.Logger, bootID uint64, w *waiters, leases *leaseTable) *fsm {
	f := &fsm{logger: logger, bootID: bootID, waiters: w, changed: make(chan struct{})}
	f.app = applier{kv: mvcc.New(), leases: leases}
	f.state.Store(&appliedState{view: f.app.kv.View()})
	return f
}

// current returns the newest published state without waiting. It may lag
// the applied state; use read where a reader must see what was applied.
func (f *fsm) current() *appliedState { return f.state.Load() }

// read returns a state that includes every batch applied before the call:
// the published one when it is up to date, else a fresh view taken now
// (no batch running) or published by the running batch when it ends. It
// fails only when ctx ends or the store stops while it waits.
func (f *fsm) read(ctx context.Context, stop <-chan struct{}) (*appliedState, error) {
	if !f.want.Load() {
		f.want.Store(true) // readers are active: the next batch publishes
	}
	target := f.applied.Load()
	for {
		f.mu.Lock()
		st, ch := f.state.Load(), f.changed
		f.mu.Unlock()
		if st.index >= target {
			return st, nil
		}
		if f.tryRefresh() {
			continue
		}
		// A batch (or a restore) is running; it publishes when it ends,
		// since want is set.
		f.want.Store(true)
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-stop:
			return nil, ErrStopped
		}
	}
}

// revisions returns the store's revision and compaction revision as of the
// last applied batch, without taking a view.
func (f *fsm) revisions() (rev, compactRev int64) { return f.rev.Load(), f.compactRev.Load() }

// latest is read for callers that must not wait: a fresh view when no
// batch is running, else the published one.
func (f *fsm) latest() *appliedState {
	if f.state.Load().index < f.applied.Load() {
		f.tryRefresh()
	}
	return f.state.Load()
}

// tryRefresh publishes a view of the applied state unless a batch (or a
// restore, or another view taker) holds captureMu, and reports whether it
// did.
func (f *fsm) tryRefresh() bool {
	if !f.captureMu.TryLock() {
		return false
	}
	f.publishLocked(f.applied.Load(), viewNow)
	f.unlockAndWake()
	return true
}

// unlockAndWake releases captureMu and wakes everyone waiting in read or
// waitApplied; it is the only wake-up. A reader that found captureMu held
// waits for it, then retries, so even a batch that published no view (no
// reader had asked yet) wakes a reader that arrived before it released
// the lock.
func (f *fsm) unlockAndWake() {
	f.captureMu.Unlock()
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// viewMode tells publishLocked whether to publish a view.
type viewMode uint8

const (
	viewIfWanted viewMode = iota // only if a reader asked or watchers are open
	viewNow                      // a view of the store as it is
	viewReplace                  // a new view even if the revisions match: a restore installed a new store
)

// publishLocked, called under captureMu, marks index as applied and, as
// mode says, publishes a view of the store (a new one only if the store
// changed since the last). index is the last index of the batch just
// applied, the restored snapshot's, or (viewNow) the applied one, so it
// never goes below the published view's. Waiters wake when the caller
// releases captureMu (unlockAndWake).
func (f *fsm) publishLocked(index uint64, mode viewMode) {
	f.applied.Store(index)
	f.rev.Store(f.app.kv.Rev())
	f.compactRev.Store(f.app.kv.CompactRev())
	wanted := f.want.Swap(false)
	withView := mode != viewIfWanted || wanted || (f.eager != nil && f.eager())
	old := f.state.Load()
	view := old.view
	if withView && (mode == viewReplace || view.Rev() != f.app.kv.Rev() || view.CompactRev() != f.app.kv.CompactRev()) {
		view = f.app.kv.View()
	}
	if withView {
		f.state.Store(&appliedState{view: view, index: index})
	}
	if view != old.view && f.onPublish != nil {
		f.onPublish(view)
	}
}

// waitApplied returns once this node has applied raft index idx. Call read
// afterwards for a view that includes it.
func (f *fsm) waitApplied(ctx context.Context, idx uint64, stop <-chan struct{}) error {
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		if f.applied.Load() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return ErrStopped
		}
	}
}

type delivery struct {
	seq uint64
	r   *result
}

// Apply implements raft.FSM for single entries.
func (f *fsm) Apply(l *raft.Log) interface{} { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM. It returns exactly len(logs)
// results and never panics on entry contents: an entry that does not decode
// is logged as corruption and yields an error result on every node alike.
func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	f.captureMu.Lock()
	defer f.unlockAndWake()
	out := make([]interface{}, len(logs))
	var deliveries []delivery
	var last uint64
	for i, l := range logs {
		last = l.Index
		f.sinceSnapshot.Add(int64(len(l.Data)))
		if l.Type == raft.LogConfiguration && f.onConfig != nil {
			if c, ok := decodeConfiguration(l.Data); ok {
				f.onConfig(c, l.Index)
			}
		}
		if l.Type != raft.LogCommand {
			continue // raft tracks membership itself
		}
		if len(l.Data) > 0 && l.Data[0] == cmdBatch {
			cmds, err := splitBatch(l.Data)
			if err != nil {
				f.logger.Error("embedkv: undecodable committed batch entry; skipping it on every node",
					"index", l.Index, "term", l.Term, "err", err)
				out[i] = &result{rev: f.app.kv.Rev(), err: err}
				continue
			}
			for _, cmd := range cmds {
				out[i] = f.applyCommand(cmd, l, &deliveries)
			}
			continue
		}
		out[i] = f.applyCommand(l.Data, l, &deliveries)
	}
	if len(logs) > 0 {
		f.publishLocked(last, viewIfWanted)
	}
	for _, d := range deliveries {
		f.waiters.deliver(d.seq, d.r)
	}
	return out
}

// applyCommand applies one request command of entry l (alone, or packed in
// a batch entry) and queues its result for its waiter if this node
// proposed it.
func (f *fsm) applyCommand(cmd []byte, l *raft.Log, deliveries *[]delivery) *result {
	req, err := decodeCommand(cmd)
	if err != nil {
		f.logger.Error("embedkv: undecodable committed command; skipping it on every node",
			"index", l.Index, "term", l.Term, "err", err)
		return &result{rev: f.app.kv.Rev(), err: err}
	}
	mine := req.Origin == f.bootID && req.Seq != 0
	want := mine && f.waiters.has(req.Seq)
	r := f.app.apply(req, l.Index, want)
	if want {
		*deliveries = append(*deliveries, delivery{req.Seq, r})
	}
	return r
}

// decodeConfiguration decodes a configuration entry; raft's decoder panics
// on bad bytes (raft itself decoded this entry before, so it never should).
func decodeConfiguration(b []byte) (c raft.Configuration, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return raft.DecodeConfiguration(b), true
}

// Snapshot implements raft.FSM. It runs on the FSM goroutine between
// batches, so the published view is exactly the applied state; capturing it
// is O(1) and Persist encodes it while later batches apply.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.sinceSnapshot.Store(0)
	return f.capture(), nil
}

// capture returns the applied state between two batches: an O(1)
// copy-on-write view and a copy of the lease table. Any goroutine may call
// it; it delays the next batch by the lease copy only.
func (f *fsm) capture() *fsmSnapshot {
	f.captureMu.Lock()
	defer f.unlockAndWake()
	f.publishLocked(f.applied.Load(), viewNow)
	st := f.state.Load()
	leases, nextID := f.app.leases.snapshot()
	return &fsmSnapshot{view: st.view, index: st.index, leases: leases, nextLeaseID: nextID, logger: f.logger}
}

// Restore implements raft.FSM: it replaces the whole state with the
// snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	// Decode first: readers may wait for captureMu, and nothing else runs
	// on the FSM goroutine meanwhile.
	snap, err := readFSMSnapshot(rc, fsmSnapshotKind)
	if err != nil {
		return err
	}
	f.captureMu.Lock()
	defer f.unlockAndWake()
	if err := f.app.leases.replace(snap.leases, snap.nextLeaseID, snap.kv.View()); err != nil {
		return err
	}
	f.app.kv = snap.kv
	f.publishLocked(snap.index, viewReplace)
	// Entries covered by the snapshot never pass through ApplyBatch here,
	// so their proposers would never get a result.
	f.waiters.failAll(&result{rev: snap.kv.Rev(), err: fmt.Errorf(
		"%w: this node installed a snapshot that may cover the write; its result is not available", ErrUnknownOutcome)})
	return nil
}
