package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInvalidBudgetsAndPrices: negative and non-numeric budgets and
// prices, a bad currency and an unknown dimension are refused with the
// line and the field.
func TestInvalidBudgetsAndPrices(t *testing.T) {
	tests := map[string][]FieldError{
		"bad_budget.yaml": {{Line: 11, Field: "tenants.t.budget.cpu_ms_per_day", Message: "negative"},
			{Line: 14, Field: "prices.currency", Message: "ISO 4217"}, {Line: 15, Field: "prices.cpu_second"}},
		"budget_not_number.yaml": {{Line: 11, Field: "tenants.t.budget.tasks_per_day", Message: "cannot unmarshal"}},
		"price_not_number.yaml":  {{Line: 11, Field: "prices.task", Message: "cannot unmarshal"}},
		"unknown_dimension.yaml": {{Line: 11, Field: "tenants.t.budget.gpu_ms_per_day", Message: "not found"}},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(src)
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("Parse error = %v, want a *ValidationError", err)
			}
			if len(ve.Errors) != len(want) {
				t.Errorf("%d errors, want %d: %+v", len(ve.Errors), len(want), ve.Errors)
			}
			for _, w := range want {
				found := false
				for _, got := range ve.Errors {
					if got.Line == w.Line && got.Field == w.Field && strings.Contains(got.Message, w.Message) {
						found = true
					}
				}
				if !found {
					t.Errorf("no error like %+v in %+v", w, ve.Errors)
				}
			}
		})
	}
}

// TestPricesKeepDigests: a bundle without prices keeps its canonical
// form; one with prices round-trips them.
func TestPricesKeepDigests(t *testing.T) {
	b := Default()
	if strings.Contains(string(b.Canonical()), "prices") {
		t.Fatal("a bundle without prices names them in its canonical form")
	}
	src := string(DefaultYAML()) + "\nprices:\n  currency: USD\n  cpu_second: 0.00002\n  egress_gb: 0.09\n  tool_call: 0.000001\n  task: 0.0000002\n"
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromCanonical(p.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	if back.Prices == nil || *back.Prices != (Prices{Currency: "USD", CPUSecond: 0.00002, EgressGB: 0.09, ToolCall: 0.000001, Task: 0.0000002}) || back.Digest() == b.Digest() {
		t.Fatalf("round trip: %+v", back.Prices)
	}
}
