/// ferry/task.hpp: ferry::Task<T>, the awaitable that async function bodies return and `.remote.aio()`
/// produces. It is Asio's awaitable (boost::asio::awaitable<T>, on an any_io_executor), so a body can co_await
/// any Asio operation (timers, sockets, Beast) as well as ferry calls. A Task is lazy: nothing runs until it is
/// awaited (or handed to create_task, gather, ferry::run); one destroyed unawaited never runs. It runs on the
/// executor of the coroutine that awaits it, and is a move-only value awaited at most once; to await one result
/// from several places, use a Future or create_task. Cancellation is Asio's per-operation cancellation: ferry's
/// own awaits throw ferry::CancelledError, Asio's throw boost::system::system_error (operation_aborted).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <type_traits>

namespace ferry {

template <class T = void>
using Task = boost::asio::awaitable<T>;

template <class T>
struct is_task : std::false_type {};
template <class T>
struct is_task<boost::asio::awaitable<T>> : std::true_type {};
template <class T>
inline constexpr bool is_task_v = is_task<T>::value;

/// The value a body produces: T for a Task<T> body, R for a blocking one.
template <class R>
struct task_value {
  using type = R;
};
template <class T>
struct task_value<boost::asio::awaitable<T>> {
  using type = T;
};
template <class R>
using task_value_t = typename task_value<R>::type;

}  // namespace ferry
