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
// each start with a section byte. Sections appear in order: MVCC records
// first. Later versions add sections after these; readers reject unknown
// sections.
const (
	fsmSnapshotKind    = "embedkv-fsm"
	fsmSnapshotVersion = 1
	sectionMVCC        = 'm'
	maxSnapshotRecord  = 64 << 20
)

type snapMeta struct {
	Index uint64 `msgpack:"i"`
}

type fsmSnapshot struct {
	view   *mvcc.View
	index  uint64
	logger *slog.Logger
}

// Persist encodes the captured view into the sink. It runs concurrently with
// later applies; the view is immutable, so no lock is needed.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeFSMSnapshot(sink, s.view, s.index); err != nil {
		s.logger.Warn("embedkv: writing raft snapshot failed", "index", s.index, "err", err)
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

func writeFSMSnapshot(w io.Writer, view *mvcc.View, index uint64) error {
	meta, err := encodeCommand(0, &snapMeta{Index: index})
	if err != nil {
		return err
	}
	sw, err := snapshot.NewWriter(w, snapshot.Header{Kind: fsmSnapshotKind, Version: fsmSnapshotVersion, Meta: meta[1:]})
	if err != nil {
		return err
	}
	buf := make([]byte, 0, 512)
	err = view.Dump(func(rec []byte) error {
		buf = append(buf[:0], sectionMVCC)
		buf = append(buf, rec...)
		return sw.Write(buf)
	})
	if err != nil {
		return err
	}
	return sw.Close()
}

// readFSMSnapshot decodes a stream written by writeFSMSnapshot. Every
// failure wraps ErrCorrupt.
func readFSMSnapshot(r io.Reader) (*mvcc.Store, uint64, error) {
	sr, hdr, err := snapshot.NewReader(r, fsmSnapshotKind, maxSnapshotRecord)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: snapshot: %w", ErrCorrupt, err)
	}
	if hdr.Version != fsmSnapshotVersion {
		return nil, 0, fmt.Errorf("%w: snapshot version %d", ErrCorrupt, hdr.Version)
	}
	var meta snapMeta
	if err := decodeMsgpack(hdr.Meta, &meta); err != nil {
		return nil, 0, err
	}
	var pending []byte // a record of a later section, read ahead
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
		return nil, 0, fmt.Errorf("%w: snapshot: %w", ErrCorrupt, err)
	}
	if pending != nil {
		return nil, 0, fmt.Errorf("%w: unknown snapshot section %q", ErrCorrupt, pending[0])
	}
	// The snapshot reader returns io.EOF only after verifying the trailer's
	// record count and checksum.
	if !eof {
		return nil, 0, fmt.Errorf("%w: snapshot ended before its trailer", ErrCorrupt)
	}
	return kv, meta.Index, nil
}
