package mvcc_test

import (
	"fmt"

	"github.com/embedkv/store/mvcc"
)

// The worked example of the package documentation.
func Example() {
	s := mvcc.New()
	write := func(f func(tx *mvcc.WriteTxn)) {
		tx := s.Write()
		f(tx)
		for _, ev := range tx.End() {
			fmt.Printf("rev %d: %s %s\n", ev.Kv.ModRevision, ev.Type, ev.Kv.Key)
		}
	}
	write(func(tx *mvcc.WriteTxn) { tx.Put([]byte("foo"), []byte("a"), 0) })
	write(func(tx *mvcc.WriteTxn) { tx.Put([]byte("foo"), []byte("b"), 0) })
	write(func(tx *mvcc.WriteTxn) { tx.Put([]byte("bar"), []byte("x"), 0) })
	write(func(tx *mvcc.WriteTxn) { tx.DeleteRange([]byte("foo"), nil) })
	write(func(tx *mvcc.WriteTxn) { tx.Put([]byte("foo"), []byte("c"), 0) })

	v := s.View()
	for rev := int64(1); rev <= v.Rev(); rev++ {
		r, _ := v.Range([]byte("foo"), nil, mvcc.RangeOptions{Rev: rev})
		for _, kv := range r.KVs {
			fmt.Printf("at %d: foo=%s create %d mod %d version %d\n",
				rev, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
		}
		if len(r.KVs) == 0 {
			fmt.Printf("at %d: no foo\n", rev)
		}
	}

	if err := s.Compact(5); err != nil {
		panic(err)
	}
	_, err := s.View().Range([]byte("foo"), nil, mvcc.RangeOptions{Rev: 4})
	fmt.Println("at 4 after Compact(5):", err)
	_ = s.View().Events(5, []byte("foo"), nil, func(rev int64, evs []*mvcc.Event) bool {
		for _, ev := range evs {
			prev := "none"
			if ev.PrevKv != nil {
				prev = string(ev.PrevKv.Value)
			}
			fmt.Printf("catch-up %d: %s %s, prev %s\n", rev, ev.Type, ev.Kv.Key, prev)
		}
		return true
	})
	// Output:
	// rev 2: PUT foo
	// rev 3: PUT foo
	// rev 4: PUT bar
	// rev 5: DELETE foo
	// rev 6: PUT foo
	// at 1: no foo
	// at 2: foo=a create 2 mod 2 version 1
	// at 3: foo=b create 2 mod 3 version 2
	// at 4: foo=b create 2 mod 3 version 2
	// at 5: no foo
	// at 6: foo=c create 6 mod 6 version 1
	// at 4 after Compact(5): mvcc: required revision has been compacted
	// catch-up 5: DELETE foo, prev b
	// catch-up 6: PUT foo, prev none
}
