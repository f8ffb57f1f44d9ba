// Package difftest is the differential suite of the JS engine: worker
// scripts (cases/*.js) run both in leash and in Cloudflare's workerd, and
// their responses (status, headers, body) must match. The responses
// workerd gave are kept in golden/*.json, so the suite runs without
// workerd; with -workerd it runs workerd live, and -update records the
// golden files again. docs/javascript.md lists the known differences.
package difftest
