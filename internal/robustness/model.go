package robustness

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// MaxGroupSize bounds the keys of one group (Workload.Groups).
const MaxGroupSize = 4

// groupState is the state of one key group: each key's register, absent or
// present with a value, by the key's index in its group. An array, so
// porcupine can compare states with ==.
type groupState [MaxGroupSize]regState

// regState is one key's register: absent, or present with a value.
type regState struct {
	Exists bool
	Value  string
}

func (r regState) String() string {
	if r.Exists {
		return fmt.Sprintf("%q", r.Value)
	}
	return "absent"
}

// regInput is the input of one operation on one key group. A range read is
// split into one read of each group (see PorcupineHistory).
type regInput struct {
	Kind          OpKind // OpPut, OpGet, OpDelete, OpCAS, OpRange (one group), OpTxn
	Group         int
	Idx           int    // single-key operations: the key's index in the group
	Key           string // for descriptions: the key, or the txn's compared key
	Value, Expect string // put, cas

	// OpRange: the group's key count. OpTxn: the txn's keys as indexes.
	Size      int
	Cmp       int
	CmpAbsent bool
	CmpValue  string
	Puts      []int
	PutValues []string
	Dels      []int
	Gets      []int
	Invalid   bool // a txn across groups: rejected
	Desc      string
}

// regOutput is what the operation returned. Unknown marks a write whose
// outcome is unknown but that CheckWitness found applied: the model then
// applies it, checking only that it could have (a cas or txn took its Then
// branch), not what it would have returned.
type regOutput struct {
	Unknown   bool
	Exists    bool   // get: key present; put/delete: had a previous version; failed cas: Else read found the key
	Value     string // the value read, or the previous value
	Succeeded bool   // cas, txn
	// OpRange: each key's state. OpTxn: if it succeeded, the previous
	// state of each put key, then of each deleted key; else what each
	// get read.
	States []regState
}

// GroupModel is the porcupine model of the workload's operations,
// partitioned by key group (Workload.Groups): each group is an independent
// set of registers supporting put (returning the previous value), get,
// delete (returning the previous value), compare-and-set (the Else branch
// reads the value), a read of all its keys at once (a range read's share)
// and a multi-key txn (compare one key's value, then put and delete keys
// of the group, else read them), all applied atomically. Writes of unknown
// outcome are given only when CheckWitness found them applied (their
// window is bounded by what the history shows; see PorcupineHistory).
var GroupModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byGroup := map[int][]porcupine.Operation{}
		var groups []int
		for _, op := range history {
			g := op.Input.(regInput).Group
			if _, ok := byGroup[g]; !ok {
				groups = append(groups, g)
			}
			byGroup[g] = append(byGroup[g], op)
		}
		sort.Ints(groups)
		out := make([][]porcupine.Operation, 0, len(groups))
		for _, g := range groups {
			out = append(out, byGroup[g])
		}
		return out
	},
	Init: func() any { return groupState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(groupState), input.(regInput), output.(regOutput)
		seen := regState{Exists: out.Exists, Value: out.Value}
		cur := st[in.Idx]
		set := func(r regState) groupState {
			n := st
			n[in.Idx] = r
			return n
		}
		switch in.Kind {
		case OpGet:
			return cur == seen, st
		case OpRange:
			for i := range in.Size {
				if i >= len(out.States) || st[i] != out.States[i] {
					return false, st
				}
			}
			return true, st
		case OpPut:
			return out.Unknown || cur == seen, set(regState{Exists: true, Value: in.Value})
		case OpDelete:
			return out.Unknown || cur == seen, set(regState{})
		case OpCAS:
			holds := cur.Exists && cur.Value == in.Expect
			switch {
			case out.Unknown || out.Succeeded: // Unknown: found applied
				return holds, set(regState{Exists: true, Value: in.Value})
			default:
				return !holds && cur == seen, st
			}
		case OpTxn:
			if in.Invalid {
				return false, st
			}
			c := st[in.Cmp]
			holds := (in.CmpAbsent && !c.Exists) || (!in.CmpAbsent && c.Exists && c.Value == in.CmpValue)
			if !out.Unknown && !out.Succeeded {
				if holds || len(out.States) != len(in.Gets) {
					return false, st
				}
				for k, i := range in.Gets {
					if st[i] != out.States[k] {
						return false, st
					}
				}
				return true, st
			}
			ok := holds
			if !out.Unknown {
				ok = ok && len(out.States) == len(in.Puts)+len(in.Dels)
				for k, i := range append(append([]int(nil), in.Puts...), in.Dels...) {
					ok = ok && k < len(out.States) && st[i] == out.States[k]
				}
			}
			n := st
			for k, i := range in.Puts {
				n[i] = regState{Exists: true, Value: in.PutValues[k]}
			}
			for _, i := range in.Dels {
				n[i] = regState{}
			}
			return ok, n
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		res := regState{Exists: out.Exists, Value: out.Value}.String()
		switch {
		case out.Unknown:
			return fmt.Sprintf("%s -> applied (outcome was unknown)", in.Desc)
		case in.Kind == OpGet:
			return fmt.Sprintf("get(%s) -> %s", in.Key, res)
		case in.Kind == OpRange:
			return fmt.Sprintf("%s -> %v", in.Desc, out.States)
		case in.Kind == OpPut:
			return fmt.Sprintf("put(%s, %q) -> prev %s", in.Key, in.Value, res)
		case in.Kind == OpDelete:
			return fmt.Sprintf("delete(%s) -> prev %s", in.Key, res)
		case in.Kind == OpCAS && out.Succeeded:
			return fmt.Sprintf("cas(%s, %q -> %q) -> ok", in.Key, in.Expect, in.Value)
		case in.Kind == OpCAS:
			return fmt.Sprintf("cas(%s, %q -> %q) -> failed, saw %s", in.Key, in.Expect, in.Value, res)
		case out.Succeeded:
			return fmt.Sprintf("%s -> then, prev %v", in.Desc, out.States)
		}
		return fmt.Sprintf("%s -> else, read %v", in.Desc, out.States)
	},
	DescribeState: func(state any) string {
		st := state.(groupState)
		return fmt.Sprint(st[:])
	},
}

// PorcupineHistory converts ops into porcupine operations for GroupModel.
// groups is the workload's key groups: a range read becomes one read of
// each group, with the range's call and return times (each group's
// projection of a linearizable history is linearizable, so this is sound;
// the atomicity of ranges across groups is CheckWitness's job). A key in no
// group forms a group of its own.
//
// Failed operations and unknown writes that changed nothing are left out.
// For puts, cas and txns that is exact (their unique values are nowhere in
// the history). An unknown delete that CheckWitness matched to no DELETE
// event either never applied or found its key absent: no effect either way.
//
// An unknown write found applied at revision r is given the window in
// which revision r was committed, as far as the history shows (Bounds):
// from the latest call of an acknowledged linearizable operation that
// reported a revision below r (r was not committed when it was called) to
// the earliest time an acknowledged operation or a watcher observed r or
// later (as etcd's robustness suite patches such operations), clipped to
// the operation's own call. For puts, cas and txns the match is exact. For
// deletes CheckWitness matched the events in revision order to the
// earliest-called eligible unknown delete of the key; when event j
// (committed at time T_j) is matched, at least one of the deletes that
// really caused events 1..j is still unmatched and eligible, so the chosen
// delete was called no later than T_j, which lies in the window. Without
// these windows, unknown writes pending to the end of the history make
// porcupine's search explode; with them porcupine trusts the revision
// order that CheckWitness checks.
func PorcupineHistory(ops []Op, groups [][]string, rep *WitnessReport, b *Bounds) []porcupine.Operation {
	where := map[string]keyPos{}
	for g, keys := range groups {
		for i, k := range keys {
			where[k] = keyPos{g, i}
		}
	}
	locate := func(key string) keyPos {
		p, ok := where[key]
		if !ok {
			p = keyPos{len(groups) + len(where), 0}
			where[key] = p
		}
		return p
	}
	var end int64
	for i := range ops {
		end = max(end, ops[i].Return)
	}
	end++
	var out []porcupine.Operation
	add := func(op *Op, in regInput, o regOutput, call, ret int64) {
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: in, Output: o, Call: call, Return: ret, Metadata: op.String()})
	}
	for i := range ops {
		op := &ops[i]
		p := locate(op.Key)
		in := regInput{Kind: op.Kind, Group: p.group, Idx: p.idx, Key: op.Key, Value: op.Value, Expect: op.Expect,
			Desc: fmt.Sprintf("%s(%s, %q)", op.Kind, op.Key, op.Value)}
		if op.Kind == OpTxn {
			in = txnInput(op, locate)
		}
		switch op.Outcome {
		case Failed:
			continue
		case Unknown:
			rev, applied := rep.Applied[i]
			if !applied {
				continue // proven to have changed nothing
			}
			call, ret := op.Call, end
			if t, ok := b.After(rev); ok && t < ret {
				ret = max(t, call)
			}
			call = min(max(call, b.Before(rev)), ret)
			add(op, in, regOutput{Unknown: true, Succeeded: op.Kind == OpCAS || op.Kind == OpTxn}, call, ret)
			continue
		}
		switch op.Kind {
		case OpSerialGet:
			continue // not linearizable by design: CheckWitness checks it
		case OpGet:
			o := regOutput{}
			if len(op.KVs) == 1 {
				o = regOutput{Exists: true, Value: op.KVs[0].Value}
			}
			add(op, in, o, op.Call, op.Return)
		case OpRange:
			got := map[string]string{}
			for _, kv := range op.KVs {
				got[kv.Key] = kv.Value
			}
			for g, keys := range groups {
				rin := regInput{Kind: OpRange, Group: g, Size: len(keys), Desc: fmt.Sprintf("range(%s) on %v", op.Key, keys)}
				o := regOutput{States: make([]regState, len(keys))}
				for k, key := range keys {
					v, ok := got[key]
					o.States[k] = regState{Exists: ok, Value: v}
				}
				add(op, rin, o, op.Call, op.Return)
			}
		case OpPut, OpDelete:
			o := regOutput{}
			if op.Prev != nil {
				o = regOutput{Exists: true, Value: op.Prev.Value}
			}
			add(op, in, o, op.Call, op.Return)
		case OpCAS:
			o := regOutput{Succeeded: op.Succeeded}
			if !op.Succeeded && len(op.KVs) == 1 {
				o.Exists, o.Value = true, op.KVs[0].Value
			}
			add(op, in, o, op.Call, op.Return)
		case OpTxn:
			o := regOutput{Succeeded: op.Succeeded}
			if op.Succeeded {
				for _, kv := range append(append([]*KV(nil), op.TxnPutPrev...), op.TxnDelPrev...) {
					r := regState{}
					if kv != nil {
						r = regState{Exists: true, Value: kv.Value}
					}
					o.States = append(o.States, r)
				}
			} else {
				for _, kvs := range op.TxnGets {
					r := regState{}
					if len(kvs) == 1 {
						r = regState{Exists: true, Value: kvs[0].Value}
					}
					o.States = append(o.States, r)
				}
			}
			add(op, in, o, op.Call, op.Return)
		}
	}
	return out
}

// keyPos is where a key lives: its group and its index in the group.
type keyPos struct{ group, idx int }

// txnInput maps a txn onto its group. A txn with keys outside the compared
// key's group (the workload never draws one) is marked Invalid: the model
// rejects it.
func txnInput(op *Op, locate func(string) keyPos) regInput {
	t := op.Txn
	g := locate(t.Cmp)
	in := regInput{Kind: OpTxn, Group: g.group, Key: t.Cmp, Cmp: g.idx, CmpAbsent: t.CmpRev == 0, CmpValue: t.CmpValue,
		Desc: fmt.Sprintf("txn(mod(%s)=%d(%q) then put %s del %v else get %v)", t.Cmp, t.CmpRev, t.CmpValue, putList(t.Puts), t.Deletes, t.Gets)}
	idx := func(k string) int {
		p := locate(k)
		if p.group != g.group {
			in.Invalid = true
		}
		return p.idx
	}
	for _, p := range t.Puts {
		in.Puts = append(in.Puts, idx(p.Key))
		in.PutValues = append(in.PutValues, p.Value)
	}
	for _, d := range t.Deletes {
		in.Dels = append(in.Dels, idx(d))
	}
	for _, k := range t.Gets {
		in.Gets = append(in.Gets, idx(k))
	}
	return in
}

// PorcupineResult is the outcome of CheckPorcupine.
type PorcupineResult struct {
	Result     porcupine.CheckResult
	Operations int
	Elapsed    time.Duration
	// Visualization is the path of the HTML visualisation written when the
	// result is not Ok ("" otherwise, or if writing failed: see VisErr).
	Visualization string
	VisErr        error
}

// CheckPorcupine checks history with GroupModel within timeout. Unknown
// (timeout) is a failure for the caller to report, never a pass. When the
// result is not Ok it writes porcupine's visualisation to dir (created if
// missing).
func CheckPorcupine(history []porcupine.Operation, timeout time.Duration, dir, name string) PorcupineResult {
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(GroupModel, history, timeout)
	r := PorcupineResult{Result: res, Operations: len(history), Elapsed: time.Since(start)}
	if res != porcupine.Ok {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			r.VisErr = err
			return r
		}
		path := filepath.Join(dir, name+".html")
		if err := porcupine.VisualizePath(GroupModel, info, path); err != nil {
			r.VisErr = err
			return r
		}
		r.Visualization = path
	}
	return r
}

// Bounds brackets the time at which each revision was committed, from what
// the clients and watchers saw.
type Bounds struct {
	before []int64 // before[r]: latest call of an OK linearizable op with Rev < r
	after  []int64 // after[r]: earliest observation of a revision >= r
}

const noTime = int64(1<<63 - 1)

// NewBounds computes the bounds for revisions up to last from the
// operations and the watchers' first receipt times (may be nil).
func NewBounds(ops []Op, firstSeen map[int64]int64, last int64) *Bounds {
	b := &Bounds{before: make([]int64, last+2), after: make([]int64, last+2)}
	for i := range b.after {
		b.after[i] = noTime
	}
	for i := range ops {
		op := &ops[i]
		if op.Outcome != OK || op.Rev > last || op.Rev < 0 {
			continue
		}
		b.after[op.Rev] = min(b.after[op.Rev], op.Return)
		if op.Kind != OpSerialGet && op.Rev+1 <= last+1 {
			b.before[op.Rev+1] = max(b.before[op.Rev+1], op.Call)
		}
	}
	for r, t := range firstSeen {
		if r >= 0 && r <= last {
			b.after[r] = min(b.after[r], t)
		}
	}
	for r := last - 1; r >= 0; r-- {
		b.after[r] = min(b.after[r], b.after[r+1])
	}
	for r := int64(1); r <= last+1; r++ {
		b.before[r] = max(b.before[r], b.before[r-1])
	}
	return b
}

// After returns the earliest time revision r was known committed.
func (b *Bounds) After(r int64) (int64, bool) {
	if b == nil || r < 0 || r >= int64(len(b.after)) || b.after[r] == noTime {
		return 0, false
	}
	return b.after[r], true
}

// Before returns a time at which revision r was certainly not committed
// yet (0 if none is known).
func (b *Bounds) Before(r int64) int64 {
	if b == nil || r < 0 || r >= int64(len(b.before)) {
		return 0
	}
	return b.before[r]
}
