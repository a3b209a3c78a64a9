package mapscope

import "testing"

func TestPackagePrefix(t *testing.T) {
	if packagePrefix != "github.com/mapscope/mapscope/clients/go." {
		t.Fatalf("packagePrefix = %q", packagePrefix)
	}
}

// The sites of Put (nilmap_test.go) and Middleware (middleware_test.go)
// check that callerSite and panicSite skip this package's frames.

func TestSiteString(t *testing.T) {
	s := Site{Function: "main.handler", File: "/src/app/handlers.go", Line: 88}
	if got := s.String(); got != "handlers.go:88 (main.handler)" {
		t.Errorf("%q", got)
	}
	if (Site{}).String() != "" || (Site{}).attributes() != nil {
		t.Error("the unknown site is not empty")
	}
}
