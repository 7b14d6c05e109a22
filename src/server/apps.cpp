#include "server/apps.hpp"

#include "server/metrics.hpp"

namespace ferry::server {

std::string add_functions(app_instance& app, const std::vector<wire::function_spec>& specs, server_metrics& metrics) {
  for (const auto& [fname, signature, max_inputs, max_containers, timeout_ms, retries, min_containers,
                    buffer_containers, scaledown_ms, structs] : specs) {
    auto [max_retries, initial_delay_ms, backoff_coefficient, max_delay_ms] = retries;
    std::string problem;
    if (!wire::valid_name(fname)) {
      problem = std::string("not a valid function name: use ") + wire::name_rule;
    } else if (max_inputs < 1 || max_containers < 1) {
      problem = "max_inputs and max_containers must be at least 1";
    } else if (min_containers < 0 || buffer_containers < 0 || min_containers > max_containers) {
      problem = "min_containers and buffer_containers must be at least 0, and min_containers at most max_containers";
    } else if (max_retries < 0 || !(backoff_coefficient >= 1.0 && backoff_coefficient <= 10.0)) {
      problem = "retries: max_retries must be at least 0 and backoff_coefficient between 1 and 10";
    } else if (app.functions.contains(fname)) {
      problem = "declared twice";
    }
    if (!problem.empty()) return "function '" + fname + "': " + problem;
    function_state& fn = app.functions[fname];
    fn.app = &app;
    fn.name = fname;
    fn.metrics = &metrics.of(app.name, fname);
    fn.signature = signature;
    fn.structs = structs;
    fn.max_inputs = max_inputs;
    fn.max_containers = max_containers;
    fn.min_containers = min_containers;
    fn.buffer_containers = buffer_containers;
    fn.scaledown_window = std::chrono::milliseconds(scaledown_ms);
    fn.timeout = std::chrono::milliseconds(timeout_ms);
    fn.retries = Retries(max_retries, std::chrono::milliseconds(initial_delay_ms), backoff_coefficient,
                         std::chrono::milliseconds(max_delay_ms));
  }
  return "";
}

}  // namespace ferry::server
