package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedkv/store/internal/proccpu"
)

// Cluster benchmarks: 3 nodes in this process over loopback TCP, raft logs in
// bolt files with fsync on, 256-byte values. Clients are spread round-robin
// over the nodes starting with the leader (with several clients, two thirds
// of the writes are forwarded by followers).
//
//	go test -run '^$' -bench Cluster -benchtime 5s .
//
// Each reports ops/s and the p50/p99 latency of single operations.

var benchValue = string(make([]byte, 256))

func benchCluster(b *testing.B) *testCluster {
	c := newCluster(b, 3, func(cfg *Config) {
		// Production timers: benchmarks must not trigger spurious elections.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 0, 0, 0
	})
	c.waitLeader()
	return c
}

// runClients runs b.N operations spread over clients goroutines, each bound
// to a node round-robin, and reports throughput and latency percentiles.
func runClients(b *testing.B, c *testCluster, clients int, op func(s *Store, i int) error) {
	runClientsFrom(b, c, c.waitLeader(), clients, op)
}

// runClientsFrom is runClients with client g bound to node (first+g) mod n.
func runClientsFrom(b *testing.B, c *testCluster, first, clients int, op func(s *Store, i int) error) {
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	cpu0, cpuOK := proccpu.Used()
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			s := c.nodes[(first+g)%len(c.nodes)]
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := op(s, int(i)); err != nil {
					failed.Store(err)
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, _ := proccpu.Used()
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	if cpuOK {
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	}
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// benchKey spreads operation i over 100,000 keys in a scattered order, as
// etcd's benchmark tool does (writes to neighbouring keys would share
// btree nodes and flatter the apply cost).
func benchKey(i int) string {
	return fmt.Sprintf("key-%06d", (uint64(i)*0x9E3779B97F4A7C15>>40)%100000)
}

func BenchmarkClusterPut(b *testing.B) {
	cases := []struct {
		name    string
		clients int
		node    func(c *testCluster) int // the first client's node
	}{
		{"clients=1/via-leader", 1, (*testCluster).waitLeader},
		{"clients=1/via-follower", 1, (*testCluster).follower},
		{"clients=256", 256, (*testCluster).waitLeader},
		{"clients=256/all-on-leader", 256, nil},
		{"clients=256/all-on-a-follower", 256, (*testCluster).follower},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c := benchCluster(b)
			ctx := context.Background()
			first := 0
			switch {
			case strings.HasPrefix(tc.name, "clients=256/all-on"):
				one := c.waitLeader()
				if tc.node != nil {
					one = tc.node(c)
				}
				c = &testCluster{t: c.t, cfgs: c.cfgs, nodes: []*Store{c.nodes[one]}}
			default:
				first = tc.node(c)
			}
			runClientsFrom(b, c, first, tc.clients, func(s *Store, i int) error {
				_, err := s.Put(ctx, benchKey(i), benchValue)
				return err
			})
		})
	}
}

func BenchmarkClusterGet(b *testing.B) {
	for _, mode := range []string{"linearizable", "serializable"} {
		b.Run(mode+"/clients=64", func(b *testing.B) {
			c := benchCluster(b)
			ctx := context.Background()
			// Preload 1,000 keys (the reads hit a warm, realistic tree).
			for i := 0; i < 1000; i += 100 {
				txn := make([]Op, 0, 100)
				for j := i; j < i+100; j++ {
					txn = append(txn, OpPut(fmt.Sprintf("key-%06d", j), benchValue))
				}
				if _, err := c.nodes[0].Txn(ctx).Then(txn...).Commit(); err != nil {
					b.Fatal(err)
				}
			}
			var opts []OpOption
			if mode == "serializable" {
				opts = append(opts, WithSerializable())
			}
			runClients(b, c, 64, func(s *Store, i int) error {
				r, err := s.Get(ctx, fmt.Sprintf("key-%06d", i%1000), opts...)
				if err == nil && len(r.Kvs) != 1 {
					// Serializable reads on a follower may lag the preload briefly.
					if mode == "linearizable" {
						return fmt.Errorf("key-%06d missing", i%1000)
					}
				}
				return err
			})
		})
	}
}

// BenchmarkClusterWatchLatency measures put-to-event latency: a Put through
// the leader until a watcher on the leader (or on a follower) has the event.
func BenchmarkClusterWatchLatency(b *testing.B) {
	for _, where := range []string{"leader", "follower"} {
		b.Run("watcher="+where, func(b *testing.B) {
			c := benchCluster(b)
			l := c.waitLeader()
			w := l
			if where == "follower" {
				w = c.follower()
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := c.nodes[w].Watch(ctx, "lat")
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := c.nodes[l].Put(ctx, "lat", benchValue); err != nil {
					b.Fatal(err)
				}
				wr := <-ch
				if len(wr.Events) != 1 {
					b.Fatalf("got %d events", len(wr.Events))
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkClusterWatchFanout measures, on a 3-node cluster, the time from a
// Put returning on the leader until every one of N watchers of the key on
// one follower has received the event.
func BenchmarkClusterWatchFanout(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) {
			c := benchCluster(b)
			l, f := c.waitLeader(), c.follower()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			chans := make([]WatchChan, n)
			for i := range chans {
				chans[i] = c.nodes[f].Watch(ctx, "fan")
			}
			var total time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := c.nodes[l].Put(ctx, "fan", "v"); err != nil {
					b.Fatal(err)
				}
				for _, ch := range chans {
					if wr := <-ch; len(wr.Events) != 1 {
						b.Fatalf("got %d events", len(wr.Events))
					}
				}
				total += time.Since(t0)
			}
			b.StopTimer()
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-until-all")
		})
	}
}

// BenchmarkLeaderClose measures the pause a writer on a follower sees when
// the leader closes (Close hands leadership over first): the longest gap
// between two acknowledged writes around the Close, against an election
// timeout of 500 ms.
func BenchmarkLeaderClose(b *testing.B) {
	var worst time.Duration
	for n := 0; n < b.N; n++ {
		c := benchCluster(b)
		l := c.waitLeader()
		var w int
		for i := range c.nodes {
			if i != l {
				w = i
				break
			}
		}
		stop := make(chan struct{})
		gap := make(chan time.Duration, 1)
		go func() {
			last, longest := time.Now(), time.Duration(0)
			for i := 0; ; i++ {
				select {
				case <-stop:
					gap <- longest
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := c.nodes[w].Put(ctx, fmt.Sprintf("k%d", i%100), benchValue)
				cancel()
				if err == nil {
					now := time.Now()
					longest = max(longest, now.Sub(last))
					last = now
				}
			}
		}()
		time.Sleep(200 * time.Millisecond) // steady state before the close
		c.stop(l)
		time.Sleep(time.Second) // writes resume on the new leader
		close(stop)
		worst = max(worst, <-gap)
		c.closeAll()
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "pause-ms")
}

// benchCodec runs the encode and decode sub-benchmarks of a Put command
// with the given codec and returns the encoded command.
func benchCodec(b *testing.B, enc func(byte, any) ([]byte, error), dec func([]byte) (*request, error)) []byte {
	req := &request{Kind: reqPut, Origin: 1, Seq: 1, Put: &putReq{Key: []byte("key-000123"), Value: []byte(benchValue)}}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := enc(cmdRequest, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	cmd, err := enc(cmdRequest, req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := dec(cmd); err != nil {
				b.Fatal(err)
			}
		}
	})
	return cmd
}

// BenchmarkCommand measures encoding and decoding a Put command (the
// msgpack pre-check included) and splitting a batch entry of 64 of them.
func BenchmarkCommand(b *testing.B) {
	cmd := benchCodec(b, encodeCommand, decodeCommand)
	cmds := make([][]byte, 64)
	for i := range cmds {
		cmds[i] = cmd
	}
	entry := encodeBatch(cmds)
	b.Run("split-batch-64", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := splitBatch(entry); err != nil {
				b.Fatal(err)
			}
		}
	})
}
