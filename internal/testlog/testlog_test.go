package testlog

import (
	"log/slog"
	"sync"
	"testing"
)

func TestBuffer(t *testing.T) {
	var b Buffer
	log := b.Logger(slog.LevelInfo)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Info("hello", "n", 1)
		}()
	}
	wg.Wait()
	log.Debug("hidden")
	tests := []struct {
		name string
		got  int
		want int
	}{
		{"lines with hello", b.Count("hello"), 8},
		{"debug lines below the level", b.Count("hidden"), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %d, want %d", tc.got, tc.want)
			}
		})
	}
	if !b.Contains("n=1") || b.Contains("nothing like this") {
		t.Errorf("Contains is wrong for %q", b.String())
	}
}
