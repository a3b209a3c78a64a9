//go:build race

package mapscope

// raceEnabled: the race detector slows map operations tenfold; stress
// tests do less.
const raceEnabled = true
