/// ferry/future.hpp: ferry::Future<T>, a handle to a call that may not have started, and ferry::CallTask<T>.
///
///     ferry::Future<int> a = double_it.future(x);        // nothing runs yet
///     ferry::Future<int> b = double_it.future(x + 1);
///     int sum = add.remote(a, b);   // the server runs a and b in parallel, then add: the values of a and b
///                                   // never travel through this program
///
/// `.run()` starts it (starting twice is an error), `.result()` blocks for its value (starting it if needed),
/// `co_await fut` awaits it (starting it if needed), `.coroutine()` turns it into a Task, `.done()` polls. A
/// Future may be passed wherever a T argument is expected, to any number of calls; the server runs it once.
/// ferry::CallTask<T> is what an async call (`f.remote.aio(x)`, or `f(x)` for an async function) returns: a
/// Task<T> that can also be passed as an argument, like a Future, until it is awaited.
///
/// Threading: a Future is thread-safe: copies share one call, and any member may be called from any thread, from
/// several at once (blocking result() calls, awaits on different loops). An await resumes on the awaiting
/// coroutine's executor; `fut(token)` completes on the token's associated executor. result() on an event loop still
/// returns, but holds the loop meanwhile (ferry logs a warning naming the call site).
///
/// Lifetime: nothing is sent until the future is started, awaited, asked for its result, or passed to a call that
/// is made; dropping every copy of a future never started costs nothing. Once submitted, the call belongs to the
/// server: a started future runs to its end even if every copy is dropped, and one passed as an argument runs for
/// the calls that take it. The server keeps a submitted call's result for this program until the last copy is
/// dropped (and this program keeps the value it fetched until then), so hold a Future only as long as its value is
/// needed.
///
/// Errors: result() and `co_await fut` throw what the call failed with, as Function::remote does
/// (ferry/function.hpp); a call whose argument (another future) failed fails with an error naming that argument and
/// where the failure began. run() throws ferry::Error when the future was started already. A future made from a
/// value (a reduce of one item) cannot be passed as an argument: Error.
///
/// Cancellation: cancelling the coroutine awaiting a Future (or a CallTask passed as an argument before) throws
/// CancelledError there at once. The call itself is cancelled too, on the server, only when nothing else needs it:
/// no other await or result() waits for it, and it is no other call's argument; otherwise it runs on. Awaiting a
/// CallTask that was never passed as an argument is a direct call: cancelling it cancels the remote input, as for
/// remote.aio.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/system_executor.hpp>
#include <exception>
#include <ferry/codec.hpp>
#include <ferry/detail/asio_await.hpp>
#include <ferry/detail/function_entry.hpp>
#include <ferry/errors.hpp>
#include <ferry/task.hpp>
#include <memory>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace ferry {

template <class T>
class Future;

namespace detail {

/// The call behind a Future; defined in the library.
class future_state;

using future_dependency = std::pair<std::uint32_t, std::shared_ptr<future_state>>;

/// A call of `function` with encoded arguments (nil placeholders at the positions of `deps`), not started.
std::shared_ptr<future_state> make_future(std::shared_ptr<const function_entry> function, buffer arguments,
                                          std::vector<future_dependency> deps);
/// Starts it, delivering its result here. Throws Error when it was started already.
void run_future(future_state& state);
bool future_done(future_state& state);
/// Blocks for the result (starting it if needed); throws the call's error.
buffer future_result(future_state& state, const std::source_location& site);
/// Calls `done` once the result exists (starting the call if needed): at once on the calling thread when it
/// does already, otherwise on the client's I/O thread.
void on_future_result(const std::shared_ptr<future_state>& state,
                      std::function<void(std::exception_ptr, const buffer&)> done);
/// Makes sure it is submitted (as an argument: the server keeps the result), and returns its call id.
std::uint64_t submit_as_argument(future_state& state);
/// For a tail call, which takes the place of the body that returns it. A call of the function the container
/// runs, with no futures among its arguments and never started, runs next in the same slot: its arguments
/// go to the current input's `next_hop` and this returns 0 (the input runner runs it, and tells the server).
/// Any other is submitted and given to the server, which delivers its result to the caller of the function
/// that returned it: this returns its call id.
std::uint64_t hand_over(future_state& state);
const std::string& future_function_name(const future_state& state);
/// A future that is done already, with an encoded value (no call behind it; it cannot be an argument).
std::shared_ptr<future_state> make_ready_future(buffer encoded);

template <class T>
inline constexpr bool is_future_v = false;
template <class T>
inline constexpr bool is_future_v<Future<T>> = true;

/// A call not yet started, behind a CallTask: awaiting the task runs it as a direct call, unless passing the
/// task as an argument has made it a future first.
class lazy_call;
std::shared_ptr<lazy_call> make_lazy_call(std::shared_ptr<const function_entry> function, buffer arguments);
std::shared_ptr<lazy_call> make_lazy_call(std::shared_ptr<future_state> future);
/// Runs the call (or awaits its future) and returns its encoded result.
Task<buffer> await_lazy_call(std::shared_ptr<lazy_call> call);
/// The call's future, made on first use. Throws Error once the task has been awaited.
std::shared_ptr<future_state> lazy_call_future(lazy_call& call);
const std::string& lazy_call_function_name(const lazy_call& call);

/// Decodes the result of `call` (a function's name, quoted, or a spawned call's id); a result that does not
/// decode throws Error saying so, followed by `fix`.
template <class T>
T decode_call_result(const std::string& call, const buffer& encoded,
                     const char* fix =
                         "the caller and the container disagree on the function's signature (rebuild "
                         "both from one source)") {
  reader r{encoded.view()};
  try {
    return ferry::decode<T>(r);
  } catch (const DecodeError& e) {
    throw Error("the result of " + call + " does not decode as " + codec<T>::name() + ": " + e.what() + "; " + fix);
  }
}

}  // namespace detail

namespace detail {
/// Awaits the call behind a future (starting it if needed); returns its encoded result.
Task<buffer> await_future(std::shared_ptr<future_state> state);
}  // namespace detail

template <class T>
class Future {
 public:
  using value_type = T;

  explicit Future(std::shared_ptr<detail::future_state> state) : state_(std::move(state)) {}

  /// Another handle to the same call (copies share it too).
  Future share() const { return Future(state_); }

  /// Starts the call now; returns *this. Throws ferry::Error when it has been started already.
  Future& run() {
    detail::run_future(*state_);
    return *this;
  }

  /// Blocks until the value exists (starting the call if needed) and returns it; throws the call's error.
  T result(std::source_location site = std::source_location::current()) const {
    return detail::decode_call_result<T>("'" + detail::future_function_name(*state_) + "'",
                                         detail::future_result(*state_, site));
  }

  /// Whether the call has ended (with a value or an error). Never blocks, never starts it.
  bool done() const { return detail::future_done(*state_); }

  /// A Task that awaits this future (starting it when awaited): for create_task, gather, or anything else
  /// that takes a Task.
  Task<T> coroutine() const { return awaiting(state_); }

  /// A Future is an Asio asynchronous operation with the completion signature void(std::exception_ptr, T):
  /// `co_await fut` awaits it (lvalue or rvalue: ferry/detail/asio_await.hpp), and `fut(token)` takes any
  /// completion token (a callback runs on its associated executor, by default Asio's system executor). T must
  /// be default-constructible here.
  template <boost::asio::completion_token_for<void(std::exception_ptr, T)> CompletionToken>
  auto operator()(CompletionToken&& token) const {
    return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr, T)>(
        [](auto handler, std::shared_ptr<detail::future_state> state) {
          auto executor = boost::asio::get_associated_executor(handler, boost::asio::system_executor());
          boost::asio::co_spawn(executor, awaiting(std::move(state)), std::move(handler));
        },
        token, state_);
  }

  const std::shared_ptr<detail::future_state>& state() const noexcept { return state_; }

 private:
  static Task<T> awaiting(std::shared_ptr<detail::future_state> state) {
    detail::buffer encoded = co_await detail::await_future(state);
    co_return detail::decode_call_result<T>("'" + detail::future_function_name(*state) + "'", encoded);
  }

  std::shared_ptr<detail::future_state> state_;
};

/// What an async call returns: a lazy Task<T> (await it, gather it, hand it to create_task) that can also be
/// passed as an argument where a T is expected, before it is awaited, like a Future:
///
///     auto a = double_it(x);           // double_it is async: nothing runs yet
///     auto b = double_it(x + 1);
///     int sum = co_await add(a, b);    // the server runs both doubles in parallel, then add
template <class T>
class CallTask : public Task<T> {
 public:
  using value_type = T;

  explicit CallTask(std::shared_ptr<detail::lazy_call> call) : Task<T>(run(call)), call_(std::move(call)) {}

  /// The call as a future, for passing it as an argument. Throws Error once the task has been awaited.
  std::shared_ptr<detail::future_state> state() const { return detail::lazy_call_future(*call_); }

 private:
  static Task<T> run(std::shared_ptr<detail::lazy_call> call) {
    detail::buffer encoded = co_await detail::await_lazy_call(call);
    if constexpr (!std::is_void_v<T>)
      co_return detail::decode_call_result<T>("'" + detail::lazy_call_function_name(*call) + "'", encoded);
  }

  std::shared_ptr<detail::lazy_call> call_;
};

namespace detail {

template <class T>
inline constexpr bool awaited_as_task<Future<T>> = true;

template <class T>
Future<T> ready_future(const T& value) {
  buffer encoded;
  codec<T>::encode(encoded, value);
  return Future<T>(make_ready_future(std::move(encoded)));
}

}  // namespace detail
}  // namespace ferry
