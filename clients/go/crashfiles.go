package mapscope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The crash-file contract with the sidecar (--crash-dir), in a directory
// both containers mount (a Kubernetes emptyDir):
//
//   - mapscope-crash-<startUnixNano>-<pid>.log: the runtime's crash output
//     (runtime/debug.SetCrashOutput), empty until the process dies of a
//     fatal error or an unrecovered panic;
//   - mapscope-crash-<startUnixNano>-<pid>.json: crashMetadata, written
//     before the .log exists and replaced atomically (a temporary file not
//     ending in .json, then a rename) whenever it changes.
//
// The sidecar waits until a .log is non-empty and its size is stable over
// two scans, classifies the crash from its first goroutine's frames,
// records it and removes both files; it removes an empty .log pair once a
// newer .json of the same app and instance exists (the process restarted).

// crashMetadata is the .json file.
type crashMetadata struct {
	Version   int        `json:"version"`
	App       string     `json:"app"`
	Instance  string     `json:"instance"`
	StartedAt string     `json:"started_at"`
	PID       int        `json:"pid"`
	SDK       string     `json:"sdk"`
	GoVersion string     `json:"go_version"`
	Maps      []crashMap `json:"maps"`
}

// crashMap is an observed map whose runtime header address is known: the
// address a crash's runtime.mapassign* frame shows as its second argument.
type crashMap struct {
	Name    string            `json:"name"`
	Labels  map[string]string `json:"labels"`
	Address string            `json:"address"`
}

// crashRefreshInterval is how often the .json is checked for changes
// (besides each report): a copy of the map list and a comparison.
const crashRefreshInterval = 2 * time.Second

// crashCapture is the running capture.
type crashCapture struct {
	jsonPath, logPath string
	stop              chan struct{}
	done              chan struct{}

	mu   sync.Mutex
	last []byte // the .json content written last
}

var (
	activeCapture atomic.Pointer[crashCapture]
	// crashSource is the app and instance written in the .json: the
	// running reporter's, else those of the environment (ConfigFromEnv).
	crashSource atomic.Pointer[[2]string]
)

// crashFileBase is the files' name without extension: the process start
// and pid make it unique, and ordering by start time tells the sidecar
// which of an instance's files is newer.
func crashFileBase() string {
	return fmt.Sprintf("mapscope-crash-%d-%d", processStart.UnixNano(), os.Getpid())
}

// captureCrashes is CaptureCrashes, given the runtime's SetCrashOutput.
func captureCrashes(setOutput func(*os.File) error) (stop func(), err error) {
	dir := os.Getenv(EnvCrashDir)
	if dir == "" {
		return nil, fmt.Errorf("mapscope: %s is not set: set it to a directory the sidecar reads with --crash-dir (in Kubernetes, an emptyDir volume mounted in both containers)", EnvCrashDir)
	}
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("mapscope: %s=%q is not a directory: mount the volume shared with the sidecar there", EnvCrashDir, dir)
	}
	if crashSource.Load() == nil {
		app, instance, err := sourceFromEnv()
		if err != nil {
			return nil, fmt.Errorf("mapscope: crash capture: %w", err)
		}
		crashSource.CompareAndSwap(nil, &[2]string{app, instance})
	}
	base := filepath.Join(dir, crashFileBase())
	c := &crashCapture{
		jsonPath: base + ".json",
		logPath:  base + ".log",
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if !activeCapture.CompareAndSwap(nil, c) {
		return nil, errors.New("mapscope: CaptureCrashes is already on: call its stop function first")
	}
	fail := func(err error) (func(), error) {
		activeCapture.Store(nil)
		os.Remove(c.jsonPath)
		return nil, fmt.Errorf("mapscope: crash capture in %s: %w", dir, err)
	}
	// The .json first: the sidecar never sees a .log without its metadata.
	if err := c.refresh(); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fail(err)
	}
	err = setOutput(f)
	f.Close() // SetCrashOutput keeps a duplicate of the descriptor
	if err != nil {
		os.Remove(c.logPath)
		return fail(err)
	}
	// Without "system", a crash's goroutines show no runtime frames, so no
	// runtime.mapassign* frame and no map address. It cannot lower a
	// level set with GOTRACEBACK (e.g. crash).
	debug.SetTraceback("system")
	go c.refreshLoop()
	var once sync.Once
	return func() { once.Do(func() { c.close(setOutput) }) }, nil
}

// close stops the capture. A process that stops normally leaves no files.
func (c *crashCapture) close(setOutput func(*os.File) error) {
	close(c.stop)
	<-c.done
	setOutput(nil)
	activeCapture.CompareAndSwap(c, nil)
	if info, err := os.Stat(c.logPath); err == nil && info.Size() == 0 {
		os.Remove(c.logPath)
		os.Remove(c.jsonPath)
	}
}

func (c *crashCapture) refreshLoop() {
	defer close(c.done)
	ticker := time.NewTicker(crashRefreshInterval)
	defer ticker.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-ticker.C:
			if err := c.refresh(); err != nil {
				warnOnce(logger(), "crash metadata", "mapscope: cannot update the crash metadata", "err", err)
			}
		}
	}
}

// refreshCrashMetadata rewrites the running capture's .json if its content
// changed. The reporter calls it after each snapshot, when the observed
// maps' addresses have just been read.
func refreshCrashMetadata() {
	if c := activeCapture.Load(); c != nil {
		if err := c.refresh(); err != nil {
			warnOnce(logger(), "crash metadata", "mapscope: cannot update the crash metadata", "err", err)
		}
	}
}

// setCrashSource makes the .json name this app and instance.
func setCrashSource(app, instance string) {
	crashSource.Store(&[2]string{app, instance})
	refreshCrashMetadata()
}

// refresh writes the .json when its content differs from the last written.
func (c *crashCapture) refresh() error {
	data, err := json.Marshal(currentCrashMetadata())
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if bytes.Equal(data, c.last) {
		return nil
	}
	if err := writeFileAtomic(c.jsonPath, data); err != nil {
		return err
	}
	c.last = data
	return nil
}

func currentCrashMetadata() crashMetadata {
	meta := crashMetadata{
		Version:   1,
		StartedAt: processStart.UTC().Format(time.RFC3339Nano),
		PID:       os.Getpid(),
		SDK:       sdkString(),
		GoVersion: runtime.Version(),
		Maps:      []crashMap{},
	}
	if source := crashSource.Load(); source != nil {
		meta.App, meta.Instance = source[0], source[1]
	}
	for _, t := range std.tracked() {
		a, ok := t.(addressed)
		if !ok {
			continue
		}
		address := a.mapAddress()
		if address == 0 {
			continue
		}
		id := a.id()
		labels := id.labels
		if labels == nil {
			labels = map[string]string{}
		}
		meta.Maps = append(meta.Maps, crashMap{Name: id.name, Labels: labels, Address: fmt.Sprintf("0x%x", address)})
	}
	sort.Slice(meta.Maps, func(i, j int) bool {
		return identityKey(meta.Maps[i].Name, meta.Maps[i].Labels) < identityKey(meta.Maps[j].Name, meta.Maps[j].Labels)
	})
	return meta
}

// writeFileAtomic replaces path with data: readers see the old file or the
// new one, never a part. The temporary name does not end in .json, so the
// sidecar never picks it up. No fsync: the file must survive the process,
// not the node, and the page cache outlives a crashing process.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
