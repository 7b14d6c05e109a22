/// ferry/map.hpp: many calls of one function: f.map, f.map.outcomes, f.starmap, f.for_each and g.reduce, the
/// members of ferry::Function (ferry/function.hpp) that make them, their options, and what they return.
///
///     std::vector<int> squares = square.map(items);                       // in input order
///     auto each = square.map.outcomes(items);                             // each item's value or exception
///     std::vector<int> sums = add.starmap({{1, 2}, {3, 4}});
///     int total = co_await add.reduce.aio(square_futures, 0);            // folds while the squares run
///
/// Items are values of the parameter's type, Futures (or CallTasks) of it, or a Future of a std::vector of them,
/// which is waited for first; every form has an `.aio` twin that suspends the calling coroutine instead of
/// blocking its thread.
///
/// Threading: callable from any thread, like the handle; a blocking form holds its thread (an event loop's too)
/// until every call has ended. The calls of one map run concurrently on the server, at most MapOptions::window of
/// them in flight; items are encoded on the calling thread and, as calls finish, on the client's I/O thread.
///
/// Lifetime: the blocking forms read the items in place while they run; the `.aio` forms take the items by value
/// and keep them for as long as the map needs them.
///
/// Errors: map, starmap and for_each wait for every call, then rethrow the first failure in result order (the
/// others are dropped); map.outcomes does not throw for a failed call (its Outcome holds the error). A full queue
/// on the server (ResourceExhaustedError) is not a failure: the map slows down and submits the item again. reduce
/// throws std::invalid_argument for empty items without an initial value; a failed step fails the steps after it,
/// with one error naming the first failure.
///
/// Cancellation: cancelling the coroutine awaiting an `.aio` form throws CancelledError at once, starts no more
/// calls, and cancels those in flight on the server (reduce: its steps).
#pragma once

#include <cstddef>
#include <exception>
#include <ferry/codec.hpp>
#include <ferry/detail/buffer.hpp>
#include <ferry/detail/call_arguments.hpp>
#include <ferry/detail/function_entry.hpp>
#include <ferry/future.hpp>
#include <ferry/task.hpp>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace ferry {

/// Options of f.map, f.map.outcomes, f.starmap and f.for_each.
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

namespace detail {

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

/// What the map forms of a function whose calls produce V and take A... share: encoding the items, and turning
/// the results into values or outcomes.
template <class V, class... A>
struct mapping {
  using item_value = future_value_t<V>;

  /// Writes item i's argument array (futures as placeholders), for map. `items` points to the items: a plain
  /// pointer while the caller blocks for the map, a shared_ptr owning them for the aio forms.
  template <class ItemsPointer>
  static map_item_encoder encoder(ItemsPointer items) {
    static_assert(sizeof...(A) == 1, "ferry: map calls a function of one parameter; use starmap for several");
    return [items](std::size_t i, buffer& out, std::vector<future_dependency>& deps) {
      const auto& item = *(std::begin(*items) + static_cast<std::ptrdiff_t>(i));
      encode_call_arguments<A...>(out, deps, std::index_sequence<0>{}, item);
    };
  }
  /// The same for starmap: item i is a std::tuple of the arguments.
  template <class ItemsPointer>
  static map_item_encoder tuple_encoder(ItemsPointer items) {
    return [items](std::size_t i, buffer& out, std::vector<future_dependency>& deps) {
      std::apply(
          [&](const auto&... args) {
            encode_call_arguments<A...>(out, deps, std::index_sequence_for<A...>{}, args...);
          },
          *(std::begin(*items) + static_cast<std::ptrdiff_t>(i)));
    };
  }
  /// The items' values in input (or completion) order; rethrows the first failure in that order.
  static std::vector<item_value> values(const function_entry& function, map_results results,
                                        const MapOptions& options) {
    std::vector<item_value> out;
    out.reserve(results.items.size());
    for (std::size_t i = 0; i < results.items.size(); ++i) {
      auto& [error, encoded] = results.items[options.order_outputs ? i : results.completion_order[i]];
      if (error) std::rethrow_exception(error);
      out.push_back(decode_result<item_value>(function, encoded));
    }
    return out;
  }
  static std::vector<Outcome<item_value>> outcomes_of(const function_entry& function, map_results results,
                                                      const MapOptions& options) {
    std::vector<Outcome<item_value>> out(results.items.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      auto& [error, encoded] = results.items[options.order_outputs ? i : results.completion_order[i]];
      out[i].error = error;
      if (!error) out[i].value.emplace(decode_result<item_value>(function, encoded));
    }
    return out;
  }
  /// The aio forms of map (`tuples`: of starmap), giving the items' values, or their outcomes when Result is
  /// a vector of Outcome. A Future of items is waited for first. (The map owns the items: cancelled, this
  /// coroutine may end while the map still encodes one. The encoder is named: GCC 12 destroys a temporary
  /// in a co_await expression twice.)
  template <class Result, bool tuples, class Items>
  static Task<Result> map_aio(std::shared_ptr<const function_entry> entry, Items items, MapOptions options) {
    if constexpr (is_future_v<Items>) {
      auto resolved = co_await items;
      co_return co_await map_aio<Result, tuples>(entry, std::move(resolved), options);
    } else {
      const std::size_t n = std::size(items);
      auto owned = std::make_shared<const Items>(std::move(items));
      map_item_encoder encode;
      if constexpr (tuples) {
        encode = tuple_encoder(std::move(owned));
      } else {
        encode = encoder(std::move(owned));
      }
      auto results = co_await map_calls_async(entry, n, encode, options.window);
      if constexpr (std::is_same_v<Result, std::vector<item_value>>) {
        co_return values(*entry, std::move(results), options);
      } else {
        co_return outcomes_of(*entry, std::move(results), options);
      }
    }
  }
};

/// The `map` member, for a function of one parameter: `f.map(items)`, `co_await f.map.aio(items)`, and
/// `f.map.outcomes(items)` / `co_await f.map.outcomes.aio(items)`.
template <class V, class... A>
class map_caller {
  using m = mapping<V, A...>;

 public:
  using item_value = typename m::item_value;

  explicit map_caller(std::shared_ptr<const function_entry> entry) : outcomes(entry), entry_(std::move(entry)) {}

  /// The items' values, in input order (or completion order); rethrows the first failure.
  template <class Items>
  std::vector<item_value> operator()(const Items& items, MapOptions options = {}) const {
    if constexpr (is_future_v<Items>) {
      return (*this)(items.result(), options);
    } else {
      return m::values(*entry_, map_calls(entry_, std::size(items), m::encoder(&items), options.window), options);
    }
  }
  template <class Items>
  Task<std::vector<item_value>> aio(Items items, MapOptions options = {}) const {
    return m::template map_aio<std::vector<item_value>, false>(entry_, std::move(items), options);
  }

  /// Each item's value or exception, in order (or in completion order): failures do not stop the map
  /// (Modal's return_exceptions=True).
  class outcomes_caller {
   public:
    explicit outcomes_caller(std::shared_ptr<const function_entry> entry) : entry_(std::move(entry)) {}

    template <class Items>
    std::vector<Outcome<item_value>> operator()(const Items& items, MapOptions options = {}) const {
      if constexpr (is_future_v<Items>) {
        return (*this)(items.result(), options);
      } else {
        return m::outcomes_of(*entry_, map_calls(entry_, std::size(items), m::encoder(&items), options.window),
                              options);
      }
    }
    template <class Items>
    Task<std::vector<Outcome<item_value>>> aio(Items items, MapOptions options = {}) const {
      return m::template map_aio<std::vector<Outcome<item_value>>, false>(entry_, std::move(items), options);
    }

   private:
    std::shared_ptr<const function_entry> entry_;
  };
  outcomes_caller outcomes;

 private:
  std::shared_ptr<const function_entry> entry_;
};

/// The `starmap` member: calls the function once per tuple of arguments, `f.starmap(tuples)` and
/// `co_await f.starmap.aio(tuples)`; the tuples (std::tuple<A...>) may come as a Future of a std::vector.
template <class V, class... A>
class starmap_caller {
  using m = mapping<V, A...>;

 public:
  using item_value = typename m::item_value;

  explicit starmap_caller(std::shared_ptr<const function_entry> entry) : entry_(std::move(entry)) {}

  /// (Also for a braced list: `f.starmap({{1, 2}, {3, 4}})`.)
  std::vector<item_value> operator()(const std::vector<std::tuple<A...>>& items, MapOptions options = {}) const {
    return m::values(*entry_, map_calls(entry_, items.size(), m::tuple_encoder(&items), options.window), options);
  }
  template <class Items>
  std::vector<item_value> operator()(const Items& items, MapOptions options = {}) const {
    if constexpr (is_future_v<Items>) {
      return (*this)(items.result(), options);
    } else {
      return m::values(*entry_, map_calls(entry_, std::size(items), m::tuple_encoder(&items), options.window), options);
    }
  }
  template <class Items>
  Task<std::vector<item_value>> aio(Items items, MapOptions options = {}) const {
    return m::template map_aio<std::vector<item_value>, true>(entry_, std::move(items), options);
  }

 private:
  std::shared_ptr<const function_entry> entry_;
};

/// The `for_each` member: calls the function once per item and waits for all, rethrowing the first failure;
/// `f.for_each(items)` and `co_await f.for_each.aio(items)`, with the items map takes.
template <class V, class... A>
class for_each_caller {
 public:
  using item_value = typename mapping<V, A...>::item_value;

  explicit for_each_caller(std::shared_ptr<const function_entry> entry) : map_(std::move(entry)) {}

  template <class Items>
  void operator()(const Items& items, MapOptions options = {}) const {
    (void)map_(items, options);
  }
  template <class Items>
  Task<void> aio(Items items, MapOptions options = {}) const {
    return for_each_async(map_.aio(std::move(items), options));
  }

 private:
  static Task<void> for_each_async(Task<std::vector<item_value>> mapped) { (void)co_await std::move(mapped); }
  map_caller<V, A...> map_;
};

/// The `reduce` member, for a function of two parameters of its result type: folds `items` (values,
/// Futures, or a Future of a std::vector of them) left to right, f(f(f(initial, i0), i1), i2)... Every step
/// is submitted at once and the server starts each as soon as its inputs exist, so a reduce over a map's
/// futures folds while the map runs. Empty items: the initial value, or std::invalid_argument without one.
/// Cancelling the coroutine awaiting reduce.aio cancels the steps.
template <class V, class... A>
class reduce_caller {
 public:
  using fold_type = future_value_t<V>;

  explicit reduce_caller(std::shared_ptr<const function_entry> entry) : entry_(std::move(entry)) {}

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
  template <class Items>
  fold_type fold(const Items& items, std::optional<fold_type> initial) const {
    if constexpr (is_future_v<Items>) {
      return fold(items.result(), std::move(initial));
    } else {
      if (std::size(items) == 0 && initial) return *initial;
      return start_fold(entry_, items, std::move(initial)).result();
    }
  }
  template <class Items>
  static Task<fold_type> fold_async(std::shared_ptr<const function_entry> entry, Items items,
                                    std::optional<fold_type> initial) {
    if constexpr (is_future_v<Items>) {
      auto resolved = co_await items;
      co_return co_await fold_async(entry, std::move(resolved), std::move(initial));
    } else {
      if (std::size(items) == 0 && initial) co_return *initial;
      auto folded = start_fold(entry, items, std::move(initial));
      co_return co_await folded.coroutine();
    }
  }
  template <class Items>
  static Future<fold_type> start_fold(const std::shared_ptr<const function_entry>& entry, const Items& items,
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
      acc.emplace(make_call_future<fold_type, A...>(entry, *initial, *it++));
    } else if (n == 1) {
      if constexpr (is_pending_v<item_type>) {
        return Future<fold_type>(it->state());
      } else {
        return identity(*it);
      }
    } else {
      const auto& first = *it++;
      acc.emplace(make_call_future<fold_type, A...>(entry, first, *it++));
    }
    for (; it != std::end(items); ++it) {
      submit_as_argument(*acc->state());  // submit as we go: the chain is not built recursively
      acc.emplace(make_call_future<fold_type, A...>(entry, *acc, *it));
    }
    return *acc;
  }
  /// A future that is already resolved to `value`: a reduce step of one item.
  static Future<fold_type> identity(const fold_type& value) { return ready_future<fold_type>(value); }

  std::shared_ptr<const function_entry> entry_;
};

}  // namespace detail
}  // namespace ferry
