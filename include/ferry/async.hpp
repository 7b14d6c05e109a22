/// ferry/async.hpp: composing Tasks: gather, create_task, and cancellation.
///
///     auto [text, joke] = co_await ferry::gather(capitalize(name), make_joke(name));   // concurrently
///     std::vector<int> all = co_await ferry::gather(std::move(tasks));                 // in order
///     auto background = ferry::create_task(double_it(x));  // starts now
///     int v = co_await std::move(background);                 // awaits it later
///
/// All of these run on the awaiting coroutine's executor, so everything stays on one thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <exception>
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

/// The shared state between a task started by create_task and whoever awaits it.
class started_task {
 public:
  /// Starts `task` on the current executor; its outcome is kept until awaited.
  void start(Task<void> task);
  /// Waits for the outcome; rethrows the task's exception.
  Task<void> wait();

 private:
  struct state;
  std::shared_ptr<state> state_;
};

template <class T>
using gathered_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

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

/// Awaits all tasks concurrently and returns their values in order (std::monostate for Task<void>).
/// If one throws, the others are cancelled (their remote inputs too) and that first error is rethrown.
template <class... T>
Task<std::tuple<detail::gathered_t<T>...>> gather(Task<T>... tasks) {
  std::tuple<std::optional<detail::gathered_t<T>>...> results;
  std::vector<Task<void>> all;
  all.reserve(sizeof...(T));
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (all.push_back(detail::store_result(
         std::move(tasks), [&results](auto&& v) { std::get<I>(results).emplace(std::forward<decltype(v)>(v)); })),
     ...);
  }
  (std::index_sequence_for<T...>{});
  co_await detail::gather_all(std::move(all));
  co_return std::apply([](auto&... r) { return std::tuple<detail::gathered_t<T>...>{std::move(*r)...}; }, results);
}

/// Awaits all tasks concurrently and returns their values in input order; the same error rules.
template <class T>
Task<std::vector<detail::gathered_t<T>>> gather(std::vector<Task<T>> tasks) {
  std::vector<std::optional<detail::gathered_t<T>>> results(tasks.size());
  std::vector<Task<void>> all;
  all.reserve(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    all.push_back(detail::store_result(std::move(tasks[i]),
                                       [&results, i](auto&& v) { results[i].emplace(std::forward<decltype(v)>(v)); }));
  }
  co_await detail::gather_all(std::move(all));
  std::vector<detail::gathered_t<T>> values;
  values.reserve(results.size());
  for (auto& r : results) values.push_back(std::move(*r));
  co_return values;
}

/// Runs `task` to completion from blocking code, on an event loop on the calling thread (Python's
/// asyncio.run), and returns its value or rethrows its exception.
template <class T>
T run(Task<T> task) {
  std::optional<detail::gathered_t<T>> result;
  detail::run_to_completion(
      detail::store_result(std::move(task), [&result](auto&& v) { result.emplace(std::forward<decltype(v)>(v)); }));
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

/// Starts `task` now, on the running event loop, and returns a Task that awaits its outcome later (it
/// may also be passed to gather). The task runs even if the returned Task is never awaited. Must be
/// called on a ferry event loop: an async entrypoint, or an async body in a container.
template <class T>
Task<T> create_task(Task<T> task) {
  auto result = std::make_shared<std::optional<detail::gathered_t<T>>>();
  auto started = std::make_shared<detail::started_task>();
  started->start(
      detail::store_result(std::move(task), [result](auto&& v) { result->emplace(std::forward<decltype(v)>(v)); }));
  return [](std::shared_ptr<detail::started_task> started,
            std::shared_ptr<std::optional<detail::gathered_t<T>>> result) -> Task<T> {
    co_await started->wait();
    if constexpr (!std::is_void_v<T>) co_return std::move(**result);
  }(std::move(started), std::move(result));
}

}  // namespace ferry
