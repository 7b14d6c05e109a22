// Functions that ask more of a host than the default, for tests/cluster/ferry_on_slurm_test.sh on the test
// cluster (three nodes of 4 CPUs and 2000 MiB, no GPUs) under `ferry server --agents slurm`:
// - needs_memory: 1500 MiB a container. Two run at once, so the server first asks for one job for both
//   (3000 MiB, which no node has), is refused, and asks for a job each. Each item reports its node and the
//   memory of the job it ran in (SLURM_MEM_PER_NODE).
// - needs_gpu: a GPU, which the cluster has none of: sbatch refuses the job, and the call fails saying so.
// - needs_64_cpus: more CPUs than any node has: the job pends for PartitionConfig, and the call fails.
// Argument: a scratch directory. Prints a line for each, which the test checks.
#include <chrono>
#include <cstdlib>
#include <ferry/ferry.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

ferry::App app{"slurm_shapes"};

std::string env_or(const char* name, const char* otherwise) {
  const char* value = std::getenv(name);
  return value ? value : otherwise;
}

/// Marks `dir`/x, waits (up to 60 s) until both items have, and reports "NODE:MEMORY".
std::string node_and_memory(std::string dir, std::int64_t x) {
  std::ofstream(dir + "/" + std::to_string(x)).put('x');
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!(std::filesystem::exists(dir + "/0") && std::filesystem::exists(dir + "/1")) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return env_or("SLURMD_NODENAME", "none") + ":" + env_or("SLURM_MEM_PER_NODE", "none");
}
auto needs_memory = app.function("needs_memory", node_and_memory, {.max_containers = 2, .memory_mb = 1500});
auto needs_gpu = app.function("needs_gpu", [](std::int64_t x) { return x; }, {.gpus = 1});
auto needs_64_cpus = app.function("needs_64_cpus", [](std::int64_t x) { return x; }, {.cpu = 64});

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  return app.main(argc, argv, [&] {
    std::cout << "memory:";
    for (const auto& r : needs_memory.starmap({{dir, 0}, {dir, 1}})) std::cout << ' ' << r;
    std::cout << std::endl;
    for (auto* f : {&needs_gpu, &needs_64_cpus}) {
      try {
        f->remote(1);
        std::cout << f->name() << ": ran" << std::endl;
      } catch (const ferry::ContainerStartError& e) {
        std::cout << f->name() << ": " << e.what() << std::endl;
      }
    }
  });
}
