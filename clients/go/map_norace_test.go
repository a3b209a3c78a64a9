//go:build !race

package mapscope

// raceEnabled: see map_race_test.go.
const raceEnabled = false
