// A map across the hosts of a cluster: each item reports the node it ran on (SLURMD_NODENAME in a Slurm job,
// else the host's name), and the program prints how many items each node ran. docs/cluster.md runs it on
// Slurm:
//
//     ferry server --agents slurm &          # asks Slurm for agents as work waits
//     ferry run ./build/dev/examples/cluster_map 200
//
// Arguments: ITEMS (default 200), and optionally a file every item waits for before it returns (up to 60 s),
// to hold the map in the middle, as the cluster test does to cancel an agent's job under it.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ferry/ferry.hpp>
#include <filesystem>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

ferry::App app{"cluster_map"};

std::string gate;  // argv[2]: main runs again in each container, with the program's arguments

/// "NODE x*x": where item x ran, and its square.
std::string where(std::int64_t x) {
  if (!gate.empty()) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!std::filesystem::exists(gate) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  const char* node = std::getenv("SLURMD_NODENAME");
  char host[256] = {};
  if (!node) node = ::gethostname(host, sizeof host - 1) == 0 ? host : "unknown";
  return std::string(node) + " " + std::to_string(x * x);
}
// Up to 8 containers at once, each on a CPU of its own: more than one node's worth on a cluster of 4-CPU nodes.
auto where_fn = app.function("where", where, {.max_containers = 8});

int main(int argc, char** argv) {
  const std::int64_t items = argc > 1 ? std::atoll(argv[1]) : 200;
  if (argc > 2) gate = argv[2];
  return app.main(argc, argv, [&] {
    std::vector<std::int64_t> xs(static_cast<std::size_t>(items));
    for (std::int64_t x = 0; x < items; ++x) xs[static_cast<std::size_t>(x)] = x;
    const std::vector<std::string> results = where_fn.map(xs);
    std::map<std::string, int> per_node;
    std::int64_t wrong = 0;
    for (std::int64_t x = 0; x < items; ++x) {
      const std::string& r = results[static_cast<std::size_t>(x)];
      const auto space = r.rfind(' ');
      ++per_node[r.substr(0, space)];
      wrong += r.substr(space + 1) != std::to_string(x * x);
    }
    std::cout << items << " items, " << wrong << " wrong, on " << per_node.size() << " nodes:";
    for (const auto& [node, n] : per_node) std::cout << ' ' << node << '=' << n;
    std::cout << '\n';
    if (wrong != 0) throw std::runtime_error(std::to_string(wrong) + " items have a wrong result");
  });
}
