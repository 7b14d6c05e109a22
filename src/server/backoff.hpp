// How long the scheduler waits before trying again: a failed attempt's retry (the function's Retries), and
// the next container start of a function whose containers keep dying (a crash loop). Pure rules, tested on
// their own (tests/server/backoff_test.cpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ferry/options.hpp>

#include "wire/protocol.hpp"

namespace ferry::server {

/// Failures worth another attempt (the body threw, its container died, it ran out of time): see status_table.
inline bool retryable(wire::status s) { return wire::row(s).retried; }

/// The wait before the retry that follows `failed_attempts` failed attempts (1: the first failed):
/// min(initial_delay * backoff_coefficient^(failed_attempts - 1), max_delay).
inline std::chrono::milliseconds retry_delay(const Retries& r, int failed_attempts) {
  double delay = static_cast<double>(r.initial_delay.count());
  for (int i = 1; i < failed_attempts && delay < static_cast<double>(r.max_delay.count()); ++i) {
    delay *= r.backoff_coefficient;
  }
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(std::min(delay, static_cast<double>(r.max_delay.count()))));
}

/// The wait before the next container of a function that has lost `crash_streak` containers in a row (died
/// without being asked to): none after the first, then 0.25 s doubling up to 30 s.
inline std::chrono::milliseconds crash_backoff(int crash_streak) {
  if (crash_streak < 2) return std::chrono::milliseconds(0);
  return std::min<std::chrono::milliseconds>(std::chrono::milliseconds(250 << std::min(crash_streak - 2, 7)),
                                             std::chrono::seconds(30));
}

}  // namespace ferry::server
