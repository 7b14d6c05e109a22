// Containers on agents: a `ferry server --agents manual` runs containers only on the hosts of the `ferry
// agent`s that connect to it. Each agent here is a real `ferry agent` process; the containers it starts tell
// which one they run under by E2E_HOST, which they inherit from it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "process.hpp"
#include "raw_socket.hpp"
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

/// Like host_rendezvous, but returns "HOST:CUDA_VISIBLE_DEVICES" ("unset" when it is not set): what the
/// container was given of its host.
std::string host_devices_body(std::string dir, std::int64_t x, std::int64_t together) {
  const std::string met = host_rendezvous_body(std::move(dir), x, together);
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  return met.substr(0, met.find(':')) + ":" + (visible ? visible : "unset");
}
ferry::Function<std::string(std::string, std::int64_t, std::int64_t)> one_gpu =
    app().function("one_gpu", host_devices_body, {.max_containers = 3, .gpus = 1});
ferry::Function<std::string(std::string, std::int64_t, std::int64_t)> no_gpu =
    app().function("no_gpu", host_devices_body, {.max_containers = 1});
ferry::Function<std::string(std::string, std::int64_t, std::int64_t)> big_memory =
    app().function("big_memory", host_rendezvous_body, {.max_containers = 2, .memory_mb = 3000});
ferry::Function<std::string(std::string, std::int64_t, std::int64_t)> three_cpus =
    app().function("three_cpus", host_rendezvous_body, {.max_containers = 2, .cpu = 3});
ferry::Function<std::string(std::string, std::int64_t, std::int64_t)> on_b =
    app().function("on_b", host_rendezvous_body, {.max_containers = 2, .placement = "zone-b"});
ferry::Function<std::int64_t(std::int64_t, std::int64_t)> many_gpus =
    app().function("many_gpus", [](std::int64_t a, std::int64_t b) { return a + b; }, {.gpus = 64});
ferry::Function<std::int64_t(std::int64_t, std::int64_t)> huge_memory = app().function(
    "huge_memory", [](std::int64_t a, std::int64_t b) { return a + b; }, {.memory_mb = std::int64_t{1} << 40});
ferry::Function<std::int64_t(std::int64_t, std::int64_t)> labelled =
    app().function("labelled", [](std::int64_t a, std::int64_t b) { return a + b; }, {.placement = "no-such-label"});

/// A `ferry agent` for `server` offering 2 CPUs unless `extra` says otherwise (so 2 containers: one is
/// warm_hold's, which this app keeps warm, on the first agent to join) and what `extra` says, its containers marked
/// E2E_HOST=`name`; stopped (SIGTERM) when destroyed.
class ferry_agent {
 public:
  ferry_agent(ferry_server& server, const std::string& name, std::vector<std::string> prefix = {},
              std::vector<std::string> extra = {}, std::map<std::string, std::string> env = {})
      : cache_(scratch_dir()) {
    std::vector<std::string> argv = std::move(prefix);
    argv.insert(argv.end(), {FERRY_CLI_PATH, "agent", "--server", server.address(), "--state-dir", server.state_dir(),
                             "--name", name, "--cache-dir", cache_});
    if (std::find(extra.begin(), extra.end(), "--cpus") == extra.end()) argv.insert(argv.end(), {"--cpus", "2"});
    argv.insert(argv.end(), extra.begin(), extra.end());
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

/// Starts an agent (with `extra` options) and waits until the server has it.
std::unique_ptr<ferry_agent> join(ferry_server& server, const std::string& name, std::vector<std::string> prefix = {},
                                  std::vector<std::string> extra = {}) {
  auto agent = std::make_unique<ferry_agent>(server, name, std::move(prefix), std::move(extra));
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

// A container's output comes over its agent's connection, not in order with its calls' results: a line an
// earlier call wrote may arrive after that call ended, and must not be quoted as the crashing call's.
TEST(agents, a_crash_report_from_an_agents_host_quotes_that_calls_stderr_not_earlier_calls_lines) {
  ferry_server server({"--agents", "manual"});
  auto agent = join(server, "only-host");
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  EXPECT_EQ(run_app([] { expect_crash_report_quotes_only_its_calls_stderr(); }), 0);
}

TEST(agents, an_agent_that_falls_silent_is_dropped_by_heartbeats_and_its_inputs_run_elsewhere) {
  ferry_server server({"--agents", "manual"});
  auto a = join(server, "frozen-host");
  auto b = join(server, "live-host");
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  const std::string dir = scratch_dir();
  std::vector<std::int64_t> results;
  EXPECT_EQ(run_app([&] {
              std::thread chaos([&] {
                // Inputs 0 and 1 hold a container each, one on each host; then one agent freezes (SIGSTOP):
                // its connection stays open, as across a network partition, and only heartbeats tell. (Its
                // other container is warm_hold's.)
                EXPECT_TRUE(wait_for_file(dir + "/started-0") && wait_for_file(dir + "/started-1"));
                a->proc().signal(SIGSTOP);
                EXPECT_TRUE(server.proc().wait_for_output(
                    "agent on frozen-host left with 2 containers: no frame from the peer for 5 s (heartbeats)"))
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
  a->proc().signal(SIGCONT);  // (to stop it as the others)
  std::vector<std::int64_t> expected;
  for (std::int64_t x = 0; x < 10; ++x) expected.push_back(x * 10);
  EXPECT_EQ(results, expected);
  EXPECT_THAT(server.proc().err(), HasSubstr("was lost with its host: its agent on frozen-host went"));
}

TEST(agents, a_containers_memory_on_an_agents_host_shows_in_the_api_as_its_agent_reports_it) {
  ferry_server server({"--agents", "manual"});
  auto a = join(server, "reporting-host");
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::uint64_t rss = 0;
  EXPECT_EQ(run_app([&] {
              EXPECT_EQ(add.remote(20, 22), 42);
              // Its container stays (idle, for the scale-down window); the agent reports what it uses every
              // 2 s. (Polled until it shows, for up to 20 s.)
              const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
              while (rss == 0 && std::chrono::steady_clock::now() < deadline) {
                for (const auto& c : server.containers("add")) rss = std::max(rss, c.rss_bytes);
                if (rss == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
              }
            }),
            0);
  EXPECT_GT(rss, 0u);  // what the agent measured, where the server alone would show 0
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

/// Another host, as far as networking goes: a network namespace that reaches this one only through a veth
/// pair, with `address()` inside and `gateway()` (this side's end) outside. Removed when destroyed.
class network_host {
 public:
  network_host() {
    const int n = static_cast<int>(::getpid() % 60) * 4;  // a /30 of 10.213.213.0/24 of this test's own
    ns_ = "ferry-e2e-" + std::to_string(::getpid());
    outside_ = "fe2e-" + std::to_string(::getpid() % 100000);
    gateway_ = "10.213.213." + std::to_string(n + 1);
    address_ = "10.213.213." + std::to_string(n + 2);
    const auto r = run({"sh", "-ec",
                        "ip netns add \"$0\"; ip link add \"$1\" type veth peer name inside; "
                        "ip link set inside netns \"$0\"; ip addr add \"$2/30\" dev \"$1\"; ip link set \"$1\" up; "
                        "ip -n \"$0\" addr add \"$3/30\" dev inside; ip -n \"$0\" link set inside up; "
                        "ip -n \"$0\" link set lo up",
                        ns_, outside_, gateway_, address_});
    error_ = r.code == 0 ? "" : "cannot make a network namespace: " + r.err;
  }
  ~network_host() {
    run({"ip", "link", "del", outside_});
    run({"ip", "netns", "del", ns_});
  }
  const std::string& error() const { return error_; }
  const std::string& gateway() const { return gateway_; }
  const std::string& address() const { return address_; }
  /// The command prefix that runs a program inside.
  std::vector<std::string> inside() const { return {"ip", "netns", "exec", ns_}; }

 private:
  std::string ns_, outside_, gateway_, address_, error_;
};

// The agent, and the containers it starts, on "another host": a network namespace whose only way to the
// server is a veth pair (its loopback has no server on it). The server listens on every interface and
// advertises its address on the link; the agent runs the command the server logs for other hosts, as an
// operator would copy it, and so dials that address over TLS, pinning the certificate the command names.
// Its containers reach the server where it did, over TLS too.
TEST(agents, an_agent_on_another_network_runs_containers_that_reach_the_server_over_it) {
  if (::geteuid() != 0) GTEST_SKIP() << "a network namespace of the agent's own takes root";
  network_host other;
  ASSERT_EQ(other.error(), "");
  const std::string port = free_port();
  ferry_server server(
      {"--agents", "manual", "--host", "0.0.0.0", "--port", port, "--advertise", other.gateway() + ":" + port});
  ASSERT_TRUE(server.proc().wait_for_output("` on each host")) << server.proc().err();
  std::smatch logged;
  const std::string log = server.proc().err();
  ASSERT_TRUE(std::regex_search(log, logged, std::regex("start `ferry agent ([^`]*)` on each host"))) << log;
  std::vector<std::string> argv = other.inside();
  argv.emplace_back(FERRY_CLI_PATH);
  argv.emplace_back("agent");
  std::istringstream words(logged[1].str());
  for (std::string word; words >> word;) argv.push_back(word);
  EXPECT_THAT(logged[1].str(), HasSubstr("--server " + other.gateway() + ":" + port + " "));
  argv.insert(argv.end(), {"--name", "far-host", "--cpus", "2", "--cache-dir", scratch_dir()});
  process agent(argv, {{"E2E_HOST", "far-host"}});
  ASSERT_TRUE(server.proc().wait_for_output(" joined from " + other.address() + ":"))
      << server.proc().err() << agent.err();
  EXPECT_THAT(server.proc().err(), testing::ContainsRegex("agent on far-host joined from [0-9.:]+ over TLS"));
  scoped_env env({{"FERRY_SERVER", "127.0.0.1:" + port}, {"FERRY_TOKEN", server.token()}});
  std::vector<std::string> met;
  EXPECT_EQ(run_app([&] { met = host_rendezvous.starmap({{scratch_dir(), 0, 1}, {scratch_dir(), 1, 1}}); }), 0);
  EXPECT_EQ(met, (std::vector<std::string>{"far-host:0", "far-host:1"})) << server.proc().err() << agent.err();
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.wait(30s), 0) << agent.err();
}

/// The fingerprint of a PEM certificate as `openssl x509 -fingerprint -sha256` gives it, written the way
/// ferry prints it ("sha256:" and lower-case hex).
std::string openssl_fingerprint(const std::string& certificate) {
  const auto r = run({"openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", certificate});
  std::string hex;
  for (const char c : r.out.substr(r.out.find('=') + 1)) {
    if (std::isxdigit(static_cast<unsigned char>(c))) hex += static_cast<char>(std::tolower(c));
  }
  return "sha256:" + hex;
}

// Seen from another host (the test connects to the server's address on the veth link, so the server sees
// a peer that is not on loopback), the server takes TLS alone, and programs and agents take only the
// server's own certificate.
TEST(tls, from_another_host_only_tls_with_the_servers_pinned_certificate_connects) {
  if (::geteuid() != 0) GTEST_SKIP() << "an address of this host's that is not loopback takes a veth pair (root)";
  network_host other;
  ASSERT_EQ(other.error(), "");
  ferry_server server({"--host", "0.0.0.0"});
  const std::string far = other.gateway() + server.address().substr(server.address().rfind(':'));
  const std::string cert = server.state_dir() + "/tls-cert.pem";
  const std::string pin = openssl_fingerprint(cert);
  ASSERT_EQ(pin.size(), 7U + 64U);
  EXPECT_TRUE(server.proc().wait_for_output("pin this server's certificate " + pin)) << server.proc().err();
  const std::string another = "sha256:" + std::string(64, 'a');

  // A program: with the fingerprint, or with a copy of the file, it is served over TLS.
  for (const std::string& given : {pin, cert}) {
    const auto r =
        run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", far}, {"FERRY_TOKEN", server.token()}, {"FERRY_SERVER_CERT", given}});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "42\n");
  }
  const auto without = run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", far}, {"FERRY_TOKEN", server.token()}});
  EXPECT_NE(without.code, 0);
  EXPECT_THAT(without.err, HasSubstr("is on another host, and ferry talks to other hosts over TLS"));
  EXPECT_THAT(without.err, HasSubstr("set FERRY_SERVER_CERT"));
  const auto wrong =
      run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", far}, {"FERRY_TOKEN", server.token()}, {"FERRY_SERVER_CERT", another}});
  EXPECT_NE(wrong.code, 0);
  EXPECT_THAT(wrong.err, HasSubstr("it presents the TLS certificate " + pin + ", not the pinned " + another));

  // An agent: a certificate that is not the server's is an error it exits on, and so is none.
  std::string agent_token;
  std::getline(std::ifstream(server.state_dir() + "/agent-token"), agent_token);
  const auto wrong_agent =
      run({FERRY_CLI_PATH, "agent", "--server", far, "--server-cert", another, "--reconnect-window", "0"},
          {{"FERRY_AGENT_TOKEN", agent_token}});
  EXPECT_EQ(wrong_agent.code, 1);
  EXPECT_THAT(wrong_agent.err, HasSubstr("not the pinned " + another));
  const auto blind_agent = run({FERRY_CLI_PATH, "agent", "--server", far, "--reconnect-window", "0"},
                               {{"FERRY_AGENT_TOKEN", agent_token}, {"FERRY_HOME", scratch_dir()}});
  EXPECT_EQ(blind_agent.code, 1);
  EXPECT_THAT(blind_agent.err, HasSubstr("with --server-cert"));

  // With the server's state directory in sight (a shared filesystem), an agent finds the certificate there.
  process shared_fs({FERRY_CLI_PATH, "agent", "--server", far, "--state-dir", server.state_dir(), "--name",
                     "shared-fs-host", "--cache-dir", scratch_dir()});
  EXPECT_TRUE(server.proc().wait_for_output("agent on shared-fs-host joined from " + other.gateway() + ":"))
      << server.proc().err() << shared_fs.err();
  EXPECT_THAT(server.proc().err(), testing::ContainsRegex("agent on shared-fs-host joined from [0-9.:]+ over TLS"));
  shared_fs.signal(SIGTERM);
  EXPECT_EQ(shared_fs.wait(30s), 0) << shared_fs.err();

  // Plain TCP from another host is refused, with why: ferry's protocol, and HTTP.
  raw_socket plain(far);
  plain.send(hello(server.token()));
  EXPECT_THAT(plain.read_until_closed(), HasSubstr("takes connections from other hosts over TLS only"));
  const auto http = run({"curl", "-sS", "-H", "Authorization: Bearer " + server.token(), "http://" + far + "/v1/apps"});
  EXPECT_THAT(http.out, HasSubstr("\"tls_required\""));
  // HTTPS is served, and its certificate names the host's addresses (curl checks the address against it).
  const auto https = run({"curl", "-sS", "--fail", "--cacert", cert, "-H", "Authorization: Bearer " + server.token(),
                          "https://" + far + "/v1/apps"});
  EXPECT_EQ(https.code, 0) << https.err;
  EXPECT_THAT(https.out, HasSubstr("\"apps\""));
}

// A remote container's lines come over its agent's connection, its results over its own: the server holds
// each result until the agent has sent what the container wrote before it (as the server reads a local
// container's pipes before it takes a result).
TEST(agents, the_lines_a_body_writes_on_an_agents_host_reach_the_caller_before_its_result) {
  ferry_server server({"--agents", "manual"});
  auto a = join(server, "far-host");
  const auto r =
      run({"/proc/self/exe"},
          {{"E2E_SCENARIO", "logs_then_results"}, {"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  ASSERT_EQ(r.code, 0) << r.err;
  for (int i = 0; i < 200; ++i) {
    const auto line = r.out.find("] line " + std::to_string(i) + "\n");
    ASSERT_NE(line, std::string::npos) << "call " << i << "'s line is missing:\n" << r.out;
    EXPECT_LT(line, r.out.find("returned " + std::to_string(i) + "\n"))
        << "call " << i << "'s line came after its result";
  }
}

TEST(agents, each_gpu_container_gets_gpus_of_its_own_and_others_none) {
  ferry_server server({"--agents", "manual"});
  auto a = join(server, "gpu-host", {}, {"--gpus", "2", "--cpus", "4"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::vector<std::string> together, after, plain;
  EXPECT_EQ(run_app([&] {
              // Two containers at once (the inputs wait for each other), each with one of the host's 2 GPUs;
              // then three inputs, the third once a GPU is free again; and a container that asked for none.
              const std::string dir = scratch_dir();
              together = one_gpu.starmap({{dir, 0, 2}, {dir, 1, 2}});
              const std::string more = scratch_dir();
              after = one_gpu.starmap({{more, 0, 1}, {more, 1, 1}, {more, 2, 1}});
              plain = no_gpu.starmap({{scratch_dir(), 0, 1}});
            }),
            0);
  EXPECT_EQ(std::set<std::string>(together.begin(), together.end()),
            (std::set<std::string>{"gpu-host:0", "gpu-host:1"}));
  for (const auto& r : after) EXPECT_THAT(r, testing::AnyOf("gpu-host:0", "gpu-host:1"));
  EXPECT_EQ(plain, std::vector<std::string>{"gpu-host:"});  // set, and empty: no GPU of the host's is its
}

TEST(agents, on_the_servers_own_host_gpu_containers_get_its_gpus_one_each_and_others_keep_their_environment) {
  // The server's host has the two GPUs its CUDA_VISIBLE_DEVICES names.
  ferry_server server({}, {"env", "CUDA_VISIBLE_DEVICES=GPU-aaaa,GPU-bbbb"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::vector<std::string> together, plain;
  EXPECT_EQ(run_app([&] {
              const std::string dir = scratch_dir();
              together = one_gpu.starmap({{dir, 0, 2}, {dir, 1, 2}});
              plain = no_gpu.starmap({{scratch_dir(), 0, 1}});
            }),
            0);
  EXPECT_EQ(std::set<std::string>(together.begin(), together.end()),
            (std::set<std::string>{"none:GPU-aaaa", "none:GPU-bbbb"}));
  EXPECT_EQ(plain, std::vector<std::string>{"none:GPU-aaaa,GPU-bbbb"});  // as containers always had it
}

TEST(agents, containers_go_where_their_memory_fits) {
  ferry_server server({"--agents", "manual"});
  auto small = join(server, "small-host", {}, {"--memory-mb", "1000"});
  auto big = join(server, "big-host", {}, {"--memory-mb", "8000"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::vector<std::string> met;
  EXPECT_EQ(run_app([&] {
              // 3000 MiB each: both containers at once on the host with 8000, none on the one with 1000
              // (where placement by load alone would put one).
              const std::string dir = scratch_dir();
              met = big_memory.starmap({{dir, 0, 2}, {dir, 1, 2}});
            }),
            0);
  EXPECT_EQ(met, (std::vector<std::string>{"big-host:0", "big-host:1"}));
}

TEST(agents, containers_go_only_to_hosts_with_the_cpus_they_reserve_free) {
  ferry_server server({"--agents", "manual"});
  auto b = join(server, "roomy-host", {}, {"--cpus", "8"});  // (it takes warm_hold's container: 1 of 8)
  auto a = join(server, "idle-host", {}, {"--cpus", "2"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::vector<std::string> met;
  EXPECT_EQ(run_app([&] {
              // 3 CPUs each: both on the host of 8 (1 + 3 + 3), though the idle host of 2 is the less loaded.
              const std::string dir = scratch_dir();
              met = three_cpus.starmap({{dir, 0, 2}, {dir, 1, 2}});
            }),
            0);
  EXPECT_EQ(met, (std::vector<std::string>{"roomy-host:0", "roomy-host:1"}));
}

TEST(agents, a_placement_label_puts_a_functions_containers_on_the_hosts_that_have_it) {
  ferry_server server({"--agents", "manual"});
  auto a = join(server, "host-in-a", {}, {"--label", "zone-a"});
  auto b = join(server, "host-in-b", {}, {"--label", "zone-b", "--label", "ssd"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::vector<std::string> met;
  EXPECT_EQ(run_app([&] {
              const std::string dir = scratch_dir();
              met = on_b.starmap({{dir, 0, 1}, {dir, 1, 1}, {dir, 2, 1}});
            }),
            0);
  EXPECT_EQ(met, (std::vector<std::string>{"host-in-b:0", "host-in-b:1", "host-in-b:2"}));
}

TEST(agents, a_container_no_host_has_room_for_shows_as_waiting_with_why_and_runs_once_one_joins) {
  ferry_server server({"--agents", "manual"});
  auto plain = join(server, "plain-host");
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::vector<std::string> met;
  std::string ps, api;
  std::unique_ptr<ferry_agent> gpu_host;
  EXPECT_EQ(run_app([&] {
              std::thread joiner([&] {
                EXPECT_TRUE(server.proc().wait_for_output("'one_gpu' has calls waiting for a host"))
                    << server.proc().err();
                ps = server.cli({"ps"}).out;
                api = server.http_get("/v1/containers");
                gpu_host = join(server, "gpu-host", {}, {"--gpus", "1"});
              });
              met = one_gpu.starmap({{scratch_dir(), 0, 1}});
              joiner.join();
            }),
            0);
  EXPECT_EQ(met, std::vector<std::string>{"gpu-host:0"});
  EXPECT_THAT(ps, testing::ContainsRegex("one_gpu +waiting"));
  EXPECT_THAT(ps, HasSubstr(".one_gpu waits for a host: no host has 1 GPU free for another container"));
  EXPECT_THAT(api, HasSubstr(R"("state":"waiting")"));
  EXPECT_THAT(api, HasSubstr(R"("waiting_for":"no host has 1 GPU free for another container")"));
}

TEST(agents, a_function_no_host_can_ever_fit_fails_at_once_saying_why_and_the_server_serves_on) {
  ferry_server server;  // the default: the server's own host (with no GPUs here), and agents that connect
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::vector<std::string> errors;
  std::int64_t sum = 0;
  EXPECT_EQ(run_app([&] {
              for (auto* f : {&many_gpus, &huge_memory, &labelled}) {
                try {
                  f->remote(1, 2);
                  ADD_FAILURE() << f->name() << " ran";
                } catch (const ferry::ContainerStartError& e) {
                  errors.emplace_back(e.what());
                }
              }
              sum = add.remote(20, 22);
            }),
            0);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_THAT(errors[0], HasSubstr("'many_gpus' cannot run: no host can ever give one of its containers 64 GPUs: "
                                   "the hosts are the server's own host ("));
  EXPECT_THAT(errors[0], HasSubstr("--agents manual"));
  EXPECT_THAT(errors[1], HasSubstr("can ever give one of its containers 1099511627776 MiB"));
  EXPECT_THAT(errors[2], HasSubstr("a host labelled 'no-such-label'"));
  EXPECT_EQ(sum, 42);
}

TEST(agents, resource_options_out_of_range_are_refused_where_the_function_is_declared) {
  ferry::App a{"resources-app"};
  EXPECT_THROW(a.function("f", [] { return 1; }, {.cpu = -1}), std::invalid_argument);
  EXPECT_THROW(a.function("g", [] { return 1; }, {.gpus = -2}), std::invalid_argument);
  try {
    a.function("h", [] { return 1; }, {.placement = "two words"});
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("placement must be one label"));
  }
}

}  // namespace
}  // namespace e2e
