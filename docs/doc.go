// Package docs holds leash's documentation; its tests keep the pages true
// to the code they describe.
package docs
