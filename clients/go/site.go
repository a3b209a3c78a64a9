package mapscope

import "runtime"

// callerSite returns the code site skip frames above its caller (skip 0 is
// the function calling callerSite). Only misuse paths call it.
func callerSite(skip int) Site {
	pc, file, line, ok := runtime.Caller(skip + 1)
	if !ok {
		return Site{}
	}
	fn := ""
	if f := runtime.FuncForPC(pc); f != nil {
		fn = f.Name()
	}
	return Site{Function: fn, File: file, Line: line}
}
