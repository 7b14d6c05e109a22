/// ferry/function.hpp: ferry::Function<Sig>, the typed handle App::function returns.
///
/// `Sig` is the body's own signature: `Function<int(std::string)>` for a blocking body,
/// `Function<Task<int>(std::string)>` for an async one. Every call exists in both forms, whatever the body:
///   - `f.remote(args...)` runs the body in one of the function's containers and blocks for its value;
///   - `co_await f.remote.aio(args...)` does the same without blocking the caller's thread;
///   - `f(args...)`, the direct call, has the body's own result type: for an async function a lazy Task that
///     starts when awaited (or handed to ferry::create_task), for a blocking one the value (it blocks);
///   - `f.local(args...)` runs the body in the calling process, as a plain call.
/// A handle is a small value: copy it freely and use it from any thread.
#pragma once

#include <ferry/codec.hpp>
#include <ferry/detail/function_entry.hpp>
#include <ferry/errors.hpp>
#include <ferry/task.hpp>
#include <memory>
#include <source_location>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace ferry {

template <class Signature>
class Function;

namespace detail {

template <class V>
V decode_result(const function_entry& function, const buffer& encoded) {
  if constexpr (std::is_void_v<V>) {
    return;
  } else {
    reader r{encoded.view()};
    try {
      return ferry::decode<V>(r);
    } catch (const DecodeError& e) {
      throw Error("the result of '" + function.name + "' does not decode as " + codec<V>::name() + ": " + e.what() +
                  "; the caller and the container disagree on the function's signature (rebuild both from one "
                  "source)");
    }
  }
}

template <class... A>
void encode_arguments(buffer& out, const A&... args) {
  out.commit(mp_encode_array(out.reserve(5), sizeof...(A)));
  (codec<A>::encode(out, args), ...);
}

}  // namespace detail

template <class R, class... A>
class Function<R(A...)> {
 public:
  /// What a call produces: R, or T for an async body returning Task<T>.
  using value_type = task_value_t<R>;
  using body_type = std::function<R(A...)>;
  static constexpr bool is_async = is_task_v<R>;

  static_assert((serializable<A> && ...),
                "ferry: every parameter type must be serializable: a supported type (see ferry/codec.hpp) "
                "or a struct declared with FERRY_STRUCT(type, fields...)");
  static_assert(std::is_void_v<value_type> || serializable<value_type>,
                "ferry: the result type must be void or serializable: a supported type (see ferry/codec.hpp) "
                "or a struct declared with FERRY_STRUCT(type, fields...)");

  /// The `remote` member: `f.remote(args...)` and `f.remote.aio(args...)`.
  class remote_caller {
   public:
    /// Runs the call in a container and blocks until its value. Throws RemoteError (or the remote
    /// exception's standard type), ArgumentError, UnknownFunctionError, ContainerCrashedError,
    /// ContainerStartError, PayloadTooLargeError, CancelledError or ConnectionError. Works on an event
    /// loop thread too, but holds the loop meanwhile: ferry logs a warning naming this call site.
    value_type operator()(const A&... args, std::source_location site = std::source_location::current()) const {
      detail::buffer result = detail::call_remote(
          *entry_, [&](detail::buffer& out) { detail::encode_arguments(out, args...); }, site);
      return detail::decode_result<value_type>(*entry_, result);
    }

    /// The awaitable form: a lazy Task that makes the call when awaited and suspends the awaiting
    /// coroutine (not its thread) until the value arrives. The arguments are copied into the Task.
    /// Cancelling the awaiting coroutine cancels the remote input and throws CancelledError.
    Task<value_type> aio(const A&... args) const { return call_async(entry_, args...); }

   private:
    friend class Function;
    static Task<value_type> call_async(std::shared_ptr<const detail::function_entry> entry, A... args) {
      detail::buffer result = co_await detail::call_remote_async(
          entry, [&](detail::buffer& out) { detail::encode_arguments(out, args...); });
      co_return detail::decode_result<value_type>(*entry, result);
    }
    std::shared_ptr<const detail::function_entry> entry_;
  };

  Function(std::shared_ptr<const detail::function_entry> entry, std::shared_ptr<const body_type> body)
      : entry_(std::move(entry)), body_(std::move(body)) {
    remote.entry_ = entry_;
  }

  remote_caller remote;

  /// Runs the body in the calling process: returns what the body returns (a Task for an async body).
  R local(const A&... args) const { return (*body_)(args...); }

  /// The direct call: for an async body a lazy Task of the remote call (remote.aio), for a blocking body
  /// the value of the remote call (remote), as the Tensorlake seed describes.
  R operator()(const A&... args, std::source_location site = std::source_location::current()) const {
    if constexpr (is_async) {
      return remote.aio(args...);
    } else {
      return remote(args..., site);
    }
  }

  const std::string& name() const noexcept { return entry_->name; }
  const std::string& signature() const noexcept { return entry_->signature; }

 private:
  std::shared_ptr<const detail::function_entry> entry_;
  std::shared_ptr<const body_type> body_;
};

}  // namespace ferry
