// f.map: many calls of one function, fed to the server through a window of calls in flight.
#include <atomic>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <ferry/function.hpp>
#include <mutex>

#include "container/current.hpp"
#include "runtime/process_client.hpp"
#include "runtime/progress_bar.hpp"
#include "wire/connection.hpp"

namespace ferry::detail {

namespace {

/// One map in progress. Calls are submitted from the caller's thread at first, then from the client's
/// I/O thread as earlier ones finish; everything shared is guarded by mu.
class map_run : public std::enable_shared_from_this<map_run> {
 public:
  map_run(std::shared_ptr<const function_entry> f, std::size_t n, map_item_encoder e, std::size_t w)
      : function_(std::move(f)),
        encode_(std::move(e)),
        window_(std::max<std::size_t>(w, 1)),
        parent_input_(container::current_input_id()),
        bar_(function_->name, n) {
    results_.items.resize(n);
    results_.completion_order.reserve(n);
    client_ = runtime::require_client(function_->name);
  }

  /// Submits calls while the window has room: items the server refused for a full queue first.
  void pump() {
    for (;;) {
      std::size_t i = 0;
      {
        std::lock_guard lock(mu_);
        if (in_flight_ >= window_ || waiting_for_room_ || cancelled_.load()) return;
        if (!refused_.empty()) {
          i = refused_.back();
          refused_.pop_back();
        } else if (next_ < results_.items.size()) {
          i = next_++;
        } else {
          return;
        }
        ++in_flight_;
      }
      try {
        buffer arguments;
        std::vector<future_dependency> futures;
        encode_(i, arguments, futures);
        std::vector<wire::dependency> deps;
        deps.reserve(futures.size());
        for (const auto& [position, future] : futures) deps.emplace_back(position, submit_as_argument(*future));
        const std::uint64_t id =
            client_->submit({*function_, [&](buffer& out) { out.append(arguments.data(), arguments.size()); },
                             std::move(deps), wire::deliver_result, parent_input_, this},
                            [self = shared_from_this(), i](std::exception_ptr error, buffer result) {
                              self->finished(i, error, std::move(result));
                            });
        // cancel() sets the flag, then cancels the map's calls the client has; this call became the client's
        // before the flag is read here: so either cancel() saw it, or this sees the flag.
        if (cancelled_.load()) client_->cancel(id);
      } catch (...) {
        finished(i, std::current_exception(), buffer{});
      }
    }
  }

  void wait() {
    wire::send_batch::flush_this_thread();
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] { return finished_ == results_.items.size(); });
  }

  /// Runs `done` (from the I/O thread, or at once) when every call has finished.
  void on_done(std::function<void()> done) {
    std::unique_lock lock(mu_);
    if (finished_ == results_.items.size()) {
      lock.unlock();
      done();
      return;
    }
    done_ = std::move(done);
  }

  const std::string& function_name() const { return function_->name; }

  map_results take() {
    std::lock_guard lock(mu_);  // (finished() may still be in pump() on the I/O thread)
    return std::move(results_);
  }

  /// Stops the map: no more calls start, and those in flight are cancelled (the server cancels their inputs).
  void cancel() {
    cancelled_ = true;
    client_->cancel_group(this);
  }

 private:
  /// The server's queue for the function is full: the map slows down instead of failing. The item is
  /// submitted again once the server has made room, after a pause that doubles while refusals go on.
  bool refused_for_room(std::size_t i, const std::exception_ptr& error) {
    try {
      std::rethrow_exception(error);
    } catch (const ResourceExhaustedError&) {
    } catch (...) {
      return false;
    }
    std::lock_guard lock(mu_);
    refused_.push_back(i);
    --in_flight_;
    if (!waiting_for_room_) {
      waiting_for_room_ = true;
      pause_ = std::min(std::max(pause_ * 2, std::chrono::milliseconds(10)), std::chrono::milliseconds(1000));
      timer_ = std::make_shared<boost::asio::steady_timer>(client_->executor(), pause_);
      timer_->async_wait([self = shared_from_this()](boost::system::error_code) {
        {
          std::lock_guard lock(self->mu_);
          self->waiting_for_room_ = false;
        }
        self->pump();
      });
    }
    return true;
  }

  void finished(std::size_t i, std::exception_ptr error, buffer result) {
    if (error && refused_for_room(i, error)) return;
    std::function<void()> done;
    std::size_t finished = 0;
    bool last = false;
    {
      std::lock_guard lock(mu_);
      pause_ = std::chrono::milliseconds(0);
      results_.items[i] = {error, std::move(result)};
      results_.completion_order.push_back(i);
      finished = ++finished_;
      --in_flight_;
      // (Decided here: once the lock is released, the waiting caller may take() the results away.)
      last = finished_ == results_.items.size();
      if (last) done = std::move(done_);
    }
    bar_.update(finished);            // (before waking the caller, so that the finished bar precedes what it prints)
    if (last) changed_.notify_all();  // wait() wakes for the last one only
    if (done) {
      done();
    } else {
      pump();
    }
  }

  std::shared_ptr<const function_entry> function_;
  map_item_encoder encode_;
  const std::size_t window_;
  const std::uint64_t parent_input_;  // the input whose body runs the map, in a container
  runtime::progress_bar bar_;
  std::shared_ptr<client::client> client_;
  std::mutex mu_;
  std::condition_variable changed_;
  map_results results_;         // guarded by mu_
  std::size_t next_ = 0;        // guarded by mu_
  std::size_t in_flight_ = 0;   // guarded by mu_
  std::size_t finished_ = 0;    // guarded by mu_
  std::function<void()> done_;  // guarded by mu_
  std::atomic<bool> cancelled_{false};
  std::vector<std::size_t> refused_;                  // guarded by mu_
  bool waiting_for_room_ = false;                     // guarded by mu_
  std::chrono::milliseconds pause_{0};                // guarded by mu_
  std::shared_ptr<boost::asio::steady_timer> timer_;  // guarded by mu_
};

}  // namespace

map_results map_calls(std::shared_ptr<const function_entry> function, std::size_t n, map_item_encoder encode,
                      std::size_t window) {
  auto run = std::make_shared<map_run>(std::move(function), n, std::move(encode), window);
  run->pump();
  run->wait();
  return run->take();
}

Task<map_results> map_calls_async(std::shared_ptr<const function_entry> function, std::size_t n,
                                  map_item_encoder encode, std::size_t window) {
  auto run = std::make_shared<map_run>(std::move(function), n, std::move(encode), window);
  // (Named, not a temporary in the co_await expression: GCC 12 destroys those twice.)
  const std::function<void(client::call_callback)> start = [&run](client::call_callback done) {
    run->on_done([done = std::move(done)] { done(nullptr, buffer{}); });
    run->pump();
  };
  const std::function<std::string()> cancel = [&run] {
    run->cancel();
    return "the map of '" + run->function_name() + "' was cancelled";
  };
  co_await runtime::await_io_completion(start, cancel);
  co_return run->take();
}

}  // namespace ferry::detail
