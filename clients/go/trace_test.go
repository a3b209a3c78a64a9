package mapscope

import (
	"context"
	"sync"
	"testing"
)

func TestTraceIDsLandInEvents(t *testing.T) {
	reg := freshRegistry(t, 100)
	resetNilWrites(t)
	SetDefaultNilMapPolicy(NilMapDrop)
	setTestHook(t)
	unbind := Bind(withIDs(testTraceID, testSpanID))
	var m map[string]int
	Put("m", &m, "k", 1)
	unbind()
	Put("m", &m, "k", 1) // unbound: no trace
	events := reg.pending(10)
	if len(events) != 2 {
		t.Fatalf("%d events", len(events))
	}
	if events[0].TraceID != testTraceID || events[0].SpanID != testSpanID {
		t.Errorf("bound: trace %q span %q", events[0].TraceID, events[0].SpanID)
	}
	if events[1].TraceID != "" || events[1].SpanID != "" {
		t.Errorf("unbound: trace %q span %q", events[1].TraceID, events[1].SpanID)
	}
}

func TestInvalidTraceIDsAreDropped(t *testing.T) {
	setTestHook(t)
	for _, c := range []struct{ trace, span, wantTrace, wantSpan string }{
		{testTraceID, testSpanID, testTraceID, testSpanID},
		{"00000000000000000000000000000000", testSpanID, "", ""},
		{"4BF92F3577B34DA6A3CE929D0E0E4736", testSpanID, "", ""},
		{testTraceID[:31], testSpanID, "", ""},
		{testTraceID, "0000000000000000", testTraceID, ""},
		{testTraceID, "xyz", testTraceID, ""},
		{"", "", "", ""},
	} {
		unbind := Bind(withIDs(c.trace, c.span))
		trace, span := currentTrace()
		unbind()
		if trace != c.wantTrace || span != c.wantSpan {
			t.Errorf("hook gave %q/%q: got %q/%q, want %q/%q", c.trace, c.span, trace, span, c.wantTrace, c.wantSpan)
		}
	}
}

func TestBindNestsAndIsPerGoroutine(t *testing.T) {
	setTestHook(t)
	other := "0af7651916cd43dd8448eb211c80319c"
	outer := Bind(withIDs(testTraceID, testSpanID))
	defer outer()
	inner := Bind(withIDs(other, testSpanID))
	if trace, _ := currentTrace(); trace != other {
		t.Errorf("inner binding: %q", trace)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if trace, _ := currentTrace(); trace != "" {
			t.Errorf("another goroutine sees %q", trace)
		}
	}()
	wg.Wait()
	inner()
	if trace, _ := currentTrace(); trace != testTraceID {
		t.Errorf("after unbinding the inner: %q", trace)
	}
}

func TestPanickingHookGivesNoIDs(t *testing.T) {
	SetTraceHook(func(context.Context) (string, string) { panic("hook bug") })
	defer SetTraceHook(nil)
	defer Bind(context.Background())()
	if trace, span := currentTrace(); trace != "" || span != "" {
		t.Errorf("%q %q", trace, span)
	}
}

func TestGoroutineIDsDiffer(t *testing.T) {
	ids := make(chan uint64, 2)
	for i := 0; i < 2; i++ {
		go func() { ids <- goroutineID() }()
	}
	a, b := <-ids, <-ids
	if a == 0 || b == 0 || a == b || goroutineID() == a {
		t.Errorf("ids %d %d %d", a, b, goroutineID())
	}
}

func BenchmarkGoroutineID(b *testing.B) {
	for i := 0; i < b.N; i++ {
		goroutineID()
	}
}
