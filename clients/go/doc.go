// Package mapscope reports a Go program's maps to the mapscope sidecar
// (protocol v1, docs/protocol.md in the mapscope repository), and stops or
// records the map incidents Go programs die of:
//
//   - [Map] is a map whose zero value is usable (no nil map) and that
//     survives concurrent use: a second writer, or a reader racing a
//     writer, is counted as concurrent_write instead of killing the process;
//   - [Observe] reports an existing plain map, read under the application's
//     own lock;
//   - [Put], [RecoverNilMap] and [Middleware] catch writes to nil maps;
//   - [CaptureCrashes] leaves the crashes nothing could stop (a concurrent
//     write to a raw map) in a file the sidecar turns into a metric, an
//     alert and a trace;
//   - [Start] runs the reporter that pushes it all to the sidecar.
//
// The package uses the standard library only.
package mapscope
