// Command rawcrash dies the way Go services die of map races, with crash
// capture on: two goroutines write a plain map without its lock until the
// runtime stops the process with "fatal error: concurrent map writes"
// (exit status 2). Nothing can stop that; mapscope.CaptureCrashes leaves the
// crash in $MAPSCOPE_CRASH_DIR, where the sidecar (--crash-dir) finds it,
// names the map from the address in the crashing runtime.mapassign frame
// and counts a concurrent_write for it.
//
// Before crashing it observes the map as "counters" (so its address is in
// the crash metadata) and sends one report (so the sidecar knows the
// source). The writing function is main.hammer; its writing line carries
// the comment "mapscope:crash-site".
//
//	MAPSCOPE_CRASH_DIR=/tmp/crashes go run ./examples/rawcrash
package main

import (
	"context"
	"log"
	"runtime"
	"strconv"
	"sync"
	"time"

	mapscope "github.com/mapscope/mapscope/clients/go"
)

// keys are made once, so that the writers spend their time in the map.
var keys = func() []string {
	k := make([]string, 256)
	for i := range k {
		k[i] = "key-" + strconv.Itoa(i)
	}
	return k
}()

func main() {
	stopCapture, err := mapscope.CaptureCrashes()
	if err != nil {
		log.Fatal(err)
	}
	defer stopCapture()

	var mu sync.Mutex
	counters := make(map[string]int)
	mapscope.Observe("counters", &counters, &mu)
	mu.Lock()
	counters["started"] = 1
	mu.Unlock()

	reporter, err := mapscope.StartFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := reporter.Flush(ctx); err != nil {
		log.Printf("rawcrash: the first report failed (crashing anyway): %v", err)
	}
	cancel()

	// Two Ps, so that the writers really run at once: the runtime does not
	// preempt a goroutine inside a map write, so on one P they never meet.
	runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
	go hammer(counters)
	hammer(counters)
}

// hammer writes m without the lock that guards it: the bug.
//
//go:noinline
func hammer(m map[string]int) {
	for i := 0; ; i++ {
		m[keys[i%len(keys)]] = i // mapscope:crash-site
	}
}
