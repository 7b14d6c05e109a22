// The apps the server knows, and their functions: what a program registered, or a deployment installed,
// with each function's options and the scheduler's state for it.
//
// Internal to the server; everything here runs on the server's one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <ferry/options.hpp>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/clock.hpp"
#include "server/ids.hpp"
#include "server/resources.hpp"
#include "wire/protocol.hpp"

namespace ferry::server {

struct app_instance;
struct call_record;
struct container_record;
struct function_metrics;
class server_metrics;

struct function_state {
  app_instance* app = nullptr;
  std::string name;
  std::string signature;
  std::string structs;  // the fields of the structs the signature mentions (function_entry::structs)
  int max_inputs = 1;
  int max_containers = 1;
  int min_containers = 0;
  int buffer_containers = 0;
  std::chrono::milliseconds scaledown_window{60'000};
  std::chrono::milliseconds timeout{0};  // per attempt; 0: none
  Retries retries;
  resources need;                       // of each container's host
  function_metrics* metrics = nullptr;  // counters that outlive redeployments, by app and function name

  // The scheduler's (scheduler.cpp): the calls waiting for a slot, and the containers.
  std::deque<call_record*> queue;
  std::vector<container_record*> containers;
  /// Containers in a row that died without being asked to; reset by a successful output. From the second,
  /// starts back off: no container starts before next_launch.
  int crash_streak = 0;
  clock::time_point next_launch{};
  std::unique_ptr<clock::timer> launch_timer;
  /// Containers it wants that no host can take now (no agent has room): they wait for one to join, and why.
  std::size_t unplaced_containers = 0;
  std::string waiting_for;  // "" unless unplaced_containers

  // The control service's (control_requests.cpp): spawned calls beyond what the server keeps queued in
  // memory wait in the store (the backlog), and are loaded in spawn order as the queue drains; those up to
  // loaded_seq are in memory.
  bool backlogged = false;
  std::int64_t loaded_seq = 0;
};

/// Whether two versions of a function take and return the same types, down to the fields of their structs.
inline bool same_signature(const function_state& a, const function_state& b) {
  return a.signature == b.signature && a.structs == b.structs;
}

/// An app as a running program registered it, or as it was deployed. A registered app lives as long as its
/// program's connection, and a deployed one until it is stopped or replaced; either then lives on, stopped,
/// until its last container has exited.
struct app_instance {
  std::string name;
  std::string executable;
  std::vector<std::string> arguments;  // what its containers' main gets after the program's name
  session_id owner_session{};          // {} for a deployed app
  std::string declared_name;           // the name its binary gives it (a deployment may rename it)
  std::string digest;                  // of a deployed app's binary
  double deployed_at = 0;
  bool stopped = false;  // its program has gone, or it was stopped or redeployed: no new containers
  std::map<std::string, function_state> functions;

  bool deployed() const { return owner_session == session_id{}; }
};

/// Adds functions to `app` as `specs` declare them, each with its counters from `metrics`; returns what is
/// wrong with them ("function 'f': max_inputs and max_containers must be at least 1"), or "" when nothing is.
std::string add_functions(app_instance& app, const std::vector<wire::function_spec>& specs, server_metrics& metrics);

inline std::string join_names(const std::map<std::string, function_state>& functions) {
  std::string s;
  for (const auto& [name, f] : functions) s += (s.empty() ? "" : ", ") + name;
  return s.empty() ? "none" : s;
}

inline std::string plural(std::int64_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

/// The error of a call whose last allowed attempt failed with `last`: says how many there were.
inline std::string last_attempt_failed(const function_state& fn, int attempts, const std::string& last) {
  if (attempts <= 1) return last;
  return "'" + fn.name + "' failed " + plural(attempts, "time") + " (" + plural(attempts, "attempt") +
         ", the retry limit); the last attempt: " + last;
}

}  // namespace ferry::server
