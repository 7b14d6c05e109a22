// Containers on agents: a `ferry server --agents manual` runs containers only on the hosts of the `ferry
// agent`s that connect to it. Each agent here is a real `ferry agent` process; the containers it starts tell
// which one they run under by E2E_HOST, which they inherit from it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;

/// Marks file `dir`/x, waits (up to 30 s) until `dir` holds `together` marks, and returns "HOST:x", HOST
/// being the agent's E2E_HOST.
std::string host_rendezvous_body(std::string dir, std::int64_t x, std::int64_t together) {
  std::ofstream(dir + "/" + std::to_string(x)).put('x');
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    const auto marks = std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator{});
    if (marks >= together) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const char* host = std::getenv("E2E_HOST");
  return std::string(host ? host : "none") + ":" + std::to_string(x);
}
ferry::Function<std::string(std::string, std::int64_t, std::int64_t)> host_rendezvous =
    app().function("host_rendezvous", host_rendezvous_body, {.max_containers = 2});

/// Marks file `dir`/started-x; the inputs below 2 then wait (up to 60 s) for file `dir`/gate. Returns x * 10.
/// No retries: an input lost with its host must run again without using one.
std::int64_t host_hold_body(std::string dir, std::int64_t x) {
  std::ofstream(dir + "/started-" + std::to_string(x)).put('x');
  if (x < 2) wait_for_file(dir + "/gate");
  return x * 10;
}
ferry::Function<std::int64_t(std::string, std::int64_t)> host_hold =
    app().function("host_hold", host_hold_body, {.max_containers = 2});

/// A `ferry agent` for `server` offering 2 CPUs (so 2 containers: one is warm_hold's, which this app keeps
/// warm), its containers marked E2E_HOST=`name`; stopped (SIGTERM) when destroyed.
class ferry_agent {
 public:
  ferry_agent(ferry_server& server, const std::string& name, std::vector<std::string> prefix = {},
              std::map<std::string, std::string> env = {})
      : cache_(scratch_dir()) {
    std::vector<std::string> argv = std::move(prefix);
    argv.insert(argv.end(), {FERRY_CLI_PATH, "agent", "--server", server.address(), "--state-dir", server.state_dir(),
                             "--name", name, "--cpus", "2", "--cache-dir", cache_});
    env.emplace("E2E_HOST", name);
    proc_ = std::make_unique<process>(argv, env);
  }
  ~ferry_agent() {
    if (!proc_) return;
    proc_->signal(SIGTERM);
    proc_->wait(30s);
  }
  process& proc() { return *proc_; }
  const std::string& cache() const { return cache_; }

 private:
  std::string cache_;
  std::unique_ptr<process> proc_;
};

/// Starts an agent and waits until the server has it.
std::unique_ptr<ferry_agent> join(ferry_server& server, const std::string& name, std::vector<std::string> prefix = {}) {
  auto agent = std::make_unique<ferry_agent>(server, name, std::move(prefix));
  EXPECT_TRUE(server.proc().wait_for_output("agent on " + name + " joined"))
      << server.proc().err() << agent->proc().err();
  return agent;
}

std::vector<std::tuple<std::string, std::int64_t>> numbered(const std::string& dir, std::int64_t n) {
  std::vector<std::tuple<std::string, std::int64_t>> items;
  for (std::int64_t x = 0; x < n; ++x) items.emplace_back(dir, x);
  return items;
}

TEST(agents, a_server_with_agents_only_runs_a_functions_containers_across_their_hosts) {
  ferry_server server({"--agents", "manual"});
  auto a = join(server, "host-a");
  auto b = join(server, "host-b");
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::vector<std::string> met;
  std::vector<std::int64_t> squares;
  EXPECT_EQ(run_app([&] {
              // Two inputs that wait for each other: two containers at once, one on each host, since placement
              // spreads containers (the host with the fewest per CPU).
              const std::string dir = scratch_dir();
              met = host_rendezvous.starmap({{dir, 0, 2}, {dir, 1, 2}});
              std::vector<std::int64_t> items(50);
              for (std::int64_t i = 0; i < 50; ++i) items[static_cast<std::size_t>(i)] = i;
              squares = square.map(items);
            }),
            0);
  std::set<std::string> hosts;
  for (const auto& m : met) hosts.insert(m.substr(0, m.find(':')));
  EXPECT_EQ(hosts, (std::set<std::string>{"host-a", "host-b"})) << testing::PrintToString(met);
  ASSERT_EQ(squares.size(), 50u);
  for (std::int64_t i = 0; i < 50; ++i) EXPECT_EQ(squares[static_cast<std::size_t>(i)], i * i);
  // The server ran none itself: every container's parent is an agent.
  for (const auto& c : server.containers()) EXPECT_NE(parent_of(c.pid), server.proc().pid()) << c.function;
}

TEST(agents, calls_wait_for_a_host_and_run_once_an_agent_joins) {
  ferry_server server({"--agents", "manual"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::unique_ptr<ferry_agent> agent;
  std::int64_t sum = 0;
  EXPECT_EQ(run_app([&] {
              std::thread joiner([&] {
                // (The call has reached the server and found no host when it says so.)
                EXPECT_TRUE(server.proc().wait_for_output("has calls waiting for a host")) << server.proc().err();
                agent = join(server, "late-host");
              });
              sum = add.remote(20, 22);
              joiner.join();
            }),
            0);
  EXPECT_EQ(sum, 42);
  EXPECT_THAT(server.proc().err(), HasSubstr("start `ferry agent` on a host"));
}

TEST(agents, killing_an_agent_mid_map_runs_its_inputs_again_on_another_host_without_using_a_retry) {
  ferry_server server({"--agents", "manual"});
  auto a = join(server, "doomed-host");
  auto b = join(server, "surviving-host");
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  const std::string dir = scratch_dir();
  std::vector<std::int64_t> results;
  EXPECT_EQ(run_app([&] {
              std::thread chaos([&] {
                // Inputs 0 and 1 hold a container each, one on each host (placement spreads them); then one
                // host goes.
                EXPECT_TRUE(wait_for_file(dir + "/started-0") && wait_for_file(dir + "/started-1"));
                a->proc().signal(SIGKILL);
                EXPECT_TRUE(server.proc().wait_for_output("agent on doomed-host left with 2 containers"))
                    << server.proc().err();
                std::ofstream(dir + "/gate").put('x');
              });
              try {
                results = host_hold.starmap(numbered(dir, 10));
              } catch (const std::exception& e) {
                ADD_FAILURE() << "the map failed: " << e.what();
              }
              chaos.join();
            }),
            0);
  std::vector<std::int64_t> expected;
  for (std::int64_t x = 0; x < 10; ++x) expected.push_back(x * 10);
  EXPECT_EQ(results, expected);
  EXPECT_THAT(server.proc().err(), HasSubstr("was lost with its host: its agent on doomed-host went"));
}

TEST(agents, the_cluster_map_example_prints_how_many_items_each_node_ran) {
  const auto r = run({FERRY_EXAMPLES_DIR "/cluster_map", "20"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, testing::MatchesRegex("20 items, 0 wrong, on 1 nodes: [^ =]+=20\n"));
}

TEST(agents, a_restarted_server_finds_its_agents_again) {
  ferry_server server({"--agents", "manual"});
  auto agent = join(server, "steady-host");
  server.kill_and_restart();
  EXPECT_TRUE(server.proc().wait_for_output("agent on steady-host joined")) << agent->proc().err();
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::int64_t sum = 0;
  EXPECT_EQ(run_app([&] { sum = add.remote(20, 22); }), 0);
  EXPECT_EQ(sum, 42);
  EXPECT_THAT(agent->proc().err(), HasSubstr("lost the connection to the ferry server"));
}

TEST(agents, an_agent_is_refused_without_the_agents_credential_and_the_servers_token_is_not_it) {
  ferry_server server({"--agents", "manual"});
  for (const std::string& token : {std::string("not-a-credential"), server.token()}) {
    const auto r = run({FERRY_CLI_PATH, "agent", "--server", server.address(), "--reconnect-window", "0"},
                       {{"FERRY_AGENT_TOKEN", token}});
    EXPECT_EQ(r.code, 1);
    EXPECT_THAT(r.err, HasSubstr("refused this agent: invalid agent credential"));
    EXPECT_THAT(r.err, HasSubstr("agent-token"));
  }
}

TEST(agents, an_agent_that_cannot_see_the_servers_files_fetches_the_binary_by_digest_into_its_cache) {
  if (::geteuid() != 0) GTEST_SKIP() << "hiding the server's files from an agent takes a mount namespace (root)";
  ferry_server server({"--agents", "manual"});
  // The agent runs where this test's binary (the app) is not: a tmpfs over its directory, in a mount
  // namespace of the agent's own.
  const std::string app_dir = std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
  auto agent = join(server, "other-host",
                    {"unshare", "--mount", "--propagation", "private", "sh", "-c",
                     "mount -t tmpfs tmpfs \"$0\" && exec \"$@\"", app_dir});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::int64_t sum = 0;
  EXPECT_EQ(run_app([&] { sum = add.remote(20, 22); }), 0);
  EXPECT_EQ(sum, 42);
  const auto sum_line = run({"sha256sum", std::filesystem::read_symlink("/proc/self/exe").string()});
  const std::string name = sum_line.out.substr(0, 64);
  EXPECT_TRUE(std::filesystem::exists(agent->cache() + "/" + name)) << agent->proc().err();
  EXPECT_THAT(agent->proc().err(), HasSubstr("fetching binary " + name.substr(0, 12)));
}

}  // namespace
}  // namespace e2e
