package mapscope

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// stubTracked is a tracked, addressed map with fixed stats.
type stubTracked struct {
	name    string
	labels  map[string]string
	entries uint64
	misuse  map[string]uint64
	address uintptr
}

func (s *stubTracked) id() mapID { return mapID{name: s.name, labels: s.labels} }
func (s *stubTracked) snapshot() wireMap {
	return wireMap{Name: s.name, Labels: s.labels,
		Stats:    wireStats{Entries: s.entries, PeakEntries: s.entries, Buckets: 8},
		Counters: wireCounters{Inserts: s.entries, Misuse: s.misuse}}
}
func (s *stubTracked) mapAddress() uintptr { return s.address }

// freshRegistry gives the test a registry of its own as std.
func freshRegistry(t *testing.T, capacity int) *registry {
	t.Helper()
	saved := std
	std = newRegistry(capacity)
	t.Cleanup(func() { std = saved })
	return std
}

// fakeSidecar is a loopback sidecar that checks every report against the
// protocol's required fields and answers with the statuses it is given.
type fakeSidecar struct {
	t     *testing.T
	url   string
	token string

	mu       sync.Mutex
	reports  []wireReport
	statuses []int // answered in order, then 200
}

func newFakeSidecar(t *testing.T, token string) *fakeSidecar {
	f := &fakeSidecar{t: t, token: token}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/v1/report"
	return f
}

func (f *fakeSidecar) answerNext(statuses ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statuses = append(f.statuses, statuses...)
}

func (f *fakeSidecar) received() []wireReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wireReport(nil), f.reports...)
}

var rfc3339 = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$`)

func (f *fakeSidecar) serve(w http.ResponseWriter, r *http.Request) {
	t := f.t
	if r.Method != http.MethodPost || r.URL.Path != "/v1/report" {
		t.Errorf("%s %s, want POST /v1/report", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"missing or wrong bearer token","field":"Authorization","limit":null}`)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Errorf("report is not JSON: %v", err)
	}
	checkRequired(t, raw)
	var report wireReport
	if err := json.Unmarshal(body, &report); err != nil {
		t.Errorf("report does not decode: %v", err)
	}
	f.mu.Lock()
	f.reports = append(f.reports, report)
	status := http.StatusOK
	if len(f.statuses) > 0 {
		status, f.statuses = f.statuses[0], f.statuses[1:]
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusOK {
		fmt.Fprintf(w, `{"status":"accepted","source":%q,"maps":%d,"events_accepted":%d,"restarted":false}`,
			report.Source.App, len(report.Maps), len(report.Events))
		return
	}
	fmt.Fprintf(w, `{"error":"test answer %d","field":"events[0].at","limit":null}`, status)
}

// checkRequired checks the fields docs/protocol.md marks required, and the
// formats the sidecar checks.
func checkRequired(t *testing.T, raw map[string]any) {
	t.Helper()
	source, _ := raw["source"].(map[string]any)
	for _, f := range []string{"app", "instance"} {
		if s, _ := source[f].(string); s == "" {
			t.Errorf("source.%s missing: %v", f, raw["source"])
		}
	}
	if s, _ := source["started_at"].(string); !rfc3339.MatchString(s) {
		t.Errorf("source.started_at %q is not RFC 3339", s)
	}
	if _, ok := raw["seq"].(float64); !ok {
		t.Errorf("seq missing")
	}
	maps, ok := raw["maps"].([]any)
	if !ok {
		t.Errorf("maps is not an array: %v", raw["maps"])
	}
	for i, m := range maps {
		m := m.(map[string]any)
		stats, _ := m["stats"].(map[string]any)
		_, entries := stats["entries"].(float64)
		_, buckets := stats["buckets"].(float64)
		if name, _ := m["name"].(string); name == "" || !entries || !buckets {
			t.Errorf("maps[%d] lacks name, stats.entries or stats.buckets: %v", i, m)
		}
	}
	events, ok := raw["events"].([]any)
	if !ok {
		t.Errorf("events is not an array: %v", raw["events"])
	}
	for i, e := range events {
		e := e.(map[string]any)
		_, seq := e["seq"].(float64)
		kind, _ := e["kind"].(string)
		name, _ := e["map"].(string)
		at, _ := e["at"].(string)
		if !seq || (kind != "misuse" && kind != "growth") || name == "" || !rfc3339.MatchString(at) {
			t.Errorf("events[%d] lacks seq, kind, map or at: %v", i, e)
		}
		if kind == "misuse" && e["misuse_kind"] == nil {
			t.Errorf("events[%d] is a misuse without misuse_kind", i)
		}
	}
}

// startTestReporter starts a reporter on its own registry. Interval is an
// hour: reports happen at start and on Flush only, unless the test says.
func startTestReporter(t *testing.T, reg *registry, cfg Config) *Reporter {
	t.Helper()
	if cfg.Interval == 0 {
		cfg.Interval = time.Hour
	}
	cfg.App, cfg.Instance = "checkout", "pod-1"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg = cfg.withDefaults()
	if err := cfg.validate(false); err != nil {
		t.Fatal(err)
	}
	r := newReporter(cfg, reg)
	go r.run()
	t.Cleanup(r.Stop)
	// Wait for the start-up report, so that tests see only their own.
	for r.Stats().Attempts == 0 {
		time.Sleep(time.Millisecond)
	}
	r.mu.Lock()
	r.mu.Unlock()
	return r
}

func flush(t *testing.T, r *Reporter) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.Flush(ctx)
}

func recordTestMisuse(reg *registry, n int) {
	for i := 0; i < n; i++ {
		reg.recordMisuse(mapID{name: "sessions"}, NilMapWrite, Site{Function: "main.f", File: "/app/main.go", Line: i}, "", "")
	}
}

func TestReportShape(t *testing.T) {
	reg := newRegistry(100)
	reg.register(&stubTracked{name: "sessions", labels: map[string]string{"tenant": "acme"}, entries: 5})
	sidecar := newFakeSidecar(t, "s3cret")
	r := startTestReporter(t, reg, Config{Endpoint: sidecar.url, Token: "s3cret"})
	for i := 0; i < 2; i++ {
		if err := flush(t, r); err != nil {
			t.Fatal(err)
		}
	}
	got := sidecar.received()
	if len(got) < 2 {
		t.Fatalf("%d reports", len(got))
	}
	sdk := regexp.MustCompile(`^mapscope-go/0\.1\.0 \(go[^;]+; (classic|swiss|model)(; .+)?\)$`)
	for i, rep := range got {
		if rep.Source.App != "checkout" || rep.Source.Instance != "pod-1" || rep.Source.Language != "go" || !sdk.MatchString(rep.Source.SDK) {
			t.Errorf("source %+v", rep.Source)
		}
		if rep.Source.StartedAt != got[0].Source.StartedAt {
			t.Errorf("started_at changed: %s, then %s", got[0].Source.StartedAt, rep.Source.StartedAt)
		}
		if rep.IntervalSeconds != 3600 {
			t.Errorf("interval_seconds %v", rep.IntervalSeconds)
		}
		if i > 0 && rep.Seq != got[i-1].Seq+1 {
			t.Errorf("seq %d after %d", rep.Seq, got[i-1].Seq)
		}
		if len(rep.Maps) != 1 || rep.Maps[0].Name != "sessions" || rep.Maps[0].Stats.Entries != 5 || rep.Maps[0].Labels["tenant"] != "acme" {
			t.Errorf("maps %+v", rep.Maps)
		}
	}
}

func TestWrongTokenIsAReportError(t *testing.T) {
	sidecar := newFakeSidecar(t, "right")
	r := startTestReporter(t, newRegistry(10), Config{Endpoint: sidecar.url, Token: "wrong"})
	err := flush(t, r)
	rerr, ok := err.(*ReportError)
	if !ok || rerr.StatusCode != 401 || rerr.Field != "Authorization" || !strings.Contains(err.Error(), "MAPSCOPE_INGEST_TOKEN") {
		t.Fatalf("err = %v", err)
	}
}

func TestEventsAcknowledgedOnlyBy200(t *testing.T) {
	reg := newRegistry(100)
	sidecar := newFakeSidecar(t, "")
	r := startTestReporter(t, reg, Config{Endpoint: sidecar.url})
	recordTestMisuse(reg, 3)

	sidecar.answerNext(http.StatusInternalServerError)
	if err := flush(t, r); err == nil {
		t.Fatal("a 500 is an error")
	}
	if err := flush(t, r); err != nil {
		t.Fatal(err)
	}
	if err := flush(t, r); err != nil {
		t.Fatal(err)
	}
	got := sidecar.received()
	failed, resent, after := got[len(got)-3], got[len(got)-2], got[len(got)-1]
	if len(failed.Events) != 3 || len(resent.Events) != 3 {
		t.Fatalf("events sent %d, resent after a 500 %d; want 3 and 3", len(failed.Events), len(resent.Events))
	}
	for i := range failed.Events {
		if failed.Events[i].Seq != resent.Events[i].Seq {
			t.Errorf("resent event seq %d, first sent as %d", resent.Events[i].Seq, failed.Events[i].Seq)
		}
	}
	if len(after.Events) != 0 {
		t.Errorf("acknowledged events sent again: %+v", after.Events)
	}
	if s := r.Stats(); s.Failed < 1 || s.Accepted < 3 || s.Attempts != s.Failed+s.Accepted {
		t.Errorf("stats %+v", s)
	}
}

func TestMaxEventsPerReport(t *testing.T) {
	reg := newRegistry(100)
	sidecar := newFakeSidecar(t, "")
	r := startTestReporter(t, reg, Config{Endpoint: sidecar.url, MaxEventsPerReport: 10})
	recordTestMisuse(reg, 25)
	var sizes []int
	var seqs []uint64
	for i := 0; i < 4; i++ {
		if err := flush(t, r); err != nil {
			t.Fatal(err)
		}
		got := sidecar.received()
		last := got[len(got)-1]
		sizes = append(sizes, len(last.Events))
		for _, e := range last.Events {
			seqs = append(seqs, e.Seq)
		}
	}
	if fmt.Sprint(sizes) != "[10 10 5 0]" {
		t.Errorf("events per report %v, want [10 10 5 0]", sizes)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("event seqs not consecutive: %v", seqs)
		}
	}
}

func TestEventBufferDropsOldestAndCounts(t *testing.T) {
	reg := freshRegistry(t, 5)
	recordTestMisuse(reg, 8)
	s := Stats()
	if s.EventsPending != 5 || s.EventsDropped != 3 {
		t.Fatalf("stats %+v, want 5 pending and 3 dropped", s)
	}
	if first := reg.pending(10)[0]; first.Seq != 4 {
		t.Errorf("oldest kept event has seq %d, want 4", first.Seq)
	}
}

func TestMisuseEventsRateLimited(t *testing.T) {
	reg := freshRegistry(t, 1000)
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	setClock(t, &at)
	site := Site{Function: "main.f", File: "main.go", Line: 1}
	for i := 0; i < 15; i++ {
		reg.recordMisuse(mapID{name: "m"}, ConcurrentWrite, site, "", "")
	}
	at = at.Add(time.Second)
	reg.recordMisuse(mapID{name: "m"}, ConcurrentWrite, site, "", "")
	if s := Stats(); s.EventsPending != misuseEventsPerSecond+1 || s.MisuseEventsLimited != 5 {
		t.Fatalf("stats %+v", s)
	}
}

// setClock makes the package clock read *at until the test ends.
func setClock(t *testing.T, at *time.Time) {
	t.Helper()
	saved := now
	now = func() time.Time { return *at }
	t.Cleanup(func() { now = saved })
}

func TestRetryableFailuresBackOff(t *testing.T) {
	reg := newRegistry(10)
	sidecar := newFakeSidecar(t, "")
	r := startTestReporter(t, reg, Config{Endpoint: sidecar.url, Interval: 10 * time.Second})
	for _, status := range []int{429, 500, 503} {
		sidecar.answerNext(status)
		wait, err := r.report(context.Background())
		if err == nil || wait > r.ceiling {
			t.Errorf("%d: wait %v, err %v", status, wait, err)
		}
	}
	// Three failures in a row: the wait has doubled twice (40 s, jittered).
	if r.failures != 3 {
		t.Errorf("failures = %d", r.failures)
	}
	for _, status := range []int{400, 401, 413, 415} {
		sidecar.answerNext(status)
		wait, err := r.report(context.Background())
		if err == nil || wait != 10*time.Second {
			t.Errorf("%d: wait %v (want the interval, no fast retry), err %v", status, wait, err)
		}
	}
	if wait, err := r.report(context.Background()); err != nil || wait != 10*time.Second {
		t.Errorf("after recovery: wait %v, err %v", wait, err)
	}
}

func TestBackoffIsBoundedAndJittered(t *testing.T) {
	low := func(int64) int64 { return 0 }
	high := func(n int64) int64 { return n - 1 }
	interval := 10 * time.Second
	for failures := 1; failures < 40; failures++ {
		lo := backoff(failures, interval, maxBackoff, low)
		hi := backoff(failures, interval, maxBackoff, high)
		if lo > hi || hi > maxBackoff || lo < interval/2 {
			t.Errorf("failure %d: wait in [%v, %v]", failures, lo, hi)
		}
	}
	if got := backoff(1, interval, maxBackoff, low); got != 5*time.Second {
		t.Errorf("first wait at least %v, want 5s", got)
	}
	if got := backoff(30, interval, maxBackoff, low); got != 30*time.Second {
		t.Errorf("capped wait at least %v, want 30s", got)
	}
}

func TestLoopRetriesWithBackoffNotInATightLoop(t *testing.T) {
	reg := newRegistry(10)
	sidecar := newFakeSidecar(t, "")
	sidecar.answerNext(503, 503, 503, 503, 503, 503, 503, 503, 503, 503)
	cfg := Config{Endpoint: sidecar.url, Interval: 20 * time.Millisecond, App: "a", Instance: "b",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}.withDefaults()
	r := newReporter(cfg, reg)
	r.ceiling = 80 * time.Millisecond
	go r.run()
	defer r.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for len(sidecar.received()) < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(sidecar.received()); n < 5 {
		t.Fatalf("%d attempts in 10 s: retries stopped", n)
	}
	// 5 attempts take at least 10+20+40+40 ms of minimum waits.
	if s := r.Stats(); s.Failed < 4 {
		t.Errorf("stats %+v", s)
	}
}

func TestRejectedEventIsDropped(t *testing.T) {
	reg := freshRegistry(t, 10)
	sidecar := newFakeSidecar(t, "")
	r := startTestReporter(t, reg, Config{Endpoint: sidecar.url})
	recordTestMisuse(reg, 2)
	sidecar.answerNext(http.StatusBadRequest) // blames events[0].at
	if err := flush(t, r); err == nil {
		t.Fatal("a 400 is an error")
	}
	if err := flush(t, r); err != nil {
		t.Fatal(err)
	}
	got := sidecar.received()
	if last := got[len(got)-1]; len(last.Events) != 1 || last.Events[0].Seq != got[len(got)-2].Events[1].Seq {
		t.Fatalf("after a 400 blaming events[0], sent %+v", last.Events)
	}
	if s := Stats(); s.EventsRejected != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestTooLargeHalvesEventsPerReport(t *testing.T) {
	reg := newRegistry(100)
	sidecar := newFakeSidecar(t, "")
	r := startTestReporter(t, reg, Config{Endpoint: sidecar.url, MaxEventsPerReport: 8})
	recordTestMisuse(reg, 8)
	sidecar.answerNext(http.StatusRequestEntityTooLarge)
	flush(t, r)
	flush(t, r)
	got := sidecar.received()
	if a, b := len(got[len(got)-2].Events), len(got[len(got)-1].Events); a != 8 || b != 4 {
		t.Fatalf("events per report %d then %d after a 413, want 8 then 4", a, b)
	}
	if r.eventCap != 8 {
		t.Errorf("the cap is %d after a 200, want it back at 8", r.eventCap)
	}
}

func TestNilCountsFoldIntoMaps(t *testing.T) {
	reg := newRegistry(10)
	reg.register(&stubTracked{name: "prefs", misuse: map[string]uint64{"concurrent_write": 1}})
	reg.register(&stubTracked{name: "prefs"}) // a duplicate identity: skipped
	reg.countByName("prefs", NilMapWrite)
	reg.countByName("orphan", NilMapWrite)
	reg.countByName("orphan", NilMapWrite)
	maps, dups := reg.snapshot()
	if len(maps) != 2 || len(dups) != 1 {
		t.Fatalf("maps %+v, duplicates %v", maps, dups)
	}
	if m := maps[0]; m.Name != "prefs" || m.Counters.Misuse["nil_map_write"] != 1 || m.Counters.Misuse["concurrent_write"] != 1 {
		t.Errorf("prefs %+v", m)
	}
	if m := maps[1]; m.Name != "orphan" || m.Counters.Misuse["nil_map_write"] != 2 || m.Stats.Buckets != 0 {
		t.Errorf("orphan %+v", m)
	}
}

func TestInvalidMapsAreNotReported(t *testing.T) {
	reg := newRegistry(10)
	reg.register(&stubTracked{name: "ok"})
	reg.register(&stubTracked{name: "__reserved"})
	reg.register(&stubTracked{name: "bad-label", labels: map[string]string{"tenant-id": "x"}})
	sidecar := newFakeSidecar(t, "")
	r := startTestReporter(t, reg, Config{Endpoint: sidecar.url})
	if err := flush(t, r); err != nil {
		t.Fatal(err)
	}
	got := sidecar.received()
	if maps := got[len(got)-1].Maps; len(maps) != 1 || maps[0].Name != "ok" {
		t.Fatalf("maps %+v", maps)
	}
}

func TestStopFlushesOnceAndIsIdempotent(t *testing.T) {
	sidecar := newFakeSidecar(t, "")
	r := startTestReporter(t, newRegistry(10), Config{Endpoint: sidecar.url})
	before := len(sidecar.received())
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); r.Stop() }()
	}
	wg.Wait()
	r.Stop()
	if after := len(sidecar.received()); after != before+1 {
		t.Errorf("%d reports on Stop, want exactly 1", after-before)
	}
	if err := r.Flush(context.Background()); err != ErrStopped {
		t.Errorf("Flush after Stop: %v", err)
	}
}

func TestStartAllowsOneReporter(t *testing.T) {
	sidecar := newFakeSidecar(t, "")
	cfg := Config{Endpoint: sidecar.url, Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Start: %v", err)
	}
	r.Stop()
	packageLogger.Store(nil)
	crashSource.Store(nil)
	r2, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	r2.Stop()
	packageLogger.Store(nil)
	crashSource.Store(nil)
	// Same process, same started_at: the second reporter's seq goes on,
	// or the sidecar would answer "duplicate" to all of its reports.
	got := sidecar.received()
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Errorf("report seq %d after %d", got[i].Seq, got[i-1].Seq)
		}
	}
	if len(got) < 2 {
		t.Errorf("%d reports, want at least the final one of each reporter", len(got))
	}
}
