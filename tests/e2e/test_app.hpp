// The app the end-to-end tests run: the test binary itself, which the server starts again as containers.
#pragma once

#include <cstdint>
#include <ferry/ferry.hpp>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace e2e {

struct sample {
  bool flag = false;
  std::int8_t small = 0;
  std::uint64_t big = 0;
  double ratio = 0;
  std::string text;
  ferry::bytes blob;
  std::vector<std::int32_t> numbers;
  std::map<std::string, std::vector<std::string>> index;
  std::unordered_map<std::int64_t, double> weights;
  std::optional<std::string> maybe;
  std::pair<std::string, std::int64_t> pair;
  std::tuple<bool, float, std::string> tuple;
  bool operator==(const sample&) const = default;
};
FERRY_STRUCT(sample, flag, small, big, ratio, text, blob, numbers, index, weights, maybe, pair, tuple)

/// What one input of `rendezvous` saw: the thread it ran on, and how many inputs were running at once.
struct rendezvous_report {
  std::string thread;
  std::int64_t in_flight = 0;
};
FERRY_STRUCT(rendezvous_report, thread, in_flight)

class test_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An exception type the test app registers with ferry::register_exception: callers catch it as itself.
class registered_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

ferry::App& app();

extern ferry::Function<std::int64_t(std::int64_t, std::int64_t)> add;
extern ferry::Function<std::int64_t(std::int64_t)> square;
extern ferry::Function<sample(sample)> echo;
extern ferry::Function<std::int64_t(std::string, std::int64_t)> element_at;
extern ferry::Function<void()> raise_test_error;
extern ferry::Function<std::int64_t()> crash;
/// Throws std::runtime_error from a static helper in an anonymous namespace, three calls deep.
extern ferry::Function<std::int64_t()> throw_deep;
/// Whether its container has elfutils' libdw mapped (/proc/self/maps); then throws std::runtime_error if
/// asked, which makes the container name a stack. One container.
extern ferry::Function<bool(bool)> libdw_mapped;
/// Calls abort(), on each of its three attempts (two retries).
extern ferry::Function<std::int64_t()> crash_thrice;
extern ferry::Function<std::int64_t()> never_starts;
extern ferry::Function<rendezvous_report(std::int64_t)> rendezvous;
extern ferry::Function<std::int64_t(std::int64_t)> sum_of_squares;
extern ferry::Function<std::uint64_t(ferry::bytes)> length_of;
/// Its arguments back, as they came (large payloads there and back).
extern ferry::Function<std::pair<ferry::bytes, std::string>(ferry::bytes, std::string)> echo_payloads;
/// Throws a registered_error with `message`.
extern ferry::Function<void(std::string)> raise_registered;
/// Calls another function that fails and lets its exception through: "element_at" (std::out_of_range),
/// "test_error" (unregistered), "registered", "crash" (ContainerCrashedError); async_pass_on the same from an
/// async body.
extern ferry::Function<std::int64_t(std::string)> pass_on;
extern ferry::Function<ferry::Task<std::int64_t>(std::string)> async_pass_on;
/// Writes `line` to stderr, then exits with code 3 when `exit3` (one container: calls share it).
extern ferry::Function<bool(std::string, bool)> stderr_then_exit;
/// Throws a std::runtime_error whose message is `bytes` long.
extern ferry::Function<void(std::int64_t)> raise_long;

/// Runs `entry` (blocking, or returning ferry::Task<void>) through app().main, as a program's main would;
/// returns its exit code.
template <class Entry>
int run_app(Entry entry) {
  char name[] = "e2e_test";
  char* argv[] = {name, nullptr};
  return app().main(1, argv, std::move(entry));
}

/// Checks rendezvous reports: every input saw `in_flight` inputs running at once, on `threads` distinct threads.
void expect_rendezvous(const std::vector<rendezvous_report>& reports, std::int64_t in_flight, std::size_t threads);

/// Calls stderr_then_exit twice, the second call crashing its container, and checks that the crash report
/// quotes the crashing call's stderr and not the earlier call's line; returns the report ("" if none came).
std::string expect_crash_report_quotes_only_its_calls_stderr();

}  // namespace e2e

namespace e2e {

// Async functions (tests/e2e/async_test.cpp).
extern ferry::Function<ferry::Task<std::int64_t>(std::int64_t)> async_double;
extern ferry::Function<std::int64_t(std::int64_t)> blocking_calls_async;
extern ferry::Function<ferry::Task<std::int64_t>(std::int64_t)> async_calls_blocking;
extern ferry::Function<ferry::Task<rendezvous_report>(std::int64_t)> async_rendezvous;
extern ferry::Function<rendezvous_report(std::int64_t)> rendezvous8;
extern ferry::Function<ferry::Task<std::int64_t>(std::int64_t)> hog;
extern ferry::Function<ferry::Task<bool>(std::string)> spin;
extern ferry::Function<ferry::Task<bool>(std::string, std::string)> sleeper;
extern ferry::Function<bool(std::string, std::string)> blocking_waiter;
/// Writes file `path + ".started"`, then waits (polling ferry::cancelled(), up to 60 s) and, when cancelled,
/// writes `path + ".cancelled"`. Returns whether it was cancelled.
extern ferry::Function<bool(std::string)> cancel_witness;
/// a + b, except that with a = -2 it is cancel_witness of $E2E_WITNESS (inherited by containers) and returns 0:
/// the head of a reduce that waits until cancelled.
extern ferry::Function<std::int64_t(std::int64_t, std::int64_t)> cancellable_add;
/// Waits (up to 30 s) until file `path` exists; false when it does not.
bool wait_for_file(const std::string& path);
/// The same, awaitable: polls on the event loop.
ferry::Task<bool> wait_for_file_async(std::string path);

/// Runs the scenario named by E2E_SCENARIO (a test that reads this process's output); returns the exit code.
int run_scenario(const std::string& name);

}  // namespace e2e

namespace e2e {

// Futures, dataflow, map/reduce and tail calls (tests/e2e/futures_test.cpp).
extern ferry::Function<std::int64_t(std::int64_t)> overlap_double;
extern ferry::Function<std::int64_t(std::string, std::int64_t)> counter;
extern ferry::Function<ferry::Task<std::int64_t>(std::int64_t, bool)> gated_double;
extern ferry::Function<ferry::Task<std::int64_t>(std::int64_t, std::int64_t)> marking_add;
extern ferry::Function<ferry::Future<std::int64_t>(std::int64_t)> count_down;
extern ferry::Function<std::vector<std::int64_t>(std::vector<std::int64_t>)> echo_numbers;
/// Each x as the pair (x, x).
extern ferry::Function<std::vector<std::tuple<std::int64_t, std::int64_t>>(std::vector<std::int64_t>)> pair_up;
extern ferry::Function<ferry::Task<ferry::Future<std::int64_t>>(std::int64_t)> async_count_down;
/// Tail-calls itself from n down to 0 (then add(0, 0)), counting the runs of each hop in file `dir/N`; the
/// first run of hop `crash_at` kills its own container. One retry.
extern ferry::Function<ferry::Future<std::int64_t>(std::string, std::int64_t, std::int64_t)> crash_hop;
/// Tail-calls itself for ever, counting its hops in file `dir/hops`.
extern ferry::Function<ferry::Future<std::int64_t>(std::string)> hop_forever;
/// Tail-calls itself from n down to 0; each hop takes 150 ms, hop `slow_at` 3 s; timeout 400 ms.
extern ferry::Function<ferry::Future<std::int64_t>(std::int64_t, std::int64_t)> sleepy_hop;

}  // namespace e2e

namespace e2e {

// The server as a platform: timeouts, retries, scaling (tests/e2e/platform_test.cpp).
/// The count kept in file `path` by the bodies below (0 when absent).
std::int64_t read_count(const std::string& path);
extern ferry::Function<std::int64_t(std::string, std::int64_t)> fail_first;
extern ferry::Function<std::int64_t(std::string, std::int64_t)> fail_first_no_retries;
extern ferry::Function<std::int64_t(std::string, std::int64_t)> crash_first;
extern ferry::Function<std::int64_t(std::string, std::int64_t)> crash_first_no_retries;
extern ferry::Function<ferry::bytes(std::string, ferry::bytes)> crash_first_echo;
extern ferry::Function<std::int64_t(std::string)> stall_once;
extern ferry::Function<std::int64_t(std::string)> stall_once_no_timeout;
extern ferry::Function<bool(std::string)> hold;
extern ferry::Function<bool(std::string)> timed_hold;
extern ferry::Function<std::int64_t(std::int64_t)> spawner;
extern ferry::Function<bool(std::string)> single_hold;
extern ferry::Function<bool(std::string)> warm_hold;
extern ferry::Function<std::int64_t(std::int64_t, std::int64_t)> gated_add;
/// Sleeps `seconds` without looking at ferry::cancelled(): a body that ignores cancellation.
extern ferry::Function<bool(std::int64_t)> ignore_cancel;
/// x * x, after writing a line to stderr; x % 4 == 1 throws, x % 4 == 3 kills its container.
extern ferry::Function<std::int64_t(std::int64_t)> flaky_square;

}  // namespace e2e

namespace e2e {

// Observing: logs, progress, the call graph (tests/e2e/observe_test.cpp).
/// Prints, reports progress over a map of square(1..n), and returns add(square(n), add(sum, 0)):
/// n^2 + the sum of squares of 1..n.
extern ferry::Function<std::int64_t(std::int64_t)> pipeline;
/// Writes its text to stdout, and with " (stderr)" to stderr (no final newline).
extern ferry::Function<bool(std::string)> shout;

// Security (tests/e2e/security_test.cpp).
/// What a container exposes: its pid, its command line (as `ps` shows it: arguments joined by spaces) and
/// the FERRY_TOKEN its body (and any process the body starts) would see, "" when none.
struct container_view {
  std::int64_t pid;
  std::string command_line;
  std::string token_in_environment;
};
FERRY_STRUCT(container_view, pid, command_line, token_in_environment)
extern ferry::Function<container_view()> container_exposure;
extern ferry::Function<std::string()> signal_state;
/// The peers of this process's connected sockets, sorted: "unix:PATH", "unix:@NAME" (abstract), "unix:"
/// (unnamed), or "ip:ADDRESS".
std::vector<std::string> connected_sockets();
/// Whether the process whose /proc/PID/maps is at `maps_path` has a file `library`* mapped ("libssl.so").
bool maps_library(const std::string& maps_path, const std::string& library);
/// Whether its container has a file `library`* mapped.
extern ferry::Function<bool(std::string)> library_mapped;
/// Its container's FERRY_SERVER, and connected_sockets() there.
extern ferry::Function<std::pair<std::string, std::vector<std::string>>()> server_connection;

}  // namespace e2e
