// bulk is the bulk-queue tests' guest: it answers with the attempt number
// and idempotency key it sees, sleeps SLEEP_MS milliseconds first, and
// fails (exit 3) while LEASH_ATTEMPT is below FAIL_UNTIL.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *env(const char *k) {
	const char *v = getenv(k);
	return v ? v : "";
}

int main(void) {
	int attempt = atoi(env("LEASH_ATTEMPT"));
	long ms = atol(env("SLEEP_MS"));
	if (ms > 0) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, 0);
	}
	if (attempt < atoi(env("FAIL_UNTIL"))) {
		fprintf(stderr, "failing attempt %d on purpose\n", attempt);
		return 3;
	}
	fputs("Content-Type: text/plain\n\n", stdout);
	printf("attempt=%d key=%s task=%s\n", attempt, env("LEASH_IDEMPOTENCY_KEY"), env("LEASH_TASK_ID"));
	return 0;
}
