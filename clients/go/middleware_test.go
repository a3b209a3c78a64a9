package mapscope

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestMiddlewareRecordsAndRepanics(t *testing.T) {
	reg := freshRegistry(t, 100)
	var file string
	var line int
	handler := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var prefs map[string]string
		file, line = here(1)
		prefs[r.URL.Query().Get("k")] = "v"
	}))
	got := panicValue(func() {
		handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/?k=theme", nil))
	})
	if want := plainNilWritePanic(); got != want {
		t.Fatalf("re-panicked with %#v, want %#v", got, want)
	}
	e := onlyEvent(t, reg)
	if e.Map != UnknownMap || e.MisuseKind != "nil_map_write" {
		t.Errorf("event %+v", e)
	}
	checkSite(t, e, file, line)
}

func TestMiddlewareUnderNetHTTP(t *testing.T) {
	reg := freshRegistry(t, 100)
	mux := http.NewServeMux()
	mux.HandleFunc("/bug", func(w http.ResponseWriter, r *http.Request) {
		var m map[int]int
		m[1] = 1
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := httptest.NewUnstartedServer(Middleware(mux))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // net/http logs the panic
	srv.Start()
	defer srv.Close()
	if _, err := http.Get(srv.URL + "/bug"); err == nil {
		t.Error("the request succeeded: net/http drops the connection of a panicking handler")
	}
	resp, err := http.Get(srv.URL + "/ok")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the server stopped serving: %v", err)
	}
	resp.Body.Close()
	if e := onlyEvent(t, reg); e.Map != UnknownMap {
		t.Errorf("event %+v", e)
	}
}

type traceKey struct{}

// setTestHook installs a hook that reads ids from a context value.
func setTestHook(t *testing.T) {
	t.Helper()
	SetTraceHook(func(ctx context.Context) (string, string) {
		ids, _ := ctx.Value(traceKey{}).([2]string)
		return ids[0], ids[1]
	})
	t.Cleanup(func() { SetTraceHook(nil) })
}

func withIDs(trace, span string) context.Context {
	return context.WithValue(context.Background(), traceKey{}, [2]string{trace, span})
}

const (
	testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpanID  = "00f067aa0ba902b7"
)

func TestMiddlewareBindsTheRequestTrace(t *testing.T) {
	reg := freshRegistry(t, 100)
	setTestHook(t)
	handler := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[int]int
		m[1] = 1
	}))
	req := httptest.NewRequest("GET", "/", nil).WithContext(withIDs(testTraceID, testSpanID))
	panicValue(func() { handler.ServeHTTP(httptest.NewRecorder(), req) })
	e := onlyEvent(t, reg)
	if e.TraceID != testTraceID || e.SpanID != testSpanID {
		t.Errorf("trace %q span %q", e.TraceID, e.SpanID)
	}
	if _, ok := bound.Load(goroutineID()); ok {
		t.Error("the binding outlived the request")
	}
}

func BenchmarkMiddleware(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	req := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	b.Run("plain", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ok.ServeHTTP(w, req)
		}
	})
	b.Run("no-hook", func(b *testing.B) {
		h := Middleware(ok)
		for i := 0; i < b.N; i++ {
			h.ServeHTTP(w, req)
		}
	})
	b.Run("hook", func(b *testing.B) {
		SetTraceHook(func(context.Context) (string, string) { return "", "" })
		defer SetTraceHook(nil)
		h := Middleware(ok)
		for i := 0; i < b.N; i++ {
			h.ServeHTTP(w, req)
		}
	})
}
