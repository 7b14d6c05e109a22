// Counters behind /metrics (Prometheus text format). Calls are counted per app and function, by outcome,
// with a histogram of their durations; the rest (queues, containers, memory) is read off the server's
// state when scraped. Internal: confined to the server's thread.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "wire/protocol.hpp"

namespace ferry::server {

/// Upper bounds of the call duration histogram's buckets, in seconds (then +Inf).
inline constexpr std::array<double, 14> duration_buckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};

struct function_metrics {
  std::array<std::uint64_t, wire::last_status + 1> calls_by_outcome{};
  std::array<std::uint64_t, duration_buckets.size() + 1> duration_counts{};  // per bucket, not cumulative
  double duration_sum = 0;

  void count(wire::status outcome, double seconds);
};

class server_metrics {
 public:
  /// The counters of `app`.`function`, created at first use; stable for the server's life.
  function_metrics& of(const std::string& app, const std::string& function);

  /// Calls, durations and anything given in `extra` (lines already in the text format), as Prometheus text.
  std::string render(const std::string& extra) const;

 private:
  std::map<std::pair<std::string, std::string>, std::unique_ptr<function_metrics>> functions_;
};

/// Escapes a Prometheus label value.
std::string label_value(const std::string& value);

}  // namespace ferry::server
