package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestKVFields: the session KV limits of a profile parse, get their
// defaults, keep the digest of bundles that do not set them, and are
// refused out of range with the field named.
func TestKVFields(t *testing.T) {
	def := Default()
	if strings.Contains(string(def.Canonical()), "ops_per_task") || strings.Contains(string(def.Canonical()), "binding") {
		t.Fatal("a bundle without the new kv fields mentions them in its canonical form")
	}
	kv := def.Profiles["api-caller"].KV.WithDefaults()
	if !kv.Enabled() || kv.QuotaBytes != 1<<20 || kv.TTL != Duration(time.Hour) || kv.MaxKeyBytes != KVKeyBytesCap ||
		kv.MaxValueBytes != DefaultKVMaxValueBytes || kv.OpsPerTask != DefaultKVOpsPerTask || kv.Binding != DefaultKVBinding {
		t.Fatalf("api-caller kv with defaults: %+v", kv)
	}
	if def.Profiles["docs-reader"].KV.Enabled() {
		t.Fatal("a profile without a kv quota grants session KV")
	}
	set := func(kv string) string {
		return strings.Replace(string(DefaultYAML()), "      quota_bytes: 1048576\n      ttl: 1h\n", kv, 1)
	}
	good := set("      quota_bytes: 4096\n      ttl: 10m\n      max_key_bytes: 64\n      max_value_bytes: 1024\n      ops_per_task: 20\n      binding: STATE\n")
	b, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	got := b.Profiles["api-caller"].KV.WithDefaults()
	if got.QuotaBytes != 4096 || got.TTL != Duration(10*time.Minute) || got.MaxKeyBytes != 64 || got.MaxValueBytes != 1024 || got.OpsPerTask != 20 || got.Binding != "STATE" {
		t.Fatalf("parsed kv %+v", got)
	}
	for name, tc := range map[string]struct{ kv, field string }{
		"quota":      {"      quota_bytes: -1\n", "kv.quota_bytes"},
		"ttl long":   {"      quota_bytes: 10\n      ttl: 721h\n", "kv.ttl"},
		"ttl short":  {"      quota_bytes: 10\n      ttl: 500ms\n", "kv.ttl"},
		"key":        {"      quota_bytes: 10\n      max_key_bytes: 513\n", "kv.max_key_bytes"},
		"value":      {"      quota_bytes: 10\n      max_value_bytes: 1048577\n", "kv.max_value_bytes"},
		"ops":        {"      quota_bytes: 10\n      ops_per_task: 100001\n", "kv.ops_per_task"},
		"binding":    {"      quota_bytes: 10\n      binding: not-an-identifier\n", "kv.binding"},
		"binding ws": {"      quota_bytes: 10\n      binding: \"A B\"\n", "kv.binding"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(set(tc.kv)))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err %v", err)
			}
			for _, fe := range ve.Errors {
				if strings.HasSuffix(fe.Field, tc.field) {
					return
				}
			}
			t.Fatalf("no error on %s: %v", tc.field, err)
		})
	}
}

// TestTaskRetention: a tenant's task retention defaults to 7 days, is
// bounded, and leaves the digest of bundles that do not set it.
func TestTaskRetention(t *testing.T) {
	def := Default()
	if strings.Contains(string(def.Canonical()), "retention") {
		t.Fatal("a bundle without retention mentions it in its canonical form")
	}
	if got := def.Tenants["demo"].TaskRetention(); got != 7*24*time.Hour {
		t.Fatalf("default retention %v", got)
	}
	set := func(r string) string {
		return strings.Replace(string(DefaultYAML()), "  demo:\n", "  demo:\n    retention: {tasks: "+r+"}\n", 1)
	}
	b, err := Parse([]byte(set("48h")))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Tenants["demo"].TaskRetention(); got != 48*time.Hour {
		t.Fatalf("retention %v", got)
	}
	for _, bad := range []string{"30m", "8761h"} {
		if _, err := Parse([]byte(set(bad))); err == nil || !strings.Contains(err.Error(), "retention.tasks") {
			t.Errorf("retention %s: %v", bad, err)
		}
	}
}
