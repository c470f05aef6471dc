package store

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/embedkv/store/mvcc"
)

// applier executes validated requests against the MVCC store. It is the
// state machine proper, kept free of raft so it can be tested alone: given the
// same store and the same request it always makes the same change and returns
// the same result. It runs on the FSM goroutine only.
type applier struct {
	kv     *mvcc.Store
	leases *leaseTable
}

// result is what applying one request produced. Responses are only built
// when the proposer waits on this node (want), since only it reads them.
type result struct {
	rev int64 // store revision after the request
	err error
	put *PutResponse
	del *DeleteResponse
	txn *TxnResponse

	leaseID  int64 // grant, renew
	leaseTTL int64
}

func mapMVCCError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mvcc.ErrCompacted):
		return ErrCompacted
	case errors.Is(err, mvcc.ErrFutureRev):
		return ErrFutureRev
	}
	return err
}

// apply executes req. Errors are results, never panics: a request that fails
// changes nothing.
func (a *applier) apply(req *request, index uint64, want bool) *result {
	if err := validateRequest(req, applyLimits); err != nil {
		return &result{rev: a.kv.Rev(), err: err}
	}
	switch req.Kind {
	case reqPut:
		t := &txnReq{Success: []requestOp{{Put: req.Put}}}
		r := a.applyTxn(t, want)
		if r.err == nil && want {
			r.put = r.txn.Responses[0].put
			r.txn = nil
		}
		return r
	case reqDelete:
		t := &txnReq{Success: []requestOp{{Delete: req.Delete}}}
		r := a.applyTxn(t, want)
		if r.err == nil && want {
			r.del = r.txn.Responses[0].del
			r.txn = nil
		}
		return r
	case reqTxn:
		return a.applyTxn(req.Txn, want)
	case reqCompact:
		err := mapMVCCError(a.kv.Compact(req.Compact))
		return &result{rev: a.kv.Rev(), err: err}
	case reqNoop:
		return &result{rev: a.kv.Rev()}
	case reqLeaseGrant:
		r := a.leases.grant(req.LeaseTTL, index)
		return &result{rev: a.kv.Rev(), leaseID: r.id, leaseTTL: r.ttl}
	case reqLeaseRenew:
		r, ok := a.leases.renew(req.LeaseID, index)
		if !ok {
			return &result{rev: a.kv.Rev(), err: fmt.Errorf("%w: %d", ErrLeaseNotFound, req.LeaseID)}
		}
		return &result{rev: a.kv.Rev(), leaseID: r.id, leaseTTL: r.ttl}
	case reqLeaseRevoke:
		if !a.revoke(req.LeaseID) {
			return &result{rev: a.kv.Rev(), err: fmt.Errorf("%w: %d", ErrLeaseNotFound, req.LeaseID)}
		}
		return &result{rev: a.kv.Rev()}
	case reqLeaseCheckpoint:
		a.leases.checkpoint(req.LeaseCheckpoints)
		return &result{rev: a.kv.Rev()}
	case reqLeaseExpire:
		for _, e := range req.LeaseExpire {
			if ri, ok := a.leases.renewIndexOf(e.ID); ok && ri == e.RenewIndex {
				a.revoke(e.ID)
			}
		}
		return &result{rev: a.kv.Rev()}
	}
	return &result{rev: a.kv.Rev(), err: fmt.Errorf("%w: request kind %d", ErrInvalidArgument, req.Kind)}
}

// revoke removes a lease and deletes its keys, all in one revision (so
// watchers get the DELETE events together). It reports whether the lease
// existed.
func (a *applier) revoke(id int64) bool {
	keys, ok := a.leases.remove(id)
	if !ok {
		return false
	}
	if len(keys) > 0 {
		tx := a.kv.Write()
		for _, k := range keys {
			tx.DeleteRange([]byte(k), nil)
		}
		tx.End()
	}
	return true
}

// applyTxn runs a txn in three passes, as etcd does: decide every compare
// (nested ones included) against the state before the txn, check that every
// operation on the chosen path can succeed, then execute. Only the last pass
// writes, so a failing txn changes nothing.
func (a *applier) applyTxn(t *txnReq, want bool) *result {
	tx := a.kv.Write()
	var path []bool
	a.decide(tx, t, &path)
	if err := a.check(tx, t, path, new(int)); err != nil {
		tx.End()
		return &result{rev: a.kv.Rev(), err: err}
	}
	resp := a.execute(tx, t, path, new(int), want)
	tx.End()
	return &result{rev: a.kv.Rev(), txn: resp}
}

// decide appends, depth first in execution order, whether each txn's
// compares hold.
func (a *applier) decide(tx *mvcc.WriteTxn, t *txnReq, path *[]bool) {
	ok := true
	for i := range t.Compare {
		if !a.compare(tx, &t.Compare[i]) {
			ok = false
			break
		}
	}
	*path = append(*path, ok)
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	for i := range ops {
		if ops[i].Txn != nil {
			a.decide(tx, ops[i].Txn, path)
		}
	}
}

func (a *applier) compare(tx *mvcc.WriteTxn, c *compareReq) bool {
	rr, err := tx.Range(c.Key, c.End, mvcc.RangeOptions{})
	if err != nil {
		return false
	}
	if len(rr.KVs) == 0 {
		if c.Target == uint8(CompareValue) {
			return false // etcd: a value comparison on a missing key fails
		}
		return compareKV(c, &mvcc.KeyValue{})
	}
	for _, kv := range rr.KVs {
		if !compareKV(c, kv) {
			return false
		}
	}
	return true
}

func compareKV(c *compareReq, kv *mvcc.KeyValue) bool {
	var r int
	switch CompareTarget(c.Target) {
	case CompareValue:
		r = bytes.Compare(kv.Value, c.Value)
	case CompareVersion:
		r = cmpInt(kv.Version, c.Num)
	case CompareCreated:
		r = cmpInt(kv.CreateRevision, c.Num)
	case CompareModified:
		r = cmpInt(kv.ModRevision, c.Num)
	case CompareLease:
		r = cmpInt(kv.Lease, c.Num)
	}
	switch CompareResult(c.Result) {
	case CompareEqual:
		return r == 0
	case CompareNotEqual:
		return r != 0
	case CompareGreater:
		return r > 0
	case CompareLess:
		return r < 0
	}
	return false
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// check verifies, without writing, that every operation on the chosen path
// will succeed: leases exist, ignore-options find their key, read revisions
// are in range.
func (a *applier) check(tx *mvcc.WriteTxn, t *txnReq, path []bool, pos *int) error {
	ok := path[*pos]
	*pos++
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	for i := range ops {
		op := &ops[i]
		switch {
		case op.Range != nil:
			if rev := op.Range.Rev; rev > 0 {
				if rev > a.kv.Rev() {
					return fmt.Errorf("%w: revision %d, current %d", ErrFutureRev, rev, a.kv.Rev())
				}
				if rev < a.kv.CompactRev() {
					return fmt.Errorf("%w: revision %d, compacted at %d", ErrCompacted, rev, a.kv.CompactRev())
				}
			}
		case op.Put != nil:
			p := op.Put
			if p.Lease != 0 && !a.leases.exists(p.Lease) {
				return fmt.Errorf("%w: lease %d", ErrLeaseNotFound, p.Lease)
			}
			if p.IgnoreValue || p.IgnoreLease {
				rr, err := tx.Range(p.Key, nil, mvcc.RangeOptions{CountOnly: true})
				if err != nil {
					return mapMVCCError(err)
				}
				if rr.Count == 0 {
					return fmt.Errorf("%w: %q", ErrKeyNotFound, p.Key)
				}
			}
		case op.Txn != nil:
			if err := a.check(tx, op.Txn, path, pos); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *applier) execute(tx *mvcc.WriteTxn, t *txnReq, path []bool, pos *int, want bool) *TxnResponse {
	ok := path[*pos]
	*pos++
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	var resp *TxnResponse
	if want {
		resp = &TxnResponse{Succeeded: ok, Responses: make([]OpResponse, 0, len(ops))}
	}
	for i := range ops {
		op := &ops[i]
		switch {
		case op.Range != nil:
			if !want {
				continue // reads change nothing; only the proposer needs them
			}
			rr, err := tx.Range(op.Range.Key, op.Range.End, rangeOptions(op.Range))
			if err != nil {
				// check() ruled this out; keep the txn deterministic anyway.
				rr = &mvcc.RangeResult{}
			}
			resp.Responses = append(resp.Responses, OpResponse{get: getResponse(rr)})
		case op.Put != nil:
			p := op.Put
			val, lease := p.Value, p.Lease
			var prev *mvcc.KeyValue
			if p.IgnoreValue || p.IgnoreLease {
				if rr, err := tx.Range(p.Key, nil, mvcc.RangeOptions{}); err == nil && len(rr.KVs) == 1 {
					prev = rr.KVs[0]
				}
				if prev != nil && p.IgnoreValue {
					val = prev.Value
				}
				if prev != nil && p.IgnoreLease {
					lease = prev.Lease
				}
			}
			old := tx.Put(p.Key, val, lease)
			if old != nil && old.Lease != 0 && old.Lease != lease {
				a.leases.detach(old.Lease, p.Key)
			}
			if lease != 0 {
				a.leases.attach(lease, p.Key)
			}
			if want {
				pr := &PutResponse{}
				if p.PrevKV && old != nil {
					pr.PrevKv = toKV(old)
				}
				resp.Responses = append(resp.Responses, OpResponse{put: pr})
			}
		case op.Delete != nil:
			deleted := tx.DeleteRange(op.Delete.Key, op.Delete.End)
			for _, kv := range deleted {
				if kv.Lease != 0 {
					a.leases.detach(kv.Lease, kv.Key)
				}
			}
			if want {
				dr := &DeleteResponse{Deleted: int64(len(deleted))}
				if op.Delete.PrevKV {
					dr.PrevKvs = make([]*KeyValue, len(deleted))
					for j, kv := range deleted {
						dr.PrevKvs[j] = toKV(kv)
					}
				}
				resp.Responses = append(resp.Responses, OpResponse{del: dr})
			}
		case op.Txn != nil:
			sub := a.execute(tx, op.Txn, path, pos, want)
			if want {
				resp.Responses = append(resp.Responses, OpResponse{txn: sub})
			}
		}
	}
	return resp
}

func rangeOptions(r *rangeReq) mvcc.RangeOptions {
	return mvcc.RangeOptions{
		Rev: r.Rev, Limit: r.Limit,
		SortTarget: mvcc.SortTarget(r.SortTarget), SortOrder: mvcc.SortOrder(r.SortOrder),
		KeysOnly: r.KeysOnly, CountOnly: r.CountOnly,
		MinModRev: r.MinModRev, MaxModRev: r.MaxModRev,
		MinCreateRev: r.MinCreateRev, MaxCreateRev: r.MaxCreateRev,
	}
}

func getResponse(rr *mvcc.RangeResult) *GetResponse {
	if len(rr.KVs) == 1 {
		// One allocation for the response, its slice and the KeyValue
		// (the common single-key read), plus one for the bytes.
		one := &struct {
			resp GetResponse
			ptr  [1]*KeyValue
			kv   KeyValue
		}{}
		copyKV(&one.kv, rr.KVs[0])
		one.ptr[0] = &one.kv
		one.resp = GetResponse{Count: rr.Count, More: rr.More, Kvs: one.ptr[:]}
		return &one.resp
	}
	g := &GetResponse{Count: rr.Count, More: rr.More}
	if len(rr.KVs) > 0 {
		g.Kvs = make([]*KeyValue, len(rr.KVs))
		for i, kv := range rr.KVs {
			g.Kvs[i] = toKV(kv)
		}
	}
	return g
}

// toKV copies an MVCC record into a caller-owned KeyValue (key and value
// share one allocation).
func toKV(kv *mvcc.KeyValue) *KeyValue {
	out := new(KeyValue)
	copyKV(out, kv)
	return out
}

// copyKV fills out with a copy of kv.
func copyKV(out *KeyValue, kv *mvcc.KeyValue) {
	buf := make([]byte, len(kv.Key)+len(kv.Value))
	n := copy(buf, kv.Key)
	copy(buf[n:], kv.Value)
	*out = KeyValue{
		Key:            buf[:n:n],
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Lease:          LeaseID(kv.Lease),
	}
	if len(kv.Value) > 0 || kv.Value != nil {
		out.Value = buf[n:]
	}
}
