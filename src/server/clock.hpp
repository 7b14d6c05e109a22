// The scheduler's time: what time it is, and timers. An interface, so that the scheduling rules (retry
// delays, timeouts, scale-down windows, crash-loop back-off, start deadlines) can be unit-tested on a clock
// the test moves (tests/server/fake_clock.hpp) instead of by waiting; the server runs on steady_clock's.
//
// Internal to the server; confined to its one thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <functional>
#include <memory>

namespace ferry::server {

class clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  /// A pending call of a function at a time. Destroying it cancels it: the function is not called after
  /// that, even when its time had come and it was about to run. The function may destroy its own timer.
  class timer {
   public:
    virtual ~timer() = default;
  };

  virtual ~clock() = default;
  virtual time_point now() const = 0;
  /// Calls `fire` at `when` (as soon as it can when that has passed), never from within this call.
  virtual std::unique_ptr<timer> at(time_point when, std::function<void()> fire) = 0;
  std::unique_ptr<timer> after(duration wait, std::function<void()> fire) { return at(now() + wait, std::move(fire)); }
};

/// std::chrono::steady_clock's time, with timers run by `executor`.
std::unique_ptr<clock> make_steady_clock(boost::asio::any_io_executor executor);

}  // namespace ferry::server
