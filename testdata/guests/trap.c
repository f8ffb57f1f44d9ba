// trap executes unreachable: the outcome is error with the trap message.
int main(void) {
	__builtin_trap();
}
