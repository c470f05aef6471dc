package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embedkv/store/internal/hclogslog"
	"github.com/embedkv/store/lease"
	"github.com/embedkv/store/peertls"
	"github.com/embedkv/store/transport"
	"github.com/embedkv/store/watch"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// Store is one node of a replicated key-value store. All methods are safe for
// concurrent use. Open returns it; Close stops it.
type Store struct {
	cfg    Config
	logger *slog.Logger
	lim    limits
	bootID uint64 // random per Open; tags this process's proposals
	seq    atomic.Uint64

	fsm       *fsm
	waiters   *waiters
	raft      *raft.Raft
	bolt      *raftboltdb.BoltStore
	mux       *transport.Mux
	trans     *raftTransport
	rpc       *transport.Client
	reads     *readIndexer
	coalescer *coalescer
	hub       *watch.Hub[WatchResponse]
	// watchSetup counts Watch calls between their first read and the
	// hub's registration: views are published eagerly meanwhile.
	watchSetup atomic.Int64
	lessor     *lease.Lessor
	leases     *leaseTable
	tls        *peertls.Loader // nil without Config.TLS

	clusterID atomic.Pointer[clusterID] // nil until known (a joiner learns it)
	members   memberCache
	removed   atomic.Bool // this node is no longer a member (see configChanged)
	raftUp    atomic.Bool // s.raft is set: raft connections may be admitted

	// memberMu guards memberSince and serialises marking this node removed.
	// Lock order: leaf (the stable store's own lock is taken under it).
	memberMu    sync.Mutex
	memberSince uint64 // index of the latest applied configuration listing this node

	// expireMu guards expireCtx, which bounds lease-expiry proposals and is
	// cancelled before the lessor is demoted. Lock order: leaf.
	expireMu     sync.Mutex
	expireCtx    context.Context
	expireCancel context.CancelFunc

	// readyTerm is the raft term in which this node, as leader, has applied
	// its first entry; read-index reads are served only then. 0 = not ready.
	readyTerm atomic.Uint64

	stopCh chan struct{} // closed when Close starts

	// goMu guards goClosed and the Add side of wg, so that no goroutine
	// starts after Close began waiting. Lock order: leaf.
	goMu      sync.Mutex
	goClosed  bool
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open starts a node with cfg and returns once it serves requests. It may
// not have a leader yet: calls wait for one (see ErrNoLeader).
//
// On first start in an empty Dir the node bootstraps the cluster from
// cfg.Peers (or alone, when Peers is empty); every member must be given the
// same list. Later starts recover from Dir and ignore Peers' bootstrap.
func Open(cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:     cfg,
		logger:  cfg.Logger.With("node", cfg.NodeID),
		lim:     cfg.limits(),
		waiters: newWaiters(),
		stopCh:  make(chan struct{}),
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	s.bootID = binary.LittleEndian.Uint64(b[:]) | 1
	s.expireCtx, s.expireCancel = context.WithCancel(context.Background())
	s.lessor = lease.New(lease.Config{Clock: cfg.Clock, OnExpire: s.expireLeases, Logger: s.logger})
	s.leases = newLeaseTable(s.lessor)
	s.fsm = newFSM(s.logger, s.bootID, s.waiters, s.leases)
	s.reads = &readIndexer{s: s}
	s.coalescer = newCoalescer()
	s.hub = watch.New(watch.Config[WatchResponse]{
		Convert:          s.convertBatch,
		ProgressInterval: cfg.WatchProgressNotifyInterval,
		Logger:           s.logger,
	}, s.fsm.current().view)
	s.fsm.onPublish = s.hub.Publish
	s.fsm.eager = func() bool { return s.watchSetup.Load() > 0 || s.hub.Active() }
	s.fsm.onConfig = s.configChanged
	if err := s.start(); err != nil {
		s.cleanup()
		return nil, err
	}
	return s, nil
}

func (s *Store) start() error {
	cfg := &s.cfg
	if err := prepareDir(cfg.Dir, s.logger); err != nil {
		return err
	}
	tcfg := transport.Config{
		BindAddr:      cfg.BindAddr,
		AdvertiseAddr: cfg.AdvertiseAddr,
		Logger:        s.logger,
		MaxFrameBytes: cfg.MaxRequestBytes + maxInternalExtra + 64<<10,
		Hello:         s.hello,
		Admit:         s.admit,
	}
	if err := s.setupTLS(&tcfg); err != nil {
		return err
	}
	var err error
	s.mux, err = transport.Listen(tcfg)
	if err != nil {
		return fmt.Errorf("store: listen on %s: %w", cfg.BindAddr, err)
	}
	s.rpc = transport.NewClient(s.clientConfig(s.hello))
	s.bolt, err = openLogStore(cfg)
	if err != nil {
		return fmt.Errorf("store: open raft log in %s: %w", cfg.Dir, err)
	}
	logs, err := newLogCache(s.bolt, logCacheEntries, logCacheBytes)
	if err != nil {
		return err
	}
	hlog := hclogslog.New(slog.New(raftLogs{h: s.logger.Handler(), closing: s.stopped}), "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog)
	if err != nil {
		return fmt.Errorf("store: snapshot store: %w", err)
	}
	tc := &raft.NetworkTransportConfig{
		Stream:  s.mux.RaftLayer(),
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hlog,
	}
	if cfg.DialAddress != nil {
		known := map[string]string{cfg.NodeID: s.mux.Addr()}
		for _, p := range cfg.Peers {
			if p.ID != cfg.NodeID {
				known[p.ID] = p.Addr
			}
		}
		tc.ServerAddressProvider = &dialAddressProvider{fn: cfg.DialAddress, known: known}
	}
	s.trans = newRaftTransport(raft.NewNetworkTransportWithConfig(tc))

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = false // true can strand Apply futures forever on Shutdown (they sit in the buffered applyCh)
	rc.NoLegacyTelemetry = true
	rc.ShutdownOnRemove = false // a removed node stays up and answers ErrRemoved (raft's own shutdown would strand futures)
	rc.Logger = hlog

	existing, err := raft.HasExistingState(logs, s.bolt, snaps)
	if err != nil {
		return fmt.Errorf("store: inspect raft state: %w", err)
	}
	if wasRemoved(s.bolt) {
		return fmt.Errorf("%w: its data directory %s says so; to bring it back, empty the directory and join again", ErrRemoved, cfg.Dir)
	}
	if err := s.initCluster(existing); err != nil {
		return err
	}
	if !existing && len(cfg.Join) == 0 {
		servers := []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(s.mux.Addr())}}
		if len(cfg.Peers) > 0 {
			servers = servers[:0]
			for _, p := range cfg.Peers {
				servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
			}
			sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
		}
		if err := raft.BootstrapCluster(rc, logs, s.bolt, snaps, s.trans, raft.Configuration{Servers: servers}); err != nil {
			return fmt.Errorf("store: bootstrap: %w", err)
		}
	}
	s.raft, err = raft.NewRaft(rc, s.fsm, logs, s.bolt, snaps, s.trans)
	if err != nil {
		return fmt.Errorf("store: start raft: %w", err)
	}
	s.raftUp.Store(true)
	s.mux.ServeRPC(s.handleRPC)
	s.goFunc(s.watchLeadership)
	s.goFunc(s.runCompactor)
	s.goFunc(s.runLeaseCheckpoints)
	s.goFunc(s.runPromoter)
	s.goFunc(s.runCoalescer)
	s.goFunc(s.runSnapshotter)
	return s.settleMembership(existing)
}

// clientConfig configures a node RPC client announcing hello.
func (s *Store) clientConfig(hello func() transport.Hello) transport.ClientConfig {
	cc := transport.ClientConfig{
		Logger:        s.logger,
		MaxFrameBytes: s.cfg.MaxRequestBytes + maxInternalExtra + 64<<10,
		Hello:         hello,
	}
	if s.tls != nil {
		cc.TLS = s.clientTLS
	}
	return cc
}

// openLogStore opens (or creates) the raft log and stable store in cfg.Dir:
// fsync on unless UnsafeNoFsync, a 1 s lock timeout so that a second process
// on the same Dir fails instead of hanging, and no freelist sync (faster
// commits; the freelist is rebuilt on open).
func openLogStore(cfg *Config) (*raftboltdb.BoltStore, error) {
	return raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(cfg.Dir, "raft.db"),
		BoltOptions: &bolt.Options{
			Timeout:        time.Second,
			NoFreelistSync: true,
			FreelistType:   bolt.FreelistMapType,
		},
		NoSync: cfg.UnsafeNoFsync,
	})
}

// dialAddressProvider adapts Config.DialAddress to raft. raft asks it on
// every RPC, for this node's own ID too; when the callback declines, the
// configured address is returned (an error would make raft log a warning per
// RPC before falling back).
type dialAddressProvider struct {
	fn    func(string) (string, bool)
	known map[string]string // read-only after Open: this node and Peers
}

func (p *dialAddressProvider) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if a, ok := p.fn(string(id)); ok {
		return raft.ServerAddress(a), nil
	}
	if a, ok := p.known[string(id)]; ok {
		return raft.ServerAddress(a), nil
	}
	return "", errors.New("no override") // raft then dials the advertised address
}

// prepareDir creates dir with mode 0700, or warns when an existing one is
// readable by others.
func prepareDir(dir string, logger *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: create Dir: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("store: Dir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%w: Dir %s is not a directory", ErrConfig, dir)
	}
	if st.Mode().Perm()&0o077 != 0 {
		logger.Warn("embedkv: data directory is accessible by other users", "dir", dir, "mode", st.Mode().Perm())
	}
	return nil
}

// goFunc runs fn in a goroutine that Close waits for. Once Close has begun
// waiting it starts nothing and returns false.
func (s *Store) goFunc(fn func()) bool {
	s.goMu.Lock()
	defer s.goMu.Unlock()
	if s.goClosed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// Close stops the node: a leader first hands leadership to another voter so
// the others see a short pause instead of an election timeout; then raft
// stops, pending calls fail with ErrStopped, every goroutine the node started
// is waited for, and the files are closed. Data stays on disk for the next
// Open. Close is idempotent and returns the same error every time.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopCh)
		if s.raft != nil && s.raft.State() == raft.Leader && s.otherVoters() {
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.logger.Info("embedkv: leadership transfer before close failed", "err", err)
			}
		}
		s.closeErr = s.cleanup()
	})
	return s.closeErr
}

// cleanup releases whatever start managed to open, in reverse order.
func (s *Store) cleanup() error {
	var errs []error
	if s.raft != nil {
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, err)
		}
	}
	select {
	case <-s.stopCh:
	default:
		close(s.stopCh)
	}
	s.goMu.Lock()
	s.goClosed = true
	s.goMu.Unlock()
	s.wg.Wait()
	if s.lessor != nil {
		s.demoteLessor()
		s.lessor.Close()
	}
	if s.hub != nil {
		s.hub.Close() // after raft: no more publishes
	}
	if s.rpc != nil {
		errs = append(errs, s.rpc.Close())
	}
	if s.trans != nil {
		errs = append(errs, s.trans.Close())
	}
	if s.mux != nil {
		errs = append(errs, s.mux.Close())
	}
	if s.bolt != nil {
		errs = append(errs, s.bolt.Close())
	}
	return errors.Join(errs...)
}

func (s *Store) otherVoters() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter && srv.ID != raft.ServerID(s.cfg.NodeID) {
			return true
		}
	}
	return false
}

func (s *Store) stopped() bool {
	select {
	case <-s.stopCh:
		return true
	default:
		return false
	}
}

func (s *Store) header(rev int64) ResponseHeader {
	return ResponseHeader{Revision: rev, RaftTerm: s.raft.CurrentTerm(), MemberID: s.cfg.NodeID}
}
