/// ferry/function_call.hpp: ferry::FunctionCall<R>, a durably spawned call (f.spawn, ferry/spawn.hpp).
///
///     ferry::FunctionCall<int> call = square.spawn(7);   // returns once the server has stored the input
///     std::string id = call.id();                         // keep it; any program may fetch the result
///     int v = ferry::FunctionCall<int>::from_id(id).get(std::chrono::seconds{30});
///
/// Every operation has a blocking form and an awaitable one: `call.get(timeout)` / `co_await
/// call.get.aio(timeout)`, `call.cancel()` / `co_await call.cancel.aio()`, `FunctionCall<R>::from_id(id)` /
/// `co_await FunctionCall<R>::from_id.aio(id)`.
///
/// Threading: a FunctionCall is a value (the call's id): copy it freely and use it from any thread. A blocking form
/// on an event loop still returns, but holds the loop (ferry logs a warning naming the call site).
///
/// Lifetime: the call belongs to the server, not to any FunctionCall: it survives the exit of the program that
/// spawned it and a restart of the server, and dropping every handle changes nothing. Its id is valid in any
/// program that reaches the same server; its result is kept for the server's retention (7 days by default).
///
/// Errors: get throws NotFinishedError when the call has not finished within the timeout (not a failure: get it
/// again later), ResultExpiredError once its result is no longer kept, or what the call failed with (as
/// Function::remote throws it; CancelledError after cancel()); ferry::Error when the result does not decode as R (R
/// must be the spawned function's result type). from_id and cancel throw UnknownCallError for an id the server does
/// not know. All throw ConnectionError when the server cannot be reached.
///
/// Cancellation: cancel() cancels the call on the server (it is never retried); cancelling the coroutine awaiting
/// get.aio, cancel.aio or from_id.aio only stops that wait: the call, and a cancel already sent, stand.
#pragma once

#include <chrono>
#include <ferry/codec.hpp>
#include <ferry/detail/buffer.hpp>
#include <ferry/detail/control_verb.hpp>
#include <ferry/errors.hpp>
#include <ferry/future.hpp>
#include <ferry/task.hpp>
#include <functional>
#include <source_location>
#include <string>

namespace ferry {

namespace detail {

/// A control request to the server (see the wire protocol's `request`): blocking, and awaitable.
buffer control_request(control_verb verb, const std::string& subject, const std::function<void(buffer&)>& write,
                       const std::source_location& site);
Task<buffer> control_request_async(control_verb verb, std::string subject, std::function<void(buffer&)> write);

/// A `get` of a spawned call, waiting at most `timeout`.
std::function<void(buffer&)> get_payload(std::chrono::milliseconds timeout);
std::string decode_string(const buffer& encoded);
/// For from_id, after a `get` that did not return a value: rethrows when the call does not exist (or the
/// server cannot be reached); returns when the call exists (not finished, expired, or failed).
void rethrow_unless_call_exists(std::exception_ptr error);

}  // namespace detail

template <class R>
class FunctionCall {
 public:
  /// The value the call produces (std::monostate for a void function).
  using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
  /// Waiting for ever, for get().
  static constexpr std::chrono::milliseconds forever{std::chrono::hours(24 * 49)};

  /// `call.get(timeout)` and `co_await call.get.aio(timeout)`: the call's value. Throws NotFinishedError
  /// when it has not finished within `timeout` (not a failure: get it again later), ResultExpiredError when
  /// its result is no longer kept, or the error the call failed with.
  class getter {
   public:
    R operator()(std::chrono::milliseconds timeout = forever,
                 std::source_location site = std::source_location::current()) const {
      return decode(id_, detail::control_request(detail::control_verb::get, id_, detail::get_payload(timeout), site));
    }
    Task<R> aio(std::chrono::milliseconds timeout = forever) const {
      return [](std::string id, std::chrono::milliseconds t) -> Task<R> {
        detail::buffer encoded =
            co_await detail::control_request_async(detail::control_verb::get, id, detail::get_payload(t));
        co_return decode(id, encoded);
      }(id_, timeout);
    }

   private:
    friend class FunctionCall;
    static R decode(const std::string& id, const detail::buffer& encoded) {
      if constexpr (!std::is_void_v<R>) {
        return detail::decode_call_result<R>(
            "call " + id, encoded, "FunctionCall<R>::from_id needs R to be the spawned function's result type");
      }
    }
    std::string id_;
  };

  /// `call.cancel()` and `co_await call.cancel.aio()`: stops the call (never retried); get then throws
  /// CancelledError. A call that has finished stays as it is.
  class canceller {
   public:
    void operator()(std::source_location site = std::source_location::current()) const {
      detail::control_request(detail::control_verb::cancel, id_, {}, site);
    }
    Task<void> aio() const {
      return [](std::string id) -> Task<void> {
        co_await detail::control_request_async(detail::control_verb::cancel, id, {});
      }(id_);
    }

   private:
    friend class FunctionCall;
    std::string id_;
  };

  /// `FunctionCall<R>::from_id(id)` and `co_await FunctionCall<R>::from_id.aio(id)`: a call spawned by any
  /// program. Throws UnknownCallError when the server has no such call.
  struct from_id_lookup {
    FunctionCall operator()(const std::string& id, std::source_location site = std::source_location::current()) const {
      check(id, site);
      return FunctionCall(id);
    }
    Task<FunctionCall> aio(std::string id) const {
      std::exception_ptr error;
      try {
        co_await detail::control_request_async(detail::control_verb::get, id,
                                               detail::get_payload(std::chrono::milliseconds(0)));
      } catch (...) {
        error = std::current_exception();
      }
      if (error) detail::rethrow_unless_call_exists(error);
      co_return FunctionCall(id);
    }

   private:
    static void check(const std::string& id, const std::source_location& site) {
      try {
        detail::control_request(detail::control_verb::get, id, detail::get_payload(std::chrono::milliseconds(0)), site);
      } catch (...) {
        detail::rethrow_unless_call_exists(std::current_exception());
      }
    }
  };
  static inline const from_id_lookup from_id{};

  explicit FunctionCall(std::string id) : id_(std::move(id)) {
    get.id_ = id_;
    cancel.id_ = id_;
  }

  /// The call's id (`fc-...`), valid across programs and server restarts.
  const std::string& id() const noexcept { return id_; }

  getter get;
  canceller cancel;

 private:
  std::string id_;
};

}  // namespace ferry
