/// ferry/options.hpp: per-function options, set with designated initializers:
///     app.function("f", f, {.max_inputs = 8, .max_containers = 2, .timeout = std::chrono::seconds{30},
///                           .retries = 3})
/// Plain values: App::function copies them into the function's declaration and checks them there
/// (std::invalid_argument for one out of range); the server applies them to every call of the function, whoever
/// makes it. A function looked up with from_name has the options it was deployed with.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ferry {

/// How a failed input is retried: up to `max_retries` more attempts, the n-th after
/// min(initial_delay * backoff_coefficient^(n-1), max_delay). `.retries = 3` means three retries with the
/// default backoff. An attempt fails when the body throws, its container dies, or it times out; inputs
/// that were cancelled, or whose arguments are wrong, are never retried.
struct Retries {
  Retries(int max_retries = 0) : max_retries(max_retries) {}  // NOLINT: `.retries = 3` is the point
  Retries(int max_retries, std::chrono::milliseconds initial_delay, double backoff_coefficient = 2.0,
          std::chrono::milliseconds max_delay = std::chrono::seconds{60})
      : max_retries(max_retries),
        initial_delay(initial_delay),
        backoff_coefficient(backoff_coefficient),
        max_delay(max_delay) {}

  int max_retries = 0;
  std::chrono::milliseconds initial_delay{1000};
  double backoff_coefficient = 2.0;
  std::chrono::milliseconds max_delay{60'000};
};

struct FunctionOptions {
  /// Inputs one container runs at once: blocking bodies on that many threads of the container, async bodies
  /// as that many coroutines on its one executor thread.
  int max_inputs = 1;
  /// Containers the server may run for this function at once; more start while inputs queue.
  int max_containers = 8;
  /// Async bodies: a step that holds the container's executor thread longer than this (without reaching
  /// a co_await that suspends) makes the container log a warning naming the function and call id.
  std::chrono::milliseconds stall_threshold{100};
  /// How long one attempt may run; 0: no limit. An attempt that runs longer is cancelled and fails with
  /// ferry::TimeoutError (or is retried under `retries`).
  std::chrono::milliseconds timeout{0};
  /// Retries of failed attempts (see Retries).
  Retries retries{};
  /// Containers kept running even with nothing to do (started when the app registers).
  int min_containers = 0;
  /// Idle containers kept beyond what the queued and running inputs need, while there are any.
  int buffer_containers = 0;
  /// A container with no input for this long stops (unless that would leave fewer than min_containers).
  std::chrono::milliseconds scaledown_window{60'000};

  // What each container needs of the host it runs on; the server places it on a host that has that much
  // free, and never gives the same CPUs, memory or GPUs to two containers (docs/cluster.md, "Placement").
  /// CPUs reserved for each container (fractions allowed). 0: none reserved; the container shares the
  /// server's own host as containers always have, and counts as one CPU on an agent's.
  double cpu = 0;
  /// Memory reserved for each container, in MiB; 0: none.
  std::int64_t memory_mb = 0;
  /// GPUs each container gets to itself, named by its CUDA_VISIBLE_DEVICES (which is empty in a container
  /// that asks for none on an agent's host that has some).
  int gpus = 0;
  /// A label the host must have: one an agent was started with (`ferry agent --label L`), or a Slurm
  /// feature under `ferry server --agents slurm` (the agents' jobs ask for it with --constraint). "": any.
  std::string placement;
};

}  // namespace ferry
