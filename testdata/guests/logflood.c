// logflood logs far more than any profile's log_bytes, then answers.
#include <stdio.h>
#include <string.h>

__attribute__((import_module("leash"), import_name("log")))
int leash_log(int level, const char *msg, int len);

int main(void) {
	const char *line = "a log line that repeats until the log limit truncates it";
	for (int i = 0; i < 100000; i++) {
		leash_log(1, line, (int)strlen(line));
	}
	fputs("Content-Type: text/plain\n\ndone\n", stdout);
	return 0;
}
