package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestTxnSemantics(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.nodes[0]
	ctx := ctxT(t)
	base := mustPut(t, s, "x", "1").Header.Revision // x: version 1
	mustPut(t, s, "y", "a")

	tests := []struct {
		name        string
		cmps        []Cmp
		then, els   []Op
		wantSuccess bool
		check       func(t *testing.T, r *TxnResponse)
	}{
		{
			name:        "value equal takes then",
			cmps:        []Cmp{Compare(Value("x"), "=", "1")},
			then:        []Op{OpGet("x")},
			wantSuccess: true,
			check: func(t *testing.T, r *TxnResponse) {
				if g := r.Responses[0].Get(); g == nil || value(g) != "1" {
					t.Errorf("then get: got %+v", g)
				}
			},
		},
		{
			name:        "value on missing key fails",
			cmps:        []Cmp{Compare(Value("missing"), "=", "")},
			els:         []Op{OpGet("y")},
			wantSuccess: false,
		},
		{
			name:        "version of missing key is zero",
			cmps:        []Cmp{Compare(Version("missing"), "=", 0)},
			wantSuccess: true,
		},
		{
			name:        "create revision",
			cmps:        []Cmp{Compare(CreateRevision("x"), "=", base)},
			wantSuccess: true,
		},
		{
			name:        "mod revision greater fails",
			cmps:        []Cmp{Compare(ModRevision("x"), ">", base)},
			wantSuccess: false,
		},
		{
			name:        "not equal and less",
			cmps:        []Cmp{Compare(Value("y"), "!=", "b"), Compare(Version("y"), "<", 2)},
			wantSuccess: true,
		},
		{
			name:        "lease value no lease",
			cmps:        []Cmp{Compare(LeaseValue("x"), "=", NoLease)},
			wantSuccess: true,
		},
		{
			name:        "prefix compare all keys",
			cmps:        []Cmp{Compare(Version("").WithPrefix(), ">", 0)},
			wantSuccess: true,
		},
		{
			name:        "reads see the txn's own writes",
			then:        []Op{OpPut("z", "new"), OpGet("z")},
			wantSuccess: true,
			check: func(t *testing.T, r *TxnResponse) {
				if g := r.Responses[1].Get(); value(g) != "new" {
					t.Errorf("get after put in txn: got %q", value(g))
				}
			},
		},
		{
			name: "nested txn",
			then: []Op{OpTxn(
				[]Cmp{Compare(Value("y"), "=", "a")},
				[]Op{OpPut("nested", "yes")},
				[]Op{OpPut("nested", "no")},
			)},
			wantSuccess: true,
			check: func(t *testing.T, r *TxnResponse) {
				sub := r.Responses[0].Txn()
				if sub == nil || !sub.Succeeded {
					t.Errorf("nested: got %+v, want succeeded", sub)
				}
			},
		},
		{
			name:        "delete range with prev kv",
			then:        []Op{OpDelete("nested", WithPrevKV())},
			wantSuccess: true,
			check: func(t *testing.T, r *TxnResponse) {
				d := r.Responses[0].Del()
				if d.Deleted != 1 || len(d.PrevKvs) != 1 || string(d.PrevKvs[0].Value) != "yes" {
					t.Errorf("delete: got %+v", d)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := s.Txn(ctx).If(tt.cmps...).Then(tt.then...).Else(tt.els...).Commit()
			if err != nil {
				t.Fatal(err)
			}
			if r.Succeeded != tt.wantSuccess {
				t.Errorf("succeeded: got %v, want %v", r.Succeeded, tt.wantSuccess)
			}
			n := len(tt.then)
			if !tt.wantSuccess {
				n = len(tt.els)
			}
			if len(r.Responses) != n {
				t.Errorf("responses: got %d, want %d", len(r.Responses), n)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestTxnAtomicAtOneRevision(t *testing.T) {
	c := newCluster(t, 3, nil)
	f := c.nodes[c.follower()]
	r, err := f.Txn(ctxT(t)).Then(OpPut("a", "1"), OpPut("b", "2"), OpPut("c", "3")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		g := mustGet(t, f, k)
		if g.Kvs[0].ModRevision != r.Header.Revision {
			t.Errorf("%s: mod revision %d, want %d", k, g.Kvs[0].ModRevision, r.Header.Revision)
		}
	}
	// Compare-and-swap from a follower: exactly one of two racing CAS wins.
	cas := func(s *Store, from, to string) bool {
		r, err := s.Txn(ctxT(t)).If(Compare(Value("a"), "=", from)).Then(OpPut("a", to)).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return r.Succeeded
	}
	w1 := cas(c.nodes[0], "1", "x")
	w2 := cas(c.nodes[1], "1", "y")
	if w1 == w2 {
		t.Errorf("both or neither CAS succeeded: %v %v", w1, w2)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.MaxRequestBytes = 4096; cfg.MaxTxnOps = 4 })
	s := c.nodes[0]
	ctx := ctxT(t)
	mustPut(t, s, "k", "v")
	before := mustGet(t, s, "", WithPrefix())

	big := string(make([]byte, 5000))
	manyOps := make([]Op, 5)
	for i := range manyOps {
		manyOps[i] = OpPut(fmt.Sprintf("m%d", i), "v")
	}
	deep := OpPut("deep", "v")
	for i := 0; i < 10; i++ {
		deep = OpTxn(nil, []Op{deep}, nil)
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"put empty key", func() error { _, err := s.Put(ctx, "", "v"); return err }, ErrEmptyKey},
		{"get empty key", func() error { _, err := s.Get(ctx, ""); return err }, ErrEmptyKey},
		{"delete empty key", func() error { _, err := s.Delete(ctx, ""); return err }, ErrEmptyKey},
		{"put too large", func() error { _, err := s.Put(ctx, "k", big); return err }, ErrRequestTooLarge},
		{"put too large, context ended", func() error {
			done, cancel := context.WithCancel(ctx)
			cancel()
			_, err := s.Put(done, "k", big)
			return err
		}, ErrRequestTooLarge},
		{"txn too many ops", func() error { _, err := s.Txn(ctx).Then(manyOps...).Commit(); return err }, ErrTooManyOps},
		{"txn too deep", func() error { _, err := s.Txn(ctx).Then(deep).Commit(); return err }, ErrTooManyOps},
		{"txn duplicate put", func() error {
			_, err := s.Txn(ctx).Then(OpPut("d", "1"), OpPut("d", "2")).Commit()
			return err
		}, ErrDuplicateKey},
		{"txn put inside delete range", func() error {
			_, err := s.Txn(ctx).Then(OpDelete("a", WithRange("z")), OpPut("k", "2")).Commit()
			return err
		}, ErrDuplicateKey},
		{"txn duplicate in nested", func() error {
			_, err := s.Txn(ctx).Then(OpPut("d", "1"), OpTxn(nil, []Op{OpPut("d", "2")}, nil)).Commit()
			return err
		}, ErrDuplicateKey},
		{"unknown lease", func() error { _, err := s.Put(ctx, "k", "x", WithLease(42)); return err }, ErrLeaseNotFound},
		{"unknown lease in txn", func() error {
			_, err := s.Txn(ctx).Then(OpPut("other", "x"), OpPut("k", "x", WithLease(42))).Commit()
			return err
		}, ErrLeaseNotFound},
		{"ignore value on missing key", func() error { _, err := s.Put(ctx, "nokey", "", WithIgnoreValue()); return err }, ErrKeyNotFound},
		{"ignore value with value", func() error { _, err := s.Put(ctx, "k", "x", WithIgnoreValue()); return err }, ErrInvalidArgument},
		{"future revision", func() error { _, err := s.Get(ctx, "k", WithRev(1000)); return err }, ErrFutureRev},
		{"negative revision", func() error { _, err := s.Get(ctx, "k", WithRev(-1)); return err }, ErrInvalidArgument},
		{"negative limit", func() error { _, err := s.Get(ctx, "k", WithLimit(-1)); return err }, ErrInvalidArgument},
		{"prefix and range", func() error { _, err := s.Get(ctx, "m", WithRange("z"), WithPrefix()); return err }, ErrInvalidArgument},
		{"lease on get", func() error { _, err := s.Get(ctx, "k", WithLease(1)); return err }, ErrInvalidArgument},
		{"bad compare operator", func() error {
			_, err := s.Txn(ctx).If(Compare(Value("k"), "~", "v")).Commit()
			return err
		}, ErrInvalidArgument},
		{"compare value with int", func() error {
			_, err := s.Txn(ctx).If(Compare(Value("k"), "=", 3)).Commit()
			return err
		}, ErrInvalidArgument},
		{"if after then", func() error {
			_, err := s.Txn(ctx).Then(OpPut("k", "x")).If(Compare(Version("k"), "=", 1)).Commit()
			return err
		}, ErrInvalidArgument},
		{"zero op in txn", func() error { _, err := s.Txn(ctx).Then(Op{}).Commit(); return err }, ErrInvalidArgument},
		{"compact zero", func() error { return s.Compact(ctx, 0) }, ErrInvalidArgument},
		{"cancelled context", func() error {
			cctx, cancel := contextWithCancel(ctx)
			cancel()
			_, err := s.Put(cctx, "k", "x")
			return err
		}, errCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			after := mustGet(t, s, "", WithPrefix())
			if after.Header.Revision != before.Header.Revision || after.Count != before.Count {
				t.Errorf("store changed: revision %d -> %d, count %d -> %d",
					before.Header.Revision, after.Header.Revision, before.Count, after.Count)
			}
		})
	}
}
