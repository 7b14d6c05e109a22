/// ferry/async.hpp: composing Tasks: gather, create_task, run, sleep; and, for bodies, cancelled() and progress().
///
///     auto [text, joke] = co_await ferry::gather(capitalize(name), make_joke(name));   // concurrently
///     std::vector<int> all = co_await ferry::gather(std::move(tasks));                 // in order
///     auto background = ferry::create_task(double_it(x));  // starts now
///     int v = co_await background;                           // awaits it later (as often as wanted)
///
/// Threading: gather and create_task run what they are given on the awaiting coroutine's executor, its event loop
/// (in a container, an async input's one executor thread), so everything they start stays on one thread. A
/// StartedTask is confined to that loop: await it and call done() there; cancel() and `t(token)` may be called from
/// any thread. ferry::run makes an event loop of the calling thread. cancelled() and progress() are safe from any
/// thread, and apply to the input whose code the calling thread runs.
///
/// Lifetime: a created task runs whether or not anything awaits it, until it ends or is cancelled; the loop of an
/// async entrypoint, or of ferry::run, does not end before every task created on it has.
///
/// Errors: gather rethrows the first error of the tasks it awaits, once they have all finished. Awaiting a
/// StartedTask rethrows the task's exception (CancelledError when it was cancelled first). create_task outside a
/// ferry event loop throws ferry::Error.
///
/// Cancellation: every awaitable here honours Asio's per-operation cancellation, and what it cancels remotely is
/// what its tasks' awaits cancel (ferry/function.hpp, ferry/future.hpp): gather, cancelled or failing, cancels its
/// tasks (their remote inputs too) at their next suspension point and waits for them; a coroutine awaiting a
/// StartedTask that is cancelled stops waiting (CancelledError) and cancels the task when nothing else awaits it;
/// sleep throws CancelledError.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <chrono>
#include <exception>
#include <ferry/detail/asio_await.hpp>
#include <ferry/future.hpp>
#include <ferry/task.hpp>
#include <memory>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace ferry {

/// True when the input that the calling code runs for has been cancelled (FunctionCall::cancel, or the
/// caller's awaiting coroutine was cancelled). A blocking body polls it to stop early; an async body is
/// cancelled at its next suspension point anyway. False outside a container.
bool cancelled() noexcept;

/// Reports how far the input that the calling code runs for has got: `done` of `total` (any unit), with an
/// optional message. Callers see it in the HTTP API (a call's `progress`, and `progress` events) and in
/// the dashboard. Cheap to call often: updates closer than 50 ms apart are coalesced (the last one, when
/// done reaches total, always goes out). Does nothing outside a container.
void progress(double done, double total, std::string_view message = {});

/// Suspends the calling coroutine for `duration` on an Asio timer (the thread goes on running others).
Task<void> sleep(std::chrono::steady_clock::duration duration);

namespace detail {

/// Runs `task` on a new event loop on the calling thread until it finishes; rethrows its exception.
void run_to_completion(Task<void> task);

/// Awaits every task concurrently on the current executor. When one throws, the others are cancelled (at
/// their next suspension point; their remote inputs too), and once all have finished the first error is
/// rethrown. Cancelling the awaiting coroutine cancels them all.
Task<void> gather_all(std::vector<Task<void>> tasks);

/// The executor that create_task starts tasks on: the running ferry event loop's (in a container, the
/// current input's). Throws Error outside one.
boost::asio::any_io_executor current_executor();

/// A task started by create_task, and its end, shared by the StartedTask handles and whoever awaits them.
/// Confined to the executor the task runs on.
class started_task {
 public:
  /// Starts `task` on the current executor (see current_executor).
  void start(Task<void> task);
  /// Waits for the task's end; rethrows its exception. When the awaiting coroutine is cancelled first, it
  /// stops waiting with CancelledError, and the task is cancelled too if nothing else awaits it.
  Task<void> wait() const;
  bool done() const;
  /// Asks the task to stop: it is cancelled at its next suspension point (its remote calls with it).
  void cancel() const;
  /// The executor the task runs on (its state is confined to it).
  const boost::asio::any_io_executor& executor() const;

 private:
  struct state;
  std::shared_ptr<state> state_;
};

template <class T>
using gathered_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// The completion signature of a StartedTask<T>: void(std::exception_ptr, T), or void(std::exception_ptr).
template <class T>
struct started_signature {
  using type = void(std::exception_ptr, T);
};
template <>
struct started_signature<void> {
  using type = void(std::exception_ptr);
};

template <class T, class Store>
Task<void> store_result(Task<T> task, Store store) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(task);
    store(std::monostate{});
  } else {
    store(co_await std::move(task));
  }
}

}  // namespace detail

/// What ferry::create_task returns: a handle to a task that runs on its own, whether or not anything awaits
/// it (asyncio's Task). Await it with `co_await t`, from as many coroutines and as often as wanted: each gets
/// its value (a copy, when T can be copied) or its exception. Pass it to gather, poll it with done(), stop it
/// with cancel(). A coroutine awaiting it that is cancelled stops waiting (CancelledError), and cancels the
/// task when nothing else awaits it. Copies share the task. Confined to the event loop it runs on, like the
/// coroutines that await it.
template <class T>
class StartedTask {
 public:
  using value_type = T;
  using result_storage = std::shared_ptr<std::optional<detail::gathered_t<T>>>;

  StartedTask(detail::started_task task, result_storage result) : task_(std::move(task)), result_(std::move(result)) {}

  /// Whether the task has ended (with a value or an exception). Never suspends.
  bool done() const { return task_.done(); }
  /// Asks the task to stop: it is cancelled at its next suspension point, with its remote calls; awaiting it
  /// then throws CancelledError (unless it ended first).
  void cancel() const { task_.cancel(); }
  /// A Task that awaits it: for anything that takes a Task.
  Task<T> coroutine() const { return awaiting(task_, result_); }

  /// An Asio asynchronous operation, like ferry::Future: `co_await t`, or `t(token)` with any completion token.
  /// (The wait runs on the task's own loop; the handler is completed on its associated executor.)
  template <boost::asio::completion_token_for<typename detail::started_signature<T>::type> CompletionToken>
  auto operator()(CompletionToken&& token) const {
    using signature = typename detail::started_signature<T>::type;
    return boost::asio::async_initiate<CompletionToken, signature>(
        [](auto handler, Task<T> task, boost::asio::any_io_executor loop) {
          boost::asio::co_spawn(loop, std::move(task), std::move(handler));
        },
        token, coroutine(), task_.executor());
  }

 private:
  static Task<T> awaiting(detail::started_task task, result_storage result) {
    co_await task.wait();
    if constexpr (std::is_void_v<T>) {
      co_return;
    } else if constexpr (std::is_copy_constructible_v<T>) {
      co_return T(**result);  // every awaiter gets the value
    } else {
      co_return std::move(**result);  // a value that cannot be copied goes to the first awaiter
    }
  }

  detail::started_task task_;
  result_storage result_;
};

namespace detail {

/// What may be gathered or awaited as a Task: a Task (or CallTask), a Future, a StartedTask.
template <class A>
struct awaited;
template <class T>
struct awaited<Task<T>> {
  using type = T;
  static Task<T> task(Task<T> t) { return t; }
};
template <class T>
struct awaited<CallTask<T>> : awaited<Task<T>> {};
template <class T>
struct awaited<Future<T>> {
  using type = T;
  static Task<T> task(const Future<T>& f) { return f.coroutine(); }
};
template <class T>
struct awaited<StartedTask<T>> {
  using type = T;
  static Task<T> task(const StartedTask<T>& t) { return t.coroutine(); }
};
template <class A>
using awaited_t = typename awaited<std::remove_cvref_t<A>>::type;

template <class T>
inline constexpr bool awaited_as_task<StartedTask<T>> = true;

}  // namespace detail

/// Awaits all of them concurrently (Tasks, Futures, created tasks) and returns their values in order
/// (std::monostate for void). If one throws, the others are cancelled (their remote inputs too) and that first
/// error is rethrown.
template <class... A>
Task<std::tuple<detail::gathered_t<detail::awaited_t<A>>...>> gather(A... tasks) {
  std::tuple<std::optional<detail::gathered_t<detail::awaited_t<A>>>...> results;
  std::vector<Task<void>> all;
  all.reserve(sizeof...(A));
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (all.push_back(
         detail::store_result(detail::awaited<A>::task(std::move(tasks)),
                              [&results](auto&& v) { std::get<I>(results).emplace(std::forward<decltype(v)>(v)); })),
     ...);
  }
  (std::index_sequence_for<A...>{});
  co_await detail::gather_all(std::move(all));
  co_return std::apply(
      [](auto&... r) { return std::tuple<detail::gathered_t<detail::awaited_t<A>>...>{std::move(*r)...}; }, results);
}

/// Awaits all of them concurrently and returns their values in input order; the same error rules.
template <class A>
Task<std::vector<detail::gathered_t<detail::awaited_t<A>>>> gather(std::vector<A> tasks) {
  using value = detail::gathered_t<detail::awaited_t<A>>;
  std::vector<std::optional<value>> results(tasks.size());
  std::vector<Task<void>> all;
  all.reserve(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    all.push_back(detail::store_result(detail::awaited<A>::task(std::move(tasks[i])),
                                       [&results, i](auto&& v) { results[i].emplace(std::forward<decltype(v)>(v)); }));
  }
  co_await detail::gather_all(std::move(all));
  std::vector<value> values;
  values.reserve(results.size());
  for (auto& r : results) values.push_back(std::move(*r));
  co_return values;
}

/// Runs `task` from blocking code on an event loop made of the calling thread (Python's asyncio.run), until it
/// and every task it created have ended; returns its value or rethrows its exception.
template <class T>
T run(Task<T> task) {
  std::optional<detail::gathered_t<T>> result;
  detail::run_to_completion(
      detail::store_result(std::move(task), [&result](auto&& v) { result.emplace(std::forward<decltype(v)>(v)); }));
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

/// Starts `task` now, on the running event loop, and returns its StartedTask: await it later (as often as
/// wanted), gather it, poll it, cancel it. The task runs even if nothing awaits it. Must be called on a ferry
/// event loop: an async entrypoint, or an async body in a container (Error otherwise).
template <class T>
StartedTask<T> create_task(Task<T> task) {
  auto result = std::make_shared<std::optional<detail::gathered_t<T>>>();
  detail::started_task started;
  started.start(
      detail::store_result(std::move(task), [result](auto&& v) { result->emplace(std::forward<decltype(v)>(v)); }));
  return StartedTask<T>(std::move(started), std::move(result));
}

}  // namespace ferry
