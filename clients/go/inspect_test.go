package mapscope

import (
	"bytes"
	"errors"
	"log"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// goMinor is the running toolchain's minor version (23 for go1.23.9), or 0
// for a development build.
func goMinor() int {
	v := strings.TrimPrefix(runtime.Version(), "go1.")
	if i := strings.IndexAny(v, ".rc-beta "); i >= 0 {
		v = v[:i]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// TestLayoutSelected checks that the build tags chose the layout of the
// running toolchain: the release decides where it can, and the self-check
// (which reads maps of known numbers) passes on the layout chosen, which a
// classic reading of a swiss map or the reverse would not.
func TestLayoutSelected(t *testing.T) {
	layout, note := layoutInfo()
	t.Logf("%s: layout %q, note %q", runtime.Version(), layout, note)
	if !layoutIntrospects {
		if layout != "model" || note == "" || introspecting() {
			t.Fatalf("model build: layoutInfo() = %q, %q, introspecting %v", layout, note, introspecting())
		}
		return
	}
	if layout != layoutName || note != "" || !introspecting() {
		t.Fatalf("layoutInfo() = %q, %q; want %q and no note (the self-check failed?)", layout, note, layoutName)
	}
	switch minor := goMinor(); {
	case minor == 0:
	case minor < 24 && layoutName != "classic":
		t.Errorf("go1.%d must read classic maps, reads %s", minor, layoutName)
	case minor >= 26 && layoutName != "swiss":
		t.Errorf("go1.%d must read swiss maps, reads %s", minor, layoutName)
	}
}

// withSelfCheck runs f with the self-check replaced by check and a fresh
// verdict, and restores both.
func withSelfCheck(t *testing.T, check func() error, f func()) {
	t.Helper()
	saved := layoutCheck
	reset := func() {
		introspection.once = sync.Once{}
		introspection.on, introspection.layout, introspection.note = false, "", ""
	}
	layoutCheck = check
	reset()
	defer func() {
		layoutCheck = saved
		reset()
	}()
	f()
}

func TestSelfCheckFailureFallsBackToTheModel(t *testing.T) {
	if !layoutIntrospects {
		t.Skip("the model build runs no self-check")
	}
	var logged bytes.Buffer
	saved := log.Writer()
	log.SetOutput(&logged)
	defer log.SetOutput(saved)
	for name, check := range map[string]func() error{
		"error": func() error { return errors.New("B 3 after 9 inserts, want 1") },
		"panic": func() error { var p *hmapLike; return errors.New(strconv.Itoa(p.count)) },
	} {
		logged.Reset()
		withSelfCheck(t, check, func() {
			layout, note := layoutInfo()
			if layout != "model" || !strings.HasPrefix(note, "self-check failed: ") {
				t.Errorf("%s: layoutInfo() = %q, %q", name, layout, note)
			}
			m := map[int]int{1: 1}
			if s := inspectMap(m, 100, 0); !s.Modelled || s.Layout != "model" || s.Buckets != 16 {
				t.Errorf("%s: inspectMap = %+v, want the model's 16 buckets for a peak of 100", name, s)
			}
			if n := strings.Count(logged.String(), "\n"); n != 1 || !strings.Contains(logged.String(), "self-check failed") {
				t.Errorf("%s: logged %q, want one line", name, logged.String())
			}
		})
	}
	if layout, note := layoutInfo(); layout != layoutName || note != "" {
		t.Errorf("after the test: %q, %q", layout, note)
	}
}

type hmapLike struct{ count int }

// TestModelMatchesMake checks makeBuckets against make(map, hint) read by
// introspection, and the model against it on classic maps.
func TestMakeBucketsMatchesMake(t *testing.T) {
	if !introspecting() {
		t.Skip("no introspection")
	}
	hints := []int{}
	for h := 0; h <= 3000; h++ {
		hints = append(hints, h)
	}
	for h := 3000; h <= 1<<20; h = h*5/4 + 1 {
		hints = append(hints, h)
	}
	for _, h := range hints {
		s := inspectMap(make(map[uint64]uint64, h), 0, 0)
		if s.Buckets != makeBuckets(uint64(h)) {
			t.Fatalf("make(map, %d): %d buckets, makeBuckets says %d", h, s.Buckets, makeBuckets(uint64(h)))
		}
		if layoutName == "classic" && s.Buckets != modelShape(0, uint64(h)).Buckets {
			t.Fatalf("make(map, %d): %d buckets, the model says %d", h, s.Buckets, modelShape(0, uint64(h)).Buckets)
		}
	}
}

func TestModelRule(t *testing.T) {
	// The thresholds: up to 8 entries in one bucket, then 6.5 per bucket.
	for _, c := range []struct{ n, buckets uint64 }{
		{0, 1}, {8, 1}, {9, 2}, {13, 2}, {14, 4}, {26, 4}, {27, 8}, {46, 8}, {52, 8}, {53, 16},
		{6656, 1024}, {6657, 2048}, {100_000, 16384},
	} {
		if got := modelShape(c.n, 0).Buckets; got != c.buckets {
			t.Errorf("modelShape(%d, 0) = %d buckets, want %d", c.n, got, c.buckets)
		}
		if got := modelShape(0, c.n).Buckets; got != c.buckets {
			t.Errorf("modelShape(0, %d) = %d buckets, want %d", c.n, got, c.buckets)
		}
	}
	if s := modelShape(10, 100_000); s.Buckets != 16384 || !s.Modelled || s.Layout != "model" {
		t.Errorf("modelShape(10, 100000) = %+v", s)
	}
}

// heapGrowth returns the live heap bytes make allocates.
func heapGrowth(make func() any) (uint64, any) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := make()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return after.HeapAlloc - before.HeapAlloc, v
}

type big struct{ b [200]byte }

// TestMemoryEstimate compares MemoryBytes with the heap a map really
// holds: within 15% for inline, indirect (over 128 bytes) and zero-size
// elements.
func TestMemoryEstimate(t *testing.T) {
	if !introspecting() {
		t.Skip("the model estimates a classic map, whatever the runtime's layout")
	}
	const n = 200_000
	check := func(name string, got uint64, s shape) {
		t.Helper()
		est := s.MemoryBytes
		ratio := float64(est) / float64(got)
		t.Logf("%s: heap %d bytes, estimate %d (%.2f), %d buckets, modelled %v", name, got, est, ratio, s.Buckets, s.Modelled)
		if ratio < 0.85 || ratio > 1.15 {
			t.Errorf("%s: estimate %d bytes for a heap of %d (%.2f)", name, est, got, ratio)
		}
	}
	heap, v := heapGrowth(func() any {
		m := make(map[int64]int64)
		for i := int64(0); i < n; i++ {
			m[i] = i
		}
		return m
	})
	check("map[int64]int64", heap, inspectMap(v.(map[int64]int64), n, 0))
	heap, v = heapGrowth(func() any {
		m := make(map[int64]struct{})
		for i := int64(0); i < n; i++ {
			m[i] = struct{}{}
		}
		return m
	})
	check("map[int64]struct{}", heap, inspectMap(v.(map[int64]struct{}), n, 0))
	heap, v = heapGrowth(func() any {
		m := make(map[int64]big)
		for i := int64(0); i < n/4; i++ {
			m[i] = big{}
		}
		return m
	})
	check("map[int64][200]byte", heap, inspectMap(v.(map[int64]big), n/4, 0))
}

// TestModelPath: without introspection (the go1.28 build, or a failed
// self-check) a map's numbers are the model's, marked modelled.
func TestModelPath(t *testing.T) {
	check := func() {
		m := map[int]int{}
		for i := 0; i < 1000; i++ {
			m[i] = i
		}
		s := inspectMap(m, 5000, 10)
		if s.Layout != "model" || !s.Modelled || s.Buckets != 1024 || s.MemoryBytes == 0 || s.Growing {
			t.Errorf("modelled shape %+v, want 1024 buckets for a peak of 5000", s)
		}
		if s := inspectMap(map[int]int(nil), 0, 0); s.Buckets != 0 {
			t.Errorf("nil map: %+v", s)
		}
	}
	if !layoutIntrospects {
		check()
		return
	}
	withSelfCheck(t, func() error { return errors.New("forced") }, check)
}
