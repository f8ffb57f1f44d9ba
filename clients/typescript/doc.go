// Package typescript holds the Go test that runs the TypeScript client
// (clients/typescript, an npm package) against a real node with Node's
// built-in test runner; the client itself is TypeScript, not Go.
package typescript
