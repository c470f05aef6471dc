package store

import (
	"testing"

	"github.com/embedkv/store/lease"
	"github.com/embedkv/store/mvcc"
)

// FuzzApplyCommand feeds arbitrary bytes to the command decoder and, when
// they decode, to the state machine. Neither may panic, and a request the
// apply-time validator rejects must leave the store unchanged.
//
//	go test -run '^$' -fuzz FuzzApplyCommand -fuzztime 2m .
func FuzzApplyCommand(f *testing.F) {
	seeds := []*request{
		{Kind: reqPut, Put: &putReq{Key: []byte("k"), Value: []byte("v")}},
		{Kind: reqDelete, Delete: &deleteReq{Key: []byte("a"), End: []byte{0}, PrevKV: true}},
		{Kind: reqTxn, Txn: &txnReq{
			Compare: []compareReq{{Target: uint8(CompareValue), Key: []byte("k"), Value: []byte("v")}},
			Success: []requestOp{{Put: &putReq{Key: []byte("k"), Value: []byte("w")}}, {Range: &rangeReq{Key: []byte("k")}}},
			Failure: []requestOp{{Txn: &txnReq{Success: []requestOp{{Delete: &deleteReq{Key: []byte("k")}}}}}},
		}},
		{Kind: reqCompact, Compact: 2},
		{Kind: reqLeaseGrant, LeaseTTL: 10},
		{Kind: reqLeaseRevoke, LeaseID: 1},
		{Kind: reqLeaseCheckpoint, LeaseCheckpoints: []leaseCheckpoint{{ID: 1, RemainingMs: 5}}},
		{Kind: reqLeaseExpire, LeaseExpire: []leaseExpiry{{ID: 1, RenewIndex: 3}}},
	}
	for _, r := range seeds {
		b, err := encodeCommand(cmdRequest, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{cmdRequest, 0x81, 0xa1, 0x76, 0xc6, 0xff, 0xff, 0xff, 0xff}) // hostile bin32 length
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeCommand(b)
		if err != nil {
			return
		}
		lessor := lease.New(lease.Config{Clock: lease.RealClock()})
		defer lessor.Close()
		a := applier{kv: mvcc.New(), leases: newLeaseTable(lessor)}
		a.apply(&request{Kind: reqPut, Put: &putReq{Key: []byte("k"), Value: []byte("v")}}, 1, false)
		before := a.kv.Rev()
		r := a.apply(req, 2, true)
		if r == nil {
			t.Fatal("nil result")
		}
		if validateRequest(req, applyLimits) != nil && a.kv.Rev() != before {
			t.Fatalf("rejected request changed the revision %d -> %d", before, a.kv.Rev())
		}
	})
}
