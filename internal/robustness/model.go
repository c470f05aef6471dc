package robustness

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// regInput is the input of one operation on one key's register. A range
// read is split into one get per key (see PorcupineHistory).
type regInput struct {
	Kind          OpKind // OpPut, OpGet, OpDelete, OpCAS
	Key           string
	Value, Expect string
}

// regOutput is what the operation returned. Unknown marks a write whose
// outcome is unknown: the model then only applies it, checking nothing it
// would have returned.
type regOutput struct {
	Unknown   bool
	Exists    bool   // get: key present; put/delete: had a previous version; failed cas: Else read found the key
	Value     string // the value read, or the previous value
	Succeeded bool   // cas
}

// regState is one key's register: absent, or present with a value.
type regState struct {
	Exists bool
	Value  string
}

// RegisterModel is the per-key partitioned porcupine model of the
// workload's operations: each key is an independent register supporting
// put (returning the previous value), get, delete (returning the previous
// value) and compare-and-set (the Else branch reads the value). Writes of
// unknown outcome are applied whenever porcupine linearizes them; giving
// them a return time at the end of the history lets porcupine also place
// them after everything, i.e. treat them as never applied.
var RegisterModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(regInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(regState), input.(regInput), output.(regOutput)
		seen := regState{Exists: out.Exists, Value: out.Value}
		switch in.Kind {
		case OpGet:
			return st == seen, st
		case OpPut:
			return out.Unknown || st == seen, regState{Exists: true, Value: in.Value}
		case OpDelete:
			return out.Unknown || st == seen, regState{}
		case OpCAS:
			holds := st.Exists && st.Value == in.Expect
			switch {
			case out.Unknown && out.Succeeded: // known to be applied
				return holds, regState{Exists: true, Value: in.Value}
			case out.Unknown:
				if holds {
					return true, regState{Exists: true, Value: in.Value}
				}
				return true, st
			case out.Succeeded:
				return holds, regState{Exists: true, Value: in.Value}
			default:
				return !holds && st == seen, st
			}
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		res := "absent"
		if out.Exists {
			res = fmt.Sprintf("%q", out.Value)
		}
		switch {
		case out.Unknown && in.Kind == OpCAS && out.Succeeded:
			return fmt.Sprintf("cas(%s, %q -> %q) -> applied (outcome was unknown)", in.Key, in.Expect, in.Value)
		case out.Unknown:
			return fmt.Sprintf("%s(%s, %q) -> unknown", in.Kind, in.Key, in.Value)
		case in.Kind == OpGet:
			return fmt.Sprintf("get(%s) -> %s", in.Key, res)
		case in.Kind == OpPut:
			return fmt.Sprintf("put(%s, %q) -> prev %s", in.Key, in.Value, res)
		case in.Kind == OpDelete:
			return fmt.Sprintf("delete(%s) -> prev %s", in.Key, res)
		case out.Succeeded:
			return fmt.Sprintf("cas(%s, %q -> %q) -> ok", in.Key, in.Expect, in.Value)
		}
		return fmt.Sprintf("cas(%s, %q -> %q) -> failed, saw %s", in.Key, in.Expect, in.Value, res)
	},
	DescribeState: func(state any) string {
		if st := state.(regState); st.Exists {
			return fmt.Sprintf("%q", st.Value)
		}
		return "absent"
	},
}

// PorcupineHistory converts ops into porcupine operations for
// RegisterModel. keys lists every key a range read covers (a range read
// becomes one get per key, with the range's call and return times: each
// key's projection of a linearizable history is linearizable, so this is
// sound; the atomicity of ranges is CheckWitness's job).
//
// Failed operations and unknown writes that changed nothing are left out.
// For puts and cas that is exact (their unique value is nowhere in the
// history). An unknown delete that CheckWitness matched to no DELETE event
// either never applied or found its key absent: no effect either way.
//
// An unknown write found applied at revision r is given the window in
// which revision r was committed, as far as the history shows (Bounds):
// from the latest call of an acknowledged linearizable operation that
// reported a revision below r (r was not committed when it was called) to
// the earliest time an acknowledged operation or a watcher observed r or
// later (as etcd's robustness suite patches such operations), clipped to
// the operation's own call. For puts and cas the match is exact. For
// deletes CheckWitness matched the events in revision order to the
// earliest-called eligible unknown delete of the key; when event j
// (committed at time T_j) is matched, at least one of the deletes that
// really caused events 1..j is still unmatched and eligible, so the chosen
// delete was called no later than T_j, which lies in the window. Without
// these windows, unknown writes pending to the end of the history make
// porcupine's search explode; with them porcupine trusts the revision
// order that CheckWitness checks.
func PorcupineHistory(ops []Op, keys []string, rep *WitnessReport, b *Bounds) []porcupine.Operation {
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
		in := regInput{Kind: op.Kind, Key: op.Key, Value: op.Value, Expect: op.Expect}
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
			add(op, in, regOutput{Unknown: true, Succeeded: op.Kind == OpCAS}, call, ret)
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
			for _, k := range keys {
				v, ok := got[k]
				add(op, regInput{Kind: OpGet, Key: k}, regOutput{Exists: ok, Value: v}, op.Call, op.Return)
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
		}
	}
	return out
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

// CheckPorcupine checks history with RegisterModel within timeout. Unknown
// (timeout) is a failure for the caller to report, never a pass. When the
// result is not Ok it writes porcupine's visualisation to dir (created if
// missing).
func CheckPorcupine(history []porcupine.Operation, timeout time.Duration, dir, name string) PorcupineResult {
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(RegisterModel, history, timeout)
	r := PorcupineResult{Result: res, Operations: len(history), Elapsed: time.Since(start)}
	if res != porcupine.Ok {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			r.VisErr = err
			return r
		}
		path := filepath.Join(dir, name+".html")
		if err := porcupine.VisualizePath(RegisterModel, info, path); err != nil {
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
