package mvcc

import (
	"bytes"
	"cmp"
	"math"
	"slices"
)

// SortTarget is the field a Range sorts by.
type SortTarget uint8

const (
	// SortByKey sorts by key (the natural order of results).
	SortByKey SortTarget = iota
	// SortByVersion sorts by Version.
	SortByVersion
	// SortByCreateRevision sorts by CreateRevision.
	SortByCreateRevision
	// SortByModRevision sorts by ModRevision.
	SortByModRevision
	// SortByValue sorts by Value, bytewise.
	SortByValue
)

// SortOrder is the direction of a Range sort.
type SortOrder uint8

const (
	// SortNone keeps key order, except that with a SortTarget other than
	// SortByKey it means SortAscend (like etcd). Also like etcd, only an
	// explicit order makes Range fetch the whole range before sorting: with
	// SortNone, a non-key target and a Limit, the first Limit+1 keys in key
	// order are sorted and then truncated to Limit. Use SortAscend to sort
	// the whole range.
	SortNone SortOrder = iota
	// SortAscend sorts in ascending order of the target.
	SortAscend
	// SortDescend sorts in descending order of the target.
	SortDescend
)

// RangeOptions are the options of a Range, with etcd's RangeRequest
// semantics. The zero value reads every matching key at the current
// revision in key order.
type RangeOptions struct {
	// Rev is the revision to read at; 0 (or negative, like etcd) means the
	// current revision.
	Rev int64
	// Limit caps the number of KVs returned; 0 (or negative) means no limit.
	Limit int64
	// SortTarget and SortOrder select the order of the result. Sorting is
	// stable: ties keep ascending key order, in both directions. Unknown
	// values are treated as SortByKey and SortNone.
	SortTarget SortTarget
	SortOrder  SortOrder
	// KeysOnly returns copies of the KVs with Value nil.
	KeysOnly bool
	// CountOnly returns no KVs, only Count.
	CountOnly bool
	// MinModRev, MaxModRev, MinCreateRev and MaxCreateRev drop KVs whose
	// ModRevision / CreateRevision is outside the bound; each applies only
	// when nonzero. They do not change Count.
	MinModRev, MaxModRev, MinCreateRev, MaxCreateRev int64
}

// RangeResult is the result of a Range.
type RangeResult struct {
	// KVs are the matching versions. Unless KeysOnly was set they are the
	// store's shared KeyValues: read-only.
	KVs []*KeyValue
	// Count is the number of keys in the range at the revision read,
	// ignoring Limit and the min/max filters.
	Count int64
	// More is true when Limit cut the result.
	More bool
	// first holds KVs' element when there is one, saving an allocation
	// for the common single-key read.
	first [1]*KeyValue
	// Rev is the revision the range was read at (the requested Rev, or the
	// current revision when Rev was 0). Note that etcd's response header
	// carries the store's current revision instead, even for past reads.
	Rev int64
}

// rangeKeys implements Range with the exact behaviour of etcd v3.5's
// server-side Range (applierV3backend.Range over mvcc rangeKeys).
func (r *reader) rangeKeys(key, end []byte, o RangeOptions) (*RangeResult, error) {
	rev, err := r.checkRev(o.Rev)
	if err != nil {
		return nil, err
	}
	if o.SortTarget > SortByValue {
		o.SortTarget = SortByKey
	}
	if o.SortOrder > SortDescend {
		o.SortOrder = SortNone
	}
	sp := mkSpan(key, end)
	res := &RangeResult{Rev: rev}

	// Like etcd: with an explicit sort order or any filter fetch everything
	// and truncate afterwards; otherwise fetch limit+1 to learn More. (As in
	// etcd this tests the requested SortOrder, so SortNone with a non-key
	// target sorts only the first limit+1 keys.)
	filtered := o.MinModRev != 0 || o.MaxModRev != 0 || o.MinCreateRev != 0 || o.MaxCreateRev != 0
	fetch := int64(math.MaxInt64)
	if o.SortOrder == SortNone && !filtered && o.Limit > 0 && o.Limit < math.MaxInt64 {
		fetch = o.Limit + 1
	}
	kvs := res.first[:0]
	r.visit(&sp, rev, func(kv *KeyValue) bool {
		res.Count++
		if !o.CountOnly && int64(len(kvs)) < fetch {
			kvs = append(kvs, kv)
		}
		return true
	})
	if o.CountOnly {
		return res, nil
	}

	if filtered {
		kvs = slices.DeleteFunc(kvs, func(kv *KeyValue) bool {
			return (o.MaxModRev != 0 && kv.ModRevision > o.MaxModRev) ||
				(o.MinModRev != 0 && kv.ModRevision < o.MinModRev) ||
				(o.MaxCreateRev != 0 && kv.CreateRevision > o.MaxCreateRev) ||
				(o.MinCreateRev != 0 && kv.CreateRevision < o.MinCreateRev)
		})
	}

	order := o.SortOrder
	if o.SortTarget != SortByKey && order == SortNone {
		order = SortAscend
	} else if o.SortTarget == SortByKey && order == SortAscend {
		order = SortNone // already in key order
	}
	if order != SortNone {
		sortKVs(kvs, o.SortTarget, order == SortDescend)
	}

	if o.Limit > 0 && int64(len(kvs)) > o.Limit {
		kvs = kvs[:o.Limit]
		res.More = true
	}
	if o.KeysOnly && len(kvs) > 0 {
		copies := make([]KeyValue, len(kvs))
		for i, kv := range kvs {
			copies[i] = *kv
			copies[i].Value = nil
			kvs[i] = &copies[i]
		}
	}
	res.KVs = kvs
	return res, nil
}

// sortKVs stable-sorts kvs (which are in key order) by target; ties keep
// key order whichever the direction.
func sortKVs(kvs []*KeyValue, target SortTarget, desc bool) {
	var c func(a, b *KeyValue) int
	switch target {
	case SortByKey:
		c = func(a, b *KeyValue) int { return bytes.Compare(a.Key, b.Key) }
	case SortByVersion:
		c = func(a, b *KeyValue) int { return cmp.Compare(a.Version, b.Version) }
	case SortByCreateRevision:
		c = func(a, b *KeyValue) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) }
	case SortByModRevision:
		c = func(a, b *KeyValue) int { return cmp.Compare(a.ModRevision, b.ModRevision) }
	case SortByValue:
		c = func(a, b *KeyValue) int { return bytes.Compare(a.Value, b.Value) }
	}
	if desc {
		slices.SortStableFunc(kvs, func(a, b *KeyValue) int { return c(b, a) })
	} else {
		slices.SortStableFunc(kvs, c)
	}
}
