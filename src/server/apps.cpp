#include "server/apps.hpp"

#include "server/metrics.hpp"

namespace ferry::server {

std::string add_functions(app_instance& app, const std::vector<wire::function_spec>& specs, server_metrics& metrics) {
  for (const wire::function_spec& spec : specs) {
    const auto& r = spec.retries;
    std::string problem;
    if (!wire::valid_name(spec.name)) {
      problem = std::string("not a valid function name: use ") + wire::name_rule;
    } else if (spec.max_inputs < 1 || spec.max_containers < 1) {
      problem = "max_inputs and max_containers must be at least 1";
    } else if (spec.min_containers < 0 || spec.buffer_containers < 0 || spec.min_containers > spec.max_containers) {
      problem = "min_containers and buffer_containers must be at least 0, and min_containers at most max_containers";
    } else if (r.max_retries < 0 || !(r.backoff_coefficient >= 1.0 && r.backoff_coefficient <= 10.0)) {
      problem = "retries: max_retries must be at least 0 and backoff_coefficient between 1 and 10";
    } else if (std::string wrong = wire::resources_problem(spec.cpu, static_cast<std::int64_t>(spec.memory_mb),
                                                           spec.gpus, spec.placement);
               !wrong.empty()) {
      problem = wrong;
    } else if (app.functions.contains(spec.name)) {
      problem = "declared twice";
    }
    if (!problem.empty()) return "function '" + spec.name + "': " + problem;
    function_state& fn = app.functions[spec.name];
    fn.app = &app;
    fn.name = spec.name;
    fn.metrics = &metrics.of(app.name, spec.name);
    fn.signature = spec.signature;
    fn.structs = spec.structs;
    fn.max_inputs = spec.max_inputs;
    fn.max_containers = spec.max_containers;
    fn.min_containers = spec.min_containers;
    fn.buffer_containers = spec.buffer_containers;
    fn.scaledown_window = std::chrono::milliseconds(spec.scaledown_window_ms);
    fn.timeout = std::chrono::milliseconds(spec.timeout_ms);
    fn.retries = Retries(r.max_retries, std::chrono::milliseconds(r.initial_delay_ms), r.backoff_coefficient,
                         std::chrono::milliseconds(r.max_delay_ms));
    fn.need = {spec.cpu, spec.memory_mb, spec.gpus, spec.placement};
  }
  return "";
}

}  // namespace ferry::server
