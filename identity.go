package store

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	"github.com/embedkv/store/peertls"
	"github.com/embedkv/store/transport"
	"github.com/hashicorp/raft"
)

// Cluster identity and peer admission.
//
// Every cluster has a 16-byte ID, fixed when it is created and kept in the
// node's stable store. A node bootstrapped from Config.Peers derives it from
// ClusterToken and the peer list, so that every member computes the same ID
// without talking; a single node created alone draws a random one; a joiner
// learns it from the member it joins through; Restore derives one from the
// new peer list and the backup. Every connection starts with the dialer's
// cluster ID and node ID (transport.Hello), and admit refuses connections
// from another cluster before any byte reaches raft or an RPC handler.

// clusterID identifies a cluster. The zero value means "not known yet".
type clusterID [16]byte

func (c clusterID) String() string { return hex.EncodeToString(c[:]) }

func (c clusterID) isZero() bool { return c == clusterID{} }

// clusterIDKey is where the ID lives in raft-boltdb's stable store.
var clusterIDKey = []byte("embedkv/cluster-id")

// deriveClusterID returns the ID of a cluster created from token and peers
// (order-independent), salted with salt (nil on bootstrap, the backup's
// identity on Restore).
func deriveClusterID(token string, peers []Peer, salt []byte) clusterID {
	sorted := append([]Peer(nil), peers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	h := sha256.New()
	field := func(b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte("embedkv cluster v1"))
	field([]byte(token))
	for _, p := range sorted {
		field([]byte(p.ID))
		field([]byte(p.Addr))
	}
	field(salt)
	var id clusterID
	copy(id[:], h.Sum(nil))
	return id
}

func randomClusterID() (clusterID, error) {
	var id clusterID
	_, err := rand.Read(id[:])
	return id, err
}

// stableKV is the part of raft's stable store the cluster ID needs.
type stableKV interface {
	Get(key []byte) ([]byte, error)
	Set(key, val []byte) error
}

// loadClusterID reads the stored cluster ID; ok=false when none is stored.
func loadClusterID(st stableKV) (id clusterID, ok bool, err error) {
	b, err := st.Get(clusterIDKey)
	if err != nil || len(b) == 0 {
		return id, false, nil // raft-boltdb reports a missing key as an error
	}
	if len(b) != len(id) {
		return id, false, fmt.Errorf("%w: stored cluster ID has %d bytes", ErrCorrupt, len(b))
	}
	copy(id[:], b)
	return id, true, nil
}

func storeClusterID(st stableKV, id clusterID) error {
	if err := st.Set(clusterIDKey, id[:]); err != nil {
		return fmt.Errorf("store: saving cluster ID: %w", err)
	}
	return nil
}

// cluster returns this node's cluster ID (zero while a joiner has not
// learnt it).
func (s *Store) cluster() clusterID {
	if p := s.clusterID.Load(); p != nil {
		return *p
	}
	return clusterID{}
}

func (s *Store) setCluster(id clusterID) { s.clusterID.Store(&id) }

// hello is what this node announces on every connection it dials.
func (s *Store) hello() transport.Hello {
	return transport.Hello{ClusterID: s.cluster(), NodeID: s.cfg.NodeID}
}

// admit decides, before anything is read from it, whether a peer's
// connection may reach raft or the RPC handler. With TLS the certificate's
// identity must be the node ID the peer announced. The peer must be of this
// cluster; raft connections must come from a member (or reach a node that
// has no configuration yet: a joiner being caught up). A node that does not
// know its cluster yet (Open has not read or learnt it) admits nobody: every
// peer is told to retry (transport.ErrNotReady). RPC connections without a
// cluster ID are admitted for methodHello and methodJoin only (handleRPC
// enforces it).
func (s *Store) admit(pi transport.PeerInfo) error {
	if s.tls != nil {
		if pi.TLS == nil {
			return errors.New("plain connection on a TLS listener")
		}
		id, err := peertls.PeerIdentity(*pi.TLS)
		if err != nil {
			return err
		}
		if id != pi.Hello.NodeID {
			return fmt.Errorf("certificate names %q but the peer announced node %q", id, pi.Hello.NodeID)
		}
	}
	ours := s.cluster()
	theirs := clusterID(pi.Hello.ClusterID)
	if ours.isZero() {
		// Open has not read (or learnt) this node's cluster ID yet: on a
		// restart, opening a large raft log takes a while. The peer retries.
		return fmt.Errorf("%w: this node does not know its cluster yet", transport.ErrNotReady)
	}
	if theirs != ours {
		if pi.Proto == transport.ProtoRPC && theirs.isZero() {
			return nil
		}
		return fmt.Errorf("%w: node %q is in cluster %s, this node in %s", ErrWrongCluster, pi.Hello.NodeID, theirs, ours)
	}
	if pi.Proto == transport.ProtoRaft && !s.raftUp.Load() {
		return fmt.Errorf("%w: raft is not running yet", transport.ErrNotReady)
	}
	if pi.Proto == transport.ProtoRaft && !s.members.knows(s, pi.Hello.NodeID) {
		return fmt.Errorf("node %q is not a member of this cluster", pi.Hello.NodeID)
	}
	return nil
}

// clientTLS returns the TLS configuration for dialling addr: the server's
// certificate must name the member known at that address, or any node of
// the CA for an address no member has (a Join address).
func (s *Store) clientTLS(addr string) (*tls.Config, error) {
	return s.tls.ClientConfig(s.members.idAt(s, addr)), nil
}

// setupTLS loads the certificates named by Config.TLS and checks that they
// name this node.
func (s *Store) setupTLS(tc *transport.Config) error {
	if s.cfg.TLS == nil {
		return nil
	}
	l, err := peertls.New(peertls.Files{CertFile: s.cfg.TLS.CertFile, KeyFile: s.cfg.TLS.KeyFile, CAFile: s.cfg.TLS.CAFile},
		peertls.Options{Logger: s.logger})
	if err != nil {
		return fmt.Errorf("%w: TLS: %w", ErrConfig, err)
	}
	if l.NodeID() != s.cfg.NodeID {
		return fmt.Errorf("%w: TLS certificate %s names node %q, but NodeID is %q", ErrConfig, s.cfg.TLS.CertFile, l.NodeID(), s.cfg.NodeID)
	}
	s.tls = l
	tc.ServerTLS = l.ServerConfig()
	tc.ClientTLS = s.clientTLS
	return nil
}

// initCluster settles this node's cluster ID before raft starts: the stored
// one on a restart; on first start, derived from Peers, random for a lone
// node, or learnt from a member for a joiner (which may take until
// JoinTimeout).
func (s *Store) initCluster(existing bool) error {
	stored, ok, err := loadClusterID(s.bolt)
	if err != nil {
		return err
	}
	switch {
	case existing && ok:
		s.setCluster(stored)
		return nil
	case existing:
		// State written before cluster IDs existed: adopt one now.
		s.logger.Warn("embedkv: data directory has no cluster ID; deriving one from Peers")
		if len(s.cfg.Peers) > 0 {
			stored = deriveClusterID(s.cfg.ClusterToken, s.cfg.Peers, nil)
		} else if stored, err = randomClusterID(); err != nil {
			return err
		}
	case len(s.cfg.Join) > 0:
		// A joiner with no state: an ID stored by an earlier, failed
		// attempt binds nothing yet.
		if stored, err = s.discoverCluster(); err != nil {
			return err
		}
	case len(s.cfg.Peers) > 0:
		stored = deriveClusterID(s.cfg.ClusterToken, s.cfg.Peers, nil)
	default:
		if stored, err = randomClusterID(); err != nil {
			return err
		}
	}
	if err := storeClusterID(s.bolt, stored); err != nil {
		return err
	}
	s.setCluster(stored)
	return nil
}

// selfIn reports whether c lists this node.
func (s *Store) selfIn(c raft.Configuration) bool {
	for _, srv := range c.Servers {
		if srv.ID == raft.ServerID(s.cfg.NodeID) {
			return true
		}
	}
	return false
}
