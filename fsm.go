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
// index it includes. A new one is published at most once per applied batch.
type appliedState struct {
	view  *mvcc.View
	index uint64
}

// fsm is the raft state machine. It is thin: decoding, routing results to
// waiting callers and publishing read views; the applier does the rest.
//
// Apply never blocks on readers: they work on published immutable views, and
// results are handed to waiters through buffered channels.
type fsm struct {
	logger  *slog.Logger
	bootID  uint64
	waiters *waiters

	// captureMu is held by ApplyBatch and Restore for their whole run, so
	// that capture sees the published view and the lease table at the same
	// index. Lock order: captureMu, then leaseTable.mu, then mu.
	captureMu sync.Mutex
	// app is touched only by the FSM goroutine (ApplyBatch, Snapshot,
	// Restore), and read by capture under captureMu.
	app applier

	state atomic.Pointer[appliedState]

	// sinceSnapshot counts the bytes of the entries applied since the last
	// raft snapshot (see runSnapshotter).
	sinceSnapshot atomic.Int64

	// onPublish, if set before raft starts, receives every new view (the
	// watch hub). It must not block.
	onPublish func(*mvcc.View)
	// onConfig, if set before raft starts, receives every committed
	// configuration entry. It must not block nor call into raft.
	onConfig func(c raft.Configuration, index uint64)

	// mu guards changed, which is closed and replaced on every publish so
	// that waitApplied can sleep until the next one. Lock order: mu is a leaf.
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

// current returns the latest published state.
func (f *fsm) current() *appliedState { return f.state.Load() }

// publish makes a new view (only if the store changed) and index visible and
// wakes everyone waiting for a newer index.
func (f *fsm) publish(index uint64, forceView bool) {
	old := f.state.Load()
	view := old.view
	if forceView || view.Rev() != f.app.kv.Rev() || view.CompactRev() != f.app.kv.CompactRev() {
		view = f.app.kv.View()
	}
	if index < old.index && !forceView {
		index = old.index
	}
	f.mu.Lock()
	f.state.Store(&appliedState{view: view, index: index})
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	if view != old.view && f.onPublish != nil {
		f.onPublish(view)
	}
}

// waitApplied returns once the published state includes raft index idx.
func (f *fsm) waitApplied(ctx context.Context, idx uint64, stop <-chan struct{}) error {
	for {
		f.mu.Lock()
		st, ch := f.state.Load(), f.changed
		f.mu.Unlock()
		if st.index >= idx {
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
	defer f.captureMu.Unlock()
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
		f.publish(last, false)
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
	defer f.captureMu.Unlock()
	st := f.state.Load()
	leases, nextID := f.app.leases.snapshot()
	return &fsmSnapshot{view: st.view, index: st.index, leases: leases, nextLeaseID: nextID, logger: f.logger}
}

// Restore implements raft.FSM: it replaces the whole state with the
// snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.captureMu.Lock()
	defer f.captureMu.Unlock()
	snap, err := readFSMSnapshot(rc, fsmSnapshotKind)
	if err != nil {
		return err
	}
	if err := f.app.leases.replace(snap.leases, snap.nextLeaseID, snap.kv.View()); err != nil {
		return err
	}
	f.app.kv = snap.kv
	f.publish(snap.index, true)
	// Entries covered by the snapshot never pass through ApplyBatch here,
	// so their proposers would never get a result.
	f.waiters.failAll(&result{rev: snap.kv.Rev(), err: fmt.Errorf(
		"%w: this node installed a snapshot that may cover the write; its result is not available", ErrUnknownOutcome)})
	return nil
}
