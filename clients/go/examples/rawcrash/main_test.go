package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mapscope/mapscope/clients/go/examples/internal/fakesidecar"
)

const childEnv = "MAPSCOPE_RAWCRASH_EXAMPLE_CHILD"

// TestMain runs the example itself when the test re-executes its binary.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestRawCrashIsCaptured(t *testing.T) {
	sidecar := fakesidecar.Start(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=1", "MAPSCOPE_CRASH_DIR="+dir,
		"MAPSCOPE_ENDPOINT="+sidecar.URL, "MAPSCOPE_APP=rawcrash", "MAPSCOPE_INSTANCE=test")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(stderr.String(), "fatal error: concurrent map writes") {
		t.Fatalf("%v after %v, want exit status 2 from concurrent map writes\n%s", err, time.Since(start), stderr.String())
	}
	t.Logf("crashed after %v", time.Since(start))

	if !sidecar.WaitFor(0, func(r []fakesidecar.Report) bool {
		_, ok := r[len(r)-1].FindMap("counters")
		return len(r) > 0 && ok
	}) {
		t.Error("no report with the map before the crash")
	}

	logs, _ := filepath.Glob(filepath.Join(dir, "mapscope-crash-*.log"))
	metas, _ := filepath.Glob(filepath.Join(dir, "mapscope-crash-*.json"))
	if len(logs) != 1 || len(metas) != 1 || strings.TrimSuffix(logs[0], ".log") != strings.TrimSuffix(metas[0], ".json") {
		t.Fatalf("crash files %v %v", logs, metas)
	}
	var meta struct {
		App, Instance string
		Maps          []struct{ Name, Address string }
	}
	raw, _ := os.ReadFile(metas[0])
	if err := json.Unmarshal(raw, &meta); err != nil || meta.App != "rawcrash" || meta.Instance != "test" ||
		len(meta.Maps) != 1 || meta.Maps[0].Name != "counters" {
		t.Fatalf("metadata %s (%v)", raw, err)
	}

	crash, _ := os.ReadFile(logs[0])
	first := string(crash)
	if end := strings.Index(strings.TrimLeft(first, "\n"), "\n\n"); end > 0 {
		first = strings.TrimLeft(first, "\n")[:end]
	}
	assign := regexp.MustCompile(`(?m)^runtime\.mapassign\w*\(0x[0-9a-f]+, (0x[0-9a-f]+),`).FindStringSubmatch(first)
	if assign == nil || assign[1] != meta.Maps[0].Address {
		t.Fatalf("the crashing goroutine writes no map at %s:\n%s", meta.Maps[0].Address, first)
	}
	// main.hammer in the example's binary; in this test binary, package
	// main's functions carry its import path.
	hammer := regexp.MustCompile(`(?m)^(main|\S+/examples/rawcrash)\.hammer\(0x[0-9a-f]+\)$`)
	site := "main.go:" + strconv.Itoa(crashSiteLine(t)) + " "
	if !hammer.MatchString(first) || !strings.Contains(first, site) {
		t.Errorf("the crashing goroutine is not main.hammer at %s:\n%s", site, first)
	}
}

// crashSiteLine is the line of main.go marked mapscope:crash-site.
func crashSiteLine(t *testing.T) int {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(src), "\n") {
		if strings.HasSuffix(line, "// mapscope:crash-site") {
			return i + 1
		}
	}
	t.Fatal("main.go has no mapscope:crash-site")
	return 0
}
