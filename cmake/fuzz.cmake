# -DRP_FUZZ=ON (with CC=clang): every object is built with ASan, UBSan and
# libFuzzer's coverage instrumentation, and tests/fuzz adds one libFuzzer
# binary per harness (the target "fuzz").  scripts/fuzz.sh builds and runs
# them.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
	message(FATAL_ERROR "RP_FUZZ needs clang (libFuzzer): "
		"CC=clang cmake -DRP_FUZZ=ON ...")
endif()
set(RP_SANITIZE ON)
add_compile_options(-fsanitize=fuzzer-no-link)
# clang does not read the /* FALLTHROUGH */ comments gcc's
# -Wimplicit-fallthrough accepts; the gcc builds keep checking them.
add_compile_options(-Wno-implicit-fallthrough)
