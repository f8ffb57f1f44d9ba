// kv uses the session KV through the leash host ABI (version 2). The
// task variables say what to do: KV_OP (get, put, delete, list, incr),
// KV_KEY, KV_TTL (seconds, for put); a put stores the request body, incr
// adds 1 to the decimal counter under KV_KEY and answers the new value.
// A refused call answers 409 with the error code from last_error. For
// the benchmarks: none (no KV call), and bench-get / bench-put, which
// time KV_N calls on the guest's monotonic clock and answer one latency
// in nanoseconds a line.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

#define IMPORT(name) __attribute__((import_module("leash"), import_name(#name)))
IMPORT(kv_get) int leash_kv_get(const char *k, int kn, char *buf, int cap, uint32_t *len);
IMPORT(kv_put) int leash_kv_put(const char *k, int kn, const char *v, int vn, const char *o, int on);
IMPORT(kv_delete) int leash_kv_delete(const char *k, int kn);
IMPORT(kv_list) int leash_kv_list(const char *o, int on, char *buf, int cap, uint32_t *len);
IMPORT(last_error) int leash_last_error(char *buf, int cap);

static char buf[1 << 20];
static char body[1 << 20];

static int refused(int rc) {
	char e[2048];
	int m = leash_last_error(e, sizeof e - 1);
	e[m > 0 ? m : 0] = 0;
	char *c = strstr(e, "\"code\":\"");
	fputs("Status: 409 Conflict\nContent-Type: text/plain\n\n", stdout);
	if (!c) {
		printf("rc %d", rc);
		return 0;
	}
	c += 8;
	char *end = strchr(c, '"');
	if (end) *end = 0;
	fputs(c, stdout);
	return 0;
}

int main(void) {
	const char *op = getenv("KV_OP");
	const char *key = getenv("KV_KEY");
	const char *ttl = getenv("KV_TTL");
	if (!op) op = "";
	if (!key) key = "";
	int kn = (int)strlen(key);
	uint32_t n = 0;
	int rc;
	if (!strcmp(op, "get")) {
		/* A 16-byte buffer first: a longer value answers -6 with its
		 * length, and the second call has room. */
		rc = leash_kv_get(key, kn, buf, 16, &n);
		if (rc == -6 && n <= sizeof buf) rc = leash_kv_get(key, kn, buf, (int)n, &n);
		if (rc == 1) {
			fputs("Status: 404 Not Found\n\n", stdout);
			return 0;
		}
		if (rc != 0) return refused(rc);
		fputs("Content-Type: text/plain\n\n", stdout);
		fwrite(buf, 1, n, stdout);
		return 0;
	}
	if (!strcmp(op, "incr")) {
		rc = leash_kv_get(key, kn, buf, sizeof buf - 1, &n);
		if (rc < 0) return refused(rc);
		long v = 0;
		if (rc == 0) {
			buf[n] = 0;
			v = atol(buf);
		}
		char out[32];
		int on = snprintf(out, sizeof out, "%ld", v + 1);
		rc = leash_kv_put(key, kn, out, on, "", 0);
		if (rc != 0) return refused(rc);
		fputs("Content-Type: text/plain\n\n", stdout);
		fputs(out, stdout);
		return 0;
	}
	if (!strcmp(op, "put")) {
		size_t bn = fread(body, 1, sizeof body, stdin);
		char opts[128] = "";
		if (ttl) snprintf(opts, sizeof opts, "{\"expiration_ttl\":%s}", ttl);
		rc = leash_kv_put(key, kn, body, (int)bn, opts, (int)strlen(opts));
		if (rc != 0) return refused(rc);
		fputs("Status: 204 No Content\n\n", stdout);
		return 0;
	}
	if (!strcmp(op, "delete")) {
		rc = leash_kv_delete(key, kn);
		if (rc != 0) return refused(rc);
		fputs("Status: 204 No Content\n\n", stdout);
		return 0;
	}
	if (!strcmp(op, "list")) {
		char opts[1024];
		snprintf(opts, sizeof opts, "{\"prefix\":\"%s\"}", key);
		rc = leash_kv_list(opts, (int)strlen(opts), buf, sizeof buf, &n);
		if (rc != 0) return refused(rc);
		fputs("Content-Type: application/json\n\n", stdout);
		fwrite(buf, 1, n, stdout);
		return 0;
	}
	if (!strcmp(op, "none")) {
		fputs("Content-Type: text/plain\n\nok", stdout);
		return 0;
	}
	if (!strcmp(op, "bench-get") || !strcmp(op, "bench-put")) {
		const char *ns = getenv("KV_N");
		int count = ns ? atoi(ns) : 100;
		int put = op[6] == 'p';
		fputs("Content-Type: text/plain\n\n", stdout);
		for (int i = 0; i < count; i++) {
			struct timespec a, b;
			clock_gettime(CLOCK_MONOTONIC, &a);
			rc = put ? leash_kv_put(key, kn, "value-0123456789", 16, "", 0) : leash_kv_get(key, kn, buf, sizeof buf, &n);
			clock_gettime(CLOCK_MONOTONIC, &b);
			if (rc < 0) return refused(rc);
			printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
		}
		return 0;
	}
	fputs("Status: 400 Bad Request\n\nunknown KV_OP", stdout);
	return 0;
}
