#include "container/input_runner.hpp"

#include <cxxabi.h>
#include <spdlog/spdlog.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <deque>
#include <ferry/errors.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/check.hpp"
#include "container/current.hpp"
#include "container/input_executor.hpp"
#include "container/output_capture.hpp"
#include "container/stack_trace.hpp"
#include "wire/connection.hpp"

namespace ferry::container {

namespace asio = boost::asio;

namespace {

/// What an input ended with, ready to send: the value, or an error record.
struct outcome {
  wire::error_record error;
  detail::buffer result;
  std::uint64_t tail_call = 0;  // the body returned a future: the id of its call, whose result is this input's
};

/// The error of a cancelled input: one that `ran` stopped (the server says the same of one that returned).
void set_cancelled(outcome& out, const container::input_context& input, bool ran) {
  out.error.code = wire::status::cancelled;
  out.error.message = "'" + input.entry->name + "' was cancelled " + (ran ? "while it ran" : "before it started") +
                      " (call " + input.call_id + ")";
}

/// Runs a body (through `run`), turning what it throws into the error record the caller gets.
template <class Run>
void capture_outcome(outcome& out, const container::input_context& input, Run&& run) {
  try {
    run();
  } catch (const ArgumentError& e) {
    out.error.code = wire::status::bad_arguments;
    out.error.message = e.what();
  } catch (const std::exception& e) {
    if (input.cancelled.load()) {
      set_cancelled(out, input, /*ran=*/true);
      return;
    }
    out.error.code = wire::status::remote_exception;
    if (const RemoteDetails* remote = remote_details(e)) {
      // A nested call's exception that the body let through: it travels on as it was first thrown (its type,
      // message, function and call), its stack followed by the call that passed it on.
      out.error.type = remote->type();
      out.error.message = remote->message();
      out.error.function = remote->function();
      out.error.call_id = remote->call_id();
      out.error.stack = remote->stack() + "  (passed on by '" + input.entry->name + "', call " + input.call_id + ")\n";
    } else {
      out.error.type = detail::demangle(typeid(e).name());
      out.error.message = e.what();
      out.error.stack = last_throw_stack();
    }
  } catch (...) {
    out.error.code = wire::status::remote_exception;
    const std::type_info* type = abi::__cxa_current_exception_type();
    out.error.type = type ? detail::demangle(type->name()) : "unknown";
    out.error.message = "(an exception not derived from std::exception)";
    out.error.stack = last_throw_stack();
  }
  wire::bound_error(out.error);  // a what() of any size travels bounded
}

/// What both kinds of runner share: tracking inputs for cancellation, holding them until the sender is set,
/// and sending their outputs.
class runner_base : public input_runner {
 public:
  using tracked_input = std::pair<client::input, std::shared_ptr<container::input_context>>;

  explicit runner_base(const detail::function_entry& function) : function_(function) {}

  void set_sender(output_sender send) override {
    std::vector<tracked_input> held;
    {
      std::lock_guard lock(mu_);
      FERRY_CHECK(!send_.output, "an input runner's sender is set once");
      send_ = std::move(send);
      held.swap(held_);
    }
    for (auto& [in, input] : held) start(std::move(in), std::move(input));
  }

  // Every input is tracked from the moment it arrives, held or not: the server sends an input and its cancel
  // back to back, as soon as the container connects, so both can come before the sender is set.
  void submit(client::input in) override {
    auto input = std::make_shared<container::input_context>();
    input->input_id = in.id;
    input->call_id = in.call_id;
    input->entry = &function_;
    {
      std::lock_guard lock(mu_);
      tracked_.emplace(in.id, input);
      if (!send_.output) {
        held_.emplace_back(std::move(in), std::move(input));
        return;
      }
    }
    start(std::move(in), std::move(input));
  }

  void cancel(std::uint64_t input_id) override {
    std::shared_ptr<container::input_context> input;
    {
      std::lock_guard lock(mu_);
      auto it = tracked_.find(input_id);
      if (it == tracked_.end()) return;  // finished meanwhile
      input = it->second;
    }
    input->cancelled.store(true);
    on_cancel(input_id, input);
  }

 protected:
  /// Runs a tracked input's body; one cancelled before its body starts (while held, or queued) ends as
  /// cancelled without running it.
  virtual void start(client::input in, std::shared_ptr<container::input_context> input) = 0;
  virtual void on_cancel(std::uint64_t, const std::shared_ptr<container::input_context>&) {}

 public:
  void flush() override {}

 protected:
  /// The tail call the body left in `input.next_hop`, which runs next in this slot as the same input: the
  /// server is told first (a retry starts from it). Throws CancelledError, without running it, when the input
  /// has been cancelled meanwhile.
  detail::buffer take_next_hop(container::input_context& input) {
    detail::buffer arguments = std::move(input.next_hop);
    if (input.cancelled.load()) throw CancelledError("cancelled between tail calls");
    send_.tail_hop(input.input_id, arguments);
    return arguments;
  }

  void finish(std::uint64_t input_id, outcome& out) {
    std::shared_ptr<container::input_context> input;
    {
      std::lock_guard lock(mu_);
      auto it = tracked_.find(input_id);
      if (it != tracked_.end()) {
        input = std::move(it->second);
        tracked_.erase(it);
      }
    }
    const auto& send = send_.output;
    if (input) flush_output(*input);  // the lines it wrote reach the server before its output
    if (out.error.code == wire::status::ok && out.tail_call != 0) {
      send(input_id, wire::status::tail_call, [&](detail::buffer& payload) { ferry::encode(payload, out.tail_call); });
      return;
    }
    try {
      send(input_id, out.error.code, [&](detail::buffer& payload) {
        if (out.error.code == wire::status::ok) {
          payload.append(out.result.data(), out.result.size());
        } else {
          wire::encode_error(payload, out.error);
        }
      });
    } catch (const PayloadTooLargeError& e) {
      out.error.code = wire::status::payload_too_large;
      out.error.message = std::string("the result of '") + function_.name + "' is too large: " + e.what();
      send(input_id, out.error.code, [&](detail::buffer& payload) { wire::encode_error(payload, out.error); });
    }
  }

  outcome new_outcome(const client::input& in) const {
    outcome out;
    out.error = {wire::status::ok, "", "", function_.name, in.call_id, ""};
    return out;
  }

  const detail::function_entry& function_;
  std::mutex mu_;
  /// Set once, under mu_, before any input starts; read without the lock by the inputs' threads after that.
  output_sender send_;
  std::vector<tracked_input> held_;                                             // guarded by mu_
  std::map<std::uint64_t, std::shared_ptr<container::input_context>> tracked_;  // guarded by mu_: held or running
};

/// Blocking bodies: each input on a thread of its own, up to max_inputs threads.
///
/// Waking a thread costs more than a small body, so inputs are not handed to threads one by one: at most
/// one wake-up is under way at a time. The thread it wakes takes an input and, if more are queued, wakes
/// (or starts) the next before it runs its own. A burst of inputs thus spreads over threads at the rate
/// they wake, while threads that finish their input take the next queued one without sleeping, so cheap
/// bodies run back to back on few threads and slow ones still each get a thread within microseconds.
class thread_runner final : public runner_base {
 public:
  using runner_base::runner_base;
  /// Waits for the bodies running (a container that has served leaves with _Exit instead: it never gets here).
  ~thread_runner() override {
    {
      std::lock_guard lock(queue_mu_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
  }

  void start(client::input in, std::shared_ptr<container::input_context> input) override {
    std::unique_lock lock(queue_mu_);
    queue_.emplace_back(std::move(in), std::move(input));
    wake_one(lock);
  }

 private:
  /// With inputs queued and no wake-up under way: wakes an idle thread, or starts one below max_inputs.
  void wake_one(std::unique_lock<std::mutex>& lock) {
    if (waking_ || queue_.empty()) return;
    if (idle_ > 0) {
      waking_ = true;
      lock.unlock();
      ready_.notify_one();
    } else if (threads_.size() < static_cast<std::size_t>(function_.options.max_inputs)) {
      waking_ = true;
      threads_.emplace_back([this] { work(); });
    }
  }

  void work() {
    std::unique_lock lock(queue_mu_);
    waking_ = false;  // started by wake_one
    for (;;) {
      if (queue_.empty()) {
        ++idle_;
        // Any return from wait ends the wake-up under way (even one meant for another thread: at worst
        // one wake-up too many, never an input left queued beside an idle thread).
        do {
          if (stopping_) return;
          ready_.wait(lock);
          waking_ = false;
        } while (queue_.empty());
        --idle_;
      }
      auto [in, input] = std::move(queue_.front());
      queue_.pop_front();
      wake_one(lock);  // more queued: the next thread wakes while this one runs its input
      if (lock.owns_lock()) lock.unlock();
      outcome out = new_outcome(in);
      if (input->cancelled.load()) {
        set_cancelled(out, *input, /*ran=*/false);
      } else {
        container::input_scope scope(input.get());
        capture_outcome(out, *input, [&] {
          out.tail_call = function_.invoke(detail::reader{in.arguments.view()}, out.result);
          while (!input->next_hop.empty()) {  // a tail call of this function: the next hop runs here
            const detail::buffer arguments = take_next_hop(*input);
            out.tail_call = function_.invoke(detail::reader{arguments.view()}, out.result);
          }
        });
      }
      finish(in.id, out);
      lock.lock();
    }
  }

  std::mutex queue_mu_;
  std::condition_variable ready_;
  std::deque<tracked_input> queue_;   // guarded by queue_mu_
  std::vector<std::thread> threads_;  // guarded by queue_mu_
  std::size_t idle_ = 0;              // guarded by queue_mu_
  bool waking_ = false;               // guarded by queue_mu_: a thread is being woken or started
  bool stopping_ = false;             // guarded by queue_mu_: the runner is being destroyed
};

/// Async bodies: every input a coroutine on the one executor thread. A step that holds that thread longer than
/// the function's stall threshold is a stall: the first is warned about when it ends, with how long it held
/// the thread; later ones are counted and told as one line every 10 s (and when the container stops). A
/// watchdog thread warns about a step that is still holding the thread after 5 s, and writes the counts.
class coroutine_runner final : public runner_base, public step_observer {
 public:
  explicit coroutine_runner(const detail::function_entry& function)
      : runner_base(function),
        work_(asio::make_work_guard(io_)),
        executor_thread_([this] { wire::run_batched(io_); }),
        watchdog_([this] { watch(); }) {}
  // Runs only when the container gives up before serving (it cannot connect): once it serves, the process
  // leaves with _Exit and destroys nothing. So no body runs, and both threads stop at once.
  ~coroutine_runner() override {
    {
      std::lock_guard lock(step_mu_);
      stopping_ = true;
    }
    watchdog_wake_.notify_one();
    watchdog_.join();
    io_.stop();
    executor_thread_.join();
  }

  void start(client::input in, std::shared_ptr<container::input_context> input) override {
    asio::post(io_, [this, in = std::move(in), input = std::move(input)]() mutable { spawn(std::move(in), input); });
  }

  void step_started(const std::shared_ptr<container::input_context>& input) override {
    std::lock_guard lock(step_mu_);
    step_input_ = input;
    step_started_ = std::chrono::steady_clock::now();
    step_warned_ = false;
  }
  void step_ended() override {
    std::lock_guard lock(step_mu_);
    const auto held = std::chrono::steady_clock::now() - step_started_;
    if (held >= function_.options.stall_threshold && step_input_) record_stall(*step_input_, held);
    step_input_.reset();
  }

  /// Writes the stalls counted since the last line (the container is stopping).
  void flush() override {
    std::lock_guard lock(step_mu_);
    report_counted_stalls();
  }

 private:
  // On the executor thread.
  void spawn(client::input in, const std::shared_ptr<container::input_context>& input) {
    const std::uint64_t id = in.id;
    input->executor = input_executor(io_.get_executor(), input, this);
    auto& signal = signals_[id];
    asio::co_spawn(input->executor, run(std::move(in), input),
                   asio::bind_cancellation_slot(signal.slot(), [this, id](std::exception_ptr) {
                     // The signal must outlive the completion: let it go afterwards.
                     asio::post(io_, [this, id] { signals_.erase(id); });
                   }));
  }

  Task<void> run(client::input in, std::shared_ptr<container::input_context> input) {
    outcome out = new_outcome(in);
    if (input->cancelled.load()) {
      set_cancelled(out, *input, /*ran=*/false);
    } else {
      try {
        out.tail_call = co_await function_.invoke_async(std::move(in.arguments), out.result);
        while (!input->next_hop.empty()) {  // a tail call of this function: the next hop runs here
          detail::buffer arguments = take_next_hop(*input);
          // Between hops, the other inputs' coroutines get their turn (and a cancel, its chance to land).
          co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
          out.tail_call = co_await function_.invoke_async(std::move(arguments), out.result);
        }
      } catch (...) {
        capture_outcome(out, *input, [] { throw; });
      }
    }
    input->executor = {};  // it refers back to the input
    finish(in.id, out);
  }

  void on_cancel(std::uint64_t input_id, const std::shared_ptr<container::input_context>&) override {
    asio::post(io_, [this, input_id] {
      auto it = signals_.find(input_id);
      if (it != signals_.end()) it->second.emit(asio::cancellation_type::terminal);
    });
  }

  static constexpr auto still_holding = std::chrono::seconds(5);
  static constexpr auto stall_report_period = std::chrono::seconds(10);

  static std::int64_t ms(std::chrono::steady_clock::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  }

  /// Requires step_mu_.
  void record_stall(const container::input_context& input, std::chrono::steady_clock::duration held) {
    if (step_warned_) return;  // told already while it held the thread
    if (!stall_reported_) {
      stall_reported_ = std::chrono::steady_clock::now();
      spdlog::warn(
          "async function '{}' (call {}) held the event loop for {} ms without suspending; every other input of "
          "this container waited meanwhile: co_await instead of blocking, or make the work a blocking function",
          input.entry->name, input.call_id, ms(held));
      return;
    }
    ++stalls_counted_;
    longest_counted_ = std::max(longest_counted_, held);
  }

  /// Requires step_mu_.
  void report_counted_stalls() {
    if (stalls_counted_ == 0) return;
    spdlog::warn("async function '{}' held the event loop {} more time{} (the longest for {} ms)", function_.name,
                 stalls_counted_, stalls_counted_ == 1 ? "" : "s", ms(longest_counted_));
    stalls_counted_ = 0;
    longest_counted_ = {};
    stall_reported_ = std::chrono::steady_clock::now();
  }

  void watch() {
    const auto period = std::max(function_.options.stall_threshold / 4, std::chrono::milliseconds(1));
    std::unique_lock lock(step_mu_);
    for (;;) {
      // (A watchdog's sampling period; the wait ends early only for the destructor.)
      if (watchdog_wake_.wait_for(lock, period, [this] { return stopping_; })) return;
      const auto now = std::chrono::steady_clock::now();
      if (stall_reported_ && now - *stall_reported_ >= stall_report_period) report_counted_stalls();
      // (A threshold above 5 s makes a step a stall only past it.)
      const auto warn_after =
          std::max<std::chrono::steady_clock::duration>(still_holding, function_.options.stall_threshold);
      if (!step_input_ || step_warned_ || now - step_started_ < warn_after) continue;
      step_warned_ = true;
      stall_reported_ = now;
      spdlog::warn(
          "async function '{}' (call {}) has held the event loop for {} ms without suspending, and still does; "
          "every other input of this container waits meanwhile: co_await instead of blocking, or make the work "
          "a blocking function",
          step_input_->entry->name, step_input_->call_id, ms(now - step_started_));
    }
  }

  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::map<std::uint64_t, asio::cancellation_signal> signals_;  // executor-confined
  std::mutex step_mu_;
  std::shared_ptr<container::input_context> step_input_;                 // guarded by step_mu_: the step running now
  std::chrono::steady_clock::time_point step_started_;                   // guarded by step_mu_
  bool step_warned_ = false;                                             // guarded by step_mu_: the step running now
  std::optional<std::chrono::steady_clock::time_point> stall_reported_;  // guarded by step_mu_
  int stalls_counted_ = 0;                                               // guarded by step_mu_: since stall_reported_
  std::chrono::steady_clock::duration longest_counted_{};                // guarded by step_mu_
  bool stopping_ = false;                                                // guarded by step_mu_
  std::condition_variable watchdog_wake_;
  std::thread executor_thread_;
  std::thread watchdog_;
};

}  // namespace

std::unique_ptr<input_runner> input_runner::make(const detail::function_entry& function) {
  if (function.is_async()) return std::make_unique<coroutine_runner>(function);
  return std::make_unique<thread_runner>(function);
}

}  // namespace ferry::container
