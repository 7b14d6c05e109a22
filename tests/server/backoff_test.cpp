// The scheduler's waits: a failed attempt's retry delay under the function's Retries, and the crash-loop
// back-off of container starts.
#include "server/backoff.hpp"

#include <gtest/gtest.h>

namespace ferry::server {
namespace {

using std::chrono::milliseconds;

TEST(backoff, a_retry_waits_the_initial_delay_then_grows_by_the_coefficient_up_to_the_maximum) {
  const Retries r(5, milliseconds(100), 3.0, milliseconds(2'000));
  EXPECT_EQ(retry_delay(r, 1), milliseconds(100));
  EXPECT_EQ(retry_delay(r, 2), milliseconds(300));
  EXPECT_EQ(retry_delay(r, 3), milliseconds(900));
  EXPECT_EQ(retry_delay(r, 4), milliseconds(2'000)) << "2,700 ms capped at max_delay";
  EXPECT_EQ(retry_delay(r, 1'000), milliseconds(2'000)) << "and it stays there, however many attempts";
}

TEST(backoff, the_default_retries_wait_one_second_doubling_to_a_minute) {
  const Retries r = 3;
  EXPECT_EQ(retry_delay(r, 1), milliseconds(1'000));
  EXPECT_EQ(retry_delay(r, 2), milliseconds(2'000));
  EXPECT_EQ(retry_delay(r, 7), milliseconds(60'000));
}

TEST(backoff, a_coefficient_of_one_retries_at_a_fixed_interval) {
  const Retries r(10, milliseconds(250), 1.0, milliseconds(60'000));
  for (int attempt = 1; attempt <= 10; ++attempt) EXPECT_EQ(retry_delay(r, attempt), milliseconds(250));
}

TEST(backoff, only_failures_of_the_body_its_container_or_its_time_are_retried) {
  EXPECT_TRUE(retryable(wire::status::remote_exception));
  EXPECT_TRUE(retryable(wire::status::container_crashed));
  EXPECT_TRUE(retryable(wire::status::timed_out));
  for (auto s :
       {wire::status::ok, wire::status::bad_arguments, wire::status::cancelled, wire::status::container_start_failed,
        wire::status::payload_too_large, wire::status::unknown_function}) {
    EXPECT_FALSE(retryable(s)) << wire::to_string(s);
  }
}

TEST(backoff, container_starts_back_off_from_the_second_crash_in_a_row_doubling_to_thirty_seconds) {
  EXPECT_EQ(crash_backoff(0), milliseconds(0));
  EXPECT_EQ(crash_backoff(1), milliseconds(0)) << "one crash is not a loop";
  EXPECT_EQ(crash_backoff(2), milliseconds(250));
  EXPECT_EQ(crash_backoff(3), milliseconds(500));
  EXPECT_EQ(crash_backoff(8), milliseconds(16'000));
  EXPECT_EQ(crash_backoff(9), milliseconds(30'000)) << "32 s capped at 30 s";
  EXPECT_EQ(crash_backoff(1'000), milliseconds(30'000)) << "no overflow however long the streak";
}

}  // namespace
}  // namespace ferry::server
