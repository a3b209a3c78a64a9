package mapscope_test

import (
	"fmt"
	"sort"

	mapscope "github.com/mapscope/mapscope/clients/go"
)

// A Map is created by NewMap, reported under its name, and used like a
// map guarded by a lock.
func ExampleNewMap() {
	sessions := mapscope.NewMap[string, int]("sessions_example",
		mapscope.Labels{"tenant": "acme"}, mapscope.Capacity(1024))
	defer sessions.Unregister()

	sessions.Set("alice", 1)
	sessions.Set("alice", 2) // an update
	sessions.Set("bob", 3)
	sessions.Delete("bob")

	v, ok := sessions.Get("alice")
	fmt.Println(v, ok, sessions.Len())
	// Output: 2 true 1
}

// The zero value is an empty map ready to use: there is no nil Map to
// write to. It is reported once registered.
func ExampleMap() {
	var cache mapscope.Map[int, string]
	cache.Set(1, "one")
	cache.Register("cache_example")
	defer cache.Unregister()

	v, _ := cache.Get(1)
	fmt.Println(v)
	// Output: one
}

// Range's callback may write the map it iterates (an insert of a new key
// is counted as iterate_while_mutating).
func ExampleMap_Range() {
	var stock mapscope.Map[string, int]
	stock.Set("apples", 0)
	stock.Set("pears", 4)
	stock.Range(func(fruit string, n int) bool {
		if n == 0 {
			stock.Delete(fruit)
		}
		return true
	})
	var left []string
	stock.Range(func(fruit string, _ int) bool {
		left = append(left, fruit)
		return true
	})
	sort.Strings(left)
	fmt.Println(left)
	// Output: [pears]
}

// Compact gives back the buckets a Go map keeps after deletes.
func ExampleMap_Compact() {
	var ids mapscope.Map[int, bool]
	for i := 0; i < 100_000; i++ {
		ids.Set(i, true)
	}
	for i := 10; i < 100_000; i++ {
		ids.Delete(i)
	}
	ids.Compact() // reported as a shrink growth, with its duration
	fmt.Println(ids.Len())
	// Output: 10
}
