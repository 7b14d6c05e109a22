// Placement at cluster scale, simulated: the real scheduler and agent pool (src/server/scheduler.hpp,
// agents.hpp) with N agents that joined (1,000 by default), placing M containers (100,000) for functions of
// four shapes (no resources; 2 CPUs; 4096 MiB; 1 GPU), one call at a time as a map's items arrive. Time is
// the fake clock of the scheduler's unit tests; each agent's connection is a real wire::connection over a
// socketpair whose far end nobody reads (the launch frames wait in the socket's buffer), so every placement
// pays for its launch frame as on a server. Prints placements/s, the time to place all M, and the memory the
// scheduler's and the pool's records take (the growth of this process's RSS).
//
//   ferry_placement_bench [--agents N] [--containers M]
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "server/agents.hpp"
#include "server/call_graph.hpp"
#include "server/scheduler.hpp"
#include "server/scheduler_fakes.hpp"

namespace {

using namespace ferry::server;
namespace wire = ferry::wire;

long rss_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

/// The scheduler's and the call graph's host, as the server would be, sending nothing.
class quiet_host final : public scheduler::host, public call_graph::host {
 public:
  scheduler* sched = nullptr;
  void ready(call_record& c) override { sched->enqueue(c); }
  void ended(call_record& c, call_state was) override { sched->ended(c, was); }
  void deliver(call_record&) override {}
  void unneeded(call_record&) override {}
  void forgetting(call_record&) override {}
  void emptied() override {}
  bool send_input(container_record&, attempt_id, const call_record&) override { return true; }
  void send_cancel(container_record&, attempt_id) override {}
  void disconnect(container_record&, const std::string&) override {}
  void refill(function_state&) override {}
  void output(container_record&, int, std::string_view) override {}
  void exiting(container_record&) override {}
  void exited() override {}
  void unplaced(function_state&, std::size_t) override { ++waits; }
  void warn_repeating(const std::string&, const std::string&, const std::string&) override {}
  std::size_t waits = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::size_t agents = 1000;
  std::size_t containers = 100'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--agents") {
      agents = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (flag == "--containers") {
      containers = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--agents N] [--containers M]\n", argv[0]);
      return 2;
    }
  }
  // Two descriptors an agent.
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_cur < 2 * agents + 64) {
    std::fprintf(stderr, "%zu agents need %zu open files; the limit is %llu\n", agents, 2 * agents + 64,
                 static_cast<unsigned long long>(files.rlim_cur));
    return 1;
  }

  boost::asio::io_context io;
  ferry::server::testing::fake_clock time;
  quiet_host host;
  call_graph graph{host};
  agent_pool pool(io.get_executor(), nullptr);
  scheduler sched{host, graph, time, pool, scheduler_options{}};
  host.sched = &sched;

  const long rss_before = rss_kib();
  // Agents of 128 CPUs, 512 GiB and 8 GPUs: room for the containers below with a fifth to spare.
  std::vector<int> far_ends;
  for (std::size_t i = 0; i < agents; ++i) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      std::perror("socketpair");
      return 1;
    }
    wire::socket_type socket(io);
    socket.assign(boost::asio::generic::stream_protocol(AF_UNIX, 0), fds[0]);
    far_ends.push_back(fds[1]);
    pool.joined(session_id{i + 1}, std::make_shared<wire::connection>(std::move(socket), 1 << 20),
                wire::agent_ready_header{"sim-" + std::to_string(i), 128, 512 * 1024, 8, {}, "", false});
  }

  app_instance app;
  app.name = "bench";
  app.executable = "/opt/app/bin/app";
  app.declared_name = "bench";
  app.digest = std::string(64, 'a');  // (a deployed app's: no file is read)
  // 100 functions, a quarter of each shape: 70% of the containers ask for nothing, 20% for 2 CPUs, 5% for
  // 4096 MiB, 5% for a GPU.
  const resources shapes[] = {{}, {2, 0, 0, ""}, {0, 4096, 0, ""}, {0, 0, 1, ""}};
  const double share[] = {0.70, 0.20, 0.05, 0.05};
  std::vector<std::pair<function_state*, std::size_t>> work;  // function, its containers
  for (int shape = 0; shape < 4; ++shape) {
    const std::size_t n = static_cast<std::size_t>(static_cast<double>(containers) * share[shape]);
    const std::size_t functions = 25;
    for (std::size_t f = 0; f < functions; ++f) {
      function_state& fn = app.functions["f" + std::to_string(shape) + "_" + std::to_string(f)];
      fn.app = &app;
      fn.name = "f" + std::to_string(shape) + "_" + std::to_string(f);
      fn.max_inputs = 1;
      fn.need = shapes[shape];
      const std::size_t mine = n / functions + (f < n % functions ? 1 : 0);
      fn.max_containers = static_cast<int>(mine);
      work.emplace_back(&fn, mine);
    }
  }
  std::size_t placed = 0;
  std::uint64_t next_call = 1;
  const auto start = std::chrono::steady_clock::now();
  // Round-robin over the functions, a call each, as the items of concurrent maps arrive: each call wants
  // one more container, which the scheduler places at once.
  for (bool more = true; more;) {
    more = false;
    for (auto& [fn, left] : work) {
      if (left == 0) continue;
      auto c = std::make_unique<call_record>();
      c->id = graph_id{next_call};
      c->call_id = "fc-" + std::to_string(next_call++);
      c->flags = wire::deliver_result;
      c->function = fn;
      ferry::detail::buffer arguments;
      ferry::encode(arguments, std::tuple<std::int64_t>{1});
      c->arguments = wire::payload(std::move(arguments));
      graph.start_when_ready(graph.add(std::move(c)));
      --left;
      more = more || left > 0;
    }
  }
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  placed = sched.containers().size();
  const long rss_after = rss_kib();
  std::size_t on_agents = 0;
  for (const auto& [id, agent] : pool.agents()) on_agents += agent.containers.size();

  std::printf("%zu simulated agents (128 CPUs, 512 GiB, 8 GPUs each), %zu functions of 4 shapes\n", agents,
              work.size());
  std::printf("placed %zu of %zu containers (%zu on agents) in %.3f s: %.0f placements/s\n", placed, containers,
              on_agents, took.count(), static_cast<double>(placed) / took.count());
  std::printf("memory: %.1f MiB RSS for the agents, calls and containers (%.2f KiB a container)\n",
              static_cast<double>(rss_after - rss_before) / 1024,
              static_cast<double>(rss_after - rss_before) / static_cast<double>(placed == 0 ? 1 : placed));
  for (int fd : far_ends) ::close(fd);
  return placed == containers && host.waits == 0 ? 0 : 1;
}
