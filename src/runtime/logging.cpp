#include "runtime/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

namespace ferry::runtime {

void init_logging(const std::string& default_level) {
  const char* env = std::getenv("FERRY_LOG_LEVEL");
  const auto level = spdlog::level::from_str(env && *env ? env : default_level);
  auto logger = spdlog::get("ferry");
  if (!logger) logger = spdlog::stderr_logger_mt("ferry");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[ferry %H:%M:%S.%e] %l: %v");
  spdlog::set_level(level);
}

}  // namespace ferry::runtime
