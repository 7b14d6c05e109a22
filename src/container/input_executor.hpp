// An executor that runs an async input's coroutine on the container's executor thread and marks, around
// every step it runs, which input that step belongs to (for ferry::cancelled(), create_task and the stall
// watchdog). Everything the input's coroutine awaits completes through it, so every resumption is marked.
#pragma once

#include <boost/asio/execution.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>

#include "container/current.hpp"

namespace ferry::container {

/// Told when a step of some input starts and ends on the executor thread. Thread-safe.
class step_observer {
 public:
  virtual ~step_observer() = default;
  virtual void step_started(const std::shared_ptr<container::input_context>& input) = 0;
  virtual void step_ended() = 0;
};

class input_executor {
 public:
  using inner_type = decltype(boost::asio::require(std::declval<boost::asio::io_context::executor_type>(),
                                                   boost::asio::execution::blocking.never));

  input_executor(boost::asio::io_context::executor_type inner, std::shared_ptr<container::input_context> input,
                 step_observer* observer)
      : inner_(boost::asio::require(inner, boost::asio::execution::blocking.never)),
        input_(std::move(input)),
        observer_(observer) {}

  boost::asio::execution_context& query(boost::asio::execution::context_t) const noexcept {
    return boost::asio::query(inner_, boost::asio::execution::context);
  }
  static constexpr boost::asio::execution::blocking_t query(boost::asio::execution::blocking_t) noexcept {
    return boost::asio::execution::blocking.never;
  }
  input_executor require(boost::asio::execution::blocking_t::never_t) const noexcept { return *this; }

  template <class F>
  void execute(F f) const {
    inner_.execute([f = std::move(f), input = input_, observer = observer_]() mutable {
      container::input_scope scope(input.get());
      container::event_loop_scope loop(input->executor);
      observer->step_started(input);
      std::move(f)();
      observer->step_ended();
    });
  }

  friend bool operator==(const input_executor& a, const input_executor& b) noexcept {
    return a.inner_ == b.inner_ && a.input_ == b.input_;
  }
  friend bool operator!=(const input_executor& a, const input_executor& b) noexcept { return !(a == b); }

 private:
  inner_type inner_;
  std::shared_ptr<container::input_context> input_;
  step_observer* observer_;
};

}  // namespace ferry::container
