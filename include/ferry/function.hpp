/// ferry/function.hpp: ferry::Function<Sig>, the typed handle App::function and Function::from_name return.
///
/// `Sig` is the body's own signature: `Function<int(std::string)>` for a blocking body,
/// `Function<Task<int>(std::string)>` for an async one. Every call exists in both forms, whatever the body:
///   - `f.remote(args...)` runs the body in one of the function's containers and blocks for its value;
///   - `co_await f.remote.aio(args...)` does the same without blocking the caller's thread;
///   - `f(args...)`, the direct call, has the body's own result type: for an async function a lazy Task that
///     starts when awaited (or handed to ferry::create_task), for a blocking one the value (it blocks);
///   - `f.local(args...)` runs the body in the calling process, as a plain call.
/// The other members: `f.future(args...)` (ferry/future.hpp), `f.spawn` (ferry/spawn.hpp), `f.map`,
/// `f.map.outcomes`, `f.starmap`, `f.for_each` and `f.reduce` (ferry/map.hpp).
///
/// Threading: a handle is a small value (shared pointers to the function's description and body): copy it freely,
/// and call any member from any thread, from many at once; calls from many threads run concurrently over the
/// process's one connection to the server. A blocking form called on an event loop (an async body or entrypoint)
/// still completes, but holds the loop and every coroutine on it meanwhile: ferry logs a warning naming the call
/// site, once per site.
///
/// Lifetime: a handle shares the function's description, so it may outlive its App and app.main. A call goes to the
/// server the process is connected to: inside app.main, the one app.main connected to (or embedded); in a
/// container, the one that started it; otherwise (a program without app.main, or before or after it) the server
/// FERRY_SERVER names (default 127.0.0.1:7700), connected on first use and again after it restarts. The Task of
/// `remote.aio` owns its encoded arguments, so the arguments may go once aio() returns; nothing is sent until it is
/// awaited, and a Task dropped unawaited sends nothing.
///
/// Errors: a call rethrows what the body threw: standard exception types, ferry's own and those registered with
/// ferry::register_exception as themselves, others as ferry::RemoteError (ferry/errors.hpp). A call that ferry
/// could not run throws the ferry::Error of its kind: ArgumentError, UnknownFunctionError, ContainerCrashedError,
/// ContainerStartError, TimeoutError, PayloadTooLargeError, ResourceExhaustedError, CancelledError or
/// ConnectionError (docs/errors.md says when each happens). A result that does not decode as the declared type
/// throws ferry::Error. Retries (FunctionOptions::retries) happen on the server: a caller sees an error only once
/// they have run out, and it says how many attempts failed.
///
/// Cancellation: cancelling the coroutine awaiting `remote.aio` (gather cancelling a sibling, an Asio cancellation
/// signal) throws CancelledError there at once and cancels the remote input: an async body is cancelled at its next
/// suspension point, a blocking body sees ferry::cancelled() turn true. A blocking call cannot be cancelled by its
/// caller; the server cancels it when its caller goes away (the program is killed).
#pragma once

#include <ferry/codec.hpp>
#include <ferry/detail/call_arguments.hpp>
#include <ferry/detail/function_entry.hpp>
#include <ferry/errors.hpp>
#include <ferry/function_call.hpp>
#include <ferry/future.hpp>
#include <ferry/map.hpp>
#include <ferry/signature.hpp>
#include <ferry/spawn.hpp>
#include <ferry/task.hpp>
#include <functional>
#include <memory>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>

namespace ferry {

template <class Signature>
class Function;

namespace detail {

/// The value a body produces: R; T for Task<T>; T for Future<T> and Task<Future<T>> (tail calls).
template <class R>
struct body_value {
  using type = R;
};
template <class T>
struct body_value<Task<T>> {
  using type = typename body_value<T>::type;
};
template <class T>
struct body_value<Future<T>> {
  using type = T;
};
template <class R>
using body_value_t = typename body_value<R>::type;

}  // namespace detail

template <class R, class... A>
class Function<R(A...)> {
 public:
  /// What a call produces: R; T for an async body returning Task<T>; T for a body returning Future<T> or
  /// Task<Future<T>> (a tail call).
  using value_type = detail::body_value_t<R>;
  using body_type = std::function<R(A...)>;
  static constexpr bool is_async = is_task_v<R>;
  /// What map, starmap, for_each and reduce produce per item (std::monostate for a void function).
  using item_value = detail::future_value_t<value_type>;

  static_assert((serializable<A> && ...),
                "ferry: every parameter type must be serializable: a supported type (see ferry/codec.hpp) "
                "or a struct declared with FERRY_STRUCT(type, fields...)");
  static_assert(std::is_void_v<value_type> || serializable<value_type>,
                "ferry: the result type must be void or serializable: a supported type (see ferry/codec.hpp) "
                "or a struct declared with FERRY_STRUCT(type, fields...)");

  /// The `remote` member: `f.remote(args...)` and `f.remote.aio(args...)`.
  class remote_caller {
   public:
    /// Runs the call in a container and blocks until its value; throws what the header's Errors paragraph
    /// lists. Works on an event loop thread too, but holds the loop meanwhile: ferry logs a warning naming
    /// this call site.
    value_type operator()(const A&... args, std::source_location site = std::source_location::current()) const {
      detail::buffer result = detail::call_remote(
          *entry_, [&](detail::buffer& out) { detail::encode_arguments(out, args...); }, site);
      return detail::decode_result<value_type>(*entry_, result);
    }

    /// The same with futures among the arguments: the server runs them (in parallel when independent) and
    /// passes their values to this call; the values never travel through this program.
    template <class... Args>
    requires(sizeof...(Args) == sizeof...(A) && detail::any_future<Args...> &&
             (detail::argument_for<A, Args> && ...)) value_type
    operator()(const Args&... args) const {
      auto future = detail::make_call_future<value_type, A...>(entry_, args...);
      if constexpr (std::is_void_v<value_type>) {
        future.result();
      } else {
        return future.result();
      }
    }
    template <class... Args>
    requires(detail::any_wrapped_future<Args...>) void operator()(const Args&...) const {
      FERRY_DETAIL_REJECT_WRAPPED_FUTURES(Args...);
    }

    /// The awaitable form: a lazy Task that makes the call when awaited and suspends the awaiting
    /// coroutine (not its thread) until the value arrives. The arguments are encoded into the Task. Until it
    /// is awaited, the Task can also be passed as an argument of another call, like a Future.
    /// Cancelling the awaiting coroutine cancels the remote input and throws CancelledError.
    CallTask<value_type> aio(const A&... args) const {
      detail::buffer encoded;
      detail::encode_arguments(encoded, args...);
      return CallTask<value_type>(detail::make_lazy_call(entry_, std::move(encoded)));
    }
    template <class... Args>
    requires(sizeof...(Args) == sizeof...(A) && detail::any_future<Args...> &&
             (detail::argument_for<A, Args> && ...)) CallTask<value_type> aio(const Args&... args)
    const {
      auto future = detail::make_call_future<value_type, A...>(entry_, args...);
      return CallTask<value_type>(detail::make_lazy_call(future.state()));
    }
    template <class... Args>
    requires(detail::any_wrapped_future<Args...>) void aio(const Args&...) const {
      FERRY_DETAIL_REJECT_WRAPPED_FUTURES(Args...);
    }

   private:
    friend class Function;
    explicit remote_caller(std::shared_ptr<const detail::function_entry> entry) : entry_(std::move(entry)) {}
    std::shared_ptr<const detail::function_entry> entry_;
  };

  using spawn_caller = detail::spawn_caller<value_type, A...>;
  using map_caller = detail::map_caller<value_type, A...>;
  using starmap_caller = detail::starmap_caller<value_type, A...>;
  using for_each_caller = detail::for_each_caller<value_type, A...>;
  using reduce_caller = detail::reduce_caller<value_type, A...>;

  Function(std::shared_ptr<const detail::function_entry> entry, std::shared_ptr<const body_type> body)
      : spawn(entry),
        remote(entry),
        map(entry),
        starmap(entry),
        for_each(entry),
        reduce(entry),
        entry_(std::move(entry)),
        body_(std::move(body)) {}

  /// `Function<R(A...)>::from_name("app", "fn")` and `co_await Function<R(A...)>::from_name.aio("app", "fn")`:
  /// a function of an app deployed on the server (`ferry deploy`), callable in every form but local().
  /// Throws UnknownFunctionError when it is not deployed, SignatureMismatchError when its deployed signature
  /// is not R(A...) (ferry/signature.hpp), before anything runs, and ConnectionError when the server cannot be
  /// reached. It asks the server calls would go to (see Lifetime above). Cancelling the coroutine awaiting
  /// from_name.aio stops the look-up only.
  struct from_name_lookup {
    Function operator()(const std::string& app, const std::string& function,
                        std::source_location site = std::source_location::current()) const {
      auto entry = make_entry(app, function);
      detail::check_signature(app, function, detail::deployed_signature(app, function, site),
                              {entry->signature, entry->structs});
      return Function(std::move(entry), nullptr);
    }
    Task<Function> aio(std::string app, std::string function) const {
      auto entry = make_entry(app, function);
      const detail::signature_description deployed = co_await detail::deployed_signature_async(app, function);
      detail::check_signature(app, function, deployed, {entry->signature, entry->structs});
      co_return Function(std::move(entry), nullptr);
    }

   private:
    static std::shared_ptr<detail::function_entry> make_entry(const std::string& app, const std::string& function) {
      auto entry = std::make_shared<detail::function_entry>();
      entry->app = app;
      entry->name = function;
      auto described = detail::describe_signature<value_type, A...>();
      entry->signature = std::move(described.signature);
      entry->structs = std::move(described.structs);
      return entry;
    }
  };
  static inline const from_name_lookup from_name{};

  /// `f.spawn(args...)`, `f.spawn(SpawnOptions{...}, args...)` and their `.aio` forms: a durable call, whose
  /// FunctionCall returns once the server has stored the input (ferry/spawn.hpp).
  spawn_caller spawn;

  remote_caller remote;

  /// `f.map(items)`, `f.map.outcomes(items)` and their `.aio` forms, for a function of one parameter
  /// (ferry/map.hpp).
  map_caller map;

  /// `f.starmap(tuples)` and `f.starmap.aio(tuples)`: one call per std::tuple of arguments (ferry/map.hpp).
  starmap_caller starmap;

  /// `f.for_each(items)` and `f.for_each.aio(items)`: map, waiting for every call, keeping no values.
  for_each_caller for_each;

  /// A lazy Future of a call with these arguments (values, or futures of the parameter types). It starts
  /// when run, awaited, asked for its result, or passed to a call that is made (ferry/future.hpp).
  template <class... Args>
  requires(sizeof...(Args) == sizeof...(A) &&
           (detail::argument_for<A, Args> &&
            ...)) Future<detail::future_value_t<value_type>> future(const Args&... args)
  const { return detail::make_call_future<value_type, A...>(entry_, args...); }
  template <class... Args>
  requires(detail::any_wrapped_future<Args...>) void future(const Args&...) const {
    FERRY_DETAIL_REJECT_WRAPPED_FUTURES(Args...);
  }

  /// `g.reduce(items)`, `g.reduce(items, initial)` and their `.aio` forms, for a function of two parameters of
  /// its result type: a left fold whose steps the server runs as their inputs exist (ferry/map.hpp).
  reduce_caller reduce;

  /// Runs the body in the calling process, on the calling thread: returns what the body returns (a Task for an
  /// async body), and lets its exceptions through as they are. Throws ferry::Error for a handle from from_name,
  /// whose body this program does not have.
  R local(const A&... args) const {
    if (!body_) {
      throw Error("'" + entry_->app + "." + entry_->name +
                  "' was looked up with from_name, so this program does not have its body to run locally: call it "
                  "with .remote(), or declare it on this program's App to run it here");
    }
    return (*body_)(args...);
  }

  /// The direct call: for an async body a lazy Task of the remote call (remote.aio), for a blocking body
  /// the value of the remote call (remote), as the Tensorlake seed describes.
  std::conditional_t<is_async, CallTask<value_type>, value_type> operator()(
      const A&... args, std::source_location site = std::source_location::current()) const {
    if constexpr (is_async) {
      return remote.aio(args...);
    } else {
      return remote(args..., site);
    }
  }
  /// The direct call with futures among the arguments.
  template <class... Args>
  requires(sizeof...(Args) == sizeof...(A) && detail::any_future<Args...> &&
           (detail::argument_for<A, Args> && ...)) auto
  operator()(const Args&... args) const {
    if constexpr (is_async) {
      return remote.aio(args...);
    } else {
      return remote(args...);
    }
  }
  template <class... Args>
  requires(detail::any_wrapped_future<Args...>) void operator()(const Args&...) const {
    FERRY_DETAIL_REJECT_WRAPPED_FUTURES(Args...);
  }

  /// The function's name, as declared or looked up.
  const std::string& name() const noexcept { return entry_->name; }
  /// Its signature as the server names it (`int64(string)`; ferry/signature.hpp).
  const std::string& signature() const noexcept { return entry_->signature; }

 private:
  std::shared_ptr<const detail::function_entry> entry_;
  std::shared_ptr<const body_type> body_;
};

}  // namespace ferry
