package mapscope

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Version is this client's version, sent in the report's sdk field.
const Version = "0.1.0"

// processStart is when this process started, as far as reports can tell:
// source.started_at (the sidecar's restart detection) and the crash files'
// names. It never changes, whatever the package clock says.
var processStart = time.Now()

const (
	// maxBackoff caps the wait between retries (docs/protocol.md: retry
	// with exponential backoff and jitter).
	maxBackoff = time.Minute
	// stopFlushTimeout bounds Stop's final report: a process shutting down
	// (Kubernetes' grace period) must not wait on an absent sidecar.
	stopFlushTimeout = 2 * time.Second
	// maxAnswerBytes bounds how much of an answer is read.
	maxAnswerBytes = 64 << 10
)

// ErrStopped is Flush's error after Stop.
var ErrStopped = errors.New("mapscope: the reporter is stopped")

// ReportError is a report the sidecar refused: its status and its JSON
// error body, which names the field and the limit at fault.
type ReportError struct {
	// StatusCode is the HTTP status (400, 401, 413, 415, 429, 5xx).
	StatusCode int
	// Message is the sidecar's error message, or the body if not JSON.
	Message string
	// Field is the JSON path or header the sidecar blamed, if any.
	Field string
}

// Error names the status, the sidecar's message and what to do.
func (e *ReportError) Error() string {
	msg := fmt.Sprintf("mapscope: the sidecar answered %d: %s", e.StatusCode, e.Message)
	if e.Field != "" {
		msg += " (field " + e.Field + ")"
	}
	switch e.StatusCode {
	case http.StatusUnauthorized:
		msg += "; set MAPSCOPE_INGEST_TOKEN (Config.Token) to the sidecar's --ingest-token"
	case http.StatusRequestEntityTooLarge:
		msg += "; the reporter sends fewer events per report from now on"
	}
	return msg
}

// Reporter pushes the process's maps and events to the sidecar every
// Config.Interval, with the protocol v1 rules: cumulative counters, a
// report seq increasing per attempt, events kept until a 200 acknowledges
// them, backoff with jitter on network errors, 429 and 5xx.
type Reporter struct {
	cfg    Config
	reg    *registry
	source wireSource
	ctx    context.Context // cancelled by Stop: aborts a report in flight
	cancel context.CancelFunc

	mu       sync.Mutex // one report at a time; guards what follows
	eventCap int        // Config.MaxEventsPerReport, halved after each 413
	failures int        // consecutive retryable failures
	problem  string     // the failure last logged, to log changes only
	ceiling  time.Duration

	attempts, accepted, failed atomic.Uint64

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	stopped  atomic.Bool
}

var (
	// running is the started reporter: one per process, since the events
	// it acknowledges are the process's.
	running atomic.Pointer[Reporter]
	// reportSeq is the last report seq sent. It belongs to the process,
	// not to a Reporter: started_at is the process's, so a reporter
	// started after another one stopped must go on from its seq, or the
	// sidecar would take its reports for duplicates.
	reportSeq atomic.Uint64
)

// Start starts reporting to the sidecar: a first report at once, then one
// every cfg.Interval, on a goroutine of its own. Zero fields of cfg take
// their defaults (see Config). Only one reporter runs at a time.
func Start(cfg Config) (*Reporter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(false); err != nil {
		return nil, fmt.Errorf("mapscope: %w", err)
	}
	r := newReporter(cfg, std)
	if !running.CompareAndSwap(nil, r) {
		return nil, errors.New("mapscope: a reporter is already running: Stop it before starting another")
	}
	packageLogger.Store(cfg.Logger)
	setCrashSource(cfg.App, cfg.Instance)
	go r.run()
	return r, nil
}

// StartFromEnv is Start(ConfigFromEnv()).
func StartFromEnv() (*Reporter, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, fmt.Errorf("mapscope: %w", err)
	}
	return Start(cfg)
}

func newReporter(cfg Config, reg *registry) *Reporter {
	ctx, cancel := context.WithCancel(context.Background())
	return &Reporter{
		cfg: cfg,
		reg: reg,
		source: wireSource{
			App:       cfg.App,
			Instance:  cfg.Instance,
			Language:  "go",
			SDK:       sdkString(),
			StartedAt: processStart.UTC().Format(time.RFC3339Nano),
		},
		ctx:      ctx,
		cancel:   cancel,
		eventCap: cfg.MaxEventsPerReport,
		ceiling:  max(maxBackoff, cfg.Interval),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// sdkString names the client, the Go version and the map layout read, e.g.
// "mapscope-go/0.1.0 (go1.27.3; swiss)", plus introspection's note when
// it has one (why it fell back to the model).
func sdkString() string {
	layout, note := layoutInfo()
	detail := runtime.Version() + "; " + layout
	if note != "" {
		detail += "; " + note
	}
	return "mapscope-go/" + Version + " (" + detail + ")"
}

func (r *Reporter) run() {
	defer close(r.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-timer.C:
		}
		wait, _ := r.report(r.ctx)
		timer.Reset(wait)
	}
}

// Flush sends a report now and waits for the sidecar's answer (or ctx). It
// returns nil when the sidecar accepted it, a *ReportError when it refused
// it, ErrStopped after Stop. Use it before an expected exit, or in tests.
func (r *Reporter) Flush(ctx context.Context) error {
	if r.stopped.Load() {
		return ErrStopped
	}
	_, err := r.report(ctx)
	return err
}

// Stop stops the reporter after a final report (waiting at most 2 s for
// the sidecar). It is idempotent: later calls return at once, concurrent
// ones when the first is done.
func (r *Reporter) Stop() {
	r.stopOnce.Do(func() {
		r.cancel()
		close(r.stop)
		<-r.done
		ctx, cancel := context.WithTimeout(context.Background(), stopFlushTimeout)
		defer cancel()
		if _, err := r.report(ctx); err != nil {
			r.cfg.Logger.Warn("mapscope: the final report failed", "err", err)
		}
		r.stopped.Store(true)
		running.CompareAndSwap(r, nil)
	})
}

// ReporterStats counts a reporter's reports.
type ReporterStats struct {
	// Attempts counts reports sent, retries included.
	Attempts uint64
	// Accepted counts reports the sidecar answered with 200.
	Accepted uint64
	// Failed counts network errors and non-200 answers.
	Failed uint64
}

// Stats returns the reporter's counts so far.
func (r *Reporter) Stats() ReporterStats {
	return ReporterStats{Attempts: r.attempts.Load(), Accepted: r.accepted.Load(), Failed: r.failed.Load()}
}

// report sends one report and returns how long to wait before the next.
func (r *Reporter) report(ctx context.Context) (time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts.Add(1)
	// Maps first: reading an observed map may record the growth events
	// that this report then carries.
	maps := r.checkedMaps()
	refreshCrashMetadata()
	events := r.checkedEvents(r.reg.pending(r.eventCap))
	body, err := json.Marshal(wireReport{
		Source:          r.source,
		Seq:             reportSeq.Add(1),
		SentAt:          now().UTC().Format(time.RFC3339Nano),
		IntervalSeconds: r.cfg.Interval.Seconds(),
		Maps:            maps,
		Events:          events,
	})
	if err != nil { // only a non-finite float could do it; none is built
		r.failed.Add(1)
		return r.cfg.Interval, fmt.Errorf("mapscope: encoding a report: %w", err)
	}
	if r.cfg.HTTPClient.Timeout == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultHTTPTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.Endpoint, bytes.NewReader(body))
	if err != nil {
		r.failed.Add(1)
		return r.cfg.Interval, fmt.Errorf("mapscope: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return r.retry(ctx, fmt.Errorf("mapscope: sending a report to %s: %w", r.cfg.Endpoint, err))
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		r.succeeded(events, answer)
		return r.cfg.Interval, nil
	case code == http.StatusTooManyRequests || code >= 500:
		return r.retry(ctx, newReportError(code, answer))
	default:
		// 400, 401, 413, 415: the same report would fail the same way, so
		// no fast retry; the next one comes after an interval, and a
		// failure is logged when it differs from the last one logged.
		rerr := newReportError(code, answer)
		switch code {
		case http.StatusRequestEntityTooLarge:
			r.eventCap /= 2
		case http.StatusBadRequest:
			r.dropRejectedEvent(rerr.Field, events)
		}
		r.failed.Add(1)
		r.failures = 0
		r.logProblem(rerr, "err", rerr)
		return r.cfg.Interval, rerr
	}
}

// checkedMaps is every map's snapshot, less those the sidecar would reject
// (each logged once): one bad name must not make every report a 400.
func (r *Reporter) checkedMaps() []wireMap {
	maps, duplicates := r.reg.snapshot()
	for _, name := range duplicates {
		warnOnce(r.cfg.Logger, "duplicate map "+name, "mapscope: two maps have the same name and labels; reporting the first: give them distinct names or labels", "map", name)
	}
	kept := maps[:0]
	for _, m := range maps {
		if err := checkMap(m); err != nil {
			warnOnce(r.cfg.Logger, "invalid map "+identityKey(m.Name, m.Labels), "mapscope: map not reported: "+err.Error())
			continue
		}
		kept = append(kept, m)
	}
	if kept == nil {
		kept = []wireMap{}
	}
	return kept
}

// checkedEvents drops (for good) the events the sidecar would reject.
func (r *Reporter) checkedEvents(events []wireEvent) []wireEvent {
	kept := events[:0]
	for _, e := range events {
		if err := checkEvent(e); err != nil {
			warnOnce(r.cfg.Logger, "invalid event "+e.Map, "mapscope: event dropped: "+err.Error())
			r.reg.discard(e.Seq)
			continue
		}
		kept = append(kept, e)
	}
	if kept == nil {
		kept = []wireEvent{}
	}
	return kept
}

var eventField = regexp.MustCompile(`^events\[(\d+)\]`)

// dropRejectedEvent discards the event a 400 blames (field "events[3].at"),
// which would otherwise be resent, and refused, forever.
func (r *Reporter) dropRejectedEvent(field string, sent []wireEvent) {
	m := eventField.FindStringSubmatch(field)
	if m == nil {
		return
	}
	if i, err := strconv.Atoi(m[1]); err == nil && i < len(sent) {
		r.reg.discard(sent[i].Seq)
	}
}

// succeeded handles a 200: the events sent are acknowledged.
func (r *Reporter) succeeded(events []wireEvent, body []byte) {
	r.accepted.Add(1)
	if len(events) > 0 {
		r.reg.acknowledge(events[len(events)-1].Seq)
	}
	if r.problem != "" {
		r.cfg.Logger.Info("mapscope: reporting to the sidecar again", "endpoint", r.cfg.Endpoint)
	}
	r.failures, r.problem, r.eventCap = 0, "", r.cfg.MaxEventsPerReport
	var answer wireAnswer
	if json.Unmarshal(body, &answer) == nil && answer.Status == "stale" {
		// The sidecar knows a later process with this app and instance.
		warnOnce(r.cfg.Logger, "stale source", "mapscope: the sidecar ignores this process's reports: another, newer process reports with the same app and instance; set MAPSCOPE_INSTANCE to tell them apart",
			"app", r.cfg.App, "instance", r.cfg.Instance)
	}
}

// retry handles a retryable failure: the wait grows exponentially.
func (r *Reporter) retry(ctx context.Context, err error) (time.Duration, error) {
	r.failed.Add(1)
	r.failures++
	if ctx.Err() == nil { // a report cancelled by Stop is not a problem
		r.logProblem(err, "err", err, "retry", "with backoff")
	}
	return backoff(r.failures, r.cfg.Interval, r.ceiling, rand.Int64N), err
}

// logProblem logs a failure unless it is the one logged last.
func (r *Reporter) logProblem(err error, args ...any) {
	if msg := err.Error(); msg != r.problem {
		r.problem = msg
		r.cfg.Logger.Warn("mapscope: report failed", args...)
	}
}

// backoff is the wait after the failures-th consecutive failure: the
// interval doubled per failure up to ceiling, with "equal jitter" (half
// fixed, half random) so that the processes of a fleet do not retry in
// step. jitter(n) returns a number in [0, n).
func backoff(failures int, interval, ceiling time.Duration, jitter func(n int64) int64) time.Duration {
	d := interval
	for i := 1; i < failures && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	half := d / 2
	return half + time.Duration(jitter(int64(d-half)+1))
}

func newReportError(code int, body []byte) *ReportError {
	e := &ReportError{StatusCode: code, Message: string(bytes.TrimSpace(body))}
	var w wireError
	if json.Unmarshal(body, &w) == nil && w.Error != "" {
		e.Message = w.Error
		if w.Field != nil {
			e.Field = *w.Field
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(code)
	}
	return e
}
