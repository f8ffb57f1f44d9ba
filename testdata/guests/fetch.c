// fetch makes one outbound request through the leash host ABI: the URL
// comes from the task variable FETCH_URL (and FETCH_COUNT repeats it).
// It answers with the upstream status and body, or with the error JSON
// of last_error when the fetch was refused.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("leash"), import_name(#name)))
IMPORT(fetch) int leash_fetch(const char *req, int len);
IMPORT(response_meta) int leash_response_meta(int h, char *buf, int cap);
IMPORT(response_read) int leash_response_read(int h, char *buf, int cap);
IMPORT(response_close) int leash_response_close(int h);
IMPORT(last_error) int leash_last_error(char *buf, int cap);

static char buf[1 << 16];

int main(void) {
	const char *url = getenv("FETCH_URL");
	const char *count = getenv("FETCH_COUNT");
	int n = count ? atoi(count) : 1;
	char req[4096];
	snprintf(req, sizeof req, "{\"method\":\"GET\",\"url\":\"%s\",\"headers\":{\"X-Guest\":[\"c\"]}}", url ? url : "");
	fputs("Content-Type: text/plain\n\n", stdout);
	for (int i = 0; i < n; i++) {
		int h = leash_fetch(req, (int)strlen(req));
		if (h < 0) {
			int m = leash_last_error(buf, sizeof buf - 1);
			buf[m > 0 ? m : 0] = 0;
			printf("error %d %s\n", h, buf);
			continue;
		}
		int m = leash_response_meta(h, buf, sizeof buf - 1);
		buf[m > 0 ? m : 0] = 0;
		printf("meta %s\n", buf);
		fputs("body ", stdout);
		while ((m = leash_response_read(h, buf, sizeof buf)) > 0) {
			fwrite(buf, 1, (size_t)m, stdout);
		}
		fputs("\n", stdout);
		leash_response_close(h);
	}
	return 0;
}
