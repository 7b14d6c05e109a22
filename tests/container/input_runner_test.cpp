// The container's input runner on its own: inputs given to it as the client's I/O thread would, outputs
// collected from its sender. No server, no sockets.
#include "container/input_runner.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <ferry/codec.hpp>
#include <future>
#include <map>
#include <mutex>
#include <vector>

#include "container/current.hpp"

namespace ferry::container {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

/// The outputs a runner sent, by input id.
class outputs {
 public:
  output_sender sender() {
    return {[this](std::uint64_t input_id, wire::status status, const std::function<void(detail::buffer&)>& write) {
              detail::buffer payload;
              write(payload);
              std::lock_guard lock(mu_);
              sent_.emplace(input_id, std::make_pair(status, std::move(payload)));
              changed_.notify_all();
            },
            [this](std::uint64_t input_id, const detail::buffer&) {
              std::lock_guard lock(mu_);
              ++hops_[input_id];
            }};
  }

  /// The int64 input `id` returned (its output must have been sent).
  std::int64_t value_of(std::uint64_t id) {
    std::lock_guard lock(mu_);
    detail::reader r{sent_.at(id).second.view()};
    return ferry::decode<std::int64_t>(r);
  }

  /// How many tail hops input `id` told of.
  int hops(std::uint64_t id) {
    std::lock_guard lock(mu_);
    return hops_[id];
  }

  /// The status and error message input `id` ended with (waits up to 30 s for it: a failing runner ends the
  /// test instead of hanging it).
  std::pair<wire::status, std::string> of(std::uint64_t id) {
    std::unique_lock lock(mu_);
    if (!changed_.wait_for(lock, 30s, [&] { return sent_.contains(id); })) return {wire::status::ok, "(no output)"};
    const auto& [status, payload] = sent_.at(id);
    if (status == wire::status::ok) return {status, ""};
    return {status, wire::decode_error({payload.data(), payload.size()}).message};
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::uint64_t, std::pair<wire::status, detail::buffer>> sent_;
  std::map<std::uint64_t, int> hops_;
};

detail::function_entry blocking_function(std::function<void()> body, int max_inputs = 1) {
  detail::function_entry f;
  f.name = "f";
  f.options.max_inputs = max_inputs;
  f.invoke = [body = std::move(body)](detail::reader, detail::buffer&) -> std::uint64_t {
    body();
    return 0;
  };
  return f;
}

client::input input(std::uint64_t id) { return {id, "fc-" + std::to_string(id), {}}; }

// The server sends an input and its cancel back to back as soon as a container connects: both can arrive
// before the container's side of the connection is up (the sender set). The cancel must not be lost.
TEST(input_runner, a_blocking_input_cancelled_before_the_sender_is_set_ends_cancelled_without_running) {
  std::atomic<int> ran = 0;
  const auto f = blocking_function([&] { ++ran; });
  auto runner = input_runner::make(f);
  outputs sent;
  runner->submit(input(1));
  runner->cancel(1);
  runner->submit(input(2));
  runner->set_sender(sent.sender());
  const auto [status, message] = sent.of(1);
  EXPECT_EQ(status, wire::status::cancelled);
  EXPECT_EQ(message, "'f' was cancelled before it started (call fc-1)");
  EXPECT_EQ(sent.of(2).first, wire::status::ok);
  EXPECT_EQ(ran.load(), 1);  // input 2 only
}

TEST(input_runner, an_async_input_cancelled_before_the_sender_is_set_ends_cancelled_without_running) {
  std::atomic<int> ran = 0;
  detail::function_entry f;
  f.name = "g";
  f.invoke_async = [&](detail::buffer, detail::buffer&) -> Task<std::uint64_t> {
    ++ran;
    co_return 0;
  };
  auto runner = input_runner::make(f);
  outputs sent;
  runner->submit(input(1));
  runner->cancel(1);
  runner->set_sender(sent.sender());
  EXPECT_EQ(sent.of(1),
            std::make_pair(wire::status::cancelled, std::string("'g' was cancelled before it started (call fc-1)")));
  EXPECT_EQ(ran.load(), 0);
}

TEST(input_runner, an_input_cancelled_while_queued_behind_a_busy_slot_never_runs) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> ran = 0;
  const auto f = blocking_function([&] {
    if (++ran == 1) released.wait();  // the first input holds the one slot
  });
  auto runner = input_runner::make(f);
  outputs sent;
  runner->set_sender(sent.sender());
  runner->submit(input(1));
  runner->submit(input(2));  // queued: max_inputs is 1
  runner->cancel(2);
  release.set_value();
  EXPECT_EQ(sent.of(1).first, wire::status::ok);
  EXPECT_EQ(sent.of(2),
            std::make_pair(wire::status::cancelled, std::string("'f' was cancelled before it started (call fc-2)")));
  EXPECT_EQ(ran.load(), 1);
}

TEST(input_runner, an_async_body_is_cancelled_at_its_suspension_point) {
  std::promise<void> suspended;
  detail::function_entry f;
  f.name = "sleeper";
  f.invoke_async = [&](detail::buffer, detail::buffer&) -> Task<std::uint64_t> {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, 1h);
    suspended.set_value();
    co_await timer.async_wait(boost::asio::use_awaitable);
    co_return 0;
  };
  auto runner = input_runner::make(f);
  outputs sent;
  runner->set_sender(sent.sender());
  runner->submit(input(7));
  suspended.get_future().wait();
  runner->cancel(7);
  const auto [status, message] = sent.of(7);
  EXPECT_EQ(status, wire::status::cancelled);
  EXPECT_THAT(message, HasSubstr("'sleeper' was cancelled while it ran (call fc-7)"));
}

TEST(input_runner, a_cancel_for_an_input_already_answered_changes_nothing) {
  const auto f = blocking_function([] {});
  auto runner = input_runner::make(f);
  outputs sent;
  runner->set_sender(sent.sender());
  runner->submit(input(1));
  EXPECT_EQ(sent.of(1).first, wire::status::ok);
  runner->cancel(1);
  runner->cancel(99);  // never submitted
  runner->submit(input(2));
  EXPECT_EQ(sent.of(2).first, wire::status::ok);
}

// A body's tail call of its own function, as detail::hand_over leaves it: the next hop's arguments in the input.
std::uint64_t tail_call_self(std::int64_t n) {
  detail::buffer arguments;
  ferry::encode(arguments, n);
  container::current_input()->next_hop = std::move(arguments);  // (as detail::hand_over does)
  return 0;
}

std::int64_t decode_int(detail::reader r) { return ferry::decode<std::int64_t>(r); }

client::input input_of(std::uint64_t id, std::int64_t n) {
  client::input in = input(id);
  ferry::encode(in.arguments, n);
  return in;
}

TEST(input_runner, a_blocking_tail_call_of_its_own_function_runs_in_the_slot_each_hop_told_before_it_runs) {
  std::vector<std::int64_t> ran;  // (one thread runs them all: max_inputs is 1)
  detail::function_entry f;
  f.name = "count";
  f.options.max_inputs = 1;
  f.invoke = [&](detail::reader args, detail::buffer& result) -> std::uint64_t {
    const std::int64_t n = decode_int(args);
    ran.push_back(n);
    if (n > 0) return tail_call_self(n - 1);
    ferry::encode(result, std::int64_t{42});
    return 0;
  };
  auto runner = input_runner::make(f);
  outputs sent;
  runner->set_sender(sent.sender());
  runner->submit(input_of(1, 5));
  EXPECT_EQ(sent.of(1).first, wire::status::ok);
  EXPECT_EQ(sent.hops(1), 5);
  EXPECT_EQ(ran, (std::vector<std::int64_t>{5, 4, 3, 2, 1, 0}));
}

TEST(input_runner, a_cancel_stops_a_chain_of_tail_calls_before_its_next_hop) {
  std::promise<void> hopping;
  std::atomic<int> ran = 0;
  detail::function_entry f;
  f.name = "forever";
  f.options.max_inputs = 1;
  f.invoke = [&](detail::reader, detail::buffer&) -> std::uint64_t {
    if (++ran == 3) hopping.set_value();
    return tail_call_self(0);  // never ends on its own
  };
  auto runner = input_runner::make(f);
  outputs sent;
  runner->set_sender(sent.sender());
  runner->submit(input(4));
  hopping.get_future().wait();
  runner->cancel(4);
  EXPECT_EQ(sent.of(4),
            std::make_pair(wire::status::cancelled, std::string("'forever' was cancelled while it ran (call fc-4)")));
  const int ran_by_then = ran.load();
  EXPECT_EQ(sent.hops(4), ran_by_then - 1);  // the last hop told of is the last that ran
}

// Hops of an async body run as separate steps of the executor: other inputs' coroutines run between them.
TEST(input_runner, an_async_chain_of_tail_calls_lets_the_other_inputs_run_between_its_hops) {
  std::atomic<bool> other_ran = false;
  detail::function_entry f;
  f.name = "chain";
  f.options.max_inputs = 2;
  f.invoke_async = [&](detail::buffer args, detail::buffer& result) -> Task<std::uint64_t> {
    const std::int64_t n = decode_int(detail::reader{args.view()});
    if (n == -1) {  // the other input
      other_ran = true;
      co_return 0;
    }
    // Hops until the other input has run (or, should it never get a turn, 10,000 times).
    if (!other_ran && n < 10'000) co_return tail_call_self(n + 1);
    ferry::encode(result, n);
    co_return 0;
  };
  auto runner = input_runner::make(f);
  outputs sent;
  runner->set_sender(sent.sender());
  runner->submit(input_of(1, 0));
  runner->submit(input_of(2, -1));
  EXPECT_EQ(sent.of(2), std::make_pair(wire::status::ok, std::string()));
  EXPECT_EQ(sent.of(1), std::make_pair(wire::status::ok, std::string()));
  EXPECT_LT(sent.value_of(1), 10'000);
  EXPECT_EQ(sent.hops(1), sent.value_of(1));
}

}  // namespace
}  // namespace ferry::container
