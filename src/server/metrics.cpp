#include "server/metrics.hpp"

#include <algorithm>
#include <cstdio>

namespace ferry::server {

void function_metrics::count(wire::status outcome, double seconds) {
  ++calls_by_outcome[static_cast<std::size_t>(outcome)];
  const auto bucket = std::lower_bound(duration_buckets.begin(), duration_buckets.end(), seconds);
  ++duration_counts[static_cast<std::size_t>(bucket - duration_buckets.begin())];
  duration_sum += seconds;
}

function_metrics& server_metrics::of(const std::string& app, const std::string& function) {
  auto& slot = functions_[{app, function}];
  if (!slot) slot = std::make_unique<function_metrics>();
  return *slot;
}

std::string label_value(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string server_metrics::render(const std::string& extra) const {
  std::string out;
  char number[64];
  auto labels = [](const std::pair<std::string, std::string>& key) {
    return "app=\"" + label_value(key.first) + "\",function=\"" + label_value(key.second) + "\"";
  };
  out += "# HELP ferry_calls_total Calls that ended, by function and outcome.\n# TYPE ferry_calls_total counter\n";
  for (const auto& [key, m] : functions_) {
    for (std::size_t s = 0; s < m->calls_by_outcome.size(); ++s) {
      if (m->calls_by_outcome[s] == 0) continue;
      out += "ferry_calls_total{" + labels(key) + ",outcome=\"" + wire::to_string(static_cast<wire::status>(s)) +
             "\"} " + std::to_string(m->calls_by_outcome[s]) + "\n";
    }
  }
  out +=
      "# HELP ferry_call_duration_seconds From a call's arrival to its end.\n"
      "# TYPE ferry_call_duration_seconds histogram\n";
  for (const auto& [key, m] : functions_) {
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < m->duration_counts.size(); ++b) {
      cumulative += m->duration_counts[b];
      if (b < duration_buckets.size()) {
        std::snprintf(number, sizeof number, "%g", duration_buckets[b]);
      } else {
        std::snprintf(number, sizeof number, "+Inf");
      }
      out += "ferry_call_duration_seconds_bucket{" + labels(key) + ",le=\"" + number + "\"} " +
             std::to_string(cumulative) + "\n";
    }
    std::snprintf(number, sizeof number, "%.9g", m->duration_sum);
    out += "ferry_call_duration_seconds_sum{" + labels(key) + "} " + number + "\n";
    out += "ferry_call_duration_seconds_count{" + labels(key) + "} " + std::to_string(cumulative) + "\n";
  }
  out += extra;
  return out;
}

}  // namespace ferry::server
