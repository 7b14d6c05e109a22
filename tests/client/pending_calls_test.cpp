// The client's table of pending calls and the completion each holds, on their own: no connection, no server.
#include "client/pending_calls.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ferry::client {
namespace {

/// A completion that counts its runs in `runs`, and its destruction in `alive` (held while it exists).
pending_call counting_call(std::atomic<int>& runs, const std::shared_ptr<int>& alive = nullptr,
                           const void* group = nullptr) {
  return {[&runs, alive](std::exception_ptr, detail::buffer) { ++runs; }, "f", group};
}

TEST(call_completion, runs_a_small_callable_once_with_the_error_and_the_result) {
  std::string seen;
  std::exception_ptr error_seen;
  call_completion done = [&](std::exception_ptr error, detail::buffer result) {
    error_seen = error;
    seen.assign(result.data(), result.size());
  };
  detail::buffer result;
  result.append("abc", 3);
  ASSERT_TRUE(done);
  std::move(done)(nullptr, std::move(result));
  EXPECT_EQ(seen, "abc");
  EXPECT_EQ(error_seen, nullptr);
  EXPECT_FALSE(done);
}

TEST(call_completion, keeps_a_large_callable_across_moves) {
  std::array<char, 4 * call_completion::inline_size> big{};
  big[0] = 'x';
  big[big.size() - 1] = 'y';
  std::string seen;
  call_completion done = [&seen, big](std::exception_ptr, detail::buffer) {
    seen = std::string{big.front(), big.back()};
  };
  call_completion moved = std::move(done);
  EXPECT_FALSE(done);
  std::move(moved)(nullptr, {});
  EXPECT_EQ(seen, "xy");
}

TEST(call_completion, destroys_its_callable_unrun_when_dropped_and_after_a_run_that_throws) {
  auto alive = std::make_shared<int>(0);
  {
    call_completion dropped = [alive](std::exception_ptr, detail::buffer) { FAIL() << "a dropped completion ran"; };
    call_completion moved_into = std::move(dropped);
    EXPECT_EQ(alive.use_count(), 2);
  }
  EXPECT_EQ(alive.use_count(), 1);
  call_completion throwing = [alive](std::exception_ptr, detail::buffer) { throw std::runtime_error("boom"); };
  EXPECT_EQ(alive.use_count(), 2);
  EXPECT_THROW(std::move(throwing)(nullptr, {}), std::runtime_error);
  EXPECT_EQ(alive.use_count(), 1);
}

TEST(pending_calls, hands_each_call_to_whoever_takes_its_id_once) {
  pending_calls table;
  std::array<std::atomic<int>, 4> runs{};
  for (std::uint64_t id = 0; id < runs.size(); ++id) {
    pending_call call = counting_call(runs[id]);
    ASSERT_TRUE(table.add(id + 1, call));
    EXPECT_FALSE(call.complete);  // moved into the table
  }
  EXPECT_EQ(table.size(), 4u);
  auto third = table.take(3);
  ASSERT_TRUE(third);
  EXPECT_FALSE(table.take(3));  // taken already: a late answer finds nothing
  std::move(third->complete)(nullptr, {});
  EXPECT_EQ(runs[2].load(), 1);
  EXPECT_EQ(runs[0].load() + runs[1].load() + runs[3].load(), 0);
  EXPECT_EQ(table.size(), 3u);
  EXPECT_FALSE(table.take(99));  // never pending
}

TEST(pending_calls, refuses_an_id_that_is_pending_already) {
  pending_calls table;
  std::atomic<int> runs{0};
  pending_call first = counting_call(runs);
  ASSERT_TRUE(table.add(7, first));
  pending_call second = counting_call(runs);
  EXPECT_DEATH(table.add(7, second), "pending already");
  // Once taken, the id may be waited on again (a future's await_call after its submission).
  ASSERT_TRUE(table.take(7));
  EXPECT_TRUE(table.add(7, second));
}

TEST(pending_calls, destroys_the_completions_it_still_holds_without_running_them) {
  std::atomic<int> runs{0};
  auto alive = std::make_shared<int>(0);
  {
    pending_calls table;
    for (std::uint64_t id = 1; id <= 40; ++id) {  // in every shard
      pending_call call = counting_call(runs, alive);
      ASSERT_TRUE(table.add(id, call));
    }
    EXPECT_EQ(alive.use_count(), 41);
    table.take(5);  // abandoned: dropped unrun
    EXPECT_EQ(alive.use_count(), 40);
  }
  EXPECT_EQ(alive.use_count(), 1);
  EXPECT_EQ(runs.load(), 0);
}

TEST(pending_calls, close_hands_over_every_pending_call_and_refuses_new_ones) {
  pending_calls table;
  std::atomic<int> runs{0};
  for (std::uint64_t id = 1; id <= 40; ++id) {
    pending_call call = counting_call(runs);
    ASSERT_TRUE(table.add(id, call));
  }
  EXPECT_EQ(table.closed_reason(), "");
  std::vector<pending_call> left = table.close("the server went away");
  EXPECT_EQ(left.size(), 40u);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.closed_reason(), "the server went away");
  pending_call late = counting_call(runs);
  EXPECT_FALSE(table.add(41, late));
  EXPECT_TRUE(late.complete);  // still the caller's, to fail
  for (pending_call& call : left) std::move(call.complete)(nullptr, {});
  EXPECT_EQ(runs.load(), 40);
}

TEST(pending_calls, finds_the_calls_of_a_group) {
  pending_calls table;
  std::atomic<int> runs{0};
  const int map_a = 0, map_b = 0;
  for (std::uint64_t id = 1; id <= 20; ++id) {
    pending_call call = counting_call(runs, nullptr, id % 2 ? &map_a : &map_b);
    ASSERT_TRUE(table.add(id, call));
  }
  std::vector<std::uint64_t> ids = table.ids_in_group(&map_a);
  std::sort(ids.begin(), ids.end());
  std::vector<std::uint64_t> odd;
  for (std::uint64_t id = 1; id <= 20; id += 2) odd.push_back(id);
  EXPECT_EQ(ids, odd);
}

// Callers add from several threads while an "I/O thread" answers and a canceller takes the same ids: every
// call is completed exactly once, by one of them. (Run under ThreadSanitizer by the tsan preset.)
TEST(pending_calls, completes_each_call_once_when_answers_and_cancels_race) {
  constexpr std::uint64_t per_caller = 2000;
  constexpr std::uint64_t callers = 3;
  constexpr std::uint64_t total = per_caller * callers;
  pending_calls table;
  std::vector<std::atomic<int>> runs(total + 1);
  std::atomic<std::uint64_t> added{0};
  std::vector<std::thread> threads;
  for (std::uint64_t c = 0; c < callers; ++c) {
    threads.emplace_back([&, c] {
      for (std::uint64_t i = 0; i < per_caller; ++i) {
        const std::uint64_t id = 1 + c + i * callers;  // ids interleave, as a client's counter hands them out
        pending_call call = counting_call(runs[id]);
        ASSERT_TRUE(table.add(id, call));
        ++added;
      }
    });
  }
  // Each sweeps its ids until every call has been added and taken (by it or the other).
  const auto take_all = [&](std::uint64_t first, std::uint64_t step) {
    while (added.load() < total || table.size() > 0) {
      for (std::uint64_t id = first; id <= total; id += step) {
        if (auto call = table.take(id)) std::move(call->complete)(nullptr, {});
      }
    }
  };
  std::thread answers([&] { take_all(1, 1); });
  std::thread cancels([&] { take_all(2, 3); });
  for (auto& t : threads) t.join();
  answers.join();
  cancels.join();
  for (std::uint64_t id = 1; id <= total; ++id) ASSERT_EQ(runs[id].load(), 1) << "call " << id;
  EXPECT_EQ(table.size(), 0u);
}

}  // namespace
}  // namespace ferry::client
