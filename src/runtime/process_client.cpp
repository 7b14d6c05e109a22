#include "runtime/process_client.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <ferry/errors.hpp>
#include <ferry/function.hpp>
#include <mutex>
#include <optional>
#include <set>

#include "container/current.hpp"
#include "runtime/server_config.hpp"
#include "wire/tls.hpp"

namespace ferry::runtime {

namespace {
std::mutex mu;
std::shared_ptr<client::client> current;  // guarded by mu

/// Outside app.main: the program's own connection to the standalone server.
struct standalone_connection {
  std::mutex mu;
  std::shared_ptr<client::client> client;  // guarded by mu
  ~standalone_connection() {
    // At exit: close it before the static objects its I/O thread might use go.
    std::lock_guard lock(mu);
    client.reset();
  }
};
standalone_connection& standalone() {
  static standalone_connection connection;
  return connection;
}

}  // namespace

client::connect_options server_connect_options(std::string address, std::filesystem::path state_dir) {
  if (address.empty()) {
    const char* env = std::getenv("FERRY_SERVER");
    address = env && *env ? env : default_server_address;
  }
  client::connect_options options;
  options.server = client::endpoint::parse(address);
  if (const char* cert = std::getenv("FERRY_SERVER_CERT"); cert && *cert) {
    try {
      options.server_cert = wire::tls::parse_pin(cert);
    } catch (const Error& e) {
      throw ConnectionError(std::string("FERRY_SERVER_CERT: ") + e.what());
    }
  }
  if (const char* token = std::getenv("FERRY_TOKEN"); token && *token) {
    options.token = token;
  } else {
    options.read_token = [state_dir = state_dir.empty() ? default_state_dir() : std::move(state_dir)] {
      return read_token(state_dir);
    };
  }
  return options;
}

std::shared_ptr<client::client> require_client(const std::string& function) {
  if (auto c = process_client()) return c;
  standalone_connection& s = standalone();
  std::lock_guard lock(s.mu);
  if (!s.client || s.client->closed()) {
    s.client.reset();
    try {
      s.client = client::client::connect(server_connect_options(""));
    } catch (const ConnectionError& e) {
      throw ConnectionError("cannot call '" + function + "': " + e.what());
    }
  }
  return s.client;
}

/// A blocking call on an event loop holds every coroutine of that loop until it returns: say so, once per
/// call site.
void warn_if_blocking_on_loop(const std::string& function, const std::source_location& site) {
  if (!container::current_loop_executor()) return;
  static std::mutex warned_mu;
  static std::set<std::pair<std::string, unsigned>> warned;
  {
    std::lock_guard lock(warned_mu);
    if (!warned.emplace(site.file_name(), site.line()).second) return;
  }
  spdlog::warn(
      "blocking call of '{}' at {}:{} on an event-loop thread: it holds the loop and every coroutine on it until "
      "'{}' returns; use `co_await {}.remote.aio(...)` instead",
      function, site.file_name(), site.line(), function, function);
}

Task<detail::buffer> await_io_completion(const std::function<void(client::call_callback)>& start,
                                         const std::function<std::string()>& on_cancel) {
  namespace asio = boost::asio;
  // GCC 12 destroys a temporary inside a co_await expression twice: the initiation captures by reference
  // (it runs within this frame), never an owning copy.
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, detail::buffer)>(
      [&](auto awaiting) {
        // Completed once, by the I/O thread's answer or by the cancellation, whichever reaches the awaiting
        // coroutine's executor first: both are posted there, so `handler` is confined to it.
        //
        // Once the await has ended the loop may end, and whoever owns it may destroy it: an answer must not be
        // handed to it then, nor be still waking it. So `work` (the loop's executor, counting the await as
        // outstanding work) is held until one side claims the await: the I/O thread, to hand over the answer
        // (it lets go of the work once the answer is posted, so the loop runs at least until then), or the
        // loop, when a cancellation ends the await first (it lets go at once, and an answer after that is
        // dropped). The claim is one atomic per await: no lock is shared with other awaits or other loops.
        struct operation {
          enum claimant : int { nobody, answer, cancellation };
          explicit operation(decltype(awaiting) h, const std::function<std::string()>& cancel)
              : executor(asio::get_associated_executor(h)),
                work(asio::prefer(executor, asio::execution::outstanding_work.tracked)),
                slot(asio::get_associated_cancellation_slot(h)),
                on_cancel(cancel) {
            handler.emplace(std::move(h));
          }
          std::optional<decltype(awaiting)> handler;
          asio::any_io_executor executor;
          asio::any_io_executor work;  // owned by whoever claims the await
          asio::cancellation_slot slot;
          const std::function<std::string()>& on_cancel;  // (the caller's, alive while the await is pending)
          std::atomic<int> claimed{nobody};

          bool claim(claimant who) {
            int expected = nobody;
            return claimed.compare_exchange_strong(expected, who, std::memory_order_acq_rel);
          }
          void finish(std::exception_ptr error, detail::buffer payload) {
            if (!handler) return;
            if (claim(cancellation)) work = {};
            if (slot.is_connected()) slot.clear();
            auto h = std::move(*handler);
            handler.reset();
            std::move(h)(error, std::move(payload));
          }
        };
        auto op = std::make_shared<operation>(std::move(awaiting), on_cancel);
        if (op->slot.is_connected()) {
          op->slot.assign([op](asio::cancellation_type) {
            asio::post(op->executor, [op] {
              if (!op->handler) return;  // answered meanwhile
              const std::string message = op->on_cancel();
              op->finish(std::make_exception_ptr(CancelledError(message)), {});
            });
          });
        }
        start([op](std::exception_ptr error, detail::buffer payload) {
          if (!op->claim(operation::answer)) return;  // the await has ended: its loop may have gone
          const asio::any_io_executor work = std::move(op->work);
          asio::post(work,
                     [op, error, payload = std::move(payload)]() mutable { op->finish(error, std::move(payload)); });
        });  // (the work ends here, once the answer is posted)
      },
      asio::use_awaitable);
}

void set_process_client(std::shared_ptr<client::client> c) {
  std::lock_guard lock(mu);
  current = std::move(c);
}

std::shared_ptr<client::client> process_client() {
  std::lock_guard lock(mu);
  return current;
}

}  // namespace ferry::runtime

namespace ferry::detail {

buffer call_remote(const function_entry& function, const std::function<void(buffer&)>& encode_args,
                   const std::source_location& site) {
  auto c = runtime::require_client(function.name);
  runtime::warn_if_blocking_on_loop(function.name, site);
  return c->call({function, encode_args, {}, wire::deliver_result, container::current_input_id()});
}

Task<buffer> call_remote_async(std::shared_ptr<const function_entry> function,
                               std::function<void(buffer&)> encode_args) {
  auto c = runtime::require_client(function->name);
  const std::uint64_t parent = container::current_input_id();
  co_return co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                                 void(std::exception_ptr, buffer)>(
      [&](auto handler) {
        c->start_call({*function, encode_args, {}, wire::deliver_result, parent}, std::move(handler));
      },
      boost::asio::use_awaitable);
}

}  // namespace ferry::detail
