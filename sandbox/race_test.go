//go:build race

package sandbox

// raceEnabled: the race detector keeps shadow memory for what the guests
// touched, so RSS bounds are looser under it.
const raceEnabled = true
