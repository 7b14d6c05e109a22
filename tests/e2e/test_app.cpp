#include "test_app.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>

namespace e2e {

ferry::App& app() {
  static ferry::App instance{"e2e"};
  return instance;
}

// Bodies live in namespace e2e (not an anonymous one) so that remote stacks can name them.
std::int64_t add_body(std::int64_t a, std::int64_t b) { return a + b; }
std::int64_t square_body(std::int64_t x) { return x * x; }
sample echo_body(sample s) { return s; }

std::int64_t element_at_body(std::string text, std::int64_t i) {
  return static_cast<unsigned char>(text.at(static_cast<std::size_t>(i)));
}

void raise_test_error_body() { throw test_error("the answer is not 42"); }

namespace {
/// A helper with internal linkage, which only the executable's own symbol table names (not the dynamic
/// loader's): where a remote stack must start.
[[gnu::noinline]] void fail_in_a_static_helper(std::int64_t depth) {
  if (depth > 0) return fail_in_a_static_helper(depth - 1);
  throw std::runtime_error("thrown three calls deep");
}
}  // namespace

std::int64_t throw_deep_body() {
  fail_in_a_static_helper(2);
  return 0;
}

std::int64_t crash_thrice_body() { std::abort(); }

bool libdw_mapped_body(bool then_throw) {
  const bool mapped = maps_library("/proc/self/maps", "libdw");
  if (then_throw) throw std::runtime_error("a stack to name");
  return mapped;
}

std::int64_t crash_body() {
  std::fputs("crash: about to abort\n", stderr);
  std::fflush(stderr);
  std::abort();
}

std::int64_t never_starts_body() { return 0; }  // its container exits before serving (see e2e_main.cpp)

namespace {
std::mutex rendezvous_mu;
std::condition_variable rendezvous_cv;
std::int64_t rendezvous_running = 0;
std::int64_t rendezvous_peak = 0;
}  // namespace

/// Waits until `expected` inputs run at once (or 60 s pass, so a failure does not hang the test) and
/// reports its thread and the most inputs it saw running together.
rendezvous_report rendezvous_body(std::int64_t expected) {
  std::unique_lock lock(rendezvous_mu);
  ++rendezvous_running;
  rendezvous_peak = std::max(rendezvous_peak, rendezvous_running);
  rendezvous_cv.notify_all();
  rendezvous_cv.wait_for(lock, std::chrono::seconds(60), [&] { return rendezvous_peak >= expected; });
  --rendezvous_running;
  std::ostringstream thread;
  thread << std::this_thread::get_id();
  return {thread.str(), rendezvous_peak};
}

std::int64_t sum_of_squares_body(std::int64_t n) {
  std::int64_t total = 0;
  for (std::int64_t i = 1; i <= n; ++i) total += square.remote(i);
  return total;
}

std::uint64_t length_of_body(ferry::bytes data) { return data.size(); }

std::pair<ferry::bytes, std::string> echo_payloads_body(ferry::bytes data, std::string text) {
  return {std::move(data), std::move(text)};
}

ferry::Function<std::int64_t(std::int64_t, std::int64_t)> add = app().function("add", add_body);
ferry::Function<std::int64_t(std::int64_t)> square = app().function("square", square_body);
ferry::Function<sample(sample)> echo = app().function("echo", echo_body);
ferry::Function<std::int64_t(std::string, std::int64_t)> element_at = app().function("element_at", element_at_body);
// (Registered at namespace scope, so that containers of this binary rethrow it as itself too.)
const bool registered_error_registered = (ferry::register_exception<registered_error>(), true);
ferry::Function<void(std::string)> raise_registered =
    app().function("raise_registered", [](std::string message) { throw registered_error(message); });
std::int64_t pass_on_body(std::string kind) {
  if (kind == "element_at") return element_at.remote("ab", 5);
  if (kind == "test_error") raise_test_error.remote();
  if (kind == "registered") raise_registered.remote("registered and passed on");
  if (kind == "crash") return crash.remote();
  return 0;
}
ferry::Function<std::int64_t(std::string)> pass_on = app().function("pass_on", pass_on_body);
ferry::Task<std::int64_t> async_pass_on_body(std::string kind) {
  if (kind == "element_at") co_return co_await element_at.remote.aio("ab", 5);
  if (kind == "test_error") co_await raise_test_error.remote.aio();
  if (kind == "registered") co_await raise_registered.remote.aio("registered and passed on");
  if (kind == "crash") co_return co_await crash.remote.aio();
  co_return 0;
}
ferry::Function<ferry::Task<std::int64_t>(std::string)> async_pass_on =
    app().function("async_pass_on", async_pass_on_body);
ferry::Function<bool(std::string, bool)> stderr_then_exit = app().function("stderr_then_exit",
                                                                           [](std::string line, bool exit3) {
                                                                             std::cerr << line << std::endl;
                                                                             if (exit3) std::exit(3);
                                                                             return true;
                                                                           },
                                                                           {.max_containers = 1});
ferry::Function<void(std::int64_t)> raise_long = app().function("raise_long", [](std::int64_t bytes) {
  throw std::runtime_error(std::string(static_cast<std::size_t>(bytes), 'x'));
});
ferry::Function<void()> raise_test_error = app().function("raise_test_error", raise_test_error_body);
ferry::Function<std::int64_t()> crash = app().function("crash", crash_body);
ferry::Function<std::int64_t()> throw_deep = app().function("throw_deep", throw_deep_body);
ferry::Function<bool(bool)> libdw_mapped = app().function("libdw_mapped", libdw_mapped_body, {.max_containers = 1});
ferry::Function<std::int64_t()> crash_thrice =
    app().function("crash_thrice", crash_thrice_body, {.retries = ferry::Retries(2, std::chrono::milliseconds(10))});
ferry::Function<std::int64_t()> never_starts = app().function("never_starts", never_starts_body);
ferry::Function<rendezvous_report(std::int64_t)> rendezvous =
    app().function("rendezvous", rendezvous_body, {.max_inputs = 4, .max_containers = 1});
ferry::Function<std::int64_t(std::int64_t)> sum_of_squares = app().function("sum_of_squares", sum_of_squares_body);
ferry::Function<std::uint64_t(ferry::bytes)> length_of = app().function("length_of", length_of_body);
ferry::Function<std::pair<ferry::bytes, std::string>(ferry::bytes, std::string)> echo_payloads =
    app().function("echo_payloads", echo_payloads_body);

std::string expect_crash_report_quotes_only_its_calls_stderr() {
  EXPECT_TRUE(stderr_then_exit.remote("an earlier call's line", false));
  try {
    stderr_then_exit.remote("the last words", true);
    ADD_FAILURE() << "no exception";
  } catch (const ferry::ContainerCrashedError& e) {
    const std::string what = e.what();
    EXPECT_THAT(what, testing::HasSubstr("exited with code 3"));
    EXPECT_THAT(what, testing::HasSubstr("its stderr ended with:\nthe last words\n"));
    EXPECT_THAT(what, testing::Not(testing::HasSubstr("an earlier call's line")));
    return what;
  }
  return "";
}

void expect_rendezvous(const std::vector<rendezvous_report>& reports, std::int64_t in_flight, std::size_t threads) {
  std::set<std::string> seen;
  for (const auto& r : reports) {
    EXPECT_EQ(r.in_flight, in_flight);
    seen.insert(r.thread);
  }
  EXPECT_EQ(seen.size(), threads);
}

}  // namespace e2e

// ---- async functions ----

namespace e2e {

namespace asio = boost::asio;
using namespace std::chrono_literals;

ferry::Task<std::int64_t> async_double_body(std::int64_t x) { co_return 2 * x; }

std::int64_t blocking_calls_async_body(std::int64_t x) { return async_double.remote(x) + 1; }

/// Makes a blocking call on its container's event loop (twice from one call site when x > 1).
ferry::Task<std::int64_t> async_calls_blocking_body(std::int64_t x) {
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < x; ++i) total += add.remote(i, i);
  co_return total;
}

/// Conditions that coroutines of one container await; confined to its executor thread.
class async_condition {
 public:
  /// Waits until `ready()` holds or `timeout` passes (so a failing test ends instead of hanging).
  ferry::Task<bool> wait_until(std::function<bool()> ready, std::chrono::steady_clock::duration timeout = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!ready() && std::chrono::steady_clock::now() < deadline) {
      auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, deadline);
      waiting_.push_back(timer);
      boost::system::error_code ec;
      co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return ready();
  }
  void notify() {
    for (auto& t : waiting_) t->cancel();
    waiting_.clear();
  }

 private:
  std::vector<std::shared_ptr<asio::steady_timer>> waiting_;
};

namespace {
async_condition async_changed;
std::int64_t async_running = 0;
std::int64_t async_peak = 0;
std::set<std::string> started_tags;
std::set<std::string> cancelled_tags;
}  // namespace

ferry::Task<rendezvous_report> async_rendezvous_body(std::int64_t expected) {
  ++async_running;
  async_peak = std::max(async_peak, async_running);
  async_changed.notify();
  co_await async_changed.wait_until([&] { return async_peak >= expected; });
  --async_running;
  std::ostringstream thread;
  thread << std::this_thread::get_id();
  co_return rendezvous_report{thread.str(), async_peak};
}

/// Holds its event loop for `ms` milliseconds without suspending.
ferry::Task<std::int64_t> hog_body(std::int64_t ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until) {
  }
  co_return ms;
}

/// "spin": tells `sleeper` it started, then never suspends until cancelled (ferry::cancelled() still
/// sees it); "check": whether a spin observed its cancellation.
ferry::Task<bool> spin_body(std::string mode) {
  static bool observed_cancellation = false;
  if (mode == "check") co_return observed_cancellation;
  co_await sleeper.remote.aio("mark", "spin");
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (!ferry::cancelled() && std::chrono::steady_clock::now() < give_up) {
  }
  observed_cancellation = ferry::cancelled();
  co_return observed_cancellation;
}

/// "sleep": marks `tag` started and sleeps 60 s, recording a cancellation; "mark": marks `tag` started;
/// "started" / "cancelled": waits until `tag` was started / cancelled and says whether it was.
ferry::Task<bool> sleeper_body(std::string mode, std::string tag) {
  if (mode == "mark" || mode == "sleep") {
    started_tags.insert(tag);
    async_changed.notify();
  }
  if (mode == "mark") co_return true;
  if (mode == "started") co_return co_await async_changed.wait_until([&] { return started_tags.contains(tag); });
  if (mode == "cancelled") co_return co_await async_changed.wait_until([&] { return cancelled_tags.contains(tag); });
  try {
    co_await ferry::sleep(60s);
  } catch (const ferry::CancelledError&) {  // (not Asio's system_error: ferry's own type)
    if (ferry::cancelled()) cancelled_tags.insert(tag);
    async_changed.notify();
    throw;
  }
  co_return false;
}

namespace {
std::mutex waiter_mu;
std::condition_variable waiter_changed;
std::set<std::string> waiter_started, waiter_cancelled;  // guarded by waiter_mu
}  // namespace

/// The blocking twin of sleeper: "wait" polls ferry::cancelled() (as a blocking body must) for up to 60 s.
bool blocking_waiter_body(std::string mode, std::string tag) {
  std::unique_lock lock(waiter_mu);
  if (mode == "wait") {
    waiter_started.insert(tag);
    waiter_changed.notify_all();
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (!ferry::cancelled() && std::chrono::steady_clock::now() < give_up) waiter_changed.wait_for(lock, 5ms);
    if (ferry::cancelled()) waiter_cancelled.insert(tag);
    waiter_changed.notify_all();
    return ferry::cancelled();
  }
  auto& tags = mode == "started" ? waiter_started : waiter_cancelled;
  return waiter_changed.wait_for(lock, 30s, [&] { return tags.contains(tag); });
}

bool cancel_witness_body(std::string path) {
  std::ofstream(path + ".started") << "started\n";
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (!ferry::cancelled() && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(2ms);
  if (ferry::cancelled()) std::ofstream(path + ".cancelled") << "cancelled\n";
  return ferry::cancelled();
}

std::int64_t cancellable_add_body(std::int64_t a, std::int64_t b) {
  if (a != -2) return a + b;
  const char* witness = std::getenv("E2E_WITNESS");
  if (witness) cancel_witness_body(witness);
  return 0;
}

bool wait_for_file(const std::string& path) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(5ms);  // (polling for a file another process writes, with a deadline)
  }
  return std::filesystem::exists(path);
}

ferry::Task<bool> wait_for_file_async(std::string path) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < give_up) co_await ferry::sleep(5ms);
  co_return std::filesystem::exists(path);
}

ferry::Function<bool(std::string)> cancel_witness =
    app().function("cancel_witness", cancel_witness_body, {.max_inputs = 8, .max_containers = 1});
ferry::Function<std::int64_t(std::int64_t, std::int64_t)> cancellable_add =
    app().function("cancellable_add", cancellable_add_body);

ferry::Function<ferry::Task<std::int64_t>(std::int64_t)> async_double =
    app().function("async_double", async_double_body);
ferry::Function<std::int64_t(std::int64_t)> blocking_calls_async =
    app().function("blocking_calls_async", blocking_calls_async_body);
ferry::Function<ferry::Task<std::int64_t>(std::int64_t)> async_calls_blocking =
    app().function("async_calls_blocking", async_calls_blocking_body, {.max_inputs = 1});
ferry::Function<ferry::Task<rendezvous_report>(std::int64_t)> async_rendezvous =
    app().function("async_rendezvous", async_rendezvous_body, {.max_inputs = 100, .max_containers = 1});
ferry::Function<rendezvous_report(std::int64_t)> rendezvous8 =
    app().function("rendezvous8", rendezvous_body, {.max_inputs = 8, .max_containers = 1});
ferry::Function<ferry::Task<std::int64_t>(std::int64_t)> hog = app().function("hog", hog_body);
ferry::Function<ferry::Task<bool>(std::string)> spin =
    app().function("spin", spin_body, {.max_inputs = 2, .max_containers = 1});
ferry::Function<ferry::Task<bool>(std::string, std::string)> sleeper =
    app().function("sleeper", sleeper_body, {.max_inputs = 100, .max_containers = 1});
ferry::Function<bool(std::string, std::string)> blocking_waiter =
    app().function("blocking_waiter", blocking_waiter_body, {.max_inputs = 4, .max_containers = 1});

int run_scenario(const std::string& name) {
  if (name == "blocking_in_loop") {
    return run_app([] {
      std::cout << "first " << async_calls_blocking.remote(2) << '\n';
      std::cout << "second " << async_calls_blocking.remote(3) << '\n';
    });
  }
  if (name == "stall") {
    return run_app([] { std::cout << "hog " << hog.remote(400) << '\n'; });
  }
  if (name == "stall3") {
    return run_app([] {
      for (int i = 0; i < 3; ++i) std::cout << "hog " << hog.remote(300) << '\n';
    });
  }
  if (name == "logs") {
    return run_app([] {
      const char* text = std::getenv("E2E_TEXT");
      shout.remote(text ? text : "hello from a body");
      std::cout << "caller done" << std::endl;
    });
  }
  if (name == "logs_then_results") {  // each call's line, then its result
    return run_app([] {
      for (int i = 0; i < 200; ++i) {
        shout.remote("line " + std::to_string(i));
        std::cout << "returned " << i << std::endl;
      }
    });
  }
  if (name == "map_progress") {
    return run_app([] {
      std::vector<std::int64_t> xs(40);
      std::iota(xs.begin(), xs.end(), 1);
      std::int64_t total = 0;
      for (std::int64_t v : square.map(xs)) total += v;
      std::cout << "sum " << total << std::endl;
    });
  }
  if (name == "abort_with_retries") {
    return run_app([] {
      try {
        crash_thrice.remote();
      } catch (const ferry::ContainerCrashedError& e) {
        std::cout << "crashed: " << e.what() << std::endl;
      }
    });
  }
  if (name == "map_outcomes") {
    // A map whose odd items fail (and half of those crash their container), handled through map.outcomes,
    // while the bodies write lines and the bar is drawn.
    return run_app([] {
      std::vector<std::int64_t> xs(40);
      std::iota(xs.begin(), xs.end(), 1);
      std::size_t failed = 0;
      for (const auto& outcome : flaky_square.map.outcomes(xs)) failed += !outcome.ok();
      std::cout << "failed " << failed << std::endl;
    });
  }
  if (name == "signal_storm") {
    // A SIGALRM every 50 µs, its handler installed without SA_RESTART (a program's own timer, a
    // profiler's): every system call it interrupts fails with EINTR unless ferry resumes it. The program
    // runs the embedded server, so the server's threads get the signals too. (Containers do not: neither
    // a timer nor a handler outlives exec.)
    struct sigaction on_alarm {};
    on_alarm.sa_handler = [](int) {};
    ::sigaction(SIGALRM, &on_alarm, nullptr);
    itimerval every_50us{{0, 50}, {0, 50}};
    ::setitimer(ITIMER_REAL, &every_50us, nullptr);
    return run_app([] {
      std::int64_t total = 0;
      for (std::int64_t i = 1; i <= 20; ++i) total += square.remote(i);
      std::vector<std::int64_t> xs(2000);
      std::iota(xs.begin(), xs.end(), 1);
      for (std::int64_t v : square.map(xs)) total += v;
      std::cout << "sum " << total << std::endl;
    });
  }
  std::cerr << "unknown scenario " << name << '\n';
  return 2;
}

}  // namespace e2e

// ---- futures, dataflow, map/reduce, tail calls ----

namespace e2e {

namespace {
std::mutex overlap_mu;
std::condition_variable overlap_changed;
int overlap_running = 0;
int overlap_peak = 0;
std::atomic<std::int64_t> counted{0};
}  // namespace

/// 2x when another input ran at the same time (within 30 s), an absurd value otherwise.
std::int64_t overlap_double_body(std::int64_t x) {
  std::unique_lock lock(overlap_mu);
  ++overlap_running;
  overlap_peak = std::max(overlap_peak, overlap_running);
  overlap_changed.notify_all();
  const bool overlapped = overlap_changed.wait_for(lock, 30s, [] { return overlap_peak >= 2; });
  --overlap_running;
  return overlapped ? 2 * x : -1'000'000;
}

/// "count": counts this call and returns x; "read": how many were counted.
std::int64_t counter_body(std::string mode, std::int64_t x) {
  if (mode == "read") return counted.load();
  ++counted;
  return x;
}

/// 2x; the last item first waits (up to 30 s) until a reduce step has run, an absurd value otherwise.
ferry::Task<std::int64_t> gated_double_body(std::int64_t x, bool last) {
  if (last) {
    // (GCC 12 miscompiles co_await inside a short-circuit condition: keep it a statement.)
    const bool reduce_began = co_await sleeper("started", "reduce-began");
    if (!reduce_began) co_return -1'000'000;
  }
  co_return 2 * x;
}

ferry::Task<std::int64_t> marking_add_body(std::int64_t a, std::int64_t b) {
  co_await sleeper.remote.aio("mark", "reduce-began");
  co_return a + b;
}

/// Tail-calls itself n levels deep, then add(0, 0).
ferry::Future<std::int64_t> count_down_body(std::int64_t n) {
  if (n == 0) return add.future(0, 0);
  return count_down.future(n - 1);
}

ferry::Task<ferry::Future<std::int64_t>> async_count_down_body(std::int64_t n) {
  if (n == 0) co_return add.future(n, 7);
  co_return async_count_down.future(n - 1);
}

ferry::Function<std::int64_t(std::int64_t)> overlap_double =
    app().function("overlap_double", overlap_double_body, {.max_inputs = 2, .max_containers = 1});
ferry::Function<std::int64_t(std::string, std::int64_t)> counter =
    app().function("counter", counter_body, {.max_containers = 1});
ferry::Function<ferry::Task<std::int64_t>(std::int64_t, bool)> gated_double =
    app().function("gated_double", gated_double_body, {.max_inputs = 100, .max_containers = 1});
ferry::Function<ferry::Task<std::int64_t>(std::int64_t, std::int64_t)> marking_add =
    app().function("marking_add", marking_add_body, {.max_inputs = 10, .max_containers = 1});
ferry::Function<std::vector<std::int64_t>(std::vector<std::int64_t>)> echo_numbers =
    app().function("echo_numbers", [](std::vector<std::int64_t> v) { return v; });
ferry::Function<std::vector<std::tuple<std::int64_t, std::int64_t>>(std::vector<std::int64_t>)> pair_up =
    app().function("pair_up", [](std::vector<std::int64_t> v) {
      std::vector<std::tuple<std::int64_t, std::int64_t>> pairs;
      for (auto x : v) pairs.emplace_back(x, x);
      return pairs;
    });
ferry::Function<ferry::Future<std::int64_t>(std::int64_t)> count_down =
    app().function("count_down", count_down_body, {.max_inputs = 1, .max_containers = 1});
ferry::Function<ferry::Task<ferry::Future<std::int64_t>>(std::int64_t)> async_count_down =
    app().function("async_count_down", async_count_down_body, {.max_inputs = 1, .max_containers = 1});

}  // namespace e2e

// ---- the server as a platform: timeouts, retries, scaling ----

namespace e2e {

/// Adds one to the count kept in file `path` (so counts survive containers) and returns the new count.
std::int64_t bump_count(const std::string& path) {
  std::int64_t n = 0;
  if (std::FILE* f = std::fopen(path.c_str(), "r")) {
    if (std::fscanf(f, "%ld", &n) != 1) n = 0;
    std::fclose(f);
  }
  ++n;
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fprintf(f, "%ld\n", n);
  std::fclose(f);
  return n;
}

std::int64_t read_count(const std::string& path) {
  std::int64_t n = 0;
  if (std::FILE* f = std::fopen(path.c_str(), "r")) {
    if (std::fscanf(f, "%ld", &n) != 1) n = 0;
    std::fclose(f);
  }
  return n;
}

/// Attempts up to `failures` throw; the next returns its attempt number.
std::int64_t fail_first_body(std::string counter, std::int64_t failures) {
  const std::int64_t attempt = bump_count(counter);
  if (attempt <= failures) throw std::runtime_error("attempt " + std::to_string(attempt) + " fails");
  return attempt;
}

/// Attempts up to `crashes` kill their own container with SIGKILL mid-input; the next returns its number.
std::int64_t crash_first_body(std::string counter, std::int64_t crashes) {
  const std::int64_t attempt = bump_count(counter);
  if (attempt <= crashes) ::kill(::getpid(), SIGKILL);
  return attempt;
}

/// The first attempt kills its own container with SIGKILL mid-input; later ones return `data`.
ferry::bytes crash_first_echo_body(std::string counter, ferry::bytes data) {
  if (bump_count(counter) == 1) ::kill(::getpid(), SIGKILL);
  return data;
}

/// The first attempt writes `counter + ".running"` and never returns, ignoring cancellation (a hung body);
/// later attempts return their number.
std::int64_t stall_once_body(std::string counter) {
  const std::int64_t attempt = bump_count(counter);
  if (attempt == 1) {
    std::ofstream(counter + ".running") << ::getpid() << '\n';
    for (;;) std::this_thread::sleep_for(10ms);
  }
  return attempt;
}

/// Blocks until file `gate` exists, polling ferry::cancelled() as a blocking body should.
bool hold_body(std::string gate) {
  while (!std::filesystem::exists(gate)) {
    if (ferry::cancelled()) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

/// a + b, except that a step whose a is -1 waits for the file named by E2E_GATE (inherited from the server's
/// environment) and then throws: the head of a reduce that fails once the rest of its chain waits for it.
std::int64_t gated_add_body(std::int64_t a, std::int64_t b) {
  if (a != -1) return a + b;
  const char* gate = std::getenv("E2E_GATE");
  if (!gate || !hold_body(gate)) throw std::logic_error("gated_add: no E2E_GATE, or cancelled");
  throw std::invalid_argument("the first step fails on purpose");
}

ferry::Function<std::int64_t(std::string, std::int64_t)> fail_first =
    app().function("fail_first", fail_first_body, {.retries = ferry::Retries(3, 10ms)});
ferry::Function<std::int64_t(std::string, std::int64_t)> fail_first_no_retries =
    app().function("fail_first_no_retries", fail_first_body);
ferry::Function<std::int64_t(std::string, std::int64_t)> crash_first =
    app().function("crash_first", crash_first_body, {.retries = ferry::Retries(2, 10ms)});
ferry::Function<std::int64_t(std::string, std::int64_t)> crash_first_no_retries =
    app().function("crash_first_no_retries", crash_first_body);
ferry::Function<ferry::bytes(std::string, ferry::bytes)> crash_first_echo =
    app().function("crash_first_echo", crash_first_echo_body, {.retries = ferry::Retries(2, 10ms)});
ferry::Function<std::int64_t(std::string)> stall_once =
    app().function("stall_once", stall_once_body, {.max_containers = 2, .timeout = 300ms, .retries = 1});
ferry::Function<std::int64_t(std::string)> stall_once_no_timeout =
    app().function("stall_once_no_timeout", stall_once_body, {.max_inputs = 2, .max_containers = 1});
ferry::Function<bool(std::string)> hold =
    app().function("hold", hold_body, {.max_containers = 3, .scaledown_window = 300ms});

/// Tail-calls itself from n down to 0 (then add(0, 0)), counting the runs of each hop in file `dir/N`; the
/// first run of hop `crash_at` kills its own container.
ferry::Future<std::int64_t> crash_hop_body(std::string dir, std::int64_t n, std::int64_t crash_at) {
  if (bump_count(dir + "/" + std::to_string(n)) == 1 && n == crash_at) ::kill(::getpid(), SIGKILL);
  if (n == 0) return add.future(0, 0);
  return crash_hop.future(dir, n - 1, crash_at);
}
ferry::Function<ferry::Future<std::int64_t>(std::string, std::int64_t, std::int64_t)> crash_hop = app().function(
    "crash_hop", crash_hop_body, {.max_inputs = 1, .max_containers = 1, .retries = ferry::Retries(1, 10ms)});

/// Tail-calls itself for ever, counting its hops in file `dir/hops`.
ferry::Future<std::int64_t> hop_forever_body(std::string dir) {
  bump_count(dir + "/hops");
  return hop_forever.future(dir);
}
ferry::Function<ferry::Future<std::int64_t>(std::string)> hop_forever =
    app().function("hop_forever", hop_forever_body, {.max_inputs = 1, .max_containers = 1});

/// Tail-calls itself from n down to 0 (then add(0, 0)); each hop takes 150 ms, hop `slow_at` 3 s (both
/// stop early once cancelled).
ferry::Future<std::int64_t> sleepy_hop_body(std::int64_t n, std::int64_t slow_at) {
  const auto until = std::chrono::steady_clock::now() + (n == slow_at ? 3000ms : 150ms);
  while (std::chrono::steady_clock::now() < until && !ferry::cancelled()) std::this_thread::sleep_for(5ms);
  if (n == 0) return add.future(0, 0);
  return sleepy_hop.future(n - 1, slow_at);
}
ferry::Function<ferry::Future<std::int64_t>(std::int64_t, std::int64_t)> sleepy_hop =
    app().function("sleepy_hop", sleepy_hop_body, {.max_inputs = 1, .max_containers = 1, .timeout = 400ms});
/// Waits for file `gate`, then returns x * x.
std::int64_t slow_square_body(std::string gate, std::int64_t x) {
  hold_body(gate);
  return x * x;
}
ferry::Function<std::int64_t(std::string, std::int64_t)> slow_square =
    app().function("slow_square", slow_square_body, {.max_inputs = 50, .max_containers = 2});
/// Spawns square(x) from inside a body and waits for it.
ferry::Function<std::int64_t(std::int64_t)> spawner =
    app().function("spawner", [](std::int64_t x) { return square.spawn(x).get(std::chrono::seconds{30}); });
ferry::Function<std::int64_t(std::int64_t, std::int64_t)> gated_add = app().function("gated_add", gated_add_body);
ferry::Function<bool(std::string)> timed_hold = app().function("timed_hold", hold_body, {.timeout = 200ms});
ferry::Function<std::int64_t(std::int64_t)> flaky_square =
    app().function("flaky_square",
                   [](std::int64_t x) {
                     std::cerr << "squaring " << x << std::endl;
                     if (x % 4 == 1) throw std::runtime_error("odd one out: " + std::to_string(x));
                     if (x % 4 == 3) ::kill(::getpid(), SIGKILL);
                     return x * x;
                   },
                   {.max_containers = 2});
ferry::Function<bool(std::int64_t)> ignore_cancel = app().function("ignore_cancel", [](std::int64_t seconds) {
  std::this_thread::sleep_for(std::chrono::seconds(seconds));  // never looks at ferry::cancelled()
  return true;
});
ferry::Function<bool(std::string)> single_hold = app().function("single_hold", hold_body, {.max_containers = 1});
ferry::Function<bool(std::string)> warm_hold =
    app().function("warm_hold", hold_body, {.max_containers = 4, .min_containers = 1, .buffer_containers = 1});

}  // namespace e2e

namespace e2e {

// Observing (tests/e2e/observe_test.cpp, the HTTP API's doc test and the dashboard's browser test).
std::int64_t pipeline_body(std::int64_t n) {
  std::cout << "pipeline: squaring 1.." << n << std::endl;
  std::vector<std::int64_t> xs;
  for (std::int64_t i = 1; i <= n; ++i) xs.push_back(i);
  std::int64_t total = 0;
  double done = 0;
  for (std::int64_t squared : square.map(xs)) {
    total += squared;
    ferry::progress(++done, static_cast<double>(n), "squared");
  }
  std::cerr << "pipeline: sum of squares " << total << '\n';
  // Two calls whose results are the arguments of a third: the call graph's argument edges.
  return add.remote(square.future(n), add.future(total, 0));
}
ferry::Function<std::int64_t(std::int64_t)> pipeline = app().function("pipeline", pipeline_body);

/// Writes `text` to stdout and `text` + " (stderr)" to stderr, without newlines at the end of the second.
bool shout_body(std::string text) {
  std::cout << text << '\n';
  std::cerr << text << " (stderr)";
  return true;
}
ferry::Function<bool(std::string)> shout = app().function("shout", shout_body);

container_view container_exposure_body() {
  std::ifstream in("/proc/self/cmdline");
  std::string command_line((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::replace(command_line.begin(), command_line.end(), '\0', ' ');
  const char* token = std::getenv("FERRY_TOKEN");
  return {::getpid(), command_line, token ? token : ""};
}
ferry::Function<container_view()> container_exposure = app().function("container_exposure", container_exposure_body);

/// The SigBlk and SigIgn lines of the body's thread in /proc/self/status: the signals it blocks and ignores.
std::string signal_state_body() {
  std::ifstream in("/proc/self/task/" + std::to_string(::gettid()) + "/status");
  std::string line, state;
  while (std::getline(in, line)) {
    if (line.starts_with("SigBlk:") || line.starts_with("SigIgn:")) state += line + "\n";
  }
  return state;
}
ferry::Function<std::string()> signal_state = app().function("signal_state", signal_state_body);

std::vector<std::string> connected_sockets() {
  std::vector<std::string> peers;
  for (const auto& fd_entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::stoi(fd_entry.path().filename().string());
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) continue;  // not a connected socket
    if (peer.ss_family == AF_UNIX) {
      const auto& un = reinterpret_cast<const sockaddr_un&>(peer);
      const std::size_t path_length =
          length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path) : 0;
      const bool abstract = path_length > 0 && un.sun_path[0] == '\0';  // then no terminating NUL
      peers.push_back(abstract ? "unix:@" + std::string(un.sun_path + 1, path_length - 1)
                               : "unix:" + std::string(un.sun_path, strnlen(un.sun_path, path_length)));
    } else if (peer.ss_family == AF_INET || peer.ss_family == AF_INET6) {
      char text[INET6_ADDRSTRLEN] = {};
      const void* address = peer.ss_family == AF_INET
                                ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in&>(peer).sin_addr)
                                : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr);
      ::inet_ntop(peer.ss_family, address, text, sizeof text);
      peers.push_back(std::string("ip:") + text);
    }
  }
  std::sort(peers.begin(), peers.end());
  return peers;
}

std::pair<std::string, std::vector<std::string>> server_connection_body() {
  const char* server = std::getenv("FERRY_SERVER");
  return {server ? server : "", connected_sockets()};
}
ferry::Function<std::pair<std::string, std::vector<std::string>>()> server_connection =
    app().function("server_connection", server_connection_body);

bool maps_library(const std::string& maps_path, const std::string& library) {
  std::ifstream maps(maps_path);
  for (std::string line; std::getline(maps, line);) {
    if (line.find("/" + library) != std::string::npos) return true;
  }
  return false;
}

bool library_mapped_body(std::string library) { return maps_library("/proc/self/maps", library); }
ferry::Function<bool(std::string)> library_mapped = app().function("library_mapped", library_mapped_body);

}  // namespace e2e
