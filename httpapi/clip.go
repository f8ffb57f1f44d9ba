package httpapi

// Clip cuts s to n bytes for an error message, marking the cut, so that a
// hostile path or parameter is never echoed whole.
func Clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
