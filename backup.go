package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/embedkv/store/internal/hclogslog"
	"github.com/hashicorp/raft"
)

// Backups.
//
// A backup is a snapshot stream (package snapshot: versioned header,
// CRC-32C per record, a trailer with the record count and a checksum of
// the whole stream) of kind backupKind, laid out as the FSM's raft
// snapshots are: every key with its full history still kept (revisions,
// versions, tombstones, the compaction point), then every lease with its
// remaining TTL. Restore reads and checks all of it before it writes
// anything, and then seeds a data directory with a raft snapshot at index
// 1 of a new cluster, so that Open starts from it.

const backupKind = "embedkv-backup"

// Snapshot writes a consistent, point-in-time backup of the whole store to
// w: every key with its revisions, and every lease. It is linearizable (it
// includes every write completed before the call, on any node) and works
// on any node. The state is captured between two applied batches in
// O(number of leases) and encoded from a copy-on-write view while writes
// go on. If ctx ends while writing, Snapshot stops with ctx.Err() and what
// was written is not a valid backup (Restore rejects it).
func (s *Store) Snapshot(ctx context.Context, w io.Writer) error {
	if w == nil {
		return fmt.Errorf("%w: nil writer", ErrInvalidArgument)
	}
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.linearizable(ctx); err != nil {
		return err
	}
	snap := s.fsm.capture()
	return writeFSMSnapshot(&ctxWriter{ctx: ctx, w: w}, snap, backupKind)
}

// ctxWriter fails writes once ctx has ended.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Restore seeds cfg.Dir, which must hold no raft state, from a backup
// written by Snapshot, so that Open(cfg) starts a new cluster with the
// backup's keys, revisions and leases. For a cluster of several nodes, run
// Restore on each with the same backup and the same cfg.Peers (each with
// its own NodeID and Dir), then Open them all; or restore one node and let
// the others Join it. The restored cluster gets a new cluster ID: nodes of
// the cluster the backup came from are refused. Leases keep their
// remaining TTLs; their countdown restarts when the new cluster elects a
// leader.
//
// The whole backup is read and verified first: a corrupt or truncated
// backup fails with ErrCorrupt and nothing is written. A Dir that already
// holds raft state fails with ErrConfig. cfg.Join must be empty.
func Restore(r io.Reader, cfg Config) error {
	if r == nil {
		return fmt.Errorf("%w: nil reader", ErrInvalidArgument)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if len(cfg.Join) > 0 {
		return fmt.Errorf("%w: Restore seeds a new cluster: list its members in Peers, not Join", ErrConfig)
	}
	if err := checkFreshDir(cfg.Dir); err != nil {
		return err
	}
	h := sha256.New()
	st, err := readFSMSnapshot(io.TeeReader(r, h), backupKind)
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	servers, peers := restoreServers(&cfg)
	id := deriveClusterID(cfg.ClusterToken, peers, h.Sum(nil))
	if len(cfg.Peers) == 0 {
		if id, err = randomClusterID(); err != nil {
			return err
		}
	}
	return seedAtomically(&cfg, st, servers, id)
}

// seedAtomically seeds a temporary directory next to cfg.Dir and renames
// it into place, so that a crash leaves either no Dir or a complete one.
func seedAtomically(cfg *Config, st *restoredState, servers []raft.Server, id clusterID) error {
	parent := filepath.Dir(filepath.Clean(cfg.Dir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, ".embedkv-restore-")
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	tcfg := *cfg
	tcfg.Dir = tmp
	if err := seedDir(&tcfg, st, servers, id); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	// An existing Dir must be empty (checkFreshDir saw no raft state;
	// anything else in it is not ours to replace).
	if err := os.Remove(cfg.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		os.RemoveAll(tmp)
		return fmt.Errorf("%w: %s is not empty: %v", ErrConfig, cfg.Dir, err)
	}
	if err := os.Rename(tmp, cfg.Dir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("store: restore: %w", err)
	}
	return syncDir(parent)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// restoreServers is the restored cluster's configuration: Peers, or this
// node alone.
func restoreServers(cfg *Config) ([]raft.Server, []Peer) {
	peers := cfg.Peers
	if len(peers) == 0 {
		addr := cfg.AdvertiseAddr
		if addr == "" {
			addr = cfg.BindAddr // a ":0" port is corrected by the leader once it runs
		}
		peers = []Peer{{ID: cfg.NodeID, Addr: addr}}
	}
	servers := make([]raft.Server, 0, len(peers))
	for _, p := range peers {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	return servers, peers
}

// checkFreshDir fails when dir holds raft state. (An existing Dir must also
// be empty; seedAtomically finds out.)
func checkFreshDir(dir string) error {
	for _, name := range []string{"raft.db", "snapshots"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%w: %s already holds raft state (%s); restore into an empty directory", ErrConfig, dir, name)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: restore: %w", err)
		}
	}
	return nil
}

// seedDir writes the raft snapshot and the stable store of a new cluster
// whose state is st.
func seedDir(cfg *Config, st *restoredState, servers []raft.Server, id clusterID) error {
	logger := hclogslog.New(slog.New(slog.DiscardHandler), "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, logger)
	if err != nil {
		return fmt.Errorf("store: restore: snapshot store: %w", err)
	}
	const index, term = 1, 1
	// Create encodes the legacy peer list through a transport's EncodePeer;
	// any transport will do.
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, raft.Configuration{Servers: servers}, index, trans)
	if err != nil {
		return fmt.Errorf("store: restore: create snapshot: %w", err)
	}
	recs := make([]leaseSnap, 0, len(st.leases))
	for _, l := range st.leases {
		recs = append(recs, leaseSnap{ID: l.id, TTL: l.ttl, RemainingMs: l.remainingMs})
	}
	fs := &fsmSnapshot{view: st.kv.View(), index: index, leases: recs, nextLeaseID: st.nextLeaseID}
	if err := writeFSMSnapshot(sink, fs, fsmSnapshotKind); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("store: restore: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("store: restore: write snapshot: %w", err)
	}
	db, err := openLogStore(cfg)
	if err != nil {
		return fmt.Errorf("store: restore: create raft log: %w", err)
	}
	err = storeClusterID(db, id)
	return errors.Join(err, db.Close())
}
