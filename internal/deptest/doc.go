// Package deptest holds the tests that keep the house's layering: which
// package may import which, and that every package says what it is for.
package deptest
