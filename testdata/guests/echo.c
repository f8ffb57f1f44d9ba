// echo answers with the request: method, path, query, one header, the
// body, and a log line through the leash host ABI.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((import_module("leash"), import_name("log")))
int leash_log(int level, const char *msg, int len);

__attribute__((import_module("leash"), import_name("abi_version")))
int leash_abi_version(void);

static const char *env(const char *k) {
	const char *v = getenv(k);
	return v ? v : "";
}

int main(void) {
	const char *msg = "echo guest running";
	leash_log(1, msg, (int)strlen(msg));
	fputs("Status: 201 Created\nContent-Type: text/plain\nX-Echo: yes\n\n", stdout);
	printf("abi=%d\n", leash_abi_version());
	printf("method=%s\n", env("REQUEST_METHOD"));
	printf("path=%s\n", env("PATH_INFO"));
	printf("query=%s\n", env("QUERY_STRING"));
	printf("x-test=%s\n", env("HTTP_X_TEST"));
	printf("greeting=%s\n", env("GREETING"));
	printf("task=%s\n", env("LEASH_TASK_ID"));
	fputs("body=", stdout);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
		fwrite(buf, 1, n, stdout);
	}
	fputs("\n", stdout);
	return 0;
}
