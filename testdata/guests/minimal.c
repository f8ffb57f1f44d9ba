// minimal is the smallest useful WAGI guest: it answers "ok".
#include <stdio.h>

int main(void) {
	fputs("Content-Type: text/plain\n\nok\n", stdout);
	return 0;
}
