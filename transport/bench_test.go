package transport

import (
	"context"
	"runtime"
	"testing"
)

// BenchmarkCall measures RPC round trips over one connection on loopback,
// with a handler that returns its request.
func BenchmarkCall(b *testing.B) {
	payload := make([]byte, 128)
	benchmarks := []struct {
		name string
		// parallelism is the number of callers per GOMAXPROCS; 0 means a
		// single sequential caller.
		parallelism int
	}{
		{"sequential", 0},
		{"256 concurrent", 256},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			m := newMux(b, Config{})
			m.ServeRPC(func(_ context.Context, _ uint8, req []byte) ([]byte, error) { return req, nil })
			c := newClient(b, ClientConfig{})
			ctx := context.Background()
			if _, err := c.Call(ctx, m.Addr(), 1, payload); err != nil {
				b.Fatalf("warm-up Call: %v", err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			if bm.parallelism == 0 {
				for b.Loop() {
					if _, err := c.Call(ctx, m.Addr(), 1, payload); err != nil {
						b.Fatalf("Call: %v", err)
					}
				}
				return
			}
			// RunParallel starts parallelism*GOMAXPROCS goroutines: divide so
			// that the total is bm.parallelism.
			b.SetParallelism(max(1, bm.parallelism/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Call(ctx, m.Addr(), 1, payload); err != nil {
						b.Errorf("Call: %v", err)
						return
					}
				}
			})
			b.StopTimer()
			if got := m.rpcConns.Load(); got != 1 {
				b.Errorf("rpc connections: got %d, want 1", got)
			}
		})
	}
}
