// Chaos, end to end against a standalone `ferry server` (issue 8, part 3): containers killed with SIGKILL
// throughout a 100,000-input map, the server killed with SIGKILL while 10,000 spawned calls are pending,
// and a container frozen with SIGSTOP (a hang, not a crash). Every test checks that each input's result
// arrives exactly once and is the right one, and prints a `chaos:` line with its figures.
//
// The tests are named chaos.* so that `ctest --preset dev -R chaos` selects them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {

// ---- the functions the chaos tests run (declared here, so containers of this binary serve them too) ----

/// A value that identifies its input: a result delivered for the wrong input, or twice, shows.
constexpr std::int64_t expected_for(std::int64_t i) { return i * 3 + 1; }

std::int64_t chaos_identify_body(std::int64_t i) { return expected_for(i); }
/// Retries: a kill fails every input in flight on that container, and an input may be unlucky several
/// times over; 20 retries 10 ms apart make running out (21 kills landing on one input) practically impossible
/// while still being finite, so a server that kept failing an input would surface as an error.
ferry::Function<std::int64_t(std::int64_t)> chaos_identify = app().function(
    "chaos_identify", chaos_identify_body,
    {.max_inputs = 16, .max_containers = 4, .retries = ferry::Retries(20, std::chrono::milliseconds(10), 1.0)});

/// Inputs below `ungated` return at once; the others first wait for file `gate`. Returns expected_for(i).
std::int64_t chaos_gated_body(std::string gate, std::int64_t i, std::int64_t ungated) {
  if (i >= ungated) {
    while (!std::filesystem::exists(gate)) {
      if (ferry::cancelled()) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return expected_for(i);
}
ferry::Function<std::int64_t(std::string, std::int64_t, std::int64_t)> chaos_gated =
    app().function("chaos_gated", chaos_gated_body, {.max_inputs = 50, .max_containers = 2});

/// What one attempt of chaos_stoppable returned: the value for its input and the container (pid) it ran in.
struct stoppable_result {
  std::int64_t value = 0;
  std::int64_t pid = 0;
};
FERRY_STRUCT(stoppable_result, value, pid)

/// Appends this attempt's container pid to file `dir/i.attempts`, waits for file `dir/gate` (polling
/// ferry::cancelled() as a blocking body should), and returns {expected_for(i), pid}.
stoppable_result chaos_stoppable_body(std::string dir, std::int64_t i) {
  std::ofstream(dir + "/" + std::to_string(i) + ".attempts", std::ios::app) << ::getpid() << '\n';
  while (!std::filesystem::exists(dir + "/gate")) {
    if (ferry::cancelled()) return {-1, ::getpid()};
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return {expected_for(i), ::getpid()};
}
/// Two containers of two inputs each, so that a frozen container's inputs can only run again elsewhere. The
/// timeout is long next to the test's set-up (a few hundred ms even on a loaded machine), so attempts time
/// out because a container was frozen, not because the machine is slow; if one did time out early, it would
/// still be retried and the test's checks would still hold.
ferry::Function<stoppable_result(std::string, std::int64_t)> chaos_stoppable =
    app().function("chaos_stoppable", chaos_stoppable_body,
                   {.max_inputs = 2,
                    .max_containers = 2,
                    .timeout = std::chrono::milliseconds(4000),
                    .retries = ferry::Retries(3, std::chrono::milliseconds(10))});

/// expected_for(i), after 20 ms of work. One container of 4 inputs, so that a container killed while it starts
/// is the only one the queue waits on; many retries with the default backoff.
std::int64_t chaos_patient_body(std::int64_t i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return expected_for(i);
}
ferry::Function<std::int64_t(std::int64_t)> chaos_patient =
    app().function("chaos_patient", chaos_patient_body, {.max_inputs = 4, .max_containers = 1, .retries = 25});

namespace {

using testing::HasSubstr;

/// `ferry_calls_total` of one function of app "e2e" (the test program's own app) for `outcome`.
std::int64_t calls_ended(const ferry_server& server, const std::string& function, const std::string& outcome = "ok") {
  return static_cast<std::int64_t>(
      server.metric("ferry_calls_total{app=\"e2e\",function=\"" + function + "\",outcome=\"" + outcome + "\"}"));
}

/// Per-index delivery counts of values that should be expected_for(0..n-1), each exactly once.
struct delivery_count {
  std::int64_t lost = 0, duplicated = 0, foreign = 0;  // foreign: a value that is no input's
};
delivery_count count_deliveries(const std::vector<std::int64_t>& values, std::int64_t n) {
  std::vector<int> seen(static_cast<std::size_t>(n), 0);
  delivery_count c;
  for (std::int64_t v : values) {
    const std::int64_t i = (v - 1) / 3;
    if (v < 1 || (v - 1) % 3 != 0 || i >= n) {
      ++c.foreign;
    } else {
      ++seen[static_cast<std::size_t>(i)];
    }
  }
  for (int s : seen) {
    if (s == 0) ++c.lost;
    if (s > 1) c.duplicated += s - 1;
  }
  return c;
}

/// SIGKILLs a random ready container of `function` that holds inputs, each time the server has ended
/// another `every` calls of it with success, until stopped. Only processes the server started (its children
/// or its agents') are ever signalled.
class container_killer {
 public:
  container_killer(ferry_server& server, std::string function, std::int64_t every)
      : server_(server), function_(std::move(function)), every_(every), thread_([this] { run(); }) {}
  ~container_killer() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int kills() const { return kills_; }
  const std::string& error() const { return error_; }

 private:
  void run() {
    std::mt19937 random(std::random_device{}());
    std::int64_t next_kill_at = every_;
    try {
      while (!stop_) {
        const std::int64_t done = calls_ended(server_, function_);
        if (done >= next_kill_at) {
          std::vector<ferry_server::container_row> victims;
          for (auto& c : server_.containers(function_)) {
            if (c.state == "ready" && c.inputs > 0 && server_.started(c.pid)) victims.push_back(c);
          }
          if (!victims.empty()) {
            const auto& victim = victims[std::uniform_int_distribution<std::size_t>(0, victims.size() - 1)(random)];
            if (::kill(victim.pid, SIGKILL) == 0) {
              ++kills_;
              next_kill_at = done + every_;
            }
          }
        }
        // Pacing of the polls only: when to kill is decided by the count of finished calls above.
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }
  const ferry_server& server_;
  const std::string function_;
  const std::int64_t every_;
  std::atomic<bool> stop_{false};
  std::atomic<int> kills_{0};
  std::string error_;  // written by the thread, read after stop()
  std::thread thread_;
};

constexpr std::int64_t map_inputs = 100'000;
/// A kill each time another 2,500 calls have ended: up to 40 over the map, spread through all of it.
constexpr std::int64_t map_kill_every = 2'500;
/// Fewer kills than this would make the test close to vacuous (it would barely exercise the retries).
constexpr int min_map_kills = 10;

std::vector<std::int64_t> map_items() {
  std::vector<std::int64_t> items(map_inputs);
  for (std::int64_t i = 0; i < map_inputs; ++i) items[static_cast<std::size_t>(i)] = i;
  return items;
}

/// Runs chaos_identify.map over 0..99,999 with `options` while containers are killed; returns the results
/// and how many containers were killed. Also checks the server's view: exactly 100,000 calls ended, all ok
/// (a call the server ended twice, or failed, would show here even if the client hid it).
std::vector<std::int64_t> map_under_kills(ferry_server& server, ferry::MapOptions options, int& kills,
                                          std::int64_t& retried) {
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::vector<std::int64_t> results;
  const auto items = map_items();
  EXPECT_EQ(run_app([&] {
              container_killer killer(server, "chaos_identify", map_kill_every);
              try {
                results = chaos_identify.map(items, options);
              } catch (const std::exception& e) {
                ADD_FAILURE() << "the map failed: " << e.what();
              }
              killer.stop();
              kills = killer.kills();
              EXPECT_EQ(killer.error(), "");
            }),
            0);
  EXPECT_EQ(calls_ended(server, "chaos_identify", "ok"), map_inputs);
  EXPECT_EQ(calls_ended(server, "chaos_identify", "container_crashed"), 0);
  // Attempts the kills failed, which the server ran again (it logs each): the retries were exercised.
  const std::string log = server.proc().err();
  const std::string retry_line = "of 'chaos_identify' failed (attempt ";
  retried = 0;
  for (auto at = log.find(retry_line); at != std::string::npos; at = log.find(retry_line, at + 1)) ++retried;
  EXPECT_GE(retried, min_map_kills);
  return results;
}

// Results in input order: result[i] must be expected_for(i) for every i.
TEST(chaos, kill_9_of_random_containers_during_a_100000_input_map_loses_and_misplaces_nothing) {
  ferry_server server;
  const auto started = std::chrono::steady_clock::now();
  int kills = 0;
  std::int64_t retried = 0;
  const auto results = map_under_kills(server, {}, kills, retried);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(results.size(), static_cast<std::size_t>(map_inputs));
  std::int64_t wrong = 0;
  for (std::int64_t i = 0; i < map_inputs; ++i) wrong += results[static_cast<std::size_t>(i)] != expected_for(i);
  const auto c = count_deliveries(results, map_inputs);
  std::printf(
      "chaos: ordered map of %ld inputs, %d containers killed, %ld attempts retried, %ld lost, %ld duplicated, "
      "%ld misplaced, %.1f s\n",
      map_inputs, kills, retried, c.lost, c.duplicated, wrong, seconds);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(c.lost, 0);
  EXPECT_EQ(c.duplicated, 0);
  EXPECT_GE(kills, min_map_kills);
}

// Results in completion order ({.order_outputs = false}): one entry per delivery the client made, so a
// result delivered twice (or never) shows as an index counted twice (or not at all). In input order the
// map's slots would hide a second delivery of the same index.
TEST(chaos, kill_9_of_random_containers_during_a_100000_input_map_delivers_each_result_exactly_once) {
  ferry_server server;
  const auto started = std::chrono::steady_clock::now();
  int kills = 0;
  std::int64_t retried = 0;
  const auto results = map_under_kills(server, {.order_outputs = false}, kills, retried);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(results.size(), static_cast<std::size_t>(map_inputs));
  const auto c = count_deliveries(results, map_inputs);
  std::printf(
      "chaos: completion-order map of %ld inputs, %d containers killed, %ld attempts retried, %ld lost, "
      "%ld duplicated, %.1f s\n",
      map_inputs, kills, retried, c.lost, c.duplicated, seconds);
  EXPECT_EQ(c.lost, 0);
  EXPECT_EQ(c.duplicated, 0);
  EXPECT_EQ(c.foreign, 0);
  EXPECT_GE(kills, min_map_kills);
}

// Containers take 300 ms to reach app.main. For the map's first 3 s, its container is killed every 0.25 s,
// and every fourth time its replacement is killed while it starts: a start killed from outside costs the
// queued inputs an attempt each (under their 25 retries), and the map completes, every result right. (Such a
// kill used to fail every queued input with ContainerStartError.)
TEST(chaos, containers_killed_while_they_start_cost_the_queued_inputs_an_attempt_and_the_map_completes) {
  constexpr std::int64_t n = 300;
  scoped_env slow({{"E2E_SLOW_START_MS", std::string("300")}});  // (the server's containers inherit it)
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::atomic<bool> done{false};
  std::atomic<int> kills{0}, kills_while_starting{0};
  std::string killer_error;
  std::vector<std::int64_t> results;
  EXPECT_EQ(run_app([&] {
              std::thread killer([&] {
                std::mt19937 random(std::random_device{}());
                try {
                  for (int round = 1; round <= 12 && !done; ++round) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // (the chaos's pace)
                    const bool replacement = round % 4 == 0;
                    // The replacement: wait (up to 10 s) until one is starting, then kill it before it connects.
                    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                    while (!done && std::chrono::steady_clock::now() < give_up) {
                      std::vector<ferry_server::container_row> victims;
                      for (auto& c : server.containers("chaos_patient")) {
                        const bool wanted = replacement ? c.state == "starting" : c.state != "stopping";
                        if (wanted && server.started(c.pid)) victims.push_back(c);
                      }
                      if (!victims.empty()) {
                        const auto& v =
                            victims[std::uniform_int_distribution<std::size_t>(0, victims.size() - 1)(random)];
                        if (::kill(v.pid, SIGKILL) == 0) {
                          ++kills;
                          if (v.state == "starting") ++kills_while_starting;
                        }
                        break;
                      }
                      if (!replacement) break;
                      std::this_thread::sleep_for(std::chrono::milliseconds(5));
                    }
                  }
                } catch (const std::exception& e) {
                  killer_error = e.what();
                }
              });
              std::vector<std::int64_t> items(n);
              for (std::int64_t i = 0; i < n; ++i) items[static_cast<std::size_t>(i)] = i;
              try {
                results = chaos_patient.map(items);
              } catch (const std::exception& e) {
                ADD_FAILURE() << "the map failed: " << e.what();
              }
              done = true;
              killer.join();
            }),
            0);
  EXPECT_EQ(killer_error, "");
  ASSERT_EQ(results.size(), static_cast<std::size_t>(n));
  std::int64_t wrong = 0;
  for (std::int64_t i = 0; i < n; ++i) wrong += results[static_cast<std::size_t>(i)] != expected_for(i);
  std::printf("chaos: map of %ld inputs, containers starting in 300 ms, %d killed (%d while starting), %ld wrong\n", n,
              kills.load(), kills_while_starting.load(), wrong);
  EXPECT_EQ(wrong, 0);
  EXPECT_GE(kills_while_starting.load(), 1);  // the case under test happened
}

// A binary that cannot start at all still fails fast: its exit before connecting fails the queue at once,
// whatever the retries (never_starts exits with code 3 before it connects).
TEST(chaos, a_container_that_exits_before_it_connects_fails_the_call_at_once) {
  EXPECT_EQ(run_app([] { EXPECT_THROW(never_starts.remote(), ferry::ContainerStartError); }), 0);
}

// 10,000 spawned calls of the deployed app: the first 2,000 finish (and are fetched) before the kill, the
// other 8,000 wait on a gate, so at the kill some are running, most queued. After the restart on the same
// state directory every one of the 10,000 results must be there, and right.
TEST(chaos, kill_9_of_the_server_with_10000_spawned_calls_pending_loses_none_after_the_restart) {
  constexpr std::int64_t calls = 10'000;
  constexpr std::int64_t ungated = 2'000;
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  ASSERT_EQ(server.cli({"deploy", "--name", "platform", E2E_BINARY}).code, 0);
  const std::string dir = scratch_dir();
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::string> ids;
  std::int64_t wrong_before = 0;
  EXPECT_EQ(run_app([&] {
              auto gated = ferry::Function<std::int64_t(std::string, std::int64_t, std::int64_t)>::from_name(
                  "platform", "chaos_gated");
              for (std::int64_t i = 0; i < calls; ++i) ids.push_back(gated.spawn(dir + "/gate", i, ungated).id());
              // The ungated ones finish: the kill then hits a server with finished, running and queued calls.
              for (std::int64_t i = 0; i < ungated; ++i) {
                wrong_before += ferry::FunctionCall<std::int64_t>::from_id(ids[i]).get(60s) != expected_for(i);
              }
            }),
            0);
  ASSERT_EQ(ids.size(), static_cast<std::size_t>(calls));
  EXPECT_EQ(wrong_before, 0);
  server.kill_and_restart();
  ASSERT_TRUE(server.proc().wait_for_output("unfinished spawned call(s)")) << server.proc().err();
  std::smatch m;
  const std::string log = server.proc().err();
  ASSERT_TRUE(std::regex_search(log, m, std::regex(R"(recovered 1 deployed app\(s\) and (\d+) unfinished)"))) << log;
  const std::int64_t pending_at_kill = std::stoll(m[1]);
  // The gated 8,000 cannot have finished: at least that many were pending when the server died.
  EXPECT_GE(pending_at_kill, calls - ungated);
  EXPECT_LE(pending_at_kill, calls);
  std::ofstream(dir + "/gate") << "open\n";
  std::int64_t lost = 0, wrong = 0;
  EXPECT_EQ(run_app([&] {
              for (std::int64_t i = 0; i < calls; ++i) {
                try {
                  wrong += ferry::FunctionCall<std::int64_t>::from_id(ids[i]).get(120s) != expected_for(i);
                } catch (const std::exception& e) {
                  if (++lost <= 5) ADD_FAILURE() << "call " << i << " (" << ids[i] << "): " << e.what();
                }
              }
            }),
            0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("chaos: %ld spawned calls, server killed with %ld pending, %ld lost, %ld wrong, %.1f s\n", calls,
              pending_at_kill, lost, wrong, seconds);
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(wrong, 0);
}

/// Resumes and kills a container the test froze, unless the server already got rid of it (it is no longer
/// the server's, or its agent's, child), so that a failing test leaves no stopped process behind.
struct frozen_container {
  frozen_container(pid_t p, const ferry_server& s) : pid(p), server(s) {}
  frozen_container(const frozen_container&) = delete;  // one owner: a copy's destructor would kill it early
  frozen_container& operator=(const frozen_container&) = delete;
  pid_t pid;
  const ferry_server& server;
  ~frozen_container() {
    if (server.started(pid)) {
      ::kill(pid, SIGKILL);
      ::kill(pid, SIGCONT);
    }
  }
};

/// Waits until the server has killed and reaped container `id` (process `pid`): it is no longer the server's
/// (or its agent's) child, nor listed. False after 30 s.
bool container_gone(ferry_server& server, std::uint64_t id, pid_t pid) {
  for (int poll = 0; poll < 1500; ++poll) {
    const auto rows = server.containers();
    if (!server.started(pid) && std::none_of(rows.begin(), rows.end(), [&](const auto& r) { return r.id == id; })) {
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::vector<pid_t> attempts_of(const std::string& dir, std::int64_t i) {
  std::ifstream in(dir + "/" + std::to_string(i) + ".attempts");
  std::vector<pid_t> pids;
  for (pid_t p; in >> p;) pids.push_back(p);
  return pids;
}

// A frozen container neither crashes nor answers: its inputs must time out, run again in another container
// and return the right values, and the server must kill the frozen container (it can never finish the
// attempts it holds) instead of keeping it.
TEST(chaos, a_container_frozen_with_sigstop_has_its_inputs_time_out_and_retried_elsewhere_and_is_replaced) {
  constexpr std::int64_t inputs = 4;  // two containers of two inputs each
  ferry_server server({"--cancel-grace", "300"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  const std::string dir = scratch_dir();
  const auto started = std::chrono::steady_clock::now();
  std::optional<frozen_container> frozen;
  std::uint64_t frozen_id = 0;
  bool gone = false;
  std::vector<stoppable_result> results;
  EXPECT_EQ(run_app([&] {
              std::vector<ferry::Future<stoppable_result>> calls;
              for (std::int64_t i = 0; i < inputs; ++i) calls.push_back(chaos_stoppable.future(dir, i));
              for (auto& f : calls) f.run();
              // Both containers hold two inputs, whose bodies have started (recorded their attempt) and wait
              // for the gate. (A body not started yet when its container is frozen would leave no trace of
              // its first attempt: slow builds, under ThreadSanitizer say, start them late.)
              const auto bodies_started = [&] {
                for (std::int64_t i = 0; i < inputs; ++i) {
                  if (attempts_of(dir, i).empty()) return false;
                }
                return true;
              };
              std::vector<ferry_server::container_row> rows;
              for (int poll = 0; poll < 1500; ++poll) {
                rows = server.containers("chaos_stoppable");
                if (rows.size() == 2 &&
                    std::all_of(rows.begin(), rows.end(),
                                [](const auto& r) { return r.state == "ready" && r.inputs == 2; }) &&
                    bodies_started()) {
                  break;
                }
                std::this_thread::sleep_for(20ms);
              }
              ASSERT_EQ(rows.size(), 2u);
              ASSERT_EQ(rows[0].inputs, 2);
              ASSERT_TRUE(bodies_started()) << "the bodies did not record their attempts";
              ASSERT_TRUE(server.started(rows[0].pid));
              frozen.emplace(rows[0].pid, server);
              frozen_id = rows[0].id;
              ASSERT_EQ(::kill(frozen->pid, SIGSTOP), 0);
              // Open the gate only once every thread has stopped: one that was running could still see it.
              ASSERT_TRUE(wait_until_stopped(frozen->pid, 10s)) << "container " << frozen->pid << " did not stop";
              std::ofstream(dir + "/gate") << "open\n";
              for (auto& f : calls) {
                try {
                  results.push_back(f.result());
                } catch (const std::exception& e) {
                  ADD_FAILURE() << "a call failed: " << e.what();
                }
              }
              // While the app is still connected (its containers are not being stopped for that), the server
              // replaces the frozen container a grace period (--cancel-grace) after its attempts timed out.
              gone = container_gone(server, frozen_id, frozen->pid);
            }),
            0);
  ASSERT_TRUE(frozen);
  ASSERT_EQ(results.size(), static_cast<std::size_t>(inputs));
  std::int64_t wrong = 0, from_frozen = 0, retried_elsewhere = 0;
  for (std::int64_t i = 0; i < inputs; ++i) {
    wrong += results[static_cast<std::size_t>(i)].value != expected_for(i);
    from_frozen += results[static_cast<std::size_t>(i)].pid == frozen->pid;
    const auto pids = attempts_of(dir, i);
    // An input the frozen container held: it ran again, and its last attempt was elsewhere.
    if (std::find(pids.begin(), pids.end(), frozen->pid) != pids.end()) {
      retried_elsewhere += pids.size() >= 2 && pids.back() != frozen->pid;
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(from_frozen, 0);
  EXPECT_EQ(retried_elsewhere, 2);  // the two inputs the frozen container held
  EXPECT_TRUE(gone) << "the frozen container " << frozen->pid << " is still there (parent " << parent_of(frozen->pid)
                    << ")";
  const std::string log = server.proc().err();
  EXPECT_THAT(log, HasSubstr("of 'chaos_stoppable' timed out after 4000 ms"));
  EXPECT_THAT(log, HasSubstr("replacing container " + std::to_string(frozen_id) + " of 'chaos_stoppable'"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "chaos: %ld inputs, 1 container frozen (SIGSTOP) holding 2, %ld retried elsewhere, %ld lost, %ld wrong, "
      "%.1f s\n",
      inputs, retried_elsewhere, inputs - static_cast<std::int64_t>(results.size()), wrong, seconds);
}

// A container frozen while idle, then stopped by the server (here because its app's program exits): SIGTERM
// cannot act on a stopped process, so the server must follow it with SIGKILL after its stop grace period
// (5 s) rather than keep the container `stopping` for ever. (It did keep it, before the server learnt to.)
TEST(chaos, a_frozen_container_the_server_stops_is_killed_after_the_grace_period_not_kept_for_ever) {
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  const std::string dir = scratch_dir();
  std::ofstream(dir + "/gate") << "open\n";
  std::optional<frozen_container> frozen;
  std::uint64_t frozen_id = 0;
  EXPECT_EQ(run_app([&] {
              EXPECT_EQ(chaos_stoppable.remote(dir, 7).value, expected_for(7));
              const auto rows = server.containers("chaos_stoppable");
              ASSERT_EQ(rows.size(), 1u);  // idle now, kept for its scale-down window
              ASSERT_TRUE(server.started(rows[0].pid));
              frozen.emplace(rows[0].pid, server);
              frozen_id = rows[0].id;
              ASSERT_EQ(::kill(frozen->pid, SIGSTOP), 0);
              ASSERT_TRUE(wait_until_stopped(frozen->pid, 10s)) << "container " << frozen->pid << " did not stop";
            }),
            0);
  ASSERT_TRUE(frozen);
  // The program has exited: the server stops its app's containers, the frozen one included.
  EXPECT_TRUE(container_gone(server, frozen_id, frozen->pid))
      << "the frozen container " << frozen->pid << " is still there (parent " << parent_of(frozen->pid) << ")";
  // (The server logs the line before it kills, but the test reads the server's stderr on a thread of its own:
  // wait for the line rather than look at once.)
  const std::string killed = "container " + std::to_string(frozen_id) + " of 'chaos_stoppable' (pid " +
                             std::to_string(frozen->pid) +
                             ") did not exit within 5000 ms of being asked to stop; killing it";
  EXPECT_TRUE(server.proc().wait_for_output(killed)) << server.proc().err();
}

}  // namespace
}  // namespace e2e
