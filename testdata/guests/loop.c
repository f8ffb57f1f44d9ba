// loop never ends: the CPU limit must stop it.
int main(void) {
	volatile unsigned long n = 0;
	for (;;) {
		n++;
	}
	return 0;
}
