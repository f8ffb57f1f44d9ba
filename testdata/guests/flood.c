// flood writes output forever: the output limit must stop it.
#include <stdio.h>

int main(void) {
	fputs("Content-Type: text/plain\n\n", stdout);
	for (;;) {
		fputs("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", stdout);
	}
	return 0;
}
