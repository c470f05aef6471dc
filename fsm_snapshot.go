package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/embedkv/store/mvcc"
	"github.com/embedkv/store/snapshot"
	"github.com/hashicorp/raft"
)

// FSM snapshot format: a snapshot stream (package snapshot) of kind
// fsmSnapshotKind whose header Meta is a msgpack snapMeta and whose records
// each start with a section byte. Sections appear in order: MVCC records,
// then one msgpack leaseSnap per lease. Readers reject unknown sections.
const (
	fsmSnapshotKind    = "embedkv-fsm"
	fsmSnapshotVersion = 1
	sectionMVCC        = 'm'
	sectionLease       = 'l'
	maxSnapshotRecord  = 64 << 20
)

type snapMeta struct {
	Index       uint64 `msgpack:"i"`
	NextLeaseID int64  `msgpack:"n,omitempty"`
}

type fsmSnapshot struct {
	view        *mvcc.View
	index       uint64
	leases      []leaseSnap
	nextLeaseID int64
	logger      *slog.Logger
}

// Persist encodes the captured view into the sink. It runs concurrently with
// later applies; the view is immutable, so no lock is needed.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeFSMSnapshot(sink, s, fsmSnapshotKind); err != nil {
		s.logger.Warn("embedkv: writing raft snapshot failed", "index", s.index, "err", err)
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// writeFSMSnapshot writes s as a stream of the given kind: fsmSnapshotKind
// for raft, backupKind for Store.Snapshot (same layout, told apart so that
// neither is mistaken for the other).
func writeFSMSnapshot(w io.Writer, s *fsmSnapshot, kind string) error {
	meta, err := encodeMsgpack(&snapMeta{Index: s.index, NextLeaseID: s.nextLeaseID})
	if err != nil {
		return err
	}
	sw, err := snapshot.NewWriter(w, snapshot.Header{Kind: kind, Version: fsmSnapshotVersion, Meta: meta})
	if err != nil {
		return err
	}
	buf := make([]byte, 0, 512)
	err = s.view.Dump(func(rec []byte) error {
		buf = append(buf[:0], sectionMVCC)
		buf = append(buf, rec...)
		return sw.Write(buf)
	})
	if err != nil {
		return err
	}
	for i := range s.leases {
		rec, err := encodeCommand(sectionLease, &s.leases[i])
		if err != nil {
			return err
		}
		if err := sw.Write(rec); err != nil {
			return err
		}
	}
	return sw.Close()
}

// restoredState is a decoded FSM snapshot.
type restoredState struct {
	kv          *mvcc.Store
	index       uint64
	leases      []*leaseRec
	nextLeaseID int64
}

// readFSMSnapshot decodes a stream of the given kind written by
// writeFSMSnapshot. Every failure wraps ErrCorrupt.
func readFSMSnapshot(r io.Reader, kind string) (*restoredState, error) {
	sr, hdr, err := snapshot.NewReader(r, kind, maxSnapshotRecord)
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot: %w", ErrCorrupt, err)
	}
	if hdr.Version != fsmSnapshotVersion {
		return nil, fmt.Errorf("%w: snapshot version %d", ErrCorrupt, hdr.Version)
	}
	var meta snapMeta
	if err := decodeMsgpack(hdr.Meta, &meta); err != nil {
		return nil, err
	}
	var pending []byte // the first record after the MVCC section, read ahead
	eof := false       // the reader verified the trailer
	next := func() ([]byte, error) {
		rec, err := sr.Next()
		if errors.Is(err, io.EOF) {
			eof = true
		}
		if err != nil {
			return nil, err
		}
		if len(rec) == 0 {
			return nil, fmt.Errorf("%w: empty snapshot record", ErrCorrupt)
		}
		if rec[0] != sectionMVCC {
			pending = append(pending[:0], rec...)
			return nil, io.EOF
		}
		return rec[1:], nil
	}
	kv, err := mvcc.Load(next)
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot: %w", ErrCorrupt, err)
	}
	st := &restoredState{kv: kv, index: meta.Index, nextLeaseID: meta.NextLeaseID}
	if st.nextLeaseID < 1 {
		st.nextLeaseID = 1
	}
	seen := map[int64]bool{}
	for !eof {
		rec := pending
		pending = nil
		if rec == nil {
			rec, err = sr.Next()
			if errors.Is(err, io.EOF) {
				break // the reader verified the trailer's count and checksum
			}
			if err != nil {
				return nil, fmt.Errorf("%w: snapshot: %w", ErrCorrupt, err)
			}
		}
		if len(rec) == 0 || rec[0] != sectionLease {
			return nil, fmt.Errorf("%w: unexpected snapshot record", ErrCorrupt)
		}
		var ls leaseSnap
		if err := decodeMsgpack(rec[1:], &ls); err != nil {
			return nil, err
		}
		if ls.ID <= 0 || seen[ls.ID] || ls.TTL <= 0 || ls.TTL > maxLeaseTTL || ls.RemainingMs < 0 {
			return nil, fmt.Errorf("%w: bad lease record %+v", ErrCorrupt, ls)
		}
		seen[ls.ID] = true
		st.leases = append(st.leases, &leaseRec{id: ls.ID, ttl: ls.TTL, remainingMs: ls.RemainingMs, renewIndex: ls.RenewIndex})
	}
	return st, nil
}
