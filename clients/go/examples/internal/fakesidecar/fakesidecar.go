// Package fakesidecar is a loopback stand-in for the mapscope sidecar's
// ingest endpoint, for the examples' tests: it accepts every report and
// keeps it.
package fakesidecar

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Report is the part of a protocol v1 report the tests look at.
type Report struct {
	Source struct {
		App, Instance, SDK string
	}
	Seq    uint64
	Maps   []Map
	Events []Event
}

// Map is a reported map.
type Map struct {
	Name   string
	Labels map[string]string
	Stats  struct {
		Entries    uint64
		Buckets    uint64
		Evacuation *struct {
			Kind                string
			OldBuckets          uint64 `json:"old_buckets"`
			EvacuatedOldBuckets uint64 `json:"evacuated_old_buckets"`
		}
	}
	Counters struct {
		Misuse map[string]uint64
	}
}

// Event is a reported event.
type Event struct {
	Seq        uint64
	Kind       string
	Map        string
	MisuseKind string `json:"misuse_kind"`
	Attributes map[string]string
}

// Sidecar records the reports it receives.
type Sidecar struct {
	// URL is the report endpoint, for MAPSCOPE_ENDPOINT.
	URL string

	mu      sync.Mutex
	reports []Report
}

// Start starts a sidecar that lives until the test ends.
func Start(t testing.TB) *Sidecar {
	s := &Sidecar{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var report Report
		if err := json.Unmarshal(body, &report); err != nil {
			t.Errorf("fake sidecar: %v", err)
		}
		s.mu.Lock()
		s.reports = append(s.reports, report)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"accepted","source":"x","maps":0,"events_accepted":0,"restarted":false}`)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL + "/v1/report"
	return s
}

// Reports returns the reports received so far.
func (s *Sidecar) Reports() []Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Report(nil), s.reports...)
}

// WaitFor waits up to timeout for done to hold for the reports received.
func (s *Sidecar) WaitFor(timeout time.Duration, done func([]Report) bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if done(s.Reports()) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FindMap returns the map called name in r.
func (r Report) FindMap(name string) (Map, bool) {
	for _, m := range r.Maps {
		if m.Name == name {
			return m, true
		}
	}
	return Map{}, false
}
