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
#include <future>
#include <map>
#include <mutex>

namespace ferry::container {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

/// The outputs a runner sent, by input id.
class outputs {
 public:
  output_sender sender() {
    return [this](std::uint64_t input_id, wire::status status, const std::function<void(detail::buffer&)>& write) {
      detail::buffer payload;
      write(payload);
      std::lock_guard lock(mu_);
      sent_.emplace(input_id, std::make_pair(status, std::move(payload)));
      changed_.notify_all();
    };
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

}  // namespace
}  // namespace ferry::container
