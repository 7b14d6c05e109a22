// f.map: many calls of one function, fed to the server through a window of calls in flight.
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <ferry/function.hpp>
#include <mutex>

#include "runtime/process_client.hpp"

namespace ferry::detail {

namespace {

/// One map in progress. Calls are submitted from the caller's thread at first, then from the client's
/// I/O thread as earlier ones finish; everything shared is guarded by mu.
class map_run : public std::enable_shared_from_this<map_run> {
 public:
  map_run(std::shared_ptr<const function_entry> f, std::size_t n, map_item_encoder e, std::size_t w)
      : function_(std::move(f)), encode_(std::move(e)), window_(std::max<std::size_t>(w, 1)) {
    results_.items.resize(n);
    results_.completion_order.reserve(n);
    client_ = runtime::require_client(function_->name);
  }

  /// Submits calls while the window has room.
  void pump() {
    for (;;) {
      std::size_t i = 0;
      {
        std::lock_guard lock(mu_);
        if (next_ >= results_.items.size() || in_flight_ >= window_) return;
        i = next_++;
        ++in_flight_;
      }
      try {
        buffer arguments;
        std::vector<future_dependency> futures;
        encode_(i, arguments, futures);
        std::vector<wire::dependency> deps;
        for (const auto& [position, future] : futures) deps.emplace_back(position, submit_as_argument(*future));
        client_->submit(
            {*function_, [&](buffer& out) { out.append(arguments.data(), arguments.size()); }, std::move(deps)},
            [self = shared_from_this(), i](std::exception_ptr error, buffer result) {
              self->finished(i, error, std::move(result));
            });
      } catch (...) {
        finished(i, std::current_exception(), buffer{});
      }
    }
  }

  void wait() {
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

  map_results take() { return std::move(results_); }

 private:
  void finished(std::size_t i, std::exception_ptr error, buffer result) {
    std::function<void()> done;
    {
      std::lock_guard lock(mu_);
      results_.items[i] = {error, std::move(result)};
      results_.completion_order.push_back(i);
      ++finished_;
      --in_flight_;
      if (finished_ == results_.items.size()) done = std::move(done_);
    }
    changed_.notify_all();
    if (done) {
      done();
    } else {
      pump();
    }
  }

  std::shared_ptr<const function_entry> function_;
  map_item_encoder encode_;
  const std::size_t window_;
  std::shared_ptr<client::client> client_;
  std::mutex mu_;
  std::condition_variable changed_;
  map_results results_;         // guarded by mu_
  std::size_t next_ = 0;        // guarded by mu_
  std::size_t in_flight_ = 0;   // guarded by mu_
  std::size_t finished_ = 0;    // guarded by mu_
  std::function<void()> done_;  // guarded by mu_
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
  // (The initiation captures `run` by reference: GCC 12 destroys co_await temporaries twice.)
  co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void()>(
      [&run](auto handler) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        run->on_done([shared] {
          auto executor = boost::asio::get_associated_executor(*shared);
          boost::asio::post(executor, [shared] { std::move (*shared)(); });
        });
        run->pump();
      },
      boost::asio::use_awaitable);
  co_return run->take();
}

}  // namespace ferry::detail
