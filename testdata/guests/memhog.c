// memhog allocates until memory runs out: the memory limit must stop it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *volatile keep[1 << 16];

int main(void) {
	for (size_t i = 0;; i++) {
		char *p = malloc(1 << 20);
		if (p == NULL) {
			// memory.grow failed: report it the way a real program would.
			fputs("out of memory\n", stderr);
			abort();
		}
		memset(p, (int)i, 1 << 20);
		keep[i % (1 << 16)] = p;
	}
	return 0;
}
