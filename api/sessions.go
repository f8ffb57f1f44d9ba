package api

// SessionPut answers PUT /v1/sessions/{session}/kv/{key}: what the
// session holds after the write, against its quota.
type SessionPut struct {
	Key            string `json:"key"`
	SessionBytes   int64  `json:"session_bytes"`
	SessionEntries int64  `json:"session_entries"`
	QuotaBytes     int64  `json:"quota_bytes"`
}

// SessionEnded answers DELETE /v1/sessions/{session}.
type SessionEnded struct {
	Session string `json:"session"`
	Deleted int    `json:"deleted"`
}
