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
#include <ferry/detail/call_arguments.hpp>
#include <ferry/detail/function_entry.hpp>
#include <ferry/errors.hpp>
#include <ferry/function_call.hpp>
#include <ferry/future.hpp>
#include <ferry/task.hpp>
#include <iterator>
#include <memory>
#include <optional>
#include <source_location>
#include <stdexcept>
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
    return decode_call_result<V>("'" + function.name + "'", encoded);
  }
}

template <class T>
std::string type_name() {
  if constexpr (std::is_void_v<T>) {
    return "void";
  } else {
    return codec<T>::name();
  }
}

/// How the server names a function's signature, to check callers against it: `int64(string,vector<int64>)`
/// (structs by their qualified names, `shop::Receipt(shop::Order)`), and the fields of every struct it mentions,
/// by name: `shop::Order{id:int64,items:vector<string>};shop::Receipt{total:float64}`.
struct signature_description {
  std::string signature;
  std::string structs;
};
template <class R, class... A>
signature_description describe_signature() {
  struct_collection collection;
  struct collecting {
    struct_collection* previous;
    ~collecting() { collecting_structs = previous; }
  } scope{std::exchange(collecting_structs, &collection)};
  signature_description d;
  d.signature = type_name<R>() + "(";
  ((d.signature += codec<A>::name() + ","), ...);
  if (sizeof...(A) > 0) d.signature.pop_back();
  d.signature += ")";
  for (const auto& [name, fields] : collection.fields) d.structs += (d.structs.empty() ? "" : ";") + name + fields;
  return d;
}

/// The signature of deployed function `app.function`; throws UnknownFunctionError when there is none.
signature_description deployed_signature(const std::string& app, const std::string& function,
                                         const std::source_location& site);
Task<signature_description> deployed_signature_async(std::string app, std::string function);
/// Throws SignatureMismatchError, showing both (and, when only a struct's fields differ, that struct's), when
/// they differ.
void check_signature(const std::string& app, const std::string& function, const signature_description& deployed,
                     const signature_description& expected);

template <class... A>
void encode_arguments(buffer& out, const A&... args) {
  out.commit(mp_encode_array(out.reserve(5), sizeof...(A)));
  (codec<A>::encode(out, args), ...);
}

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

/// The encoded outcome of each call of a map, in input order, and the order in which they finished.
struct map_results {
  std::vector<std::pair<std::exception_ptr, buffer>> items;
  std::vector<std::size_t> completion_order;
};
/// Writes item i's argument array (futures as placeholders, recorded in the dependencies).
using map_item_encoder = std::function<void(std::size_t, buffer&, std::vector<future_dependency>&)>;
/// Calls `function` once for each of `n` items, with at most `window` calls in flight (so that the
/// caller's memory for inputs stays bounded), and blocks until all have ended.
map_results map_calls(std::shared_ptr<const function_entry> function, std::size_t n, map_item_encoder encode,
                      std::size_t window);
/// The same as an awaitable.
Task<map_results> map_calls_async(std::shared_ptr<const function_entry> function, std::size_t n,
                                  map_item_encoder encode, std::size_t window);

}  // namespace detail

/// Options of f.map and f.starmap.
struct MapOptions {
  /// Results in input order; false: in the order the calls finish.
  bool order_outputs = true;
  /// Calls in flight at once: inputs are fed to the server as earlier ones finish.
  std::size_t window = 10'000;
};

/// A call's value or its exception: what f.map.outcomes returns for each item (Modal's
/// return_exceptions=True).
template <class T>
struct Outcome {
  std::exception_ptr error;
  std::optional<T> value;
  bool ok() const noexcept { return !error; }
  /// The value, or rethrows the exception.
  const T& get() const {
    if (error) std::rethrow_exception(error);
    return *value;
  }
};

template <class R, class... A>
class Function<R(A...)> {
 public:
  /// What a call produces: R; T for an async body returning Task<T>; T for a body returning Future<T> or
  /// Task<Future<T>> (a tail call).
  using value_type = detail::body_value_t<R>;
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
      FERRY_DETAIL_REJECT_WRAPPED_FUTURES(Args);
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
      FERRY_DETAIL_REJECT_WRAPPED_FUTURES(Args);
    }

   private:
    friend class Function;
    std::shared_ptr<const detail::function_entry> entry_;
  };

  Function(std::shared_ptr<const detail::function_entry> entry, std::shared_ptr<const body_type> body)
      : entry_(std::move(entry)), body_(std::move(body)) {
    remote.entry_ = entry_;
    map.entry_ = entry_;
    map.outcomes.entry_ = entry_;
    starmap.entry_ = entry_;
    for_each.map_.entry_ = entry_;
    for_each.map_.outcomes.entry_ = entry_;
    reduce.entry_ = entry_;
    spawn.entry_ = entry_;
  }

  /// `Function<R(A...)>::from_name("app", "fn")` and `co_await Function<R(A...)>::from_name.aio("app", "fn")`:
  /// a function of an app deployed on the server (`ferry deploy`), callable in every form but local().
  /// Throws UnknownFunctionError when it is not deployed, and SignatureMismatchError when its deployed
  /// signature is not R(A...), before anything runs. Call it inside app.main.
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

  /// The `spawn` member: `f.spawn(args...)` and `co_await f.spawn.aio(args...)` submit a durable call and
  /// return its FunctionCall once the server has stored the input; `f.spawn(SpawnOptions{...}, args...)`
  /// passes an idempotency key. The call survives this program's exit and a server restart.
  class spawn_caller {
   public:
    FunctionCall<value_type> operator()(const A&... args,
                                        std::source_location site = std::source_location::current()) const {
      return with(site, SpawnOptions{}, args...);
    }
    FunctionCall<value_type> operator()(const SpawnOptions& options, const A&... args,
                                        std::source_location site = std::source_location::current()) const {
      return with(site, options, args...);
    }
    Task<FunctionCall<value_type>> aio(const A&... args) const { return aio_with(entry_, SpawnOptions{}, args...); }
    Task<FunctionCall<value_type>> aio(const SpawnOptions& options, const A&... args) const {
      return aio_with(entry_, options, args...);
    }

   private:
    friend class Function;
    FunctionCall<value_type> with(const std::source_location& site, const SpawnOptions& options,
                                  const A&... args) const {
      const std::function<void(detail::buffer&)> encode = [&](detail::buffer& out) {
        detail::encode_arguments(out, args...);
      };
      const detail::buffer id = detail::control_request(detail::control_verb::spawn, entry_->app + "." + entry_->name,
                                                        detail::spawn_payload(options.idempotency_key, encode), site);
      return FunctionCall<value_type>(detail::decode_string(id));
    }
    static Task<FunctionCall<value_type>> aio_with(std::shared_ptr<const detail::function_entry> entry,
                                                   SpawnOptions options, A... args) {
      const std::function<void(detail::buffer&)> encode = [&](detail::buffer& out) {
        detail::encode_arguments(out, args...);
      };
      detail::buffer id =
          co_await detail::control_request_async(detail::control_verb::spawn, entry->app + "." + entry->name,
                                                 detail::spawn_payload(options.idempotency_key, encode));
      co_return FunctionCall<value_type>(detail::decode_string(id));
    }
    std::shared_ptr<const detail::function_entry> entry_;
  };
  spawn_caller spawn;

  remote_caller remote;

  /// What map, starmap, for_each and reduce produce per item.
  using item_value = detail::future_value_t<value_type>;

  /// The `map` member, for a function of one parameter: `f.map(items)`, `co_await f.map.aio(items)`, and
  /// `f.map.outcomes(items)` / `co_await f.map.outcomes.aio(items)`. Items are values of the parameter's type,
  /// Futures (or CallTasks) of it, or a Future of a std::vector of them (waited for first). Cancelling the
  /// coroutine awaiting an aio form cancels the calls in flight.
  class map_caller {
   public:
    template <class Items>
    std::vector<item_value> operator()(const Items& items, MapOptions options = {}) const {
      if constexpr (detail::is_future_v<Items>) {
        return (*this)(items.result(), options);
      } else {
        return values(*entry_, detail::map_calls(entry_, std::size(items), encoder(&items), options.window), options);
      }
    }
    template <class Items>
    Task<std::vector<item_value>> aio(Items items, MapOptions options = {}) const {
      return map_aio<std::vector<item_value>, false>(entry_, std::move(items), options);
    }

    /// Each item's value or exception, in order (or in completion order): failures do not stop the map
    /// (Modal's return_exceptions=True).
    class outcomes_caller {
     public:
      template <class Items>
      std::vector<Outcome<item_value>> operator()(const Items& items, MapOptions options = {}) const {
        if constexpr (detail::is_future_v<Items>) {
          return (*this)(items.result(), options);
        } else {
          return outcomes_of(*entry_, detail::map_calls(entry_, std::size(items), encoder(&items), options.window),
                             options);
        }
      }
      template <class Items>
      Task<std::vector<Outcome<item_value>>> aio(Items items, MapOptions options = {}) const {
        return map_aio<std::vector<Outcome<item_value>>, false>(entry_, std::move(items), options);
      }

      std::shared_ptr<const detail::function_entry> entry_;
    };
    outcomes_caller outcomes;

    std::shared_ptr<const detail::function_entry> entry_;
  };
  map_caller map;

  /// The `starmap` member: calls the function once per tuple of arguments, `f.starmap(tuples)` and
  /// `co_await f.starmap.aio(tuples)`; the tuples (std::tuple<A...>) may come as a Future of a std::vector.
  class starmap_caller {
   public:
    /// (Also for a braced list: `f.starmap({{1, 2}, {3, 4}})`.)
    std::vector<item_value> operator()(const std::vector<std::tuple<A...>>& items, MapOptions options = {}) const {
      return values(*entry_, detail::map_calls(entry_, items.size(), tuple_encoder(&items), options.window), options);
    }
    template <class Items>
    std::vector<item_value> operator()(const Items& items, MapOptions options = {}) const {
      if constexpr (detail::is_future_v<Items>) {
        return (*this)(items.result(), options);
      } else {
        return values(*entry_, detail::map_calls(entry_, std::size(items), tuple_encoder(&items), options.window),
                      options);
      }
    }
    template <class Items>
    Task<std::vector<item_value>> aio(Items items, MapOptions options = {}) const {
      return map_aio<std::vector<item_value>, true>(entry_, std::move(items), options);
    }

    std::shared_ptr<const detail::function_entry> entry_;
  };
  starmap_caller starmap;

  /// The `for_each` member: calls the function once per item and waits for all, rethrowing the first failure;
  /// `f.for_each(items)` and `co_await f.for_each.aio(items)`, with the items map takes.
  class for_each_caller {
   public:
    template <class Items>
    void operator()(const Items& items, MapOptions options = {}) const {
      (void)map_(items, options);
    }
    template <class Items>
    Task<void> aio(Items items, MapOptions options = {}) const {
      return for_each_async(map_.aio(std::move(items), options));
    }

   private:
    friend class Function;
    static Task<void> for_each_async(Task<std::vector<item_value>> mapped) { (void)co_await std::move(mapped); }
    map_caller map_;
  };
  for_each_caller for_each;

  /// A lazy Future of a call with these arguments (values, or futures of the parameter types). It starts
  /// when run, awaited, asked for its result, or passed to a call that is made.
  template <class... Args>
  requires(sizeof...(Args) == sizeof...(A) &&
           (detail::argument_for<A, Args> &&
            ...)) Future<detail::future_value_t<value_type>> future(const Args&... args)
  const { return detail::make_call_future<value_type, A...>(entry_, args...); }
  template <class... Args>
  requires(detail::any_wrapped_future<Args...>) void future(const Args&...) const {
    FERRY_DETAIL_REJECT_WRAPPED_FUTURES(Args);
  }

  /// The `reduce` member, for a function of two parameters of its result type: folds `items` (values,
  /// Futures, or a Future of a std::vector of them) left to right, f(f(f(initial, i0), i1), i2)... Every step
  /// is submitted at once and the server starts each as soon as its inputs exist, so a reduce over a map's
  /// futures folds while the map runs. Empty items: the initial value, or std::invalid_argument without one.
  /// Cancelling the coroutine awaiting reduce.aio cancels the steps.
  class reduce_caller {
   public:
    using fold_type = item_value;
    template <class Items>
    fold_type operator()(const Items& items) const {
      return fold(items, std::optional<fold_type>{});
    }
    template <class Items>
    fold_type operator()(const Items& items, const fold_type& initial) const {
      return fold(items, std::optional<fold_type>{initial});
    }
    template <class Items>
    Task<fold_type> aio(Items items) const {
      return fold_async(entry_, std::move(items), std::optional<fold_type>{});
    }
    template <class Items>
    Task<fold_type> aio(Items items, fold_type initial) const {
      return fold_async(entry_, std::move(items), std::optional<fold_type>{std::move(initial)});
    }

   private:
    friend class Function;
    template <class Items>
    fold_type fold(const Items& items, std::optional<fold_type> initial) const {
      if constexpr (detail::is_future_v<Items>) {
        return fold(items.result(), std::move(initial));
      } else {
        if (std::size(items) == 0 && initial) return *initial;
        return start_fold(entry_, items, std::move(initial)).result();
      }
    }
    template <class Items>
    static Task<fold_type> fold_async(std::shared_ptr<const detail::function_entry> entry, Items items,
                                      std::optional<fold_type> initial) {
      if constexpr (detail::is_future_v<Items>) {
        auto resolved = co_await items;
        co_return co_await fold_async(entry, std::move(resolved), std::move(initial));
      } else {
        if (std::size(items) == 0 && initial) co_return *initial;
        auto folded = start_fold(entry, items, std::move(initial));
        co_return co_await folded.coroutine();
      }
    }
    template <class Items>
    static Future<fold_type> start_fold(const std::shared_ptr<const detail::function_entry>& entry, const Items& items,
                                        std::optional<fold_type> initial) {
      static_assert(sizeof...(A) == 2, "ferry: reduce folds with a function of two parameters");
      using item_type = std::remove_cvref_t<decltype(*std::begin(items))>;
      const std::size_t n = std::size(items);
      if (n == 0) {
        if (!initial) throw std::invalid_argument("ferry: reduce of an empty sequence with no initial value");
        return identity(*initial);
      }
      auto it = std::begin(items);
      std::optional<Future<fold_type>> acc;
      if (initial) {
        acc.emplace(detail::make_call_future<fold_type, A...>(entry, *initial, *it++));
      } else if (n == 1) {
        if constexpr (detail::is_pending_v<item_type>) {
          return Future<fold_type>(it->state());
        } else {
          return identity(*it);
        }
      } else {
        const auto& first = *it++;
        acc.emplace(detail::make_call_future<fold_type, A...>(entry, first, *it++));
      }
      for (; it != std::end(items); ++it) {
        detail::submit_as_argument(*acc->state());  // submit as we go: the chain is not built recursively
        acc.emplace(detail::make_call_future<fold_type, A...>(entry, *acc, *it));
      }
      return *acc;
    }
    /// A future that is already resolved to `value`: a reduce step of one item.
    static Future<fold_type> identity(const fold_type& value) { return detail::ready_future<fold_type>(value); }
    std::shared_ptr<const detail::function_entry> entry_;
  };
  reduce_caller reduce;

 private:
  /// Writes item i's argument array (futures as placeholders), for map. `items` points to the items: a plain
  /// pointer while the caller blocks for the map, a shared_ptr owning them for the aio forms.
  template <class ItemsPointer>
  static detail::map_item_encoder encoder(ItemsPointer items) {
    static_assert(sizeof...(A) == 1, "ferry: map calls a function of one parameter; use starmap for several");
    return [items](std::size_t i, detail::buffer& out, std::vector<detail::future_dependency>& deps) {
      const auto& item = *(std::begin(*items) + static_cast<std::ptrdiff_t>(i));
      detail::encode_call_arguments<A...>(out, deps, std::index_sequence<0>{}, item);
    };
  }
  /// The same for starmap: item i is a std::tuple of the arguments.
  template <class ItemsPointer>
  static detail::map_item_encoder tuple_encoder(ItemsPointer items) {
    return [items](std::size_t i, detail::buffer& out, std::vector<detail::future_dependency>& deps) {
      std::apply(
          [&](const auto&... args) {
            detail::encode_call_arguments<A...>(out, deps, std::index_sequence_for<A...>{}, args...);
          },
          *(std::begin(*items) + static_cast<std::ptrdiff_t>(i)));
    };
  }
  /// The items' values in input (or completion) order; rethrows the first failure in that order.
  static std::vector<item_value> values(const detail::function_entry& function, detail::map_results results,
                                        const MapOptions& options) {
    std::vector<item_value> out;
    out.reserve(results.items.size());
    for (std::size_t i = 0; i < results.items.size(); ++i) {
      auto& [error, encoded] = results.items[options.order_outputs ? i : results.completion_order[i]];
      if (error) std::rethrow_exception(error);
      out.push_back(detail::decode_result<item_value>(function, encoded));
    }
    return out;
  }
  static std::vector<Outcome<item_value>> outcomes_of(const detail::function_entry& function,
                                                      detail::map_results results, const MapOptions& options) {
    std::vector<Outcome<item_value>> out(results.items.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      auto& [error, encoded] = results.items[options.order_outputs ? i : results.completion_order[i]];
      out[i].error = error;
      if (!error) out[i].value.emplace(detail::decode_result<item_value>(function, encoded));
    }
    return out;
  }
  /// The aio forms of map (`tuples`: of starmap), giving the items' values, or their outcomes when Result is
  /// a vector of Outcome. A Future of items is waited for first. (The map owns the items: cancelled, this
  /// coroutine may end while the map still encodes one. The encoder is named: GCC 12 destroys a temporary
  /// in a co_await expression twice.)
  template <class Result, bool tuples, class Items>
  static Task<Result> map_aio(std::shared_ptr<const detail::function_entry> entry, Items items, MapOptions options) {
    if constexpr (detail::is_future_v<Items>) {
      auto resolved = co_await items;
      co_return co_await map_aio<Result, tuples>(entry, std::move(resolved), options);
    } else {
      const std::size_t n = std::size(items);
      auto owned = std::make_shared<const Items>(std::move(items));
      detail::map_item_encoder encode;
      if constexpr (tuples) {
        encode = tuple_encoder(std::move(owned));
      } else {
        encode = encoder(std::move(owned));
      }
      auto results = co_await detail::map_calls_async(entry, n, encode, options.window);
      if constexpr (std::is_same_v<Result, std::vector<item_value>>) {
        co_return values(*entry, std::move(results), options);
      } else {
        co_return outcomes_of(*entry, std::move(results), options);
      }
    }
  }

 public:
  /// Runs the body in the calling process: returns what the body returns (a Task for an async body). Throws
  /// ferry::Error for a handle from from_name, whose body this program does not have.
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
    FERRY_DETAIL_REJECT_WRAPPED_FUTURES(Args);
  }

  const std::string& name() const noexcept { return entry_->name; }
  const std::string& signature() const noexcept { return entry_->signature; }

 private:
  std::shared_ptr<const detail::function_entry> entry_;
  std::shared_ptr<const body_type> body_;
};

}  // namespace ferry
