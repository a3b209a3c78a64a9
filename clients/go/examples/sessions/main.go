// Command sessions is a small HTTP service that shows what mapscope
// reports about a Go program's maps:
//
//   - "sessions", a mapscope.Map: session id -> user, written by /login
//     and /logout, read by /session;
//   - "visits", a mapscope.Map that /bug/race writes from two goroutines
//     without a lock: mapscope counts concurrent_write, nothing crashes;
//   - "routes", a plain map guarded by the application's own mutex and
//     observed with mapscope.Observe. It is filled at start-up with 6657
//     entries, one past 6.5 * 2^10: on a classic-layout Go (up to 1.23, or
//     GOEXPERIMENT=noswissmap on 1.24-1.25) the last insert starts a growth
//     that then stalls, since nothing writes it again, and the sidecar
//     shows an evacuation in progress (evacuation_stalled);
//   - /bug/nil writes a nil map in a handler: mapscope.Middleware records
//     the nil_map_write with its code site, and the request still fails as
//     it would without mapscope.
//
// It reports to the sidecar from the environment (mapscope.StartFromEnv:
// MAPSCOPE_ENDPOINT and the others), captures crashes when
// MAPSCOPE_CRASH_DIR is set, listens on -listen (default
// $MAPSCOPE_EXAMPLE_LISTEN, else 127.0.0.1:8080), prints "listening on
// <addr>" once it does, and stops cleanly on SIGTERM or SIGINT.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	mapscope "github.com/mapscope/mapscope/clients/go"
)

// routeCount is one past the classic layout's threshold for 2^10 buckets
// (6.5 * 1024 = 6656): the insert that makes it starts a growth to 2^11.
const routeCount = 6657

func main() {
	listen := flag.String("listen", envOr("MAPSCOPE_EXAMPLE_LISTEN", "127.0.0.1:8080"), "address to listen on")
	flag.Parse()
	if err := run(*listen); err != nil {
		log.Fatal(err)
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func run(listen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if os.Getenv(mapscope.EnvCrashDir) != "" {
		stopCapture, err := mapscope.CaptureCrashes()
		if err != nil {
			return err
		}
		defer stopCapture()
	}
	s := newService()
	reporter, err := mapscope.StartFromEnv()
	if err != nil {
		return err
	}
	defer reporter.Stop() // runs before stopCapture: the final report first

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           mapscope.Middleware(s.mux()),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("listening on %s\n", ln.Addr())
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type service struct {
	sessions *mapscope.Map[string, string] // session id -> user
	visits   *mapscope.Map[string, int]    // written without a lock by /bug/race

	routesMu sync.Mutex
	routes   map[string]string // path -> handler name, guarded by routesMu
}

func newService() *service {
	s := &service{
		sessions: mapscope.NewMap[string, string]("sessions"),
		visits:   mapscope.NewMap[string, int]("visits"),
		routes:   make(map[string]string), // no size hint: it grows step by step
	}
	mapscope.Observe("routes", &s.routes, &s.routesMu)
	s.routesMu.Lock()
	for i := 0; i < routeCount; i++ {
		s.routes["/api/v1/item/"+strconv.Itoa(i)] = "item"
	}
	s.routesMu.Unlock()
	return s
}

func (s *service) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/login", s.login)
	mux.HandleFunc("/session", s.session)
	mux.HandleFunc("/logout", s.logout)
	mux.HandleFunc("/route", s.route)
	mux.HandleFunc("/bug/nil", bugNil)
	mux.HandleFunc("/bug/race", s.bugRace)
	return mux
}

func (s *service) login(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" {
		http.Error(w, "missing ?user=", http.StatusBadRequest)
		return
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	session := hex.EncodeToString(id[:])
	s.sessions.Set(session, user)
	fmt.Fprintln(w, session)
}

func (s *service) session(w http.ResponseWriter, r *http.Request) {
	user, ok := s.sessions.Get(r.URL.Query().Get("id"))
	if !ok {
		http.Error(w, "no such session", http.StatusNotFound)
		return
	}
	fmt.Fprintln(w, user)
}

func (s *service) logout(w http.ResponseWriter, r *http.Request) {
	s.sessions.Delete(r.URL.Query().Get("id"))
	fmt.Fprintln(w, "bye")
}

// route reads the observed plain map under its lock, as every access must.
func (s *service) route(w http.ResponseWriter, r *http.Request) {
	s.routesMu.Lock()
	handler, ok := s.routes[r.URL.Query().Get("path")]
	s.routesMu.Unlock()
	if !ok {
		http.Error(w, "no such route", http.StatusNotFound)
		return
	}
	fmt.Fprintln(w, handler)
}

// bugNil is the nil-map bug: prefs is never made. The write panics, as it
// does without mapscope; Middleware records it (map "_unknown", this line)
// and panics again, and net/http drops the connection.
func bugNil(w http.ResponseWriter, r *http.Request) {
	var prefs map[string]string
	prefs[r.URL.Query().Get("key")] = "dark"
	fmt.Fprintln(w, "saved")
}

// bugRace writes one map from two goroutines without a lock. A plain map
// would kill the process ("fatal error: concurrent map writes"); a
// mapscope.Map counts concurrent_write and survives.
func (s *service) bugRace(w http.ResponseWriter, r *http.Request) {
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100_000; i++ {
				s.visits.Set("/page/"+strconv.Itoa(i%64), i)
			}
		}()
	}
	wg.Wait()
	fmt.Fprintln(w, "two goroutines wrote \"visits\" at once; mapscope counted it")
}
