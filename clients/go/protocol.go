package mapscope

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
