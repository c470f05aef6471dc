package store

import (
	"context"
	"fmt"
)

// Put sets key to val and returns the revision it was written at.
//
// Options: WithLease (the lease must exist, else ErrLeaseNotFound and
// nothing is written), WithPrevKV, WithIgnoreValue, WithIgnoreLease. Put on a
// follower is forwarded to the leader and returns once this node has applied
// it, so a following Get on this node sees it.
func (s *Store) Put(ctx context.Context, key, val string, opts ...OpOption) (*PutResponse, error) {
	op := Op{t: opPut, key: []byte(key), val: []byte(val)}
	op.apply(opts)
	p, err := op.toPut()
	if err != nil {
		return nil, err
	}
	r, err := s.propose(ctx, &request{Kind: reqPut, Put: p})
	if err != nil {
		return nil, err
	}
	resp := r.put
	resp.Header = s.header(r.rev)
	return resp, nil
}

// Get reads key, or the range the options select.
//
// By default the read is linearizable: it reflects every write that
// completed, on any node, before Get was called. WithSerializable reads this
// node's applied state without contacting the leader. WithRev reads at a past
// revision (ErrCompacted below the compaction point, ErrFutureRev above the
// current revision).
func (s *Store) Get(ctx context.Context, key string, opts ...OpOption) (*GetResponse, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	op := Op{t: opGet, key: []byte(key)}
	op.apply(opts)
	rr, err := op.toRange()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !op.serializable {
		if err := s.linearizable(ctx); err != nil {
			return nil, err
		}
	}
	st, err := s.fsm.read(ctx, s.stopCh)
	if err != nil {
		return nil, err
	}
	view := st.view
	res, err := view.Range(rr.Key, rr.End, rangeOptions(rr))
	if err != nil {
		return nil, mapMVCCError(err)
	}
	resp := getResponse(res)
	resp.Header = s.header(view.Rev())
	return resp, nil
}

// Delete removes key, or the range the options select (WithPrefix,
// WithRange, WithFromKey). Deleting nothing succeeds with Deleted 0 and does
// not create a revision.
func (s *Store) Delete(ctx context.Context, key string, opts ...OpOption) (*DeleteResponse, error) {
	op := Op{t: opDelete, key: []byte(key)}
	op.apply(opts)
	d, err := op.toDelete()
	if err != nil {
		return nil, err
	}
	r, err := s.propose(ctx, &request{Kind: reqDelete, Delete: d})
	if err != nil {
		return nil, err
	}
	resp := r.del
	resp.Header = s.header(r.rev)
	return resp, nil
}

// Txn starts a transaction: If(cmps...).Then(ops...).Else(ops...).Commit().
// The comparisons and the chosen branch run atomically at one revision.
func (s *Store) Txn(ctx context.Context) *Txn { return &Txn{s: s, ctx: ctx} }

// Commit validates and runs the transaction. A branch may not write a key
// twice (ErrDuplicateKey) and may hold at most Config.MaxTxnOps operations
// (ErrTooManyOps); nested transactions are allowed up to Config.MaxTxnDepth.
// A txn that fails validation or a check at apply time (a missing lease, a
// compacted read revision) changes nothing.
func (t *Txn) Commit() (*TxnResponse, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.s == nil {
		return nil, fmt.Errorf("%w: Txn not created by Store.Txn", ErrInvalidArgument)
	}
	ctx := t.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	tr, err := toTxnReq(t.cmps, t.thenOps, t.elseOps)
	if err != nil {
		return nil, err
	}
	r, err := t.s.propose(ctx, &request{Kind: reqTxn, Txn: tr})
	if err != nil {
		return nil, err
	}
	resp := r.txn
	stampTerm(resp, t.s.header(r.rev))
	return resp, nil
}

func stampTerm(t *TxnResponse, h ResponseHeader) {
	t.Header = h
	for _, r := range t.Responses {
		switch {
		case r.get != nil:
			r.get.Header = h
		case r.put != nil:
			r.put.Header = h
		case r.del != nil:
			r.del.Header = h
		case r.txn != nil:
			stampTerm(r.txn, h)
		}
	}
}

// Compact discards the history before rev on every node: reads and watches
// below rev then fail with ErrCompacted. rev must be above the current
// compaction point (else ErrCompacted) and at most the current revision
// (else ErrFutureRev).
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if rev <= 0 {
		return fmt.Errorf("%w: compact revision %d", ErrInvalidArgument, rev)
	}
	if err := s.usable(); err != nil {
		return err
	}
	st, err := s.fsm.read(ctx, s.stopCh)
	if err != nil {
		return err
	}
	v := st.view
	if rev <= v.CompactRev() {
		return fmt.Errorf("%w: revision %d, compacted at %d", ErrCompacted, rev, v.CompactRev())
	}
	_, err = s.propose(ctx, &request{Kind: reqCompact, Compact: rev})
	return err
}
