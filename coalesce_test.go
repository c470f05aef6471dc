package store

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

func TestBatchEncoding(t *testing.T) {
	cmds := [][]byte{{cmdRequest, 1}, bytes.Repeat([]byte{7}, 300), {cmdRequest}}
	got, err := splitBatch(encodeBatch(cmds))
	if err != nil {
		t.Fatalf("splitBatch: %v", err)
	}
	if len(got) != len(cmds) {
		t.Fatalf("got %d commands, want %d", len(got), len(cmds))
	}
	for i := range cmds {
		if !bytes.Equal(got[i], cmds[i]) {
			t.Fatalf("command %d: got %x, want %x", i, got[i], cmds[i])
		}
	}
	tooMany := make([][]byte, maxBatchCount+1)
	for i := range tooMany {
		tooMany[i] = []byte{cmdRequest}
	}
	bad := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"not a batch", []byte{cmdRequest, 1}},
		{"no commands", []byte{cmdBatch}},
		{"length past end", []byte{cmdBatch, 5, 1, 2}},
		{"huge length", []byte{cmdBatch, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"truncated varint", []byte{cmdBatch, 0x80}},
		{"too many commands", encodeBatch(tooMany)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := splitBatch(tt.b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestCoalescedWritesKeepTheirRevisions runs many concurrent writes on every
// node: each must get its own revision, and what it returned (revision,
// previous value, txn outcome) must match the store.
func TestCoalescedWritesKeepTheirRevisions(t *testing.T) {
	c := newCluster(t, 3, nil)
	const writers, each = 48, 10
	ctx := ctxT(t)
	var mu sync.Mutex
	revs := map[int64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			s := c.nodes[w%len(c.nodes)]
			for i := 0; i < each; i++ {
				k := fmt.Sprintf("w%02d", w)
				var rev int64
				if i%2 == 0 {
					r, err := s.Put(ctx, k, fmt.Sprint(i), WithPrevKV())
					if err != nil {
						errs <- err
						return
					}
					if i > 0 && (r.PrevKv == nil || string(r.PrevKv.Value) != fmt.Sprint(i-1)) {
						errs <- fmt.Errorf("%s put %d: prev %v, want %d", k, i, r.PrevKv, i-1)
						return
					}
					rev = r.Header.Revision
				} else {
					r, err := s.Txn(ctx).If(Compare(Value(k), "=", fmt.Sprint(i-1))).
						Then(OpPut(k, fmt.Sprint(i))).Commit()
					if err != nil {
						errs <- err
						return
					}
					if !r.Succeeded {
						errs <- fmt.Errorf("%s txn %d did not succeed", k, i)
						return
					}
					rev = r.Header.Revision
				}
				mu.Lock()
				if other, dup := revs[rev]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("revision %d returned to %s/%d and to %s", rev, k, i, other)
					return
				}
				revs[rev] = fmt.Sprintf("%s/%d", k, i)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The revisions returned are exactly the store's revisions of these
	// writes: each key's history holds them in order.
	sorted := make([]int64, 0, len(revs))
	for r := range revs {
		sorted = append(sorted, r)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	for _, rev := range sorted {
		key, i := "", 0
		fmt.Sscanf(revs[rev], "%3s/%d", &key, &i)
		got := mustGet(t, c.nodes[0], key, WithRev(rev))
		if len(got.Kvs) != 1 || got.Kvs[0].ModRevision != rev || string(got.Kvs[0].Value) != fmt.Sprint(i) {
			t.Fatalf("at revision %d %s: got %v, want value %d modified at %d", rev, key, got.Kvs, i, rev)
		}
	}
	if got, want := len(revs), writers*each; got != want {
		t.Fatalf("distinct revisions: got %d, want %d", got, want)
	}
}

// FuzzApplyBatch feeds arbitrary bytes as a batch entry to the FSM: it must
// return one result, never panic, and apply nothing it cannot decode.
func FuzzApplyBatch(f *testing.F) {
	put, _ := encodeCommand(cmdRequest, &request{Kind: reqPut, Put: &putReq{Key: []byte("k"), Value: []byte("v")}})
	del, _ := encodeCommand(cmdRequest, &request{Kind: reqDelete, Delete: &deleteReq{Key: []byte("k")}})
	f.Add(encodeBatch([][]byte{put, del}))
	f.Add(encodeBatch([][]byte{put, {cmdRequest, 0xc1}}))
	f.Add([]byte{cmdBatch, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		fsm := newTestFSM(t, 1, newWaiters())
		data := append([]byte{cmdBatch}, b...)
		out := fsm.ApplyBatch([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: data}})
		if len(out) != 1 {
			t.Fatalf("got %d results, want 1", len(out))
		}
		if _, err := splitBatch(data); err != nil && fsm.latest().view.Rev() != 1 {
			t.Fatalf("an undecodable batch changed the revision to %d", fsm.latest().view.Rev())
		}
		if fsm.latest().index != 1 {
			t.Fatalf("applied index %d, want 1", fsm.latest().index)
		}
	})
}
