// Package conformance runs the standard conformance suites in leash's
// sandbox, and the web-platform-tests also in a live workerd side by
// side: tc39/test262's built-ins and the web-platform-tests' .any.js
// files of the areas a Workers script uses (docs/javascript.md has the
// support table, docs/BENCHMARKS.md the numbers and the commands).
//
// It is not part of `make test`: the tests carry the build tag
// conformance and read the suites from directories given by flags
// (the suites are never copied into this repository):
//
//	make conformance TEST262=/tmp/test262 WPT=/tmp/wpt WORKERD=…/workerd
package conformance
