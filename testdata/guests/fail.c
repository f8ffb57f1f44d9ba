// fail writes to stderr and exits with code 3.
#include <stdio.h>

int main(void) {
	fputs("something went wrong\n", stderr);
	return 3;
}
