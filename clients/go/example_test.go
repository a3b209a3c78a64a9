package mapscope_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	mapscope "github.com/mapscope/mapscope/clients/go"
)

// A struct whose map field is sometimes left nil: Put records each such
// write, and with NilMapHeal initialises the map instead of panicking.
func ExamplePut() {
	type user struct{ prefs map[string]string }
	mapscope.SetNilMapPolicy("example_prefs", mapscope.NilMapHeal)

	u := user{} // prefs is nil: the bug
	mapscope.Put("example_prefs", &u.prefs, "theme", "dark")
	fmt.Println(u.prefs)
	// Output: map[theme:dark]
}

// RecoverNilMap records a nil-map write made by a plain assignment, with
// the line that wrote, then lets the panic go on.
func ExampleRecoverNilMap() {
	save := func(prefs map[string]string) {
		defer mapscope.RecoverNilMap("example_prefs")
		prefs["theme"] = "dark"
	}
	defer func() { fmt.Println("recovered:", recover()) }()
	save(nil)
	// Output: recovered: assignment to entry in nil map
}

// Middleware wraps the whole handler tree; inside the tracing middleware
// when there is one, so that the request's span is in its context.
func ExampleMiddleware() {
	mux := http.NewServeMux()
	mux.HandleFunc("/prefs", func(w http.ResponseWriter, r *http.Request) {
		var prefs map[string]string // a nil map: the write below panics
		prefs["theme"] = r.URL.Query().Get("theme")
	})
	srv := &http.Server{
		Addr:              "127.0.0.1:8080",
		Handler:           mapscope.Middleware(mux), // otelhttp.NewHandler(mapscope.Middleware(mux), "server")
		ReadHeaderTimeout: 5 * time.Second,
	}
	_ = srv // srv.ListenAndServe()
}

// With OpenTelemetry (go.opentelemetry.io/otel/trace), the hook is three
// lines; this example leaves the otel calls in comments to stay free of
// the dependency.
func ExampleSetTraceHook() {
	mapscope.SetTraceHook(func(ctx context.Context) (traceID, spanID string) {
		// sc := trace.SpanContextFromContext(ctx)
		// if !sc.IsValid() { return "", "" }
		// return sc.TraceID().String(), sc.SpanID().String()
		return "", ""
	})
	defer mapscope.SetTraceHook(nil)
}

// Outside HTTP handlers (Middleware binds those), bind the context that
// carries the span to the goroutine doing the work.
func ExampleBind() {
	process := func(ctx context.Context, job string) {
		defer mapscope.Bind(ctx)()
		// ... misuse recorded here carries ctx's trace and span ...
	}
	process(context.Background(), "job-1")
}

// The usual start-up: reporter from the environment, crash capture when
// the pod shares a crash directory with the sidecar, both stopped on
// SIGTERM.
func ExampleStartFromEnv() {
	if os.Getenv(mapscope.EnvCrashDir) != "" {
		stopCapture, err := mapscope.CaptureCrashes()
		if err != nil {
			log.Fatal(err)
		}
		defer stopCapture()
	}
	reporter, err := mapscope.StartFromEnv()
	if err != nil {
		log.Fatal(err) // names the variable at fault and what to do
	}
	defer reporter.Stop() // one last report

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
}

// A reporter configured in code; zero fields take their defaults.
func ExampleStart() {
	reporter, err := mapscope.Start(mapscope.Config{
		Endpoint: "http://127.0.0.1:9848/v1/report",
		App:      "checkout",
		Interval: 10 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer reporter.Stop()

	// Before an expected exit, or in a test: report now and wait.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := reporter.Flush(ctx); err != nil {
		log.Print(err)
	}
}

// CaptureCrashes needs MAPSCOPE_CRASH_DIR: the directory the sidecar reads
// with --crash-dir.
func ExampleCaptureCrashes() {
	stop, err := mapscope.CaptureCrashes()
	if err != nil {
		log.Print(err) // e.g. MAPSCOPE_CRASH_DIR is not set: ...
		return
	}
	defer stop()
}

// Stats tells what the client dropped or limited, for the process's own
// monitoring.
func ExampleStats() {
	s := mapscope.Stats()
	if s.EventsDropped > 0 {
		log.Printf("mapscope dropped %d events: the sidecar was unreachable", s.EventsDropped)
	}
}
