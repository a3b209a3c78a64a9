package mapscope_test

import (
	"fmt"
	"sync"

	mapscope "github.com/mapscope/mapscope/clients/go"
)

// Observe reports a plain map under the lock that guards it.
func ExampleObserve() {
	var mu sync.Mutex
	routes := make(map[string]string)
	observed := mapscope.Observe("routes_example", &routes, &mu, mapscope.Labels{"service": "api"})
	defer observed.Stop()

	mu.Lock()
	routes["/login"] = "login"
	mu.Unlock()
	fmt.Println("observing")
	// Output: observing
}

// A map behind a sync.RWMutex is read under its read lock: pass
// mu.RLocker(), and the reporter's reads share the lock with the
// application's readers.
func ExampleObserve_rwMutex() {
	var mu sync.RWMutex
	users := make(map[int]string, 1000)
	observed := mapscope.Observe("users_example", &users, mu.RLocker(), mapscope.Capacity(1000))
	defer observed.Stop()

	mu.Lock()
	users[1] = "ada"
	mu.Unlock()
	fmt.Println(len(users))
	// Output: 1
}
