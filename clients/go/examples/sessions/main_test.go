package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mapscope/mapscope/clients/go/examples/internal/fakesidecar"
)

const childEnv = "MAPSCOPE_SESSIONS_EXAMPLE_CHILD"

// TestMain runs the example itself when the test re-executes its binary.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lineOf is the line of main.go containing text.
func lineOf(t *testing.T, text string) int {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(src), "\n") {
		if strings.Contains(line, text) {
			return i + 1
		}
	}
	t.Fatalf("main.go has no %q", text)
	return 0
}

func TestSessionsExample(t *testing.T) {
	sidecar := fakesidecar.Start(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=1",
		"MAPSCOPE_ENDPOINT="+sidecar.URL, "MAPSCOPE_REPORT_INTERVAL=200ms",
		"MAPSCOPE_APP=sessions", "MAPSCOPE_INSTANCE=test",
		"MAPSCOPE_EXAMPLE_LISTEN=127.0.0.1:0", "MAPSCOPE_CRASH_DIR=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "listening on ") {
		t.Fatalf("first line %q\n%s", lines.Text(), stderr.String())
	}
	base := "http://" + strings.TrimPrefix(lines.Text(), "listening on ")

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	code, session := get("/login?user=ada")
	if code != 200 || len(session) != 32 {
		t.Fatalf("/login: %d %q", code, session)
	}
	if code, user := get("/session?id=" + session); code != 200 || user != "ada" {
		t.Errorf("/session: %d %q", code, user)
	}
	get("/logout?id=" + session)
	if code, _ := get("/session?id=" + session); code != 404 {
		t.Errorf("/session after /logout: %d", code)
	}
	if code, handler := get("/route?path=/api/v1/item/6656"); code != 200 || handler != "item" {
		t.Errorf("/route: %d %q", code, handler)
	}
	// A new connection: on a reused one, the transport retries a GET that
	// got no answer, and the handler would fail twice.
	once := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := once.Get(base + "/bug/nil?key=theme"); err == nil {
		resp.Body.Close()
		t.Errorf("/bug/nil answered %d: the request must fail as without mapscope", resp.StatusCode)
	}
	if code, _ := get("/bug/race"); code != 200 {
		t.Errorf("/bug/race: %d", code)
	}

	// main.bugNil in the example's binary; in this test binary, package
	// main's functions carry its import path.
	bugNil := regexp.MustCompile(`^(main|\S+/examples/sessions)\.bugNil$`)
	nilLine := strconv.Itoa(lineOf(t, `prefs[r.URL.Query().Get("key")] = "dark"`))
	complete := func(reports []fakesidecar.Report) bool {
		if len(reports) == 0 {
			return false
		}
		last := reports[len(reports)-1]
		visits, _ := last.FindMap("visits")
		unknown, _ := last.FindMap("_unknown")
		routes, _ := last.FindMap("routes")
		_, sessions := last.FindMap("sessions")
		sawNil := false
		for _, r := range reports {
			for _, e := range r.Events {
				sawNil = sawNil || (e.MisuseKind == "nil_map_write" && e.Map == "_unknown" &&
					bugNil.MatchString(e.Attributes["code.function"]) && e.Attributes["code.lineno"] == nilLine &&
					filepath.Base(e.Attributes["code.filepath"]) == "main.go")
			}
		}
		return sessions && sawNil && visits.Counters.Misuse["concurrent_write"] > 0 &&
			unknown.Counters.Misuse["nil_map_write"] == 1 && routes.Stats.Entries == routeCount
	}
	if !sidecar.WaitFor(20*time.Second, complete) {
		reports := sidecar.Reports()
		t.Fatalf("the reports lack the example's maps or the nil-map event; last of %d: %+v\nstderr:\n%s",
			len(reports), reports[len(reports)-1], stderr.String())
	}
	reports := sidecar.Reports()
	last := reports[len(reports)-1]
	routes, _ := last.FindMap("routes")
	t.Logf("sdk %q, routes %+v", last.Source.SDK, routes.Stats)
	if strings.Contains(last.Source.SDK, "; classic") {
		if e := routes.Stats.Evacuation; e == nil || e.Kind != "double" || e.OldBuckets != 1024 || e.EvacuatedOldBuckets >= e.OldBuckets {
			t.Errorf("classic layout: routes shows no stalled evacuation: %+v", routes.Stats)
		}
	}

	before := len(reports)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit 15 s after SIGTERM")
	}
	if len(sidecar.Reports()) <= before {
		t.Error("no final report on SIGTERM")
	}
}

// lockedBuffer is a bytes.Buffer that the child's stderr copier and the
// test may use at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
