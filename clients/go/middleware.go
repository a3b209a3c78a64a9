package mapscope

import "net/http"

// Middleware records the nil-map writes that make next's handlers panic,
// like RecoverNilMap, under the map name UnknownMap ("_unknown": a plain
// m[k] = v does not say which map it wrote); the event's code site is the
// line that wrote. It then panics again with the same value, so net/http
// does what it always does (logs the panic, drops the connection).
//
// With a trace hook set (SetTraceHook), it also binds the request's context
// to the handler's goroutine for the duration of the request, so that
// misuse events carry the request's trace; put it inside the tracing
// middleware, which starts the span:
//
//	handler := otelhttp.NewHandler(mapscope.Middleware(mux), "server")
//
// Without a hook it binds nothing and costs about 15 ns per request; with
// one, binding costs about 10 us per request (reading the goroutine id from
// runtime.Stack dominates; README.md, "Trace hook").
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if traceHook.Load() != nil {
			// Deferred before RecoverNilMap, so it runs after it: the
			// binding is still there while the misuse is recorded.
			defer Bind(r.Context())()
		}
		defer RecoverNilMap(UnknownMap)
		next.ServeHTTP(w, r)
	})
}
