#include "runtime/logging.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "client/terminal.hpp"

namespace ferry::runtime {

namespace {

/// stderr, through the terminal's lock: a line never lands on a progress bar's line.
class terminal_sink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    spdlog::memory_buf_t line;
    formatter_->format(message, line);
    client::print_lines(STDERR_FILENO, std::string_view(line.data(), line.size()));
  }
  void flush_() override {}
};

}  // namespace

void init_logging(const std::string& default_level) {
  const char* env = std::getenv("FERRY_LOG_LEVEL");
  const auto level = spdlog::level::from_str(env && *env ? env : default_level);
  auto logger = spdlog::get("ferry");
  if (!logger) {
    logger = std::make_shared<spdlog::logger>("ferry", std::make_shared<terminal_sink>());
    spdlog::register_logger(logger);
  }
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[ferry %H:%M:%S.%e] %l: %v");
  spdlog::set_level(level);
}

}  // namespace ferry::runtime
