// Empty: the module only declares libFuzzer's driver (include/CFuzzerDriver.h), which -sanitize=fuzzer links.
