// The async API end to end: async bodies, every caller/body combination, concurrency inside a container,
// gather and create_task, cancellation, and the guard rails around event loops.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>
#include <thread>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(async, every_caller_and_body_combination_returns_the_value) {
  // Blocking callers.
  EXPECT_EQ(run_app([] {
              EXPECT_EQ(add.remote(20, 22), 42);                // blocking -> blocking
              EXPECT_EQ(async_double.remote(21), 42);           // blocking -> async
              EXPECT_EQ(blocking_calls_async.remote(5), 11);    // a blocking body calling an async function
              EXPECT_EQ(ferry::run(async_double.local(3)), 6);  // the body, run here
            }),
            0);
  // Async callers.
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              EXPECT_EQ(co_await add.remote.aio(1, 2), 3);        // async -> blocking
              EXPECT_EQ(co_await async_double.remote.aio(4), 8);  // async -> async
              EXPECT_EQ(co_await async_double(5), 10);            // the direct call: a lazy Task
            }),
            0);
}

TEST(async, inputs_of_an_async_body_are_coroutines_on_one_thread_100_at_once) {
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              std::vector<ferry::Task<rendezvous_report>> calls;
              for (int i = 0; i < 100; ++i) calls.push_back(async_rendezvous.remote.aio(100));
              const auto reports = co_await ferry::gather(std::move(calls));
              expect_rendezvous(reports, 100, 1);
            }),
            0);
}

TEST(async, inputs_of_a_blocking_body_with_max_inputs_8_run_8_at_once_on_8_threads) {
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              std::vector<ferry::Task<rendezvous_report>> calls;
              for (int i = 0; i < 8; ++i) calls.push_back(rendezvous8.remote.aio(8));
              const auto reports = co_await ferry::gather(std::move(calls));
              expect_rendezvous(reports, 8, 8);
            }),
            0);
}

TEST(async, gather_returns_values_in_order_as_a_tuple_or_a_vector) {
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              auto [doubled, sum] = co_await ferry::gather(async_double(1), add.remote.aio(2, 3));
              EXPECT_EQ(doubled, 2);
              EXPECT_EQ(sum, 5);
              std::vector<ferry::Task<std::int64_t>> calls;
              for (std::int64_t i = 0; i < 50; ++i) calls.push_back(async_double(i));
              const auto values = co_await ferry::gather(std::move(calls));
              std::vector<std::int64_t> expected;
              for (std::int64_t i = 0; i < 50; ++i) expected.push_back(2 * i);
              EXPECT_EQ(values, expected);
            }),
            0);
}

TEST(async, create_task_starts_the_call_now_and_is_awaited_later) {
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              auto marked = ferry::create_task(sleeper("mark", "created"));
              // Not awaited yet, but already running: the mark becomes visible.
              EXPECT_TRUE(co_await sleeper("started", "created"));
              EXPECT_TRUE(co_await std::move(marked));
            }),
            0);
}

/// Throws test_error once file `path` exists.
ferry::Task<void> fail_once_exists(std::string path) {
  EXPECT_TRUE(co_await wait_for_file_async(path));
  throw test_error("a sibling failed");
}

TEST(async, a_created_task_is_awaited_as_an_lvalue_by_several_awaiters_and_is_polled_and_cancelled) {
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&]() -> ferry::Task<void> {
              auto doubled = ferry::create_task(async_double(21));
              EXPECT_FALSE(doubled.done());  // (it runs on this loop, which has not let it run yet)
              auto [a, b] = co_await ferry::gather(doubled, doubled);  // two awaiters at once
              EXPECT_EQ(a, 42);
              EXPECT_EQ(b, 42);
              EXPECT_TRUE(doubled.done());
              EXPECT_EQ(co_await doubled, 42);  // as an lvalue, again
              auto watched = ferry::create_task(cancel_witness.remote.aio(dir + "/task"));
              EXPECT_TRUE(co_await wait_for_file_async(dir + "/task.started"));
              watched.cancel();
              EXPECT_THROW(co_await watched, ferry::CancelledError);
              EXPECT_TRUE(watched.done());
              EXPECT_TRUE(co_await wait_for_file_async(dir + "/task.cancelled"));  // its remote input too
            }),
            0);
}

TEST(async, a_gathered_future_is_cancelled_with_its_remote_call_when_a_sibling_fails) {
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&]() -> ferry::Task<void> {
              auto watched = cancel_witness.future(dir + "/future");
              EXPECT_THROW(co_await ferry::gather(watched.coroutine(), fail_once_exists(dir + "/future.started")),
                           test_error);
              EXPECT_TRUE(co_await wait_for_file_async(dir + "/future.cancelled"));
              EXPECT_THROW(co_await watched, ferry::CancelledError);  // the call was cancelled
              // Awaited directly (a Future is an Asio operation), with a sibling failing at once.
              auto direct = cancel_witness.future(dir + "/direct");
              EXPECT_THROW(co_await ferry::gather(direct, fail_once_exists(dir + "/direct.started")), test_error);
              EXPECT_TRUE(co_await wait_for_file_async(dir + "/direct.cancelled"));
            }),
            0);
}

TEST(async, a_cancelled_map_aio_cancels_its_remote_inputs) {
  const std::string dir = scratch_dir();
  // (Built outside the coroutine: GCC 12 cannot keep an initializer list's array in a coroutine frame.)
  const std::vector<std::string> items{dir + "/m0", dir + "/m1", dir + "/m2"};
  EXPECT_EQ(run_app([&]() -> ferry::Task<void> {
              auto fail_once_all_started = [&]() -> ferry::Task<void> {
                for (const auto& item : items) {
                  const bool started = co_await wait_for_file_async(item + ".started");
                  EXPECT_TRUE(started) << item;
                }
                throw test_error("a sibling failed");
              };
              EXPECT_THROW(co_await ferry::gather(cancel_witness.map.aio(items), fail_once_all_started()), test_error);
              for (const auto& item : items) {
                const bool cancelled = co_await wait_for_file_async(item + ".cancelled");
                EXPECT_TRUE(cancelled) << item;
              }
            }),
            0);
}

TEST(async, a_cancelled_reduce_aio_cancels_its_steps) {
  const std::string dir = scratch_dir();
  scoped_env witness({{"E2E_WITNESS", dir + "/reduce"}});  // (the containers inherit it)
  const std::vector<std::int64_t> items{-2, 1, 1, 1};
  EXPECT_EQ(run_app([&]() -> ferry::Task<void> {
              // The first step waits until cancelled; the later ones wait on the server for the one before.
              EXPECT_THROW(
                  co_await ferry::gather(cancellable_add.reduce.aio(items), fail_once_exists(dir + "/reduce.started")),
                  test_error);
              EXPECT_TRUE(co_await wait_for_file_async(dir + "/reduce.cancelled"));
            }),
            0);
}

TEST(async, a_cancelled_get_aio_stops_waiting_and_the_spawned_call_goes_on) {
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&]() -> ferry::Task<void> {
              auto call = co_await cancel_witness.spawn.aio(dir + "/spawned");
              EXPECT_TRUE(co_await wait_for_file_async(dir + "/spawned.started"));
              EXPECT_THROW(co_await ferry::gather(call.get.aio(), fail_once_exists(dir + "/spawned.started")),
                           test_error);
              EXPECT_FALSE(std::filesystem::exists(dir + "/spawned.cancelled"));  // a spawned call is durable
              co_await call.cancel.aio();
              EXPECT_TRUE(co_await wait_for_file_async(dir + "/spawned.cancelled"));
            }),
            0);
}

TEST(async, a_cancelled_ferry_sleep_throws_cancelled_error) {
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              bool saw_cancelled_error = false;
              auto sleeping = [&]() -> ferry::Task<void> {
                try {
                  co_await ferry::sleep(60s);
                } catch (const ferry::CancelledError&) {
                  saw_cancelled_error = true;
                  throw;
                }
              };
              auto failing = []() -> ferry::Task<void> {
                co_await ferry::sleep(1ms);
                throw test_error("a sibling failed");
              };
              EXPECT_THROW(co_await ferry::gather(sleeping(), failing()), test_error);
              EXPECT_TRUE(saw_cancelled_error);
            }),
            0);
}

TEST(async, a_failing_gather_member_cancels_its_siblings_and_their_bodies_observe_it) {
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              auto fail_once_siblings_run = []() -> ferry::Task<void> {
                EXPECT_TRUE(co_await sleeper("started", "gathered"));
                EXPECT_TRUE(co_await blocking_waiter.remote.aio("started", "gathered"));
                throw test_error("one member failed");
              };
              try {
                co_await ferry::gather(sleeper("sleep", "gathered"), blocking_waiter.remote.aio("wait", "gathered"),
                                       fail_once_siblings_run());
                ADD_FAILURE() << "gather did not rethrow";
              } catch (const test_error& e) {
                EXPECT_STREQ(e.what(), "one member failed");
              }
              // The async sibling was cancelled at its suspension point, the blocking one saw ferry::cancelled().
              EXPECT_TRUE(co_await sleeper("cancelled", "gathered"));
              EXPECT_TRUE(co_await blocking_waiter.remote.aio("cancelled", "gathered"));
            }),
            0);
}

TEST(async, a_body_that_never_yields_delays_no_other_function_and_still_sees_cancellation) {
  EXPECT_EQ(run_app([]() -> ferry::Task<void> {
              auto others_still_run = []() -> ferry::Task<void> {
                EXPECT_TRUE(co_await sleeper("started", "spin"));  // spin now holds its container's loop
                EXPECT_EQ(co_await add.remote.aio(2, 2), 4);
                EXPECT_EQ(co_await async_double(8), 16);
                throw test_error("done: cancel the spin");
              };
              EXPECT_THROW(co_await ferry::gather(spin("spin"), others_still_run()), test_error);
              EXPECT_TRUE(co_await spin("check"));
            }),
            0);
}

TEST(async, a_blocking_call_on_an_event_loop_completes_and_is_warned_about_once_per_call_site) {
  const auto r = run({"/proc/self/exe"}, {{"E2E_SCENARIO", "blocking_in_loop"}});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("first 2\nsecond 6\n"));
  EXPECT_EQ(count(r.err, "blocking call of 'add' at"), 1u) << r.err;
  EXPECT_THAT(r.err, HasSubstr("use `co_await add.remote.aio(...)` instead"));
}

TEST(async, an_async_body_holding_the_loop_is_warned_about_with_its_function_and_call_id) {
  const auto r = run({"/proc/self/exe"}, {{"E2E_SCENARIO", "stall"}});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("hog 400"));
  EXPECT_THAT(r.err, HasSubstr("async function 'hog' (call fc-"));
  EXPECT_THAT(r.err, HasSubstr("held the event loop for"));
}

TEST(async, a_stalling_function_is_warned_about_once_with_the_whole_hold_and_later_stalls_are_counted) {
  ferry_server server;
  const auto r = run({"/proc/self/exe"},
                     {{"E2E_SCENARIO", "stall3"}, {"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count(r.err, "held the event loop for"), 1u) << r.err;  // not one warning per call
  std::smatch held;
  ASSERT_TRUE(std::regex_search(r.err, held, std::regex("held the event loop for ([0-9]+) ms"))) << r.err;
  EXPECT_GE(std::stoi(held[1]), 300) << r.err;  // the whole hold, not the moment it crossed the threshold
  // The other two are counted, and told when the container stops (here: after the program has gone).
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  std::string logs;
  while (logs.find("held the event loop 2 more times") == std::string::npos &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(20ms);  // (polling the server's log book, with a deadline)
    logs = server.cli({"logs", "e2e"}).out;
  }
  EXPECT_THAT(logs, HasSubstr("async function 'hog' held the event loop 2 more times (the longest for "));
}

TEST(async, create_task_outside_an_event_loop_is_a_clear_error) {
  try {
    (void)ferry::create_task(async_double(1));
    ADD_FAILURE() << "no exception";
  } catch (const ferry::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("needs a running ferry event loop"));
  }
}

TEST(async, examples_print_what_the_seeds_say) {
  const auto function = run({FERRY_EXAMPLES_DIR "/async_function"});
  EXPECT_EQ(function.code, 0) << function.err;
  EXPECT_EQ(function.out, "420\n");
  const auto gathered = run({FERRY_EXAMPLES_DIR "/async_gather"});
  EXPECT_EQ(gathered.code, 0) << gathered.err;
  EXPECT_EQ(gathered.out, "100 calls of myfunc finished\n");
  const auto runhouse = run({FERRY_EXAMPLES_DIR "/runhouse_async"});
  EXPECT_EQ(runhouse.code, 0) << runhouse.err;
  EXPECT_EQ(runhouse.out, "2\n2\n2\n2\n");
  EXPECT_EQ(runhouse.err, "");  // no event loop is blocked: no warnings
  const auto tensorlake = run({FERRY_EXAMPLES_DIR "/tensorlake"});
  EXPECT_EQ(tensorlake.code, 0) << tensorlake.err;
  EXPECT_EQ(tensorlake.out,
            "greet: Hello, ALICE!\n"
            "create_task: 42\n"
            "gather: Hello, ALICE! Why did alice cross the road? To get to the other side!\n"
            "map and reduce: 20\n"
            "calls as inputs: 18\n"
            "futures as inputs: 18\n"
            "tail call: 42\n"
            "tail call of a sync future: 42\n"
            "await a sync future: 42\n"
            "background task: 42\n"
            "sync calling async: 63\n");
}

}  // namespace
}  // namespace e2e
