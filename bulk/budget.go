package bulk

import (
	"sync"
	"time"
)

// retryBudget caps retries at a fraction of first attempts over a sliding
// window (the retry budget of Finagle and gRPC's retry throttling): a
// retry is allowed while retries in the window stay at most
// max(min, ratio × first attempts in the window). Each node keeps its own,
// per class, over the attempts it runs: a bad deploy that fails every
// task turns into at most ratio more load, not a retry storm.
type retryBudget struct {
	ratio float64
	min   int
	span  time.Duration
	now   func() time.Time

	mu    sync.Mutex
	slots [budgetSlots]budgetSlot
}

type budgetSlot struct {
	epoch          int64
	first, retries int64
}

func newRetryBudget(ratio float64, minRetries int, window time.Duration, now func() time.Time) *retryBudget {
	return &retryBudget{ratio: ratio, min: minRetries, span: window, now: now}
}

func (r *retryBudget) width() int64 { return max(int64(r.span)/budgetSlots, 1) }

// slot returns the current slot, cleared when it held an older epoch.
func (r *retryBudget) slot() *budgetSlot {
	epoch := r.now().UnixNano() / r.width()
	s := &r.slots[epoch%budgetSlots]
	if s.epoch != epoch {
		*s = budgetSlot{epoch: epoch}
	}
	return s
}

func (r *retryBudget) sums() (first, retries int64) {
	epoch := r.now().UnixNano() / r.width()
	for _, s := range r.slots {
		if s.epoch > epoch-budgetSlots && s.epoch <= epoch {
			first += s.first
			retries += s.retries
		}
	}
	return first, retries
}

func (r *retryBudget) first() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slot().first++
}

// tryRetry takes one retry from the budget, or reports there is none.
func (r *retryBudget) tryRetry() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	first, retries := r.sums()
	if float64(retries+1) > max(float64(r.min), r.ratio*float64(first)) {
		return false
	}
	r.slot().retries++
	return true
}

func (r *retryBudget) window() (first, retries int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sums()
}
