// The async building blocks behind ferry/async.hpp, and the per-thread state of src/runtime/current.hpp.
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <ferry/async.hpp>
#include <ferry/errors.hpp>
#include <optional>

#include "runtime/current.hpp"

namespace asio = boost::asio;

namespace ferry::runtime {

namespace {
thread_local input_context* running_input = nullptr;
thread_local const asio::any_io_executor* loop_executor = nullptr;
}  // namespace

input_context* current_input() noexcept { return running_input; }

input_scope::input_scope(input_context* input) noexcept : previous_(running_input) { running_input = input; }
input_scope::~input_scope() { running_input = previous_; }

event_loop_scope::event_loop_scope(const asio::any_io_executor& executor) noexcept : previous_(loop_executor) {
  loop_executor = &executor;
}
event_loop_scope::~event_loop_scope() { loop_executor = previous_; }

const asio::any_io_executor* current_loop_executor() noexcept { return loop_executor; }

}  // namespace ferry::runtime

namespace ferry {

bool cancelled() noexcept {
  const runtime::input_context* input = runtime::current_input();
  return input && input->cancelled.load(std::memory_order_relaxed);
}

Task<void> sleep(std::chrono::steady_clock::duration duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::use_awaitable);
}

namespace detail {

namespace {

using wake_handler = asio::any_completion_handler<void()>;

/// Completes `handler` on its own executor (inline when that is the calling thread's), detaching its
/// cancellation slot first.
void wake(wake_handler handler, const asio::any_io_executor& fallback) {
  auto executor = asio::get_associated_executor(handler, fallback);
  executor.execute([handler = std::move(handler)]() mutable {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.clear();
    std::move(handler)();
  });
}

/// Confined to the gathering coroutine's executor, like the tasks it starts.
struct gather_state {
  explicit gather_state(std::size_t n, asio::any_io_executor ex) : remaining(n), signals(n), executor(std::move(ex)) {}

  void cancel_all(asio::cancellation_type type) {
    for (auto& s : signals) s.emit(type);
  }
  void finished(std::size_t index, std::exception_ptr error) {
    if (error && !first_error) {
      first_error = error;
      for (std::size_t i = 0; i < signals.size(); ++i) {
        if (i != index) signals[i].emit(asio::cancellation_type::terminal);
      }
    }
    if (--remaining == 0 && waiter) {
      wake(std::move(*waiter), executor);
      waiter.reset();
    }
  }

  std::size_t remaining;
  std::vector<asio::cancellation_signal> signals;
  asio::any_io_executor executor;
  std::exception_ptr first_error;
  std::optional<wake_handler> waiter;
};

}  // namespace

Task<void> gather_all(std::vector<Task<void>> tasks) {
  if (tasks.empty()) co_return;
  auto executor = co_await asio::this_coro::executor;
  auto state = std::make_shared<gather_state>(tasks.size(), executor);
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    asio::co_spawn(executor, std::move(tasks[i]),
                   asio::bind_cancellation_slot(state->signals[i].slot(),
                                                [state, i](std::exception_ptr error) { state->finished(i, error); }));
  }
  // Wait for every task, even when this coroutine is cancelled: its cancellation goes to the tasks, whose
  // results refer to the awaiting frame.
  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
      [state](auto handler) {
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (slot.is_connected()) slot.assign([state](asio::cancellation_type type) { state->cancel_all(type); });
        state->waiter.emplace(std::move(handler));
      },
      asio::use_awaitable);
  if (state->first_error) std::rethrow_exception(state->first_error);
}

void run_to_completion(Task<void> task) {
  asio::io_context loop{1};
  const asio::any_io_executor executor = loop.get_executor();
  runtime::event_loop_scope scope(executor);
  std::exception_ptr error;
  asio::co_spawn(loop, std::move(task), [&error](std::exception_ptr e) { error = e; });
  loop.run();
  if (error) std::rethrow_exception(error);
}

asio::any_io_executor current_executor() {
  const asio::any_io_executor* executor = runtime::current_loop_executor();
  if (!executor) {
    throw Error(
        "ferry::create_task needs a running ferry event loop: call it from an async entrypoint "
        "(app.main with a lambda returning ferry::Task<void>) or from an async function body");
  }
  return *executor;
}

struct started_task::state {
  bool done = false;
  std::exception_ptr error;
  std::optional<wake_handler> waiter;
  asio::any_io_executor executor;
};

std::shared_ptr<started_task::state> started_task::make_state() { return std::make_shared<state>(); }

void started_task::start(Task<void> task) {
  state_->executor = current_executor();
  asio::co_spawn(state_->executor, std::move(task), [s = state_](std::exception_ptr error) {
    s->done = true;
    s->error = error;
    if (s->waiter) {
      wake(std::move(*s->waiter), s->executor);
      s->waiter.reset();
    }
  });
}

Task<void> started_task::wait() {
  auto s = state_;
  if (!s->done) {
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [s](auto handler) { s->waiter.emplace(std::move(handler)); }, asio::use_awaitable);
  }
  if (s->error) std::rethrow_exception(s->error);
}

}  // namespace detail
}  // namespace ferry
