#include "test_app.hpp"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
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

ferry::Function<std::int64_t(std::int64_t, std::int64_t)> add = app().function("add", add_body);
ferry::Function<std::int64_t(std::int64_t)> square = app().function("square", square_body);
ferry::Function<sample(sample)> echo = app().function("echo", echo_body);
ferry::Function<std::int64_t(std::string, std::int64_t)> element_at = app().function("element_at", element_at_body);
ferry::Function<void()> raise_test_error = app().function("raise_test_error", raise_test_error_body);
ferry::Function<std::int64_t()> crash = app().function("crash", crash_body);
ferry::Function<std::int64_t()> never_starts = app().function("never_starts", never_starts_body);
ferry::Function<rendezvous_report(std::int64_t)> rendezvous =
    app().function("rendezvous", rendezvous_body, {.max_inputs = 4, .max_containers = 1});
ferry::Function<std::int64_t(std::int64_t)> sum_of_squares = app().function("sum_of_squares", sum_of_squares_body);
ferry::Function<std::uint64_t(ferry::bytes)> length_of = app().function("length_of", length_of_body);

int run_app(std::function<void()> entry) {
  char name[] = "e2e_test";
  char* argv[] = {name, nullptr};
  return app().main(1, argv, std::move(entry));
}

}  // namespace e2e
