//go:build go1.23

package mapscope

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const crashChildEnv = "MAPSCOPE_TEST_CRASH_CHILD"

// crashChild is the child process: it captures crashes, registers a raw
// map's address as "counters", and writes the map from two goroutines
// until the runtime kills it.
func crashChild() {
	counters := map[string]int{}
	std.register(&stubTracked{name: "counters", labels: map[string]string{"tenant": "acme"},
		address: reflect.ValueOf(counters).Pointer()})
	if _, err := CaptureCrashes(); err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(3)
	}
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
	}
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				counters[keys[i%len(keys)]] = i // crash site
			}
		}()
	}
	wg.Wait()
}

func TestCaptureCrashesEndToEnd(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCaptureCrashesEndToEnd$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"=1", EnvCrashDir+"="+dir,
		EnvApp+"=crashtest", EnvInstance+"=pod-7", "GOMAXPROCS=2", "GOTRACEBACK=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("child: %v, want exit status 2\n%s", err, tail(stderr.String()))
	}
	base := filepath.Join(dir, "mapscope-crash-*-"+strconv.Itoa(cmd.Process.Pid))
	logs, _ := filepath.Glob(base + ".log")
	metas, _ := filepath.Glob(base + ".json")
	all, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(logs) != 1 || len(metas) != 1 || len(all) != 2 {
		t.Fatalf("files %v, want one .log and one .json", all)
	}
	crash, _ := os.ReadFile(logs[0])
	var meta crashMetadata
	raw, _ := os.ReadFile(metas[0])
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatalf(".json: %v\n%s", err, raw)
	}
	if meta.Version != 1 || meta.App != "crashtest" || meta.Instance != "pod-7" || meta.PID != cmd.Process.Pid ||
		meta.GoVersion != runtime.Version() || !strings.HasPrefix(meta.SDK, "mapscope-go/") {
		t.Errorf("metadata %s", raw)
	}
	if started, err := time.Parse(time.RFC3339Nano, meta.StartedAt); err != nil ||
		!strings.Contains(logs[0], "-"+strconv.FormatInt(started.UnixNano(), 10)+"-") {
		t.Errorf("started_at %q does not match the file name %s", meta.StartedAt, logs[0])
	}
	if len(meta.Maps) != 1 || meta.Maps[0].Name != "counters" || meta.Maps[0].Labels["tenant"] != "acme" {
		t.Fatalf("maps %s", raw)
	}
	address := meta.Maps[0].Address

	// The runtime prints "fatal error: ..." before it starts copying its
	// output to the crash file: the message is on stderr only, and the
	// .log starts with the crashing goroutine, whose runtime.mapassign*
	// frame carries the map's address as its second argument.
	if !strings.Contains(stderr.String(), "fatal error: concurrent map writes") {
		t.Fatalf("stderr has no fatal error:\n%s", tail(stderr.String()))
	}
	first := firstGoroutine(string(crash))
	if !strings.HasPrefix(strings.TrimLeft(string(crash), "\n"), "goroutine ") || !strings.Contains(first, "[running]:") {
		t.Fatalf(".log does not start with the running goroutine:\n%s", tail(string(crash)))
	}
	assign := regexp.MustCompile(`(?m)^runtime\.mapassign\w*\(0x[0-9a-f]+, (0x[0-9a-f]+),`).FindStringSubmatch(first)
	if assign == nil || assign[1] != address {
		t.Fatalf("the crashing goroutine has no mapassign frame with address %s:\n%s", address, first)
	}
	if !strings.Contains(first, "runtime.fatal(") {
		t.Errorf("no runtime.fatal frame (traceback level not raised?):\n%s", first)
	}
	if !strings.Contains(first, "crash_test.go:") {
		t.Errorf("the crashing goroutine does not show the writing line:\n%s", first)
	}
}

// firstGoroutine is the first "goroutine N [...]:" block of a crash.
func firstGoroutine(crash string) string {
	start := strings.Index(crash, "goroutine ")
	if start < 0 {
		return ""
	}
	block := crash[start:]
	if end := strings.Index(block, "\n\n"); end >= 0 {
		block = block[:end]
	}
	return block
}

func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

func TestCaptureCrashesNeedsADirectory(t *testing.T) {
	t.Setenv(EnvCrashDir, "")
	if _, err := CaptureCrashes(); err == nil || !strings.Contains(err.Error(), "MAPSCOPE_CRASH_DIR is not set") {
		t.Errorf("unset: %v", err)
	}
	t.Setenv(EnvCrashDir, filepath.Join(t.TempDir(), "missing"))
	if _, err := CaptureCrashes(); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("missing: %v", err)
	}
}

func TestCrashMetadataFollowsTheMaps(t *testing.T) {
	reg := freshRegistry(t, 10)
	dir := t.TempDir()
	t.Setenv(EnvCrashDir, dir)
	t.Setenv(EnvApp, "meta")
	t.Setenv(EnvEndpoint, "not a URL") // crash capture needs only app and instance
	t.Cleanup(func() { crashSource.Store(nil) })
	stop, err := CaptureCrashes()
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	read := func() crashMetadata {
		matches, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		if len(matches) != 1 {
			t.Fatalf(".json files: %v", matches)
		}
		var meta crashMetadata
		raw, _ := os.ReadFile(matches[0])
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		return meta
	}
	if meta := read(); meta.App != "meta" || len(meta.Maps) != 0 {
		t.Fatalf("initial metadata %+v", meta)
	}
	reg.register(&stubTracked{name: "unobserved"}) // address 0: not listed
	reg.register(&stubTracked{name: "b", address: 0xc000012345})
	reg.register(&stubTracked{name: "a", address: 0x2ef1b6f440f0})
	refreshCrashMetadata()
	meta := read()
	if len(meta.Maps) != 2 || meta.Maps[0].Name != "a" || meta.Maps[0].Address != "0x2ef1b6f440f0" || meta.Maps[1].Address != "0xc000012345" {
		t.Fatalf("metadata %+v", meta)
	}
	if meta.Maps[0].Labels == nil {
		t.Error("labels must be an object, not null")
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	if _, err := CaptureCrashes(); err == nil {
		t.Error("a second capture started")
	}
	stop()
	stopped = true
	stop() // idempotent
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("files left after a clean stop: %v", left)
	}
}
