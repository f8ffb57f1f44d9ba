// sleep waits without using CPU: the wall limit must stop it.
#include <time.h>

int main(void) {
	struct timespec ts = {3600, 0};
	nanosleep(&ts, 0);
	return 0;
}
