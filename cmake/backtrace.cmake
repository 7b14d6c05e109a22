# Finds GCC's libbacktrace through the compiler (`-print-file-name`), for ferry's build and for its installed
# CMake package alike: sets FERRY_BACKTRACE_LIBRARY and FERRY_BACKTRACE_INCLUDE_DIR, or stops with the fix.
execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libbacktrace.a
                OUTPUT_VARIABLE FERRY_BACKTRACE_LIBRARY OUTPUT_STRIP_TRAILING_WHITESPACE)
get_filename_component(FERRY_BACKTRACE_LIBRARY "${FERRY_BACKTRACE_LIBRARY}" REALPATH)
get_filename_component(FERRY_BACKTRACE_INCLUDE_DIR "${FERRY_BACKTRACE_LIBRARY}" DIRECTORY)
set(FERRY_BACKTRACE_INCLUDE_DIR "${FERRY_BACKTRACE_INCLUDE_DIR}/include")
if(NOT EXISTS "${FERRY_BACKTRACE_LIBRARY}" OR NOT EXISTS "${FERRY_BACKTRACE_INCLUDE_DIR}/backtrace.h")
  message(FATAL_ERROR "ferry needs GCC's libbacktrace (libbacktrace.a and backtrace.h, from Debian's libgcc-12-dev, "
                      "which g++-12 installs): install g++ (scripts/setup.sh does)")
endif()
