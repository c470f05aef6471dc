package watch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/embedkv/store/mvcc"
)

func TestManyWatchersOneKey(t *testing.T) {
	const n = 100_000
	e := newEnv(t, Config[Batch]{BufferSize: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chs := make([]<-chan Batch, n)
	for i := range chs {
		chs[i] = e.h.Watch(ctx, Options{Key: []byte("hot")})
	}
	poll(t, "registrations", func() bool { return e.h.Stats().Synced == n })
	rev := e.put("hot", "v")
	w := fmt.Sprintf("PUT hot=v@%d/%d/v1 prev -", rev, rev)
	for i, ch := range chs {
		b, _ := recv(t, ch)
		if got := events([]Batch{b}); len(got) != 1 || got[0] != w {
			t.Fatalf("watcher %d got %q, want [%q]", i, got, w)
		}
	}
	cancel()
	poll(t, "all removed", func() bool { return e.h.Stats().Watchers == 0 })
	for i, ch := range chs {
		if _, ok := <-ch; ok {
			t.Fatalf("watcher %d: channel open after cancel", i)
		}
	}
}

// randomOptions returns random watcher options over keys k00..k29 with a
// start revision in [1, maxStart].
func randomOptions(r *rand.Rand, maxStart int64) Options {
	key := func() []byte { return []byte(fmt.Sprintf("k%02d", r.IntN(30))) }
	var o Options
	switch r.IntN(5) {
	case 0:
		o.Key = key()
	case 1:
		p := []byte(fmt.Sprintf("k%d", r.IntN(3))) // k0, k1, k2: ten keys each
		o.Key, o.End = p, mvcc.PrefixEnd(p)
	case 2:
		a, b := key(), key()
		if string(a) > string(b) {
			a, b = b, a
		}
		o.Key, o.End = a, b
	case 3:
		o.Key, o.End = key(), []byte{0}
	case 4:
		o.Key, o.End = []byte{0}, []byte{0}
	}
	o.StartRev = 1 + r.Int64N(maxStart)
	o.FilterPut = r.IntN(5) == 0
	o.FilterDelete = r.IntN(5) == 0
	o.PrevKV = r.IntN(2) == 0
	return o
}

// randomTxn writes one to four random puts and deletes.
func randomTxn(r *rand.Rand, tx *mvcc.WriteTxn, i int) {
	key := func() []byte { return []byte(fmt.Sprintf("k%02d", r.IntN(30))) }
	for range 1 + r.IntN(4) {
		switch r.IntN(6) {
		case 0:
			tx.DeleteRange(key(), nil)
		case 1:
			a, b := key(), key()
			if string(a) > string(b) {
				a, b = b, a
			}
			tx.DeleteRange(a, b)
		default:
			tx.Put(key(), []byte(strconv.Itoa(i)), 0)
		}
	}
}

func TestRandomized(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WATCH_SEED"); s != "" { // to reproduce a failure
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WATCH_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (set WATCH_SEED to repeat)", seed)
	r := rand.New(rand.NewPCG(seed, 42))
	const (
		txns     = 3000
		history  = 1000 // txns written before the watchers register
		watchers = 20
	)
	for _, bufSize := range []int{1, 3, 16} {
		t.Run(fmt.Sprintf("buffer %d", bufSize), func(t *testing.T) {
			e := newEnv(t, Config[Batch]{
				BufferSize:           bufSize,
				MaxEventsPerResponse: 1 + r.IntN(8),
				CatchUpInterval:      time.Millisecond,
			})
			for i := range history {
				e.txn(func(tx *mvcc.WriteTxn) { randomTxn(r, tx, i) })
			}
			// Slow consumers stop after a few batches until the writer
			// reaches the next gate, so they overflow and fall behind.
			gates := make([]chan struct{}, 10)
			for i := range gates {
				gates[i] = make(chan struct{})
			}
			opts := make([]Options, watchers)
			cols := make([]*collector, watchers)
			for i := range opts {
				opts[i] = randomOptions(r, e.s.Rev()+100)
				var pause func(n int)
				if i%3 == 0 {
					pause = func(n int) {
						if g := n / 5; g < len(gates) {
							<-gates[g]
						}
					}
				}
				cols[i] = startCollector(e.watch(opts[i]), pause)
			}
			ops := make([]int, txns-history)
			for i := range ops {
				ops[i] = r.IntN(10)
			}
			done := make(chan struct{})
			go func() { // the store's single writer from now on
				defer close(done)
				for i, op := range ops {
					tx := e.s.Write()
					randomTxn(r, tx, history+i)
					tx.End()
					if op < 7 { // else the next publish covers it too
						e.h.Publish(e.s.View())
					}
					if i%200 == 0 {
						close(gates[i/200])
					}
				}
				e.h.Publish(e.s.View())
			}()
			<-done
			v := e.s.View()
			for i, o := range opts {
				w := wantEvents(t, v, o)
				poll(t, fmt.Sprintf("watcher %d: %d events", i, len(w)), func() bool { return cols[i].events() >= len(w) })
				e.settle(v.Rev())
				got := cols[i].got()
				checkBatches(t, got)
				g := events(got)
				if !slices.Equal(g, w) {
					d := firstDiff(g, w)
					t.Fatalf("watcher %d %+v: got %d events, want %d; first difference at %d:\n got %q\nwant %q",
						i, o, len(g), len(w), d, g[d:min(d+3, len(g))], w[d:min(d+3, len(w))])
				}
				for j, b := range got {
					if len(b.Events) == 0 || b.PrevKV != o.PrevKV || b.Rev > v.Rev() {
						t.Fatalf("watcher %d batch %d: %+v", i, j, b)
					}
				}
			}
			e.h.Close()
			for _, c := range cols {
				c.wait(t)
			}
		})
	}
}

// benchPut writes key=v in its own revision and publishes it.
func benchPut[T any](s *mvcc.Store, h *Hub[T], key []byte) {
	tx := s.Write()
	tx.Put(key, []byte("v"), 0)
	tx.End()
	h.Publish(s.View())
}

// BenchmarkLatency measures the time from Publish to the receipt of the
// event by one synced watcher.
func BenchmarkLatency(b *testing.B) {
	b.ReportAllocs()
	s := mvcc.New()
	h := New(Config[Batch]{Convert: convert}, s.View())
	defer h.Close()
	ch := h.Watch(context.Background(), Options{Key: []byte("k")})
	for h.Stats().Synced != 1 {
		runtime.Gosched()
	}
	var total time.Duration
	for b.Loop() {
		tx := s.Write()
		tx.Put([]byte("k"), []byte("v"), 0)
		tx.End()
		v := s.View()
		start := time.Now()
		h.Publish(v)
		<-ch
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1e3, "µs/publish-to-recv")
}

// BenchmarkFanOut measures the time from Publish until every one of n
// watchers of one key has received the event (one goroutine reads all
// the channels in turn).
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			s := mvcc.New()
			h := New(Config[*Batch]{Convert: func(b Batch) *Batch { return &b }, BufferSize: 1}, s.View())
			defer h.Close()
			key := []byte("hot")
			chs := make([]<-chan *Batch, n)
			for i := range chs {
				chs[i] = h.Watch(context.Background(), Options{Key: key})
			}
			for h.Stats().Synced != n {
				time.Sleep(time.Millisecond)
			}
			var total time.Duration
			for b.Loop() {
				start := time.Now()
				benchPut(s, h, key)
				for _, ch := range chs {
					<-ch
				}
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1e6, "ms/fanout")
		})
	}
}

// BenchmarkIdleWatcherMemory measures the heap per idle watcher, all
// watching one key, for a few element types, buffer sizes and contexts.
func BenchmarkIdleWatcherMemory(b *testing.B) {
	const n = 100_000
	tests := []struct {
		name   string
		buf    int
		cancel bool
		ptr    bool // T = *Batch instead of Batch
	}{
		{"T=Batch/buf=16", 16, false, false},
		{"T=*Batch/buf=16", 16, false, true},
		{"T=*Batch/buf=16/cancelable-ctx", 16, true, true},
		{"T=*Batch/buf=1", 1, false, true},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			var perWatcher float64
			for b.Loop() {
				if tt.ptr {
					perWatcher = idleMemory(b, n, tt.buf, tt.cancel, func(b Batch) *Batch { return &b })
				} else {
					perWatcher = idleMemory(b, n, tt.buf, tt.cancel, convert)
				}
			}
			b.ReportMetric(perWatcher, "B/watcher")
		})
	}
}

// idleMemory registers n watchers on one hub and returns the heap growth
// per watcher.
func idleMemory[T any](b *testing.B, n, buf int, cancelable bool, conv func(Batch) T) float64 {
	s := mvcc.New()
	h := New(Config[T]{Convert: conv, BufferSize: buf}, s.View())
	defer h.Close()
	ctx := context.Background()
	if cancelable {
		c, cancel := context.WithCancel(ctx)
		defer cancel()
		ctx = c
	}
	chs := make([]<-chan T, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range chs {
		chs[i] = h.Watch(ctx, Options{Key: []byte("hot")})
	}
	for h.Stats().Synced != n {
		time.Sleep(time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(chs)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}
