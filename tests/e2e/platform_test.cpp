// The server as a platform, end to end: retries, timeouts, container replacement, scaling, queue limits.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

namespace asio = boost::asio;
using testing::HasSubstr;

/// One row of `ferry ps`.
struct ps_row {
  std::string function, state;
  int inputs = 0;
};

std::vector<ps_row> ps(const ferry_server& server) {
  const auto r = server.cli({"ps"});
  EXPECT_EQ(r.code, 0) << r.err;
  std::vector<ps_row> rows;
  std::istringstream lines(r.out);
  std::string line;
  std::getline(lines, line);  // the header
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string id, app;
    ps_row row;
    fields >> id >> app >> row.function >> row.state >> row.inputs;
    rows.push_back(row);
  }
  return rows;
}

/// Polls `ferry ps` until `done(rows of function)` holds; false after 30 s.
template <class Predicate>
bool wait_for_containers(const ferry_server& server, const std::string& function, Predicate done) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<ps_row> mine;
    for (auto& row : ps(server)) {
      if (row.function == function) mine.push_back(row);
    }
    if (done(mine)) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

/// Waits (suspending) until `path` exists; false after 30 s.
ferry::Task<bool> file_appears(std::string path) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (int i = 0; i < 3000; ++i) {
    if (std::filesystem::exists(path)) co_return true;
    timer.expires_after(10ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return false;
}

TEST(platform, a_failing_body_is_retried_and_the_last_error_says_how_many_attempts_failed) {
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              EXPECT_EQ(fail_first.remote(dir + "/a", 2), 3);  // two failures, then success
              try {
                fail_first.remote(dir + "/b", 10);
                ADD_FAILURE() << "no exception";
              } catch (const std::runtime_error& e) {
                EXPECT_THAT(e.what(), HasSubstr("'fail_first' failed 4 times (4 attempts, the retry limit)"));
                EXPECT_THAT(e.what(), HasSubstr("attempt 4 fails"));
              }
              EXPECT_EQ(read_count(dir + "/b"), 4);
              try {
                fail_first_no_retries.remote(dir + "/c", 1);
                ADD_FAILURE() << "no exception";
              } catch (const std::runtime_error& e) {
                EXPECT_STREQ(e.what(), "attempt 1 fails");  // no retries: the error as it was
              }
            }),
            0);
}

// An argument and a result of several MiB travel in frames of their own, which the server keeps without a
// copy and sends on by reference: the attempt after a crash gets the argument whole, and the result
// comes back whole.
TEST(platform, the_retry_after_a_crash_gets_a_large_argument_whole) {
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              ferry::bytes data(std::size_t{3} << 20);
              for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i ^ (i >> 11));
              EXPECT_TRUE(crash_first_echo.remote(dir + "/a", data) == data) << "the retry's argument changed";
              EXPECT_EQ(read_count(dir + "/a"), 2);  // (the crash, then the retry)
              EXPECT_TRUE(crash_first_echo.remote(dir + "/a", data) == data);
            }),
            0);
}

TEST(platform, a_container_killed_mid_input_is_retried_or_reported) {
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              EXPECT_EQ(crash_first.remote(dir + "/a", 1), 2);  // SIGKILL mid-input, re-queued, done
              try {
                crash_first_no_retries.remote(dir + "/b", 1);
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ContainerCrashedError& e) {
                EXPECT_THAT(e.what(), HasSubstr("was killed by signal 9"));
              }
              try {
                crash_first.remote(dir + "/c", 10);
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ContainerCrashedError& e) {
                EXPECT_THAT(e.what(), HasSubstr("'crash_first' failed 3 times"));
              }
              EXPECT_EQ(add.remote(1, 2), 3);  // the server keeps serving
            }),
            0);
}

TEST(platform, an_attempt_past_its_timeout_fails_with_a_timeout_error_or_is_retried) {
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              try {
                timed_hold.remote(dir + "/never");
                ADD_FAILURE() << "no exception";
              } catch (const ferry::TimeoutError& e) {
                EXPECT_THAT(e.what(), HasSubstr("'timed_hold' timed out: an attempt may run 200 ms"));
              }
              // The first attempt hangs, ignoring cancellation: it times out and the retry runs in another
              // container, while the hung one still holds its slot.
              EXPECT_EQ(stall_once.remote(dir + "/s"), 2);
            }),
            0);
}

TEST(platform, a_body_ignoring_cancellation_gets_its_container_replaced_and_its_neighbour_requeued) {
  ferry_server server({"--cancel-grace", "300"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&]() -> ferry::Task<void> {
              // Both first attempts hang in the one container (max_inputs = 2).
              auto neighbour = ferry::create_task(stall_once_no_timeout.remote.aio(dir + "/n"));
              EXPECT_TRUE(co_await file_appears(dir + "/n.running"));
              asio::cancellation_signal cancel;
              std::exception_ptr cancelled_error;
              asio::co_spawn(co_await asio::this_coro::executor, stall_once_no_timeout.remote.aio(dir + "/c"),
                             asio::bind_cancellation_slot(
                                 cancel.slot(), [&](std::exception_ptr e, std::int64_t) { cancelled_error = e; }));
              EXPECT_TRUE(co_await file_appears(dir + "/c.running"));
              cancel.emit(asio::cancellation_type::terminal);
              // The cancelled body never stops: after the grace period its container is killed, and the
              // neighbour runs again elsewhere, without that attempt counting against it (it has no retries).
              EXPECT_EQ(co_await std::move(neighbour), 2);
              EXPECT_TRUE(cancelled_error);
              EXPECT_EQ(read_count(dir + "/c"), 1);  // a cancelled input is never retried
            }),
            0);
  EXPECT_TRUE(server.proc().wait_for_output("did not stop within 300 ms of being cancelled")) << server.proc().err();
}

TEST(platform, containers_scale_up_under_a_queue_and_down_after_the_window) {
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              // min_containers = 1: one warm container before any call.
              EXPECT_TRUE(wait_for_containers(
                  server, "warm_hold", [](const auto& rows) { return rows.size() == 1 && rows[0].state == "ready"; }));
              // One input in flight, buffer_containers = 1: a second container waits beside it.
              auto warm = warm_hold.future(dir + "/warm-gate");
              warm.run();
              EXPECT_TRUE(wait_for_containers(server, "warm_hold", [](const auto& rows) { return rows.size() == 2; }));

              // Three inputs, max_inputs = 1: three containers, one input each.
              std::vector<ferry::Future<bool>> held;
              for (int i = 0; i < 3; ++i) held.push_back(hold.future(dir + "/gate"));
              for (auto& f : held) f.run();
              EXPECT_TRUE(wait_for_containers(server, "hold", [](const auto& rows) {
                return rows.size() == 3 &&
                       std::all_of(rows.begin(), rows.end(), [](const ps_row& r) { return r.inputs == 1; });
              }));
              std::ofstream(dir + "/gate") << "open\n";
              std::ofstream(dir + "/warm-gate") << "open\n";
              for (auto& f : held) EXPECT_TRUE(f.result());
              EXPECT_TRUE(warm.result());
              // scaledown_window = 300 ms: idle containers stop; the warm one stays.
              EXPECT_TRUE(wait_for_containers(server, "hold", [](const auto& rows) { return rows.empty(); }));
            }),
            0);
}

TEST(platform, a_full_queue_refuses_calls_with_a_resource_exhausted_error_and_a_map_slows_down) {
  ferry_server server({"--max-queued-inputs", "2"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  const std::string dir = scratch_dir();
  EXPECT_EQ(run_app([&] {
              auto running = single_hold.future(dir + "/gate");
              running.run();
              EXPECT_TRUE(wait_for_containers(
                  server, "single_hold", [](const auto& rows) { return rows.size() == 1 && rows[0].inputs == 1; }));
              auto queued1 = single_hold.future(dir + "/gate");
              auto queued2 = single_hold.future(dir + "/gate");
              queued1.run();
              queued2.run();
              try {
                single_hold.remote(dir + "/gate");
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ResourceExhaustedError& e) {
                EXPECT_THAT(e.what(), HasSubstr("'single_hold' already has 2 inputs queued"));
              }
              std::ofstream(dir + "/gate") << "open\n";
              EXPECT_TRUE(running.result());
              EXPECT_TRUE(queued1.result());
              EXPECT_TRUE(queued2.result());
              // A map much larger than the queue limit slows down instead of failing.
              std::vector<std::int64_t> items(300);
              for (std::int64_t i = 0; i < 300; ++i) items[i] = i;
              const auto squares = square.map(items);
              std::int64_t wrong = 0;
              for (std::int64_t i = 0; i < 300; ++i) wrong += squares[i] != i * i;
              EXPECT_EQ(wrong, 0);
            }),
            0);
}

}  // namespace
}  // namespace e2e
