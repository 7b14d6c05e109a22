// Futures, futures as arguments (the server's dataflow), map/reduce and tail calls, end to end.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <fstream>
#include <future>
#include <thread>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;
using testing::Not;

TEST(futures, a_future_is_lazy_runs_once_and_gives_its_value_in_every_form) {
  EXPECT_EQ(run_app([] {
              auto f = square.future(7);
              EXPECT_FALSE(f.done());
              f.run();
              EXPECT_THROW(f.run(), ferry::Error);  // starting twice is an error
              EXPECT_EQ(f.result(), 49);
              EXPECT_TRUE(f.done());
              EXPECT_EQ(f.result(), 49);  // again: the same value
              EXPECT_EQ(ferry::run(square.future(8).coroutine()), 64);
              EXPECT_EQ(async_double.future(21).result(), 42);  // the same for async functions
              // A Future is an Asio asynchronous operation: any completion token works.
              std::future<std::int64_t> later = square.future(6)(boost::asio::use_future);
              EXPECT_EQ(later.get(), 36);
            }),
            0);
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              auto f = async_double.future(5);
              EXPECT_EQ(co_await f, 10);
              EXPECT_TRUE(f.done());
              EXPECT_EQ(co_await f, 10);  // awaiting again gives the same value
              EXPECT_EQ(co_await square.future(3), 9);
              EXPECT_EQ(co_await square.future(4).coroutine(), 16);
              try {
                co_await element_at.future("abc", 10);
                ADD_FAILURE() << "no exception";
              } catch (const std::out_of_range& e) {
                const auto* details = ferry::remote_details(e);
                EXPECT_TRUE(details && details->function() == "element_at");
              }
            }),
            0);
}

TEST(futures, a_call_task_not_yet_awaited_is_an_argument_like_a_future) {
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              auto a = async_double(3);  // the Tasks of async calls, not awaited
              auto b = async_double(4);
              EXPECT_EQ(co_await add.remote.aio(a, b), 6 + 8);
              EXPECT_EQ(co_await add.remote.aio(async_double(3), 1), 6 + 1);  // as temporaries, too
              // Argument tasks run in parallel: each overlap_double returns 2x only if the other ran meanwhile.
              auto left = overlap_double.remote.aio(3);
              auto right = overlap_double.remote.aio(4);
              EXPECT_EQ(co_await add.remote.aio(left, right), 6 + 8);
              // One task feeds two consumers and runs once.
              auto shared = counter.remote.aio("count", 5);
              auto plus_one = add.remote.aio(shared, 1);
              auto plus_two = add.remote.aio(shared, 2);
              EXPECT_EQ(co_await add.remote.aio(plus_one, plus_two), (5 + 1) + (5 + 2));
              const std::string read = "read";
              EXPECT_EQ(co_await counter.remote.aio(read, 0), 1);
              // Awaited, a task is spent: it cannot be an argument any more.
              auto spent = async_double(1);
              EXPECT_EQ(co_await std::move(spent), 2);
              try {
                add.remote(spent, 1);
                ADD_FAILURE() << "no exception";
              } catch (const ferry::Error& e) {
                EXPECT_THAT(e.what(), HasSubstr("was awaited already"));
              }
            }),
            0);
}

TEST(futures, argument_futures_run_in_parallel_on_the_server_and_feed_the_consumer) {
  EXPECT_EQ(run_app([] {
              // Each overlap_double returns 2x only if the other ran at the same time.
              EXPECT_EQ(add.remote(overlap_double.future(3), overlap_double.future(4)), 2 * 3 + 2 * 4);
            }),
            0);
}

TEST(futures, one_future_feeds_two_consumers_and_runs_once) {
  EXPECT_EQ(run_app([] {
              auto shared = counter.future("count", 5);
              auto left = add.future(shared, 1);
              auto right = add.future(shared, 2);
              EXPECT_EQ(add.remote(left, right), (5 + 1) + (5 + 2));
              EXPECT_EQ(counter.remote("read", 0), 1);
            }),
            0);
}

TEST(futures, a_failing_argument_call_fails_the_consumer_naming_it) {
  EXPECT_EQ(run_app([] {
              try {
                add.remote(element_at.future("abc", 10), 1);
                ADD_FAILURE() << "no exception";
              } catch (const std::out_of_range& e) {
                EXPECT_THAT(e.what(), HasSubstr("argument 1 of 'add' comes from call fc-"));
                EXPECT_THAT(e.what(), HasSubstr("of 'element_at', which failed: "));
                const auto* details = ferry::remote_details(e);
                EXPECT_TRUE(details && details->function() == "element_at");
              }
            }),
            0);
}

TEST(futures, map_keeps_input_order_over_10000_items) {
  EXPECT_EQ(run_app([] {
              std::vector<std::int64_t> items(10'000);
              for (std::int64_t i = 0; i < 10'000; ++i) items[i] = i;
              const auto squares = square.map(items);
              ASSERT_EQ(squares.size(), items.size());
              std::int64_t wrong = 0;
              for (std::int64_t i = 0; i < 10'000; ++i) wrong += squares[i] != i * i;
              EXPECT_EQ(wrong, 0);
            }),
            0);
}

TEST(futures, map_in_every_form_starmap_and_for_each) {
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              std::vector<std::int64_t> items{1, 2, 3};  // (GCC 12: no braced temporaries inside co_await)
              const std::vector<std::int64_t> doubled = co_await async_double.map.aio(std::move(items));
              EXPECT_EQ(doubled, (std::vector<std::int64_t>{2, 4, 6}));
            }),
            0);
  EXPECT_EQ(run_app([] {
              auto unordered = square.map(std::vector<std::int64_t>{1, 2, 3}, {.order_outputs = false});
              std::sort(unordered.begin(), unordered.end());
              EXPECT_EQ(unordered, (std::vector<std::int64_t>{1, 4, 9}));
              const auto squares = square.map.outcomes(std::vector<std::int64_t>{2, 3});
              ASSERT_EQ(squares.size(), 2u);
              EXPECT_TRUE(squares[0].ok());
              EXPECT_EQ(squares[1].get(), 9);
              using pair = std::tuple<std::int64_t, std::int64_t>;
              EXPECT_EQ(add.starmap({pair{1, 2}, pair{3, 4}}), (std::vector<std::int64_t>{3, 7}));
              const std::vector<std::tuple<std::string, std::int64_t>> positions{{std::string("ab"), 0},
                                                                                 {std::string("ab"), 5}};
              EXPECT_THROW(element_at.starmap(positions), std::out_of_range);
              square.for_each(std::vector<std::int64_t>{1, 2, 3});
              // A future of a vector feeds map and reduce too.
              const auto numbers = echo_numbers.future(std::vector<std::int64_t>{1, 2, 3});
              EXPECT_EQ(square.map(numbers), (std::vector<std::int64_t>{1, 4, 9}));
              EXPECT_EQ(add.reduce(numbers), 6);
            }),
            0);
}

/// The items 1, 2, 3 in each kind map and reduce take: values, futures, and a future of a vector.
struct item_kinds {
  std::vector<std::int64_t> values{1, 2, 3};
  std::vector<ferry::Future<std::int64_t>> futures{add.future(1, 0), add.future(2, 0), add.future(3, 0)};
  ferry::Future<std::vector<std::int64_t>> future_of_vector = echo_numbers.future(std::vector<std::int64_t>{1, 2, 3});
};

template <class Items>
void expect_every_blocking_form(const Items& items) {
  const std::vector<std::int64_t> squares{1, 4, 9};
  EXPECT_EQ(square.map(items), squares);
  const auto outcomes = square.map.outcomes(items);
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[2].get(), 9);
  square.for_each(items);
  EXPECT_EQ(add.reduce(items), 6);
  EXPECT_EQ(add.reduce(items, 10), 16);
}

/// (The expected values come in as an argument: GCC 12 cannot keep an initializer list's array in a
/// coroutine frame.)
template <class Items>
ferry::Task<void> expect_every_async_form(Items items, std::vector<std::int64_t> squares) {
  EXPECT_EQ(co_await square.map.aio(items), squares);
  const auto outcomes = co_await square.map.outcomes.aio(items);
  EXPECT_EQ(outcomes.size(), 3u);
  if (outcomes.size() == 3) {
    EXPECT_EQ(outcomes[2].get(), 9);
  }
  co_await square.for_each.aio(items);
  EXPECT_EQ(co_await add.reduce.aio(items), 6);
  EXPECT_EQ(co_await add.reduce.aio(items, 10), 16);
}

TEST(futures, every_map_and_reduce_form_takes_values_futures_or_a_future_of_a_vector) {
  EXPECT_EQ(run_app([] {
              item_kinds kinds;
              expect_every_blocking_form(kinds.values);
              expect_every_blocking_form(kinds.futures);
              expect_every_blocking_form(kinds.future_of_vector);
              using pair = std::tuple<std::int64_t, std::int64_t>;
              const auto pairs = pair_up.future(std::vector<std::int64_t>{1, 2, 3});
              EXPECT_EQ(add.starmap(pairs), (std::vector<std::int64_t>{2, 4, 6}));
              EXPECT_EQ(add.starmap(std::vector<pair>{{1, 2}}), (std::vector<std::int64_t>{3}));
            }),
            0);
  item_kinds kinds;  // (lazy until used in the program below)
  const auto pairs = pair_up.future(std::vector<std::int64_t>{1, 2, 3});
  const std::vector<std::int64_t> squares{1, 4, 9}, doubles{2, 4, 6};
  EXPECT_EQ(run_app([&]() -> ferry::Task<void> {
              co_await expect_every_async_form(kinds.values, squares);
              co_await expect_every_async_form(kinds.futures, squares);
              co_await expect_every_async_form(kinds.future_of_vector, squares);
              EXPECT_EQ(co_await add.starmap.aio(pairs), doubles);
            }),
            0);
}

TEST(futures, reduce_folds_left_to_right_with_its_edge_cases) {
  EXPECT_EQ(run_app([] {
              EXPECT_THROW(add.reduce(std::vector<std::int64_t>{}), std::invalid_argument);
              EXPECT_EQ(add.reduce(std::vector<std::int64_t>{}, 7), 7);
              EXPECT_EQ(add.reduce(std::vector<std::int64_t>{5}), 5);
              EXPECT_EQ(add.reduce(std::vector<std::int64_t>{1, 2, 3, 4}), 10);
              EXPECT_EQ(add.reduce(std::vector<std::int64_t>{1, 2, 3}, 10), 16);
              EXPECT_EQ(ferry::run(add.reduce.aio(std::vector<std::int64_t>{4, 5})), 9);
            }),
            0);
}

TEST(futures, a_reduce_of_20000_items_folds_them_all) {
  // Each step's future is the argument of the next: the chain used to be destroyed by recursion as deep as
  // it was long, and overflowed the stack at about 16,000 items in a Debug build.
  EXPECT_EQ(run_app([] { EXPECT_EQ(add.reduce(std::vector<std::int64_t>(20'000, 1)), 20'000); }), 0);
}

TEST(futures, a_failure_at_the_head_of_a_long_reduce_reaches_the_caller_told_once_and_bounded) {
  const std::string gate = scratch_dir() + "/gate";
  scoped_env gate_env({{"E2E_GATE", gate}});  // (the server's containers inherit it)
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr std::int64_t n = 100'000;  // (the sanitizers' memory and time overheads)
#else
  constexpr std::int64_t n = 1'000'000;
#endif
  EXPECT_EQ(run_app([&] {
              std::vector<std::int64_t> items(n, 1);
              items[0] = -1;  // the first step waits for the gate, then throws
              std::thread opener([&] {
                // Every later step waits on the server for the one before it; then the head fails, and the
                // failure runs down the whole chain.
                const auto give_up = std::chrono::steady_clock::now() + 120s;
                while (server.metric("ferry_calls_waiting") < n - 2 && std::chrono::steady_clock::now() < give_up) {
                  std::this_thread::sleep_for(10ms);  // (polling the server's state, with a deadline)
                }
                std::ofstream(gate) << "open\n";
              });
              try {
                gated_add.reduce(items);
                ADD_FAILURE() << "no exception";
              } catch (const std::invalid_argument& e) {
                const std::string what = e.what();
                EXPECT_LT(what.size(), 1000u) << what.substr(0, 2000);
                EXPECT_THAT(what, HasSubstr("the first step fails on purpose"));
                EXPECT_EQ(what.find("the first step fails on purpose"), what.rfind("the first step fails on purpose"));
                EXPECT_THAT(what, HasSubstr(std::to_string(n - 3) + " calls further up its chain of arguments"));
                const auto* details = ferry::remote_details(e);
                ASSERT_NE(details, nullptr);
                EXPECT_EQ(details->function(), "gated_add");  // where it began
              }
              opener.join();
            }),
            0);
  // What the server keeps of all those failures stays small too.
  EXPECT_LT(server.http_get("/v1/calls").size(), 1'000'000u);
}

TEST(futures, reduce_begins_before_the_maps_last_item_finishes) {
  EXPECT_EQ(run_app([] {
              std::vector<ferry::Future<std::int64_t>> doubled;
              for (std::int64_t i = 0; i < 5; ++i) doubled.push_back(gated_double.future(i, i == 4));
              EXPECT_EQ(marking_add.reduce(doubled), 2 * (0 + 1 + 2 + 3 + 4));
            }),
            0);
}

// A tail call of the function's own runs next in its container slot, as the same call; the server hears of
// each hop, so a retry after a crash starts from the hop that crashed, not from the top of the chain.
TEST(futures, a_tail_call_of_its_own_function_runs_in_its_container_and_a_retry_starts_from_the_latest_hop) {
  const std::string dir = scratch_dir();
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::string call_id;
  EXPECT_EQ(run_app([&] {
              auto call = crash_hop.spawn(dir, 10, 4);
              call_id = call.id();
              EXPECT_EQ(call.get(), 0);
            }),
            0);
  for (int n = 10; n >= 0; --n) {
    EXPECT_EQ(read_count(dir + "/" + std::to_string(n)), n == 4 ? 2 : 1) << "the runs of hop " << n;
  }
  const auto row = boost::json::parse(server.http_get("/v1/calls/" + call_id)).as_object();
  EXPECT_EQ(row.at("status"), "succeeded");
  EXPECT_EQ(row.at("tail_hops"), 10);  // 10 -> 4, then, retried from 4, 4 -> 0: all one call
  EXPECT_EQ(row.at("tail_call"), nullptr);
}

TEST(futures, a_cancel_stops_a_chain_of_tail_calls_running_in_its_container) {
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              auto call = hop_forever.spawn(dir);
              const auto give_up = std::chrono::steady_clock::now() + 60s;
              while (read_count(dir + "/hops") < 3 && std::chrono::steady_clock::now() < give_up) {
                std::this_thread::sleep_for(5ms);  // (polling the chain's progress, with a deadline)
              }
              call.cancel();
              try {
                call.get();
                ADD_FAILURE() << "no exception";
              } catch (const ferry::CancelledError& e) {
                // Stopped by the container before its next hop, not replaced after the grace period.
                EXPECT_THAT(e.what(), HasSubstr("'hop_forever' was cancelled while it ran"));
                EXPECT_THAT(e.what(), Not(HasSubstr("grace period")));
              }
            }),
            0);
}

// Each hop of a chain run in the container is a call of its own: it gets the function's whole timeout.
TEST(futures, each_tail_hop_in_the_container_gets_the_functions_whole_timeout) {
  EXPECT_EQ(run_app([&] {
              EXPECT_EQ(sleepy_hop.remote(4, -1), 0);  // five hops of 150 ms, 750 ms in all, under a 400 ms timeout
              try {
                sleepy_hop.remote(4, 2);  // the third hop runs past it
                ADD_FAILURE() << "no exception";
              } catch (const ferry::TimeoutError& e) {
                EXPECT_THAT(e.what(), HasSubstr("'sleepy_hop' timed out: an attempt may run 400 ms"));
              }
            }),
            0);
}

TEST(futures, a_function_tail_calling_itself_1000_deep_with_one_slot_completes) {
  EXPECT_EQ(run_app([] {
              EXPECT_EQ(count_down.remote(1000), 0);       // blocking body returning Future<int64>
              EXPECT_EQ(async_count_down.remote(200), 7);  // async body returning Task<Future<int64>>
            }),
            0);
}

}  // namespace
}  // namespace e2e
