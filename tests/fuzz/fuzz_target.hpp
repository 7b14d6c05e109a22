// What every fuzz target defines, and what it does when a property it checks does not hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

/// Runs one input (libFuzzer's entry point; replay_main.cpp calls it too).
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

/// The target's seed corpus, as (file name, bytes), built with the protocol's own encoders so that it
/// stays valid as the protocol changes: `TARGET_fuzz_replay --write-seeds tests/fuzz/corpus/TARGET`.
std::vector<std::pair<std::string, std::string>> fuzz_seeds();

/// Says which property failed, then aborts, so that libFuzzer (or the replay driver) reports the input.
[[noreturn]] inline void fuzz_fail(const std::string& what) {
  std::fprintf(stderr, "fuzz check failed: %s\n", what.c_str());
  std::abort();
}

#define FUZZ_CHECK(condition, what)    \
  do {                                 \
    if (!(condition)) fuzz_fail(what); \
  } while (false)
