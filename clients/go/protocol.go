package mapscope

import (
	"fmt"
	"strings"
	"unicode"
)

// The wire types of protocol v1 (docs/protocol.md). Field names and
// omissions follow the spec: counters are cumulative since the process
// started, events carry an increasing seq.

type wireReport struct {
	Source          wireSource  `json:"source"`
	Seq             uint64      `json:"seq"`
	SentAt          string      `json:"sent_at,omitempty"`
	IntervalSeconds float64     `json:"interval_seconds,omitempty"`
	Maps            []wireMap   `json:"maps"`
	Events          []wireEvent `json:"events"`
}

type wireSource struct {
	App       string `json:"app"`
	Instance  string `json:"instance"`
	Language  string `json:"language,omitempty"`
	SDK       string `json:"sdk,omitempty"`
	StartedAt string `json:"started_at,omitempty"`
}

type wireMap struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels,omitempty"`
	Stats    wireStats         `json:"stats"`
	Counters wireCounters      `json:"counters"`
}

type wireStats struct {
	Entries          uint64          `json:"entries"`
	PeakEntries      uint64          `json:"peak_entries"`
	Buckets          uint64          `json:"buckets"`
	OverflowBuckets  uint64          `json:"overflow_buckets"`
	MemoryBytes      uint64          `json:"memory_bytes"`
	MaxOverflowChain uint64          `json:"max_overflow_chain,omitempty"`
	Evacuation       *wireEvacuation `json:"evacuation,omitempty"`
}

type wireEvacuation struct {
	Kind                string `json:"kind"`
	OldBuckets          uint64 `json:"old_buckets"`
	EvacuatedOldBuckets uint64 `json:"evacuated_old_buckets"`
}

type kindCounts struct {
	Double   uint64 `json:"double"`
	SameSize uint64 `json:"same_size"`
	Shrink   uint64 `json:"shrink"`
}

type kindSeconds struct {
	Double   float64 `json:"double"`
	SameSize float64 `json:"same_size"`
	Shrink   float64 `json:"shrink"`
}

type wireCounters struct {
	Growths          kindCounts        `json:"growths"`
	GrowthSeconds    kindSeconds       `json:"growth_seconds"`
	EvacuatedBuckets uint64            `json:"evacuated_buckets"`
	Inserts          uint64            `json:"inserts"`
	Updates          uint64            `json:"updates"`
	Removes          uint64            `json:"removes"`
	Misuse           map[string]uint64 `json:"misuse,omitempty"`
}

type wireEvent struct {
	Seq             uint64            `json:"seq"`
	Kind            string            `json:"kind"`
	Map             string            `json:"map"`
	Labels          map[string]string `json:"labels,omitempty"`
	At              string            `json:"at"`
	DurationSeconds *float64          `json:"duration_seconds,omitempty"`
	GrowthKind      string            `json:"growth_kind,omitempty"`
	MisuseKind      string            `json:"misuse_kind,omitempty"`
	TraceID         string            `json:"trace_id,omitempty"`
	SpanID          string            `json:"span_id,omitempty"`
	Attributes      map[string]string `json:"attributes,omitempty"`
}

// wireAnswer is the sidecar's 200 body.
type wireAnswer struct {
	Status         string `json:"status"`
	Source         string `json:"source"`
	Maps           uint64 `json:"maps"`
	EventsAccepted uint64 `json:"events_accepted"`
	Restarted      bool   `json:"restarted"`
}

// wireError is the sidecar's error body (every 4xx, and a sidecar bug's 500).
type wireError struct {
	Error string  `json:"error"`
	Field *string `json:"field"`
	Limit *uint64 `json:"limit"`
}

// The sidecar's fixed limits (docs/protocol.md, "Limits"). The client checks
// what it sends against them, because one bad map or event makes the whole
// report a 400 and would blind every other map of the process.
const (
	maxSourceBytes         = 128
	maxValueBytes          = 256 // map names and label values
	maxLabels              = 16
	maxAttributes          = 32
	maxAttributeKeyBytes   = 256
	maxAttributeValueBytes = 1024
)

// checkText is the sidecar's rule for app, instance, map names and label
// values: 1 to max bytes, no control characters.
func checkText(what, value string, max int) error {
	if value == "" || len(value) > max {
		return fmt.Errorf("%s %q: use 1 to %d bytes", what, value, max)
	}
	if strings.IndexFunc(value, unicode.IsControl) >= 0 {
		return fmt.Errorf("%s %q: remove the control characters", what, value)
	}
	return nil
}

// validateMapName applies the sidecar's map-name rules.
func validateMapName(name string) error {
	if err := checkText("map name", name, maxValueBytes); err != nil {
		return err
	}
	if name == "_overflow" || strings.HasPrefix(name, "__") {
		return fmt.Errorf("map name %q is reserved: do not use _overflow or names starting with __", name)
	}
	return nil
}

// validateLabels applies the sidecar's label rules.
func validateLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return fmt.Errorf("%d labels: use at most %d", len(labels), maxLabels)
	}
	for name, value := range labels {
		if !validLabelName(name) {
			return fmt.Errorf("label name %q: use [a-zA-Z_][a-zA-Z0-9_]* and do not start with __", name)
		}
		switch name {
		case "map", "source", "kind", "le":
			return fmt.Errorf("label name %q is set by mapscope: choose another", name)
		}
		if len(value) > maxValueBytes || strings.IndexFunc(value, unicode.IsControl) >= 0 {
			return fmt.Errorf("label %s=%q: use at most %d bytes without control characters", name, value, maxValueBytes)
		}
	}
	return nil
}

func validLabelName(name string) bool {
	if name == "" || strings.HasPrefix(name, "__") {
		return false
	}
	for i, c := range name {
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// checkMap reports why the sidecar would reject m, or nil.
func checkMap(m wireMap) error {
	if err := validateMapName(m.Name); err != nil {
		return err
	}
	if err := validateLabels(m.Labels); err != nil {
		return fmt.Errorf("map %q: %w", m.Name, err)
	}
	if e := m.Stats.Evacuation; e != nil && e.EvacuatedOldBuckets > e.OldBuckets {
		return fmt.Errorf("map %q: evacuated_old_buckets %d exceeds old_buckets %d", m.Name, e.EvacuatedOldBuckets, e.OldBuckets)
	}
	return nil
}

// checkEvent reports why the sidecar would reject e, or nil. Events are
// built by this package, so a failure here is a bug or a bad map identity.
func checkEvent(e wireEvent) error {
	if err := validateMapName(e.Map); err != nil {
		return err
	}
	if err := validateLabels(e.Labels); err != nil {
		return fmt.Errorf("map %q: %w", e.Map, err)
	}
	if (e.TraceID != "" && !validHexID(e.TraceID, 32)) || (e.SpanID != "" && !validHexID(e.SpanID, 16)) {
		return fmt.Errorf("event %d: trace_id %q / span_id %q are not 32 / 16 hex digits", e.Seq, e.TraceID, e.SpanID)
	}
	if len(e.Attributes) > maxAttributes {
		return fmt.Errorf("event %d: %d attributes, at most %d", e.Seq, len(e.Attributes), maxAttributes)
	}
	for k, v := range e.Attributes {
		if len(k) > maxAttributeKeyBytes || len(v) > maxAttributeValueBytes {
			return fmt.Errorf("event %d: attribute %.40q too long", e.Seq, k)
		}
	}
	return nil
}

// validHexID reports whether id is n lowercase hex digits, not all zero
// (the W3C trace-context rule: an all-zero id is invalid).
func validHexID(id string, n int) bool {
	if len(id) != n {
		return false
	}
	nonZero := false
	for i := 0; i < n; i++ {
		c := id[i]
		switch {
		case c == '0':
		case (c >= '1' && c <= '9') || (c >= 'a' && c <= 'f'):
			nonZero = true
		default:
			return false
		}
	}
	return nonZero
}
