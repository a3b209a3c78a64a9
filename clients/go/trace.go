package mapscope

// currentTrace returns the trace and span ids (32 and 16 hex digits) bound
// to the calling goroutine, or empty strings. Only misuse paths call it.
func currentTrace() (traceID, spanID string) {
	return "", ""
}
