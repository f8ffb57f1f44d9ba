package sandbox

// Placeholder until the JS engine lands (issue 3 replaces this file):
// newJSEngine always reports the engine as unavailable.

import (
	"context"
	"fmt"
	"log/slog"
)

type jsEngine struct{}

func newJSEngine(ctx context.Context, path string, logger *slog.Logger) (*jsEngine, error) {
	return nil, fmt.Errorf("%w: the JS engine is not built; run `make engine`", ErrJSEngineUnavailable)
}

// prepare checks a Workers module and caches what it can (bytecode) on m.
func (e *jsEngine) prepare(ctx context.Context, m *Module, source []byte) error {
	return ErrJSEngineUnavailable
}

func (e *jsEngine) run(ctx context.Context, t *Task) *Result {
	return &Result{Outcome: OutcomeError, Error: ErrJSEngineUnavailable.Error()}
}

func (e *jsEngine) Close(ctx context.Context) error { return nil }
