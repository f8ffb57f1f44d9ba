package sandbox

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// TruncatedMarker ends a task's logs when they ran over log_bytes.
const TruncatedMarker = "[leash: logs truncated at the profile's log_bytes limit]"

// logSink keeps a task's log lines up to a byte limit; past it, lines are
// dropped and a marker is appended once.
type logSink struct {
	mu        sync.Mutex
	limit     int64
	size      int64
	out       []LogLine
	truncated bool
}

func newLogSink(limit int64) *logSink { return &logSink{limit: limit} }

func (s *logSink) add(level, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.truncated {
		return
	}
	if s.size+int64(len(msg)) > s.limit {
		s.truncated = true
		if room := s.limit - s.size; room > 0 {
			s.out = append(s.out, LogLine{Level: level, Message: strings.ToValidUTF8(msg[:room], "\uFFFD"), Time: time.Now()})
			s.size += room
		}
		s.out = append(s.out, LogLine{Level: "warn", Message: TruncatedMarker, Time: time.Now()})
		return
	}
	s.size += int64(len(msg))
	s.out = append(s.out, LogLine{Level: level, Message: strings.ToValidUTF8(msg, "\uFFFD"), Time: time.Now()})
}

func (s *logSink) lines() ([]LogLine, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out, s.size
}

// tail is the last few lines, for error messages.
func (s *logSink) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []string
	for i := max(0, len(s.out)-3); i < len(s.out); i++ {
		b = append(b, s.out[i].Message)
	}
	t := strings.Join(b, " | ")
	if len(t) > 512 {
		t = t[len(t)-512:]
	}
	return t
}

// stderrWriter turns a guest's stderr into log lines.
type stderrWriter struct {
	sink    *logSink
	partial []byte
}

func (w *stderrWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.sink.add("stderr", string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 4096 {
		w.sink.add("stderr", string(w.partial))
		w.partial = nil
	}
	return len(p), nil
}

// flush keeps a last line that had no newline.
func (w *stderrWriter) flush() {
	if len(w.partial) > 0 {
		w.sink.add("stderr", string(w.partial))
		w.partial = nil
	}
}
