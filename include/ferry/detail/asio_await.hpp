/// ferry/detail/asio_await.hpp: `co_await handle`, for ferry's handles that are not Tasks (ferry::Future,
/// ferry::StartedTask), as an lvalue or an rvalue, in a ferry::Task (boost::asio::awaitable) coroutine.
///
/// Why it exists. Those handles are Asio asynchronous operations (their operator() takes a completion token,
/// with the signature void(std::exception_ptr, T)), and an awaitable coroutine awaits an asynchronous operation
/// through awaitable_frame_base::await_transform(Op&&), which wraps it in boost::asio::detail::awaitable_async_op.
/// In Boost 1.81 (boost/asio/impl/awaitable.hpp) that path cannot await them: awaitable_async_op binds the
/// operation as `decay_t<Op>&&`, so `co_await fut` on an lvalue does not compile, and its handler for the
/// signature void(std::exception_ptr, T) does not compile at all (its resume() tests `*result`, a struct). The
/// frame's other await_transform overloads take an awaitable<T, Executor> (deduced, so no conversion applies) or
/// Asio's own internal types, and since the promise has await_transform, every co_await operand goes through it:
/// an operator co_await on the handle is never reached. Boost 1.81 offers no public way, so this header
/// specializes awaitable_async_op for the handles that set ferry::detail::awaited_as_task: the await awaits the
/// Task of the handle's coroutine(), as `co_await handle.coroutine()` does, with the same value, exceptions and
/// cancellation.
///
/// awaitable_async_op is an Asio internal: its shape (its template parameters, and the constructor
/// await_transform calls with the operation and the awaiting frame) was checked against Boost 1.81 only, hence
/// the version check. Everything else in ferry's headers uses Asio's public API alone.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/version.hpp>

// Another Boost: check that its boost/asio/impl/awaitable.hpp still has awaitable_frame_base::await_transform(Op&&)
// construct awaitable_async_op<Signature, decay_t<Op>, Executor> from (op, awaitable_frame_base<Executor>*), add its
// BOOST_VERSION here, and run ferry's tests (tests/e2e futures.* and async.* await Futures and created tasks as
// lvalues and rvalues); or, if its Asio awaits such an operation, lvalue and (std::exception_ptr, T) completion
// included, by itself, make this header define nothing for it.
#if BOOST_VERSION != 108100
#error \
    "ferry was checked against Boost 1.81 only (BOOST_VERSION 108100): co_await of a ferry::Future or StartedTask specializes an Asio internal. Build with Boost 1.81, or see ferry/detail/asio_await.hpp to check this version."
#endif

namespace ferry::detail {

/// True for a handle that `co_await handle` awaits through its coroutine(); set next to each handle
/// (ferry/future.hpp, ferry/async.hpp).
template <class Handle>
inline constexpr bool awaited_as_task = false;

}  // namespace ferry::detail

namespace boost::asio::detail {

/// `co_await handle`, lvalue or rvalue: awaits `handle.coroutine()`.
template <class Signature, class Handle, class Executor>
requires ferry::detail::awaited_as_task<Handle>
class awaitable_async_op<Signature, Handle, Executor> {
 public:
  awaitable_async_op(const Handle& handle, awaitable_frame_base<Executor>*) : task_(handle.coroutine()) {}
  bool await_ready() const noexcept { return false; }
  template <class Frame>
  void await_suspend(coroutine_handle<Frame> caller) {
    task_.await_suspend(caller);
  }
  typename Handle::value_type await_resume() { return task_.await_resume(); }

 private:
  awaitable<typename Handle::value_type, Executor> task_;
};

}  // namespace boost::asio::detail
