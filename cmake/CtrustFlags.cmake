# ctrust_flags: the one INTERFACE target carrying warnings and hardening for our code.
add_library(ctrust_flags INTERFACE)
target_compile_options(ctrust_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
  -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual -Wimplicit-fallthrough
  -fstack-protector-strong -fno-strict-overflow)
if(NOT CMAKE_BUILD_TYPE STREQUAL "Debug" AND NOT CTRUST_SANITIZE)
  target_compile_definitions(ctrust_flags INTERFACE _FORTIFY_SOURCE=2)
endif()
target_compile_definitions(ctrust_flags INTERFACE _GLIBCXX_ASSERTIONS)
target_link_options(ctrust_flags INTERFACE -Wl,-z,relro -Wl,-z,now)
if(CTRUST_WERROR)
  target_compile_options(ctrust_flags INTERFACE -Werror)
endif()
if(CTRUST_SANITIZE)
  target_compile_options(ctrust_flags INTERFACE -fsanitize=address,undefined
    -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(ctrust_flags INTERFACE -fsanitize=address,undefined)
endif()
if(CTRUST_FUZZ)
  # Everything the fuzz targets link is instrumented for coverage as well.
  target_compile_options(ctrust_flags INTERFACE -fsanitize=fuzzer-no-link,address,undefined)
  target_link_options(ctrust_flags INTERFACE -fsanitize=address,undefined)
endif()
