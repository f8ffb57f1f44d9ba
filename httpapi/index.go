package httpapi

import (
	"net/http"
	"strconv"
)

// IndexHeader carries the Raft index a write was applied at, so clients
// (and the cluster tests' history check) can order writes.
const IndexHeader = "Leash-Index"

// SetIndex sets IndexHeader on the answer to a write applied at index
// (nothing for 0).
func SetIndex(w http.ResponseWriter, index uint64) {
	if index > 0 {
		w.Header().Set(IndexHeader, strconv.FormatUint(index, 10))
	}
}
