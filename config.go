package store

import (
	"fmt"

	"github.com/embedkv/store/lease"
	"github.com/embedkv/store/transport"
	"log/slog"
	"net"
	"time"
)

// Config configures a node. Open applies defaults to the zero fields (see
// each field) in one place, withDefaults, and rejects contradictions with
// ErrConfig.
type Config struct {
	// NodeID is the stable, unique name of this node. Required when Peers or
	// Join is set; defaults to "default" for a single-node store.
	NodeID string
	// Dir holds the raft log (raft.db), stable state and snapshots. Required.
	// It is created with mode 0700 if missing.
	Dir string
	// BindAddr is the TCP address the node listens on for peer traffic (raft
	// and node RPC share it). "" = "127.0.0.1:0", a free loopback port.
	BindAddr string
	// AdvertiseAddr is the address peers dial; "" = the bound address. With
	// Peers set it must equal this node's Peer.Addr.
	AdvertiseAddr string
	// Peers lists the initial cluster, this node included. Every node must be
	// given the same list. Empty = a single-node cluster.
	Peers []Peer
	// Join lists addresses of running members to join through. On first
	// start (an empty Dir) the node asks them for the cluster's identity,
	// then the leader adds it as a non-voter and promotes it to voter once
	// it has caught up. On later starts the node recovers from Dir and asks
	// to be re-added only if it is no longer a member. Joining again with
	// the same ID and address is a no-op; a member with the same ID or the
	// same address is replaced.
	Join []string
	// JoinTimeout bounds how long Open tries the Join addresses (default 30 s).
	JoinTimeout time.Duration
	// ClusterToken tells clusters apart that are bootstrapped from the same
	// Peers list (etcd's --initial-cluster-token). The cluster ID is derived
	// from it and Peers on first start; nodes refuse peers whose cluster ID
	// differs. Default "embedkv".
	ClusterToken string
	// TLS, when set, turns on mutual TLS on every peer connection: raft and
	// node RPC, in both directions, TLS 1.2 or later, client certificates
	// required. Each node's certificate must name its NodeID (see package
	// peertls). nil = plain TCP, which Open accepts only on a loopback
	// BindAddr unless InsecurePlaintextPeers is set.
	TLS *TLSConfig
	// InsecurePlaintextPeers allows plain TCP between peers on a BindAddr
	// that is not loopback. Anyone who can reach the port can then read the
	// data and act as a member. Only for networks that are otherwise secured.
	InsecurePlaintextPeers bool
	// Logger receives the node's logs, raft's included. nil = slog.Default()
	// filtered to warnings and errors.
	Logger *slog.Logger

	// HeartbeatTimeout and ElectionTimeout are raft's timers (default 500 ms
	// each); LeaderLeaseTimeout defaults to half the heartbeat timeout.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long a follower may wait to learn of a commit
	// when no new entries flow: the leader sends an empty AppendEntries
	// carrying its commit index every 1–2 CommitTimeouts. Default 1 ms
	// (raft's minimum; raft's own default is 50 ms): forwarded writes and
	// watchers on followers then wait about one follower fsync less, for a
	// few percent of a core per idle 3-node cluster.
	CommitTimeout time.Duration
	// SnapshotThreshold is the number of new log entries that triggers a raft
	// snapshot (default 8192), checked every SnapshotInterval (default 30 s).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// SnapshotThresholdBytes also triggers a snapshot once the entries
	// applied since the last one hold this many bytes (default 64 MiB;
	// negative disables it). With proposal coalescing one entry can carry
	// a thousand writes, so counting entries alone lets the log, and the
	// replay on restart, grow large.
	SnapshotThresholdBytes int64
	// TrailingLogs is the number of log entries kept after a snapshot
	// (default 10240; at least 1.25 x SnapshotThreshold is enforced so slow
	// followers can catch up from the log).
	TrailingLogs uint64
	// MaxAppendEntries caps the entries sent in one AppendEntries RPC and
	// written in one fsync round (default 256).
	MaxAppendEntries int

	// MaxRequestBytes caps the encoded size of one write (default 1.5 MiB).
	MaxRequestBytes int
	// MaxTxnOps caps the operations of each branch of a txn, and its
	// comparisons (default 128, as etcd).
	MaxTxnOps int
	// MaxTxnDepth caps txn nesting (default 8, at most 16).
	MaxTxnDepth int
	// CompactionRetention is how many revisions of history the leader keeps
	// (default 10000): once the store is CompactionRetention + 1/8 of it
	// revisions past the compaction point, the leader proposes a compaction
	// to revision - CompactionRetention. Compacting in small steps keeps each
	// compaction (applied on every node at once) short. Negative disables
	// automatic compaction.
	CompactionRetention int64
	// CompactionCheckInterval is how often the leader checks (default
	// 100 ms).
	CompactionCheckInterval time.Duration
	// LeaderWaitTimeout bounds how long a call whose context has no deadline
	// waits for a leader before failing with ErrNoLeader (default 5 s).
	LeaderWaitTimeout time.Duration

	// WatchProgressNotifyInterval is how often an idle watch opened with
	// WithProgressNotify receives a progress notification (default 10 min).
	WatchProgressNotifyInterval time.Duration

	// LeaseCheckpointInterval is how often the leader records remaining lease
	// TTLs through raft (default 2 s). After a leader change a lease expires
	// at most about 1.5 x this plus the election time late; never early.
	LeaseCheckpointInterval time.Duration
	// Clock is the time source for lease expiry and keepalives (default: the
	// real clock). Tests inject a fake one.
	Clock Clock

	// DialAddress, if set, rewrites the address this node dials to reach the
	// peer with the given ID (raft traffic and node RPC alike); ok=false
	// keeps the peer's advertised address. For NAT, proxies and fault
	// injection in tests; peers still identify each other by ID.
	DialAddress func(peerID string) (addr string, ok bool)

	// UnsafeNoFsync turns off fsync of the raft log. A crash can then lose
	// acknowledged writes. For tests and benchmarks of CPU paths only.
	UnsafeNoFsync bool
}

// Clock is a time source: Now and a timer channel, as the time package's.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// Peer is one member of the initial cluster.
type Peer struct{ ID, Addr string }

// TLSConfig names PEM files for mutual TLS between peers. The files are
// re-read when they change.
type TLSConfig struct{ CertFile, KeyFile, CAFile string }

const defaultNodeID = "default"

// withDefaults validates c and returns it with every zero field set to its
// default. It is the only place defaults live.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, a ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
	}
	if c.Dir == "" {
		return bad("Dir is required")
	}
	if c.NodeID == "" {
		if len(c.Peers) > 0 || len(c.Join) > 0 {
			return bad("NodeID is required when Peers or Join is set")
		}
		c.NodeID = defaultNodeID
	}
	if len(c.Peers) > 0 && len(c.Join) > 0 {
		return bad("set Peers or Join, not both")
	}
	if len(c.NodeID) > maxNodeIDLen {
		return bad("NodeID is %d bytes, limit %d", len(c.NodeID), maxNodeIDLen)
	}
	for _, a := range c.Join {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return bad("Join address %q: %v", a, err)
		}
	}
	if c.ClusterToken == "" {
		c.ClusterToken = "embedkv"
	}
	if c.BindAddr == "" {
		c.BindAddr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(c.BindAddr)
	if err != nil {
		return bad("BindAddr %q: %v", c.BindAddr, err)
	}
	if (host == "" || net.ParseIP(host).IsUnspecified()) && c.AdvertiseAddr == "" && len(c.Peers) == 0 {
		return bad("BindAddr %q listens on every interface: set AdvertiseAddr to the address peers dial", c.BindAddr)
	}
	if c.TLS != nil {
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" || c.TLS.CAFile == "" {
			return bad("TLS needs CertFile, KeyFile and CAFile")
		}
	} else if !c.InsecurePlaintextPeers && !loopbackHost(host) {
		return bad("BindAddr %q is not a loopback address: set TLS, or InsecurePlaintextPeers to accept plain TCP", c.BindAddr)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseAddr); err != nil {
			return bad("AdvertiseAddr %q: %v", c.AdvertiseAddr, err)
		}
	}
	seenID, seenAddr := map[string]bool{}, map[string]bool{}
	self := false
	for _, p := range c.Peers {
		if p.ID == "" || p.Addr == "" {
			return bad("peer %+v needs an ID and an Addr", p)
		}
		if len(p.ID) > maxNodeIDLen {
			return bad("peer ID %q is longer than %d bytes", p.ID, maxNodeIDLen)
		}
		if seenID[p.ID] || seenAddr[p.Addr] {
			return bad("peer %+v is listed twice", p)
		}
		seenID[p.ID], seenAddr[p.Addr] = true, true
		if p.ID == c.NodeID {
			self = true
			if c.AdvertiseAddr == "" {
				c.AdvertiseAddr = p.Addr
			} else if c.AdvertiseAddr != p.Addr {
				return bad("AdvertiseAddr %q differs from this node's peer address %q", c.AdvertiseAddr, p.Addr)
			}
		}
	}
	if len(c.Peers) > 0 && !self {
		return bad("Peers does not list this node (%q)", c.NodeID)
	}
	if c.Logger == nil {
		c.Logger = slog.New(warnOnly{slog.Default().Handler()})
	}
	durations := []struct {
		d   *time.Duration
		def time.Duration
	}{
		{&c.HeartbeatTimeout, 500 * time.Millisecond},
		{&c.ElectionTimeout, 500 * time.Millisecond},
		{&c.CommitTimeout, time.Millisecond},
		{&c.SnapshotInterval, 30 * time.Second},
		{&c.CompactionCheckInterval, 100 * time.Millisecond},
		{&c.LeaderWaitTimeout, 5 * time.Second},
		{&c.WatchProgressNotifyInterval, 10 * time.Minute},
		{&c.LeaseCheckpointInterval, 2 * time.Second},
		{&c.JoinTimeout, 30 * time.Second},
	}
	for _, x := range durations {
		if *x.d < 0 {
			return bad("negative duration %v", *x.d)
		}
		if *x.d == 0 {
			*x.d = x.def
		}
	}
	if c.Clock == nil {
		c.Clock = lease.RealClock()
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = c.HeartbeatTimeout / 2
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return bad("LeaderLeaseTimeout %v exceeds HeartbeatTimeout %v", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotThresholdBytes == 0 {
		c.SnapshotThresholdBytes = 64 << 20
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if minTrail := c.SnapshotThreshold + c.SnapshotThreshold/4; c.TrailingLogs < minTrail {
		c.TrailingLogs = minTrail
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = 256
	}
	if c.MaxAppendEntries < 0 || c.MaxAppendEntries > 1024 {
		return bad("MaxAppendEntries %d outside 1..1024", c.MaxAppendEntries)
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = 3 << 19 // 1.5 MiB
	}
	if c.MaxRequestBytes < 0 || c.MaxRequestBytes > 64<<20 {
		return bad("MaxRequestBytes %d outside 1..64 MiB", c.MaxRequestBytes)
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = 128
	}
	if c.MaxTxnOps < 0 || c.MaxTxnOps > 4096 {
		return bad("MaxTxnOps %d outside 1..4096", c.MaxTxnOps)
	}
	if c.MaxTxnDepth == 0 {
		c.MaxTxnDepth = 8
	}
	if c.MaxTxnDepth < 0 || c.MaxTxnDepth > maxTxnDepthLimit {
		return bad("MaxTxnDepth %d outside 1..%d", c.MaxTxnDepth, maxTxnDepthLimit)
	}
	if c.CompactionRetention == 0 {
		c.CompactionRetention = 10000
	}
	return c, nil
}

// maxNodeIDLen bounds node IDs: they travel in every connection's preamble.
const maxNodeIDLen = transport.MaxNodeIDLen

// loopbackHost reports whether host (from a host:port) names only the
// loopback interface.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) limits() limits {
	total := c.MaxTxnOps * c.MaxTxnDepth
	if total > applyLimits.maxTotalOps {
		total = applyLimits.maxTotalOps
	}
	return limits{maxTxnOps: c.MaxTxnOps, maxTxnDepth: c.MaxTxnDepth, maxTotalOps: total}
}
