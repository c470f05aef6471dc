//go:build linux

package robustness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	store "github.com/embedkv/store"
	"github.com/embedkv/store/internal/robustness/proccluster"
	"github.com/embedkv/store/internal/robustness/testcluster"
)

// The process profile's control protocol: the parent opens TCP connections
// to a child's loopback control address and writes one JSON procRequest
// per line; the child answers each with one JSON procResponse per line, in
// order. A "watch" request turns the connection into a stream of
// responses, one per watch response, until the parent closes it.

// procRequest is one request to a child.
type procRequest struct {
	Cmd       string // "op", "rev", "history", "status", "watch"
	Op        *Op    `json:",omitempty"`
	TimeoutMs int64  `json:",omitempty"`
	Prefix    string `json:",omitempty"`
	Rev       int64  `json:",omitempty"` // history: up to; watch: from
	// "bad": the name of a badCase, and its markers.
	Case, Key, Value string `json:",omitempty"`
}

// procResponse is a child's answer.
type procResponse struct {
	Op     *Op            `json:",omitempty"`
	Rev    int64          `json:",omitempty"`
	Events []Event        `json:",omitempty"`
	Status *store.Status  `json:",omitempty"`
	Watch  *WatchResponse `json:",omitempty"`
	KVs    []KV           `json:",omitempty"` // scan
	Err    string         `json:",omitempty"`
	// Sentinels lists the sentinels Err matches (see sentinelNames).
	Sentinels []string `json:",omitempty"`
}

// procNodeConfig is a child's payload: its node's identity and place.
type procNodeConfig struct {
	NodeID, Dir, BindAddr string
	Peers                 []store.Peer
	LogLevel              string // "" = discard the node's logs
}

// nodeConfig is the store.Config of a node of the process profile: the
// in-process profile's settings, fsync on.
func (pc procNodeConfig) nodeConfig() store.Config {
	logger := slog.New(slog.DiscardHandler)
	if pc.LogLevel != "" {
		level := slog.LevelInfo
		if pc.LogLevel == "debug" {
			level = slog.LevelDebug
		}
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	cfg := store.Config{NodeID: pc.NodeID, Dir: pc.Dir, BindAddr: pc.BindAddr, Peers: pc.Peers, Logger: logger}
	testcluster.FastTimers(&cfg)
	cfg.CompactionRetention = -1
	cfg.SnapshotThreshold, cfg.TrailingLogs = 128, 160
	cfg.SnapshotInterval = time.Second
	return cfg
}

// ServeIfChild turns this process into a node of the process profile when
// the parent started it so (proccluster.Child) and never returns then;
// otherwise it returns at once. Call it first in TestMain.
func ServeIfChild() {
	payload, ok := proccluster.Child()
	if !ok {
		return
	}
	if err := serveChild(payload); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveChild(payload string) error {
	var pc procNodeConfig
	if err := json.Unmarshal([]byte(payload), &pc); err != nil {
		return err
	}
	cfg := pc.nodeConfig()
	var s *store.Store
	var err error
	// The node's port may briefly be held by an outgoing connection's
	// ephemeral port, or by the killed incarnation's sockets: retry.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s, err = store.Open(cfg); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("open %s: %w", pc.NodeID, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := proccluster.Ready(ln.Addr().String()); err != nil {
		return err
	}
	clk := NewClock()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveConn(conn, s, clk)
	}
}

// serveConn answers one control connection's requests in order.
func serveConn(conn net.Conn, s *store.Store, clk *Clock) {
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	enc := json.NewEncoder(conn)
	dec := json.NewDecoder(r)
	for {
		var req procRequest
		if err := dec.Decode(&req); err != nil {
			return
		}
		if req.Cmd == "watch" {
			serveWatch(conn, dec, enc, s, clk, req)
			return
		}
		timeout := time.Duration(req.TimeoutMs) * time.Millisecond
		if timeout <= 0 {
			timeout = 5 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		var resp procResponse
		switch req.Cmd {
		case "op":
			if req.Op == nil {
				resp.Err = "op request without an operation"
				break
			}
			op := Do(ctx, clk, s, *req.Op)
			resp.Op = &op
		case "rev":
			rev, err := storeConn{s}.Rev(ctx)
			resp.Rev = rev
			if err != nil {
				resp.Err = err.Error()
			}
		case "history":
			h, err := ReadHistory(ctx, s, req.Prefix, req.Rev)
			if err != nil {
				resp.Err = err.Error()
				break
			}
			resp.Rev = h.Rev
			for _, evs := range h.Events {
				resp.Events = append(resp.Events, evs...)
			}
		case "status":
			st := s.Status()
			resp.Status = &st
		case "bad":
			bc := badCaseByName(req.Case)
			if bc == nil {
				resp.Err = fmt.Sprintf("unknown bad case %q", req.Case)
				break
			}
			if err := runBadCase(bc, s, req.Key, req.Value); err != nil {
				resp.Err, resp.Sentinels = err.Error(), sentinelNames(err)
			}
			resp.Op = &Op{} // answered
		case "compact":
			if err := compactOne(s); err != nil {
				resp.Err = err.Error()
			}
		case "scan":
			kvs, err := scanAll(ctx, s)
			resp.KVs = kvs
			if err != nil {
				resp.Err = err.Error()
			}
		default:
			resp.Err = fmt.Sprintf("unknown command %q", req.Cmd)
		}
		cancel()
		if err := enc.Encode(&resp); err != nil {
			return
		}
	}
}

// serveWatch streams a watch until the parent closes the connection or
// the watch ends.
func serveWatch(conn net.Conn, dec *json.Decoder, enc *json.Encoder, s *store.Store, clk *Clock, req procRequest) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the parent closing the connection ends the watch
		defer wg.Done()
		var x procRequest
		_ = dec.Decode(&x)
		cancel()
	}()
	for r := range (storeConn{s}).Watch(ctx, clk, req.Prefix, req.Rev) {
		if err := enc.Encode(&procResponse{Watch: &r}); err != nil {
			break
		}
	}
	cancel()
	_ = conn.Close()
	wg.Wait()
}
