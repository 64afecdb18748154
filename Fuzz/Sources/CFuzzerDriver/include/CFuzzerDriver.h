// libFuzzer's driver, callable from our own main (libFuzzer >= 11). SwiftPM links executables with its own
// entry point, so the fuzzer's main cannot be used; ours hands control to this instead.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
