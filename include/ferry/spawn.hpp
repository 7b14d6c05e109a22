/// ferry/spawn.hpp: f.spawn, a durable call: `f.spawn(args...)` and `co_await f.spawn.aio(args...)` return a
/// ferry::FunctionCall (ferry/function_call.hpp) once the server has stored the input.
///
///     ferry::FunctionCall<int> call = square.spawn(7);
///     auto again = square.spawn(ferry::SpawnOptions{.idempotency_key = "square-7"}, 7);   // the same call
///
/// Threading: `spawn` is a member of a Function handle; callable from any thread, like the handle.
///
/// Lifetime: the call belongs to the server, not to this program or the FunctionCall: it runs after the program
/// exits, and again after a server crash or restart; spawns are never refused for room (beyond the in-memory queue
/// limit they wait in the server's database). Its result is kept for the server's retention (7 days by default).
///
/// Errors: UnknownFunctionError, PayloadTooLargeError, ConnectionError; what the call itself fails with comes from
/// FunctionCall::get. The blocking form on an event loop works, but holds the loop (ferry logs a warning).
///
/// Cancellation: cancelling the coroutine awaiting spawn.aio stops the wait only; the spawn stands if the server
/// received it (FunctionCall::cancel cancels a call).
#pragma once

#include <ferry/codec.hpp>
#include <ferry/detail/buffer.hpp>
#include <ferry/detail/call_arguments.hpp>
#include <ferry/detail/control_verb.hpp>
#include <ferry/detail/function_entry.hpp>
#include <ferry/function_call.hpp>
#include <ferry/task.hpp>
#include <functional>
#include <memory>
#include <source_location>
#include <string>
#include <utility>

namespace ferry {

/// Options of f.spawn.
struct SpawnOptions {
  /// A spawn with a key the server has seen returns the existing call instead of starting another.
  std::string idempotency_key;
};

namespace detail {

/// A `spawn`: the key and the arguments `args` appends. Refers to both: use it at once.
std::function<void(buffer&)> spawn_payload(const std::string& idempotency_key,
                                           const std::function<void(buffer&)>& args);

/// The `spawn` member of a Function whose calls produce V and take A...: `f.spawn(args...)`,
/// `f.spawn(SpawnOptions{...}, args...)` and their `.aio` forms.
template <class V, class... A>
class spawn_caller {
 public:
  explicit spawn_caller(std::shared_ptr<const function_entry> entry) : entry_(std::move(entry)) {}

  FunctionCall<V> operator()(const A&... args, std::source_location site = std::source_location::current()) const {
    return with(site, SpawnOptions{}, args...);
  }
  FunctionCall<V> operator()(const SpawnOptions& options, const A&... args,
                             std::source_location site = std::source_location::current()) const {
    return with(site, options, args...);
  }
  Task<FunctionCall<V>> aio(const A&... args) const { return aio_with(entry_, SpawnOptions{}, args...); }
  Task<FunctionCall<V>> aio(const SpawnOptions& options, const A&... args) const {
    return aio_with(entry_, options, args...);
  }

 private:
  FunctionCall<V> with(const std::source_location& site, const SpawnOptions& options, const A&... args) const {
    const std::function<void(buffer&)> encode = [&](buffer& out) { encode_arguments(out, args...); };
    const buffer id = control_request(control_verb::spawn, entry_->app + "." + entry_->name,
                                      spawn_payload(options.idempotency_key, encode), site);
    return FunctionCall<V>(decode_string(id));
  }
  static Task<FunctionCall<V>> aio_with(std::shared_ptr<const function_entry> entry, SpawnOptions options, A... args) {
    const std::function<void(buffer&)> encode = [&](buffer& out) { encode_arguments(out, args...); };
    buffer id = co_await control_request_async(control_verb::spawn, entry->app + "." + entry->name,
                                               spawn_payload(options.idempotency_key, encode));
    co_return FunctionCall<V>(decode_string(id));
  }

  std::shared_ptr<const function_entry> entry_;
};

}  // namespace detail
}  // namespace ferry
