// The async building blocks behind ferry/async.hpp.
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <ferry/async.hpp>
#include <ferry/errors.hpp>
#include <optional>

#include "container/current.hpp"
#include "runtime/process_client.hpp"
#include "wire/connection.hpp"

namespace asio = boost::asio;

namespace ferry {

bool cancelled() noexcept {
  const container::input_context* input = container::current_input();
  return input && input->cancelled.load(std::memory_order_relaxed);
}

void progress(double done, double total, std::string_view message) {
  container::input_context* input = container::current_input();
  if (!input) return;
  auto c = runtime::process_client();
  if (!c) return;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(input->progress_mu);
    if (done < total && now - input->progress_sent < std::chrono::milliseconds(50)) return;
    input->progress_sent = now;
  }
  c->send_progress(input->input_id, done, total, std::string(message));
}

Task<void> sleep(std::chrono::steady_clock::duration duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  boost::system::error_code ec;
  try {
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  } catch (const boost::system::system_error& e) {  // cancelled before it began
    if (e.code() != asio::error::operation_aborted) throw;
    ec = e.code();
  }
  if (ec == asio::error::operation_aborted) throw CancelledError("ferry::sleep was cancelled");
}

namespace detail {

namespace {

/// An event coroutines of one executor can await: a timer that never expires, cancelled to wake them.
class loop_event {
 public:
  explicit loop_event(const asio::any_io_executor& executor)
      : timer_(executor, asio::steady_timer::time_point::max()) {}
  void notify() { timer_.cancel(); }
  /// Returns when notified, or when the awaiting coroutine is cancelled (without throwing).
  Task<void> wait() {
    boost::system::error_code ignored;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }

 private:
  asio::steady_timer timer_;
};

/// Confined to the gathering coroutine's executor, like the tasks it starts.
struct gather_state {
  gather_state(std::size_t n, const asio::any_io_executor& executor) : remaining(n), signals(n), all_done(executor) {}

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
    if (--remaining == 0) all_done.notify();
  }

  std::size_t remaining;
  std::vector<asio::cancellation_signal> signals;
  loop_event all_done;
  std::exception_ptr first_error;
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
  // Wait for every task, even when this coroutine is cancelled (the tasks' results live in the awaiting
  // frame): a cancellation is passed on to the tasks, and the wait goes on until they have all finished.
  co_await asio::this_coro::throw_if_cancelled(false);
  while (state->remaining > 0) {
    co_await state->all_done.wait();
    const asio::cancellation_state cancellation = co_await asio::this_coro::cancellation_state;
    if (cancellation.cancelled() != asio::cancellation_type::none) {
      state->cancel_all(asio::cancellation_type::terminal);
      co_await asio::this_coro::reset_cancellation_state();
    }
  }
  if (state->first_error) std::rethrow_exception(state->first_error);
  const asio::cancellation_state cancellation = co_await asio::this_coro::cancellation_state;
  if (cancellation.cancelled() != asio::cancellation_type::none) throw CancelledError("gather was cancelled");
}

void run_to_completion(Task<void> task) {
  asio::io_context loop{1};
  const asio::any_io_executor executor = loop.get_executor();
  container::event_loop_scope scope(executor);
  std::exception_ptr error;
  asio::co_spawn(loop, std::move(task), [&error](std::exception_ptr e) { error = e; });
  wire::run_batched(loop);
  if (error) std::rethrow_exception(error);
}

asio::any_io_executor current_executor() {
  const asio::any_io_executor* executor = container::current_loop_executor();
  if (!executor) {
    throw Error(
        "ferry::create_task needs a running ferry event loop: call it from an async entrypoint "
        "(app.main with a lambda returning ferry::Task<void>) or from an async function body");
  }
  return *executor;
}

struct started_task::state {
  explicit state(const asio::any_io_executor& e) : executor(e), done_event(e) {}
  asio::any_io_executor executor;
  bool done = false;
  std::exception_ptr error;
  loop_event done_event;
  asio::cancellation_signal cancel_signal;  // the task's
  bool cancel_requested = false;
  int awaiting = 0;  // coroutines waiting for the task's end

  void cancel() {
    if (done) return;
    cancel_requested = true;
    cancel_signal.emit(asio::cancellation_type::terminal);
  }
};

void started_task::start(Task<void> task) {
  const asio::any_io_executor executor = current_executor();
  state_ = std::make_shared<state>(executor);
  asio::co_spawn(executor, std::move(task),
                 asio::bind_cancellation_slot(state_->cancel_signal.slot(), [s = state_](std::exception_ptr error) {
                   s->done = true;
                   s->error = error;
                   // A cancelled task that awaited an Asio operation of its own ends with Asio's
                   // operation_aborted: its awaiters get ferry's CancelledError, as for ferry's own calls.
                   if (error && s->cancel_requested) {
                     try {
                       std::rethrow_exception(error);
                     } catch (const boost::system::system_error& e) {
                       if (e.code() == asio::error::operation_aborted) {
                         s->error = std::make_exception_ptr(CancelledError("the created task was cancelled"));
                       }
                     } catch (...) {
                     }
                   }
                   s->done_event.notify();
                 }));
}

Task<void> started_task::wait() const {
  auto s = state_;
  ++s->awaiting;
  while (!s->done) {
    co_await s->done_event.wait();
    const asio::cancellation_state cancellation = co_await asio::this_coro::cancellation_state;
    if (cancellation.cancelled() != asio::cancellation_type::none) {
      // Nothing else waits for the task: it goes too, with its remote calls.
      if (--s->awaiting == 0) s->cancel();
      throw CancelledError("awaiting a created task was cancelled");
    }
  }
  --s->awaiting;
  if (s->error) std::rethrow_exception(s->error);
}

bool started_task::done() const { return state_->done; }

void started_task::cancel() const {
  asio::post(state_->executor, [s = state_] { s->cancel(); });
}

const asio::any_io_executor& started_task::executor() const { return state_->executor; }

}  // namespace detail
}  // namespace ferry
