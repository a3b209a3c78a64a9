package mapscope

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func clearEnv(t *testing.T) {
	for _, v := range []string{EnvEndpoint, EnvApp, EnvInstance, EnvToken, EnvInterval, "POD_NAME"} {
		t.Setenv(v, "")
	}
}

func TestConfigFromEnvDefaults(t *testing.T) {
	clearEnv(t)
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	exe, _ := os.Executable()
	if cfg.Endpoint != DefaultEndpoint || cfg.Interval != 10*time.Second || cfg.MaxEventsPerReport != 1000 ||
		cfg.App != filepath.Base(exe) || cfg.Instance != host+"-"+strconv.Itoa(os.Getpid()) || cfg.Token != "" ||
		cfg.HTTPClient == nil || cfg.Logger == nil {
		t.Errorf("defaults %+v", cfg)
	}
	t.Setenv("POD_NAME", "checkout-7d9f-x2x")
	if cfg, _ := ConfigFromEnv(); cfg.Instance != "checkout-7d9f-x2x" {
		t.Errorf("instance %q, want $POD_NAME", cfg.Instance)
	}
}

func TestConfigFromEnvReadsEverything(t *testing.T) {
	clearEnv(t)
	t.Setenv(EnvEndpoint, "http://127.0.0.1:1/v1/report")
	t.Setenv(EnvApp, "checkout")
	t.Setenv(EnvInstance, "pod-1")
	t.Setenv(EnvToken, "s3cret")
	t.Setenv(EnvInterval, "1m30s")
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Endpoint != "http://127.0.0.1:1/v1/report" || cfg.App != "checkout" || cfg.Instance != "pod-1" ||
		cfg.Token != "s3cret" || cfg.Interval != 90*time.Second {
		t.Errorf("%+v", cfg)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	for _, c := range []struct{ env, value, want string }{
		{EnvInterval, "10", "MAPSCOPE_REPORT_INTERVAL=\"10\" is not a positive Go duration: use e.g. 10s"},
		{EnvInterval, "-5s", "MAPSCOPE_REPORT_INTERVAL"},
		{EnvEndpoint, "127.0.0.1:9848", "MAPSCOPE_ENDPOINT=\"127.0.0.1:9848\" is not an http:// URL"},
		{EnvEndpoint, "ftp://x/v1/report", "MAPSCOPE_ENDPOINT"},
		{EnvApp, "team/checkout", "MAPSCOPE_APP=\"team/checkout\" contains '/'"},
		{EnvApp, strings.Repeat("a", 129), "MAPSCOPE_APP: app"},
		{EnvInstance, "pod\x01", "MAPSCOPE_INSTANCE: instance \"pod\\x01\": remove the control characters"},
		{EnvToken, "abc\ndef", "MAPSCOPE_INGEST_TOKEN contains a line break"},
	} {
		clearEnv(t)
		t.Setenv(c.env, c.value)
		_, err := ConfigFromEnv()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s=%q: %v, want it to say %q", c.env, c.value, err, c.want)
		}
	}
}

func TestStartValidatesConfig(t *testing.T) {
	_, err := Start(Config{App: "a", Instance: "b", Endpoint: "nope"})
	if err == nil || !strings.Contains(err.Error(), "Config.Endpoint") {
		t.Errorf("%v", err)
	}
	_, err = Start(Config{App: "a", Instance: "b", MaxEventsPerReport: -1})
	if err == nil || !strings.Contains(err.Error(), "MaxEventsPerReport") {
		t.Errorf("%v", err)
	}
}
