// A bounded soak (issue 8, part 4): calls against a standalone `ferry server` for 1,000,000 calls or 150
// seconds, whichever comes first, mixing f.remote(), f.map and spawned calls, while sampling the server's
// and its containers' resident memory and open file descriptors at fixed call-count checkpoints (after
// every round of `round_calls` calls, with nothing in flight). It fails when they grow between the
// checkpoint a quarter of the way in and the last one by more than a leak-vs-noise bound (below).
//
// The time budget only bounds how many rounds run; nothing here asserts how long anything takes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

using Square = ferry::Function<std::int64_t(std::int64_t)>;

constexpr std::int64_t call_budget = 1'000'000;
constexpr auto time_budget = std::chrono::seconds(150);
// One round: a map of 5,000 items, 200 blocking remote calls, 100 spawned calls fetched by id.
constexpr std::int64_t round_map = 5'000;
constexpr std::int64_t round_remote = 200;
constexpr std::int64_t round_spawn = 100;
constexpr std::int64_t round_calls = round_map + round_remote + round_spawn;

// The bounds, from the first-quarter checkpoint to the last. Samples are taken between rounds, when no call
// is in flight, so a process's descriptors are its steady set: a leak of even one descriptor per round (tens
// of rounds) exceeds the slack of 4 (a connection the server has not finished closing, say). Memory: the
// server's heap settles once its maps and caches have reached their working size; 16 MiB over the last
// three quarters is what a leak of ~30 bytes per call would reach over 600,000 calls (~85 bytes per call if a
// slow machine only gets through 200,000), and is well above what runs here show for a healthy server (about
// 1 MiB, settling). Containers run one small input at a time and hold no per-call state: 8 MiB.
constexpr int fd_slack = 4;
constexpr long server_rss_slack_kib = 16 * 1024;
constexpr long container_rss_slack_kib = 8 * 1024;

struct checkpoint {
  std::int64_t calls = 0;
  process_sample server;
  std::map<pid_t, process_sample> containers;  // of the deployed app, by pid
};

checkpoint sample(ferry_server& server, std::int64_t calls) {
  checkpoint c;
  c.calls = calls;
  auto s = sample_process(server.proc().pid());
  EXPECT_TRUE(s) << "the server is gone";
  if (s) c.server = *s;
  for (const auto& row : server.containers()) {
    if (row.app != "platform" || parent_of(row.pid) != server.proc().pid()) continue;
    if (auto cs = sample_process(row.pid)) c.containers[row.pid] = *cs;
  }
  return c;
}

TEST(soak, a_million_calls_or_150_seconds_of_remote_map_and_spawn_leak_neither_memory_nor_descriptors) {
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  ASSERT_EQ(server.cli({"deploy", "--name", "platform", E2E_BINARY}).code, 0);
  std::vector<checkpoint> checkpoints;
  std::int64_t calls = 0, wrong = 0;
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(run_app([&] {
              auto square = Square::from_name("platform", "square");
              std::vector<std::int64_t> items(round_map);
              for (std::int64_t round = 0;
                   calls + round_calls <= call_budget && std::chrono::steady_clock::now() - started < time_budget;
                   ++round) {
                for (std::int64_t i = 0; i < round_map; ++i) items[static_cast<std::size_t>(i)] = round + i;
                const auto squares = square.map(items);
                for (std::int64_t i = 0; i < round_map; ++i) {
                  wrong += squares[static_cast<std::size_t>(i)] != (round + i) * (round + i);
                }
                for (std::int64_t i = 0; i < round_remote; ++i) wrong += square.remote(i) != i * i;
                std::vector<ferry::FunctionCall<std::int64_t>> spawned;
                for (std::int64_t i = 0; i < round_spawn; ++i) spawned.push_back(square.spawn(i));
                for (std::int64_t i = 0; i < round_spawn; ++i)
                  wrong += spawned[static_cast<std::size_t>(i)].get(60s) != i * i;
                calls += round_calls;
                checkpoints.push_back(sample(server, calls));
              }
            }),
            0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(wrong, 0);
  ASSERT_GE(checkpoints.size(), 8u) << "too few rounds to tell a leak from a warm-up";
  const checkpoint& quarter = checkpoints[checkpoints.size() / 4];
  const checkpoint& last = checkpoints.back();
  std::printf("soak: %ld calls in %zu rounds of %ld (budget: %ld calls or %ld s), %.1f s\n", calls, checkpoints.size(),
              round_calls, call_budget, static_cast<long>(time_budget.count()), seconds);
  // Nine checkpoints, evenly spaced from the first to the last (the trajectory, not just its ends), and the
  // first-quarter one the bounds compare the last with.
  std::vector<const checkpoint*> shown;
  for (std::size_t k = 0; k <= 8; ++k) shown.push_back(&checkpoints[(checkpoints.size() - 1) * k / 8]);
  shown.push_back(&quarter);
  for (const checkpoint* c : shown) {
    long container_rss = 0;
    int container_fds = 0;
    for (const auto& [pid, s] : c->containers) {
      container_rss += s.rss_kib;
      container_fds += s.fds;
    }
    std::printf(
        "soak: after %7ld calls: server RSS %6ld KiB, %3d fds; %zu containers: RSS %7ld KiB, %4d fds in all%s\n",
        c->calls, c->server.rss_kib, c->server.fds, c->containers.size(), container_rss, container_fds,
        c == &quarter ? " (the first-quarter baseline)" : "");
  }
  EXPECT_LE(last.server.fds, quarter.server.fds + fd_slack);
  EXPECT_LE(last.server.rss_kib, quarter.server.rss_kib + server_rss_slack_kib);
  // Containers alive at both checkpoints (the server may have replaced or added some in between).
  int compared = 0;
  for (const auto& [pid, end] : last.containers) {
    auto it = quarter.containers.find(pid);
    if (it == quarter.containers.end()) continue;
    ++compared;
    EXPECT_LE(end.fds, it->second.fds + fd_slack) << "container " << pid;
    EXPECT_LE(end.rss_kib, it->second.rss_kib + container_rss_slack_kib) << "container " << pid;
  }
  EXPECT_GT(compared, 0) << "no container lived from the first-quarter checkpoint to the end";
}

}  // namespace
}  // namespace e2e
