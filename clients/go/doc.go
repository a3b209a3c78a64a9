// Package mapscope reports a Go program's maps to the mapscope sidecar
// (protocol v1, docs/protocol.md in the mapscope repository), and stops or
// records the map incidents Go programs die of:
//
//   - [Map] is a map whose zero value is usable (no nil map) and that
//     survives concurrent use: a second writer, or a reader racing a
//     writer, is counted as concurrent_write instead of killing the process;
//   - [Observe] reports an existing plain map, read under the application's
//     own lock;
//   - [Put], [RecoverNilMap] and [Middleware] catch writes to nil maps: Put
//     records them and panics, heals or drops the write (SetNilMapPolicy,
//     with a heal budget per minute); RecoverNilMap and Middleware record
//     the ones made by plain assignments, with the line that wrote, and let
//     the panic go on;
//   - [CaptureCrashes] leaves the crashes nothing could stop (a concurrent
//     write to a raw map) in a file the sidecar turns into a metric, an
//     alert and a trace;
//   - [Start] and [StartFromEnv] run the reporter that pushes it all to the
//     sidecar; [SetTraceHook] and [Bind] attach misuse events to the
//     application's OpenTelemetry spans; [Stats] says what was dropped.
//
// The code site of a misuse is the application's line, never this
// package's; sites and traces are looked up only when a misuse is
// recorded, never on a map operation's normal path.
//
// The package uses the standard library only. README.md has the
// configuration, the Go versions and map layouts read, and what cannot be
// done.
package mapscope
