// Package e2e drives the real leash binary: it builds it, starts it with a
// temp data dir on free ports, and walks the README — leases, tasks, every
// termination reason, every lease refusal, bad input, restart and
// shutdown.
package e2e
