package mapscope

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config, shared with the Rust reporter and the sidecar.
const (
	// DefaultEndpoint is the sidecar's ingest listener (--ingest-listen).
	DefaultEndpoint = "http://127.0.0.1:9848/v1/report"
	// DefaultInterval is the time between reports.
	DefaultInterval = 10 * time.Second
	// DefaultMaxEventsPerReport is the sidecar's --max-events-per-report.
	DefaultMaxEventsPerReport = 1000
	// defaultHTTPTimeout bounds one report, connection to answer.
	defaultHTTPTimeout = 5 * time.Second
)

// Config configures the reporter. The zero value of a field means its
// default; ConfigFromEnv fills it from the environment.
type Config struct {
	// Endpoint is the sidecar's report URL. Default DefaultEndpoint.
	Endpoint string
	// App is the application's name, the sidecar's source label: 1 to
	// 128 bytes, no control characters, no '/'. Default: the executable's
	// name.
	App string
	// Instance names this process among the app's: 1 to 128 bytes, no
	// control characters. Default: $POD_NAME (the Kubernetes downward
	// API), else "<hostname>-<pid>".
	Instance string
	// Token is the sidecar's bearer token (--ingest-token), if it has one.
	Token string
	// Interval is the time between reports. Default DefaultInterval.
	Interval time.Duration
	// MaxEventsPerReport caps the events in one report; the rest wait for
	// the next. Default DefaultMaxEventsPerReport; keep it at or below the
	// sidecar's --max-events-per-report.
	MaxEventsPerReport int
	// HTTPClient sends the reports. Default: a client with a 5 s timeout.
	HTTPClient *http.Client
	// Logger receives the reporter's and the nil-map policy's messages.
	// Default slog.Default().
	Logger *slog.Logger
}

// The environment variables ConfigFromEnv reads.
const (
	EnvEndpoint = "MAPSCOPE_ENDPOINT"
	EnvApp      = "MAPSCOPE_APP"
	EnvInstance = "MAPSCOPE_INSTANCE"
	EnvToken    = "MAPSCOPE_INGEST_TOKEN"
	EnvInterval = "MAPSCOPE_REPORT_INTERVAL"
	EnvCrashDir = "MAPSCOPE_CRASH_DIR"
)

// ConfigFromEnv returns the configuration given by the environment, with
// defaults for what is unset:
//
//	MAPSCOPE_ENDPOINT         default http://127.0.0.1:9848/v1/report
//	MAPSCOPE_APP              default: the executable's name
//	MAPSCOPE_INSTANCE         default: $POD_NAME, else <hostname>-<pid>
//	MAPSCOPE_INGEST_TOKEN     default: none
//	MAPSCOPE_REPORT_INTERVAL  a Go duration ("10s", "1m"), default 10s
//
// An invalid value is an error that names the variable, the value and
// what to do.
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		Endpoint: os.Getenv(EnvEndpoint),
		App:      os.Getenv(EnvApp),
		Instance: os.Getenv(EnvInstance),
		Token:    os.Getenv(EnvToken),
	}
	if v := os.Getenv(EnvInterval); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return Config{}, fmt.Errorf("%s=%q is not a positive Go duration: use e.g. 10s or 1m", EnvInterval, v)
		}
		cfg.Interval = d
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(true); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// withDefaults fills the unset fields.
func (c Config) withDefaults() Config {
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	if c.App == "" {
		c.App = defaultApp()
	}
	if c.Instance == "" {
		c.Instance = defaultInstance()
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.MaxEventsPerReport == 0 {
		c.MaxEventsPerReport = DefaultMaxEventsPerReport
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate checks a Config with defaults applied. fromEnv makes the
// messages name the environment variables rather than the fields.
func (c Config) validate(fromEnv bool) error {
	name := func(field, env string) string {
		if fromEnv {
			return env
		}
		return "Config." + field
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s=%q is not an http:// URL: use the sidecar's report URL, e.g. %s",
			name("Endpoint", EnvEndpoint), c.Endpoint, DefaultEndpoint)
	}
	if err := c.validateSource(fromEnv); err != nil {
		return err
	}
	if strings.ContainsAny(c.Token, "\r\n") {
		return fmt.Errorf("%s contains a line break: set it to the sidecar's token alone", name("Token", EnvToken))
	}
	if c.Interval <= 0 || c.Interval > 1e9*time.Second {
		return fmt.Errorf("%s=%v: use a positive duration such as 10s", name("Interval", EnvInterval), c.Interval)
	}
	if c.MaxEventsPerReport < 0 {
		return errors.New("Config.MaxEventsPerReport is negative: use 0 for the default or a positive cap")
	}
	return nil
}

// validateSource checks App and Instance, the sidecar's source.
func (c Config) validateSource(fromEnv bool) error {
	name := func(field, env string) string {
		if fromEnv {
			return env
		}
		return "Config." + field
	}
	if err := checkText("app", c.App, maxSourceBytes); err != nil {
		return fmt.Errorf("%s: %w", name("App", EnvApp), err)
	}
	if strings.Contains(c.App, "/") {
		return fmt.Errorf("%s=%q contains '/': the sidecar names a source app/instance in its logs and events, so it refuses '/' in app names; choose a name without '/'",
			name("App", EnvApp), c.App)
	}
	if err := checkText("instance", c.Instance, maxSourceBytes); err != nil {
		return fmt.Errorf("%s: %w", name("Instance", EnvInstance), err)
	}
	return nil
}

// sourceFromEnv is the app and instance ConfigFromEnv would give, checked
// alone: crash capture needs nothing else, and must work when another
// variable is wrong.
func sourceFromEnv() (app, instance string, err error) {
	c := Config{App: os.Getenv(EnvApp), Instance: os.Getenv(EnvInstance)}
	if c.App == "" {
		c.App = defaultApp()
	}
	if c.Instance == "" {
		c.Instance = defaultInstance()
	}
	return c.App, c.Instance, c.validateSource(true)
}

// defaultApp is the executable's name without directory or extension.
func defaultApp() string {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	app := strings.TrimSuffix(filepath.Base(exe), ".exe")
	if checkText("app", app, maxSourceBytes) != nil || strings.Contains(app, "/") {
		return "go-app"
	}
	return app
}

// defaultInstance is $POD_NAME, stable across a container's restarts (so
// the sidecar sees a restart of the same source and can pair a crash file
// with its successor), else "<hostname>-<pid>", distinct for two processes
// on one machine.
func defaultInstance() string {
	if pod := os.Getenv("POD_NAME"); checkText("instance", pod, maxSourceBytes) == nil {
		return pod
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	pid := "-" + strconv.Itoa(os.Getpid())
	if len(host)+len(pid) > maxSourceBytes {
		host = host[:maxSourceBytes-len(pid)]
	}
	return host + pid
}

// The package logger: the running reporter's Config.Logger, else
// slog.Default().
var packageLogger atomic.Pointer[slog.Logger]

func logger() *slog.Logger {
	if l := packageLogger.Load(); l != nil {
		return l
	}
	return slog.Default()
}

// warned holds the keys warnOnce has logged.
var warned sync.Map

// warnOnce logs msg to l the first time key is seen: for problems that
// repeat on every report or every misuse, where one line says it all.
func warnOnce(l *slog.Logger, key, msg string, args ...any) {
	if _, seen := warned.LoadOrStore(key, true); !seen {
		l.Warn(msg, args...)
	}
}
